"""Globs on sensor ids as languages: which ids a glob can match, and whether earlier globs
already match every id a later one does (an unreachable route).

A glob is read exactly as `fnmatch.fnmatchcase` reads it (`*`, `?`, `[...]`, `[!...]`),
over the sensor id alphabet `[A-Za-z0-9_.:-]` and lengths 1 to 64 (SPEC section 4). The
question "does some id match B but none of A1..An" is answered exactly by a breadth-first
search over the globs' position sets, with the alphabet cut into the classes of characters
no glob tells apart (a handful), so it stays fast for any realistic route list.
"""

from __future__ import annotations

import fnmatch
import string
from collections import deque
from collections.abc import Sequence

ALPHABET = frozenset(string.ascii_letters + string.digits + "_.:-")
MAX_LEN = 64
Token = frozenset[str] | None
"""A set of characters matching one character, or None for `*`."""


def tokens(glob: str) -> list[Token]:
    """The glob as fnmatch reads it: `*` (None) or the characters one position may be."""
    out: list[Token] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not out or out[-1] is not None:
                out.append(None)
            continue
        piece = c
        if c == "[":  # where fnmatch.translate ends a bracket expression
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j < n:
                piece, i = glob[i - 1 : j + 1], j + 1
        out.append(frozenset(ch for ch in ALPHABET if fnmatch.fnmatchcase(ch, piece)))
    return out


class _Glob:
    def __init__(self, glob: str) -> None:
        self.tokens = tokens(glob)
        self.end = len(self.tokens)

    def closure(self, positions: frozenset[int]) -> frozenset[int]:
        out = set(positions)
        for p in sorted(positions):
            while p < self.end and self.tokens[p] is None:
                p += 1
                out.add(p)
        return frozenset(out)

    def step(self, positions: frozenset[int], ch: str) -> frozenset[int]:
        nxt: set[int] = set()
        for p in positions:
            if p == self.end:
                continue
            token = self.tokens[p]
            if token is None:
                nxt.add(p)
            elif ch in token:
                nxt.add(p + 1)
        return self.closure(frozenset(nxt))

    def accepts(self, positions: frozenset[int]) -> bool:
        return self.end in positions


def _classes(globs: Sequence[_Glob]) -> list[str]:
    """One representative character of each class of characters no token tells apart."""
    sets = [t for g in globs for t in g.tokens if t is not None]
    seen: dict[tuple[bool, ...], str] = {}
    for ch in sorted(ALPHABET):
        seen.setdefault(tuple(ch in s for s in sets), ch)
    return list(seen.values())


def uncovered(glob: str, earlier: Sequence[str] = ()) -> str | None:
    """A sensor id that `glob` matches and none of `earlier` does, or None when there is none
    (with no `earlier`: None when `glob` matches no sensor id at all)."""
    target = _Glob(glob)
    others = [_Glob(g) for g in earlier]
    start = (target.closure(frozenset({0})), tuple(o.closure(frozenset({0})) for o in others))
    seen = {start}
    queue: deque[tuple[frozenset[int], tuple[frozenset[int], ...], str]] = deque([(*start, "")])
    classes = _classes([target, *others])
    while queue:
        mine, theirs, text = queue.popleft()
        if len(text) == MAX_LEN:
            continue
        for ch in classes:
            state = (
                target.step(mine, ch),
                tuple(o.step(s, ch) for o, s in zip(others, theirs, strict=True)),
            )
            if not state[0]:
                continue  # the glob itself can no longer match
            if target.accepts(state[0]) and not any(
                o.accepts(s) for o, s in zip(others, state[1], strict=True)
            ):
                return _spell(glob, earlier, text + ch)
            if state not in seen:
                seen.add(state)
                queue.append((*state, text + ch))
    return None


def _spell(glob: str, earlier: Sequence[str], found: str) -> str:
    """The witness with class representatives swapped for the characters the glob shows
    where it stays a witness (so 'boiler-*' yields 'boiler--', not '-------')."""
    chars = list(found)
    for i, literal in enumerate(glob[: len(found)]):
        if literal in ALPHABET and chars[i] != literal:
            trial = chars.copy()
            trial[i] = literal
            text = "".join(trial)
            if fnmatch.fnmatchcase(text, glob) and not any(
                fnmatch.fnmatchcase(text, e) for e in earlier
            ):
                chars = trial
    return "".join(chars)
