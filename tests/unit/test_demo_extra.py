"""`sensorcast demo` on an install without the [demo] extra: its help still reads, and only
running it says what is missing."""

from __future__ import annotations

import sys

import pytest

from sensorcast.cli import EXIT_FAILURE, main

from ..install_helpers import assert_installs_from_the_source


@pytest.fixture
def without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports of rich fail as on a gateway install; the demo's modules are imported anew."""
    for name in [n for n in sys.modules if n == "rich" or n.startswith("rich.")] + ["rich"]:
        monkeypatch.setitem(sys.modules, name, None)
    for name in [n for n in sys.modules if n.startswith("sensorcast.demo")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.usefixtures("without_rich")
def test_demo_help_lists_its_options_without_the_extra(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--sensors" in out and "--broker" in out


@pytest.mark.usefixtures("without_rich")
def test_running_the_demo_without_the_extra_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str],
):
    assert main(["demo", "--duration", "1"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the [demo] extra" in err
    assert_installs_from_the_source(err, "demo")


def test_the_install_hint_without_a_recorded_source_says_where_to_look(
    monkeypatch: pytest.MonkeyPatch,
):
    from importlib import metadata

    from sensorcast.models import install_hint

    monkeypatch.setattr(metadata, "distributions", lambda **kwargs: iter(()))
    hint = install_hint("train")
    assert hint.endswith(
        "'/path/to/sensorcast[train]' (the checkout or wheel sensorcast came from)"
    )
