"""`sensorcast train` end to end: seed shapes, written bundles, errors, atomic output."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from sensorcast.errors import UserError
from sensorcast.models import export, report, train
from sensorcast.models.build import ModelShape, build_network
from sensorcast.models.bundle import SCHEMA_VERSION, load_bundle

from .conftest import SHAPES, BundleCache, train_args

pytestmark = pytest.mark.train

EXPECTED = {
    "many_to_one": ("many_to_one", 12, 2, ["co2"], ["co2"], train.DEFAULT_NORMALISATION),
    "stacked": ("stacked", 20, 1, ["temperature", "humidity"], ["temperature"], "global"),
    "seq2seq": ("seq2seq", 8, 8, ["co2"], ["co2"], "window"),
    "multi_target_global": (
        "many_to_one", 20, 3, ["temperature", "humidity", "co2"], ["temperature", "co2"], "global"
    ),
    "multi_target_window": (
        "many_to_one", 10, 1, ["temperature", "humidity", "light", "co2"], ["humidity", "co2"],
        "window",
    ),
    "last_window_scale": (
        "many_to_one", 20, 6, ["temperature", "co2"], ["temperature", "co2"], "last"
    ),
    "last_trimmed_scale": (
        "many_to_one", 20, 6, ["temperature", "co2"], ["temperature", "co2"], "last"
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SHAPES))
def test_seed_shapes_train_into_valid_bundles(bundles: BundleCache, name: str) -> None:
    trained = bundles.get(name)
    meta = load_bundle(trained.path).meta
    kind, timesteps, horizon, features, targets, mode = EXPECTED[name]
    assert (meta.architecture.kind, meta.timesteps, meta.horizon) == (kind, timesteps, horizon)
    assert (meta.features, meta.targets, meta.normalisation.mode) == (features, targets, mode)
    assert sorted(p.name for p in trained.path.iterdir()) == [
        "bundle.json", "model.keras", "model.tflite",
    ]  # fmt: skip
    assert meta.name == name and meta.cadence_s in (960.0, 604_800.0)
    m = meta.metrics
    assert min(m["n_train"], m["n_val"], m["n_test"]) > 0 and m["epochs"] >= 1
    assert set(m["targets"]) == set(targets)
    assert m["targets"][targets[0]]["persistence"]["mae"] > 0
    assert set(meta.versions) == {"sensorcast", "tensorflow", "keras", "numpy", "python"}
    assert meta.training["data"] == trained.data.name and meta.training["seed"] == 0
    assert report.format_metrics(m) in trained.stdout
    assert f"({meta.model_id})" in trained.stdout
    assert meta.schema_version == SCHEMA_VERSION
    assert meta.calibration is not None and meta.calibration.n >= m["n_val"]
    assert meta.calibration.shape == (horizon, len(targets))
    for target in targets:
        steps = m["steps"][target]
        for split in ("validation", "test"):
            for k in ("model", "persistence", "baseline"):
                assert len(steps[split][k]) == horizon
        coverage = m["coverage"]["targets"][target]
        assert len(coverage) == len(m["coverage"]["levels"]) and len(coverage[0]) == horizon
    warned = "warning: the model does not beat persistence on validation" in trained.stdout
    assert warned == (not m["beats_persistence"])


def test_last_on_one_series_stores_the_training_splits_step_scale(bundles: BundleCache) -> None:
    trained = bundles.get("last_window_scale")
    assert load_bundle(trained.path).meta.normalisation.scale is None  # asked for
    one = load_bundle(bundles.get("many_to_one").path).meta.normalisation
    if one.mode == "last":
        assert one.scale is not None and 0.1 < one.scale[0] < 2.0  # ppm per week


def test_trimmed_step_scale_is_recorded_and_shown(bundles: BundleCache) -> None:
    """`--step-scale trimmed`: each window's own scale without its largest step, recorded in
    the bundle so serving applies the same one (the parity tests check it does)."""
    from sensorcast.models import report

    meta = load_bundle(bundles.get("last_trimmed_scale").path).meta
    norm = meta.normalisation
    assert (norm.mode, norm.scale, norm.step_scale) == ("last", None, "trimmed")
    assert "per-window trimmed RMS step scale" in report.format_bundle(meta)  # inspect
    plain = load_bundle(bundles.get("last_window_scale").path).meta.normalisation
    assert plain.step_scale is None  # the RMS, as bundles written before the option


def test_an_untrained_last_model_is_exactly_persistence() -> None:
    from sensorcast.models.bundle import Normalisation
    from sensorcast.models.preprocess import Scaler

    model = build_network(ModelShape(timesteps=12, features=2, horizon=3, targets=1, units=4,
                                     zero_head=True))  # fmt: skip
    scaler = Scaler(Normalisation(mode="last"), ["a", "b"], ["b"])
    windows = np.random.default_rng(3).normal(50.0, 5.0, (7, 12, 2))
    x, ctx = scaler.transform(windows)
    forecast = scaler.inverse(np.asarray(model(x, training=False)), ctx)
    assert np.array_equal(forecast, np.repeat(windows[:, -1:, 1:], 3, axis=1))


def test_intervals_cover_the_test_tail_near_their_level(bundles: BundleCache) -> None:
    meta = load_bundle(bundles.get("many_to_one").path).meta
    coverage = meta.metrics["coverage"]
    cover90 = np.asarray(coverage["targets"]["co2"][coverage["levels"].index(0.9)])
    assert 0.75 <= cover90.mean() <= 1.0, cover90


def test_inspect_shows_a_trained_bundle(
    bundles: BundleCache, capsys: pytest.CaptureFixture[str]
) -> None:
    trained = bundles.get("stacked")
    assert report.run_inspect(trained.path) == 0
    out = capsys.readouterr().out
    assert load_bundle(trained.path).meta.model_id in out
    assert "global (training-split statistics: temperature" in out


def test_retraining_replaces_a_bundle_but_never_unrelated_files(
    bundles: BundleCache, tmp_path: Path
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    argv = [str(bundles.data / "co2.csv"), "--out", str(out), "--epochs", "1"]
    with pytest.raises(UserError, match=r"holds files that are not part of a bundle \(notes.txt\)"):
        train.run(train_args(argv))
    assert (out / "notes.txt").read_text() == "keep me"


def test_failed_export_leaves_the_previous_bundle(
    bundles: BundleCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = bundles.get("many_to_one").path
    out = tmp_path / "bundle"
    shutil.copytree(previous, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disagree(*_: object) -> float:
        raise export.ExportError("model.tflite disagrees with model.keras")

    monkeypatch.setattr(export, "verify_parity", disagree)
    model = build_network(ModelShape(timesteps=12, features=1, horizon=2, targets=1, units=4))
    fields = load_bundle(previous).meta.model_dump(exclude={"files", "content_hash"})
    del fields["schema_version"]
    windows = np.zeros((4, 12, 1))
    with pytest.raises(export.ExportError):
        export.export_bundle(model, out, fields, windows, windows[:, :2])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging left behind


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--targets", "pressure"], r"'pressure' is not a column \(value columns: co2\)"),
        (["--seq2seq", "--horizon", "3"], "--seq2seq forecasts `timesteps` steps"),
        (["--timesteps", "120"], "too few rows for one validation window"),
        (["--name", "has space"], "bundle name 'has space'"),
        (["--val-frac", "0.5", "--test-frac", "0.5"], "sum to less than 0.9"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    bundles: BundleCache, tmp_path: Path, extra: list[str], message: str
) -> None:
    argv = [str(bundles.data / "co2.csv"), "--out", str(tmp_path / "x"), "--quiet", *extra]
    with pytest.raises(UserError, match=message) as caught:
        train.run(train_args(argv))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("mode", ["window", "last"])
def test_relative_normalisations_refuse_a_target_that_is_not_a_feature(
    bundles: BundleCache, tmp_path: Path, mode: str
) -> None:
    argv = [str(bundles.data / "room.csv"), "--out", str(tmp_path / "x"),
            "--features", "temperature", "--targets", "co2", "--normalisation", mode]  # fmt: skip
    with pytest.raises(UserError, match=f"--normalisation {mode} needs every target"):
        train.run(train_args(argv))
