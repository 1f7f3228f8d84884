"""plan_batches: splitting a batch into the bundle's fixed LiteRT signature sizes."""

from __future__ import annotations

import pytest

from sensorcast.models.runtime import CALL_OVERHEAD_WINDOWS, plan_batches

SIZES = (1, 4, 16, 64, 256)


def cost(plan: list[int]) -> float:
    """The module's own cost model: per call, the overhead plus every (padded) window."""
    return sum(CALL_OVERHEAD_WINDOWS + b for b in plan)


def test_plans_are_valid_for_every_batch_up_to_1000() -> None:
    for n in range(1001):
        plan = plan_batches(n, SIZES)
        assert all(b in SIZES for b in plan), (n, plan)
        assert sum(plan) >= n, (n, plan)
        if plan:
            assert sum(plan) - n < max(plan), (n, plan)  # at most one chunk's worth of padding
        assert cost(plan) <= cost([1] * n), (n, plan)  # never worse than one call per window


def test_empty_batch_needs_no_call() -> None:
    assert plan_batches(0, SIZES) == []


@pytest.mark.parametrize(
    ("n", "plan"),
    [(1, [1]), (4, [4]), (16, [16]), (64, [64]), (256, [256]), (512, [256, 256])],
)
def test_exact_sizes_are_one_call_each(n: int, plan: list[int]) -> None:
    assert sorted(plan_batches(n, SIZES)) == sorted(plan)


def test_padding_beats_many_small_calls() -> None:
    # 15 windows: one padded call of 16 (cost 22) beats 4+4+4+1+1+1 (cost 51)
    assert plan_batches(15, SIZES) == [16]


def test_plan_is_the_cheapest_under_the_cost_model() -> None:
    """Against an exhaustive optimum for covering at least n windows."""
    top = 1000
    best = [0.0] + [float("inf")] * top
    for n in range(1, top + 1):
        best[n] = min(best[max(0, n - b)] + CALL_OVERHEAD_WINDOWS + b for b in SIZES)
    for n in range(top + 1):
        assert cost(plan_batches(n, SIZES)) == pytest.approx(best[n]), n


@pytest.mark.parametrize("sizes", [(1,), (1, 8), (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)])
def test_other_signature_sets(sizes: tuple[int, ...]) -> None:
    for n in range(0, 700, 7):
        plan = plan_batches(n, sizes)
        assert all(b in sizes for b in plan)
        assert sum(plan) >= n
        assert not plan or sum(plan) - n < max(plan)
        assert cost(plan) <= cost([1] * n)


def test_only_size_one_means_one_call_per_window() -> None:
    assert plan_batches(5, (1,)) == [1] * 5
