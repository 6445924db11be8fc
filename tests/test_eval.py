"""Split hygiene (exact and near duplicates) and `harness eval` on tiny generated image folders."""

from __future__ import annotations

import dataclasses
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import duplicates as dup
from harness.data.dataset import EVAL_SPLITS, load_dataset, load_split
from harness.spec.schema import DataSpec

CLASSES_A = ("happy", "sad", "anger")
PER_CLASS = 6


def _pattern(seed: int, size: int = 48) -> np.ndarray:
    """A smooth random grey image: structure at the scale pHash describes, distinct per seed."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.normal(size=(6, 6)).astype(np.float32))
    smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC))
    smooth = (smooth - smooth.min()) / (np.ptp(smooth) + 1e-9)
    return (20 + 215 * smooth).astype(np.uint8)


def _noised(image: np.ndarray, seed: int, sigma: float = 3.0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _save(path: Path, image: np.ndarray, **kwargs: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, **kwargs)
    return path


def _batch(*images: np.ndarray) -> np.ndarray:
    """(N, H, W, 1) uint8 from grey images."""
    return np.stack(images)[..., None]


def _hashes(images: list[np.ndarray], labels: list[int], classes: tuple[str, ...] = CLASSES_A) -> dup.ImageHashes:
    return dup.hash_images(_batch(*images), np.array(labels), classes)


@pytest.fixture(scope="module")
def folder_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/val/test folders of happy/sad/anger with planted duplicates:

    - train/sad/dup.png: a copy of train/happy/000.png (an exact set with conflicting labels)
    - val/happy/copy.png: a copy of train/happy/001.png (exact, across train/val)
    - val/sad/reencoded.jpg: train/sad/002.png saved as JPEG (near, across train/val)
    - test/anger/noised.png: train/anger/003.png plus slight noise (near, across train/test)
    """
    root = tmp_path_factory.mktemp("eval") / "a"
    seed = 0
    for split, count in (("train", PER_CLASS), ("val", 2), ("test", 2)):
        for cls in CLASSES_A:
            for i in range(count):
                seed += 1
                _save(root / split / cls / f"{i:03d}.png", _pattern(seed))
    train = root / "train"
    shutil.copy(train / "happy" / "000.png", train / "sad" / "dup.png")
    shutil.copy(train / "happy" / "001.png", root / "val" / "happy" / "copy.png")
    _save(root / "val" / "sad" / "reencoded.jpg", np.asarray(Image.open(train / "sad" / "002.png")), quality=85)
    noised = _noised(np.asarray(Image.open(train / "anger" / "003.png")), seed=99)
    _save(root / "test" / "anger" / "noised.png", noised)
    return root


@pytest.fixture(scope="module")
def folder_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class folders without split folders: happy/sad/surprise (shares two classes with A)."""
    root = tmp_path_factory.mktemp("eval") / "b"
    for c, cls in enumerate(("happy", "sad", "surprise")):
        for i in range(3 + c):
            _save(root / cls / f"{i:03d}.png", _pattern(1000 + 10 * c + i))
    return root


def _spec(root: Path, **kwargs: object) -> DataSpec:
    return DataSpec(source="folder", path=str(root), image_size=32, channels=1, **kwargs)


# ----------------------------------------------------------------------------- hashing


def test_phash_distances_behave() -> None:
    images = [_pattern(s) for s in range(24)]
    base = images[0]
    hashes = dup.phash(_batch(*images))
    copies = dup.phash(
        _batch(
            base,
            _noised(base, seed=1),
            np.clip(base.astype(int) + 15, 0, 255).astype(np.uint8),  # brighter
            np.asarray(_jpeg(base, quality=75)),
        )
    )
    # Every hash sets exactly 32 of its 64 bits (median threshold): distances are even.
    assert all(bin(int(h)).count("1") == 32 for h in hashes)
    assert dup.hamming(copies[0], hashes[0]) == 0
    assert all(dup.hamming(c, hashes[0]) <= 4 for c in copies[1:])
    # Unrelated images lie far apart, and distance is symmetric.
    matrix = dup.hamming(hashes[:, None], hashes[None, :]).astype(int)
    assert (matrix == matrix.T).all() and (np.diag(matrix) == 0).all()
    assert matrix[~np.eye(len(images), dtype=bool)].min() >= 10
    assert (matrix % 2 == 0).all()
    # A grey image and its RGB copy hash alike; so do the same image at 48 and 32 pixels.
    rgb = np.repeat(_batch(base), 3, axis=-1)
    assert dup.phash(rgb)[0] == hashes[0]
    small = np.asarray(Image.fromarray(base).resize((32, 32), Image.Resampling.BILINEAR))
    assert dup.hamming(dup.phash(_batch(small))[0], hashes[0]) <= 4


def _jpeg(image: np.ndarray, quality: int) -> Image.Image:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_hamming_matches_popcount_with_and_without_numpy_bitwise_count(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2**63, 50, dtype=np.uint64) * 2 + 1, rng.integers(0, 2**63, 50, dtype=np.uint64)
    expected = [bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b, strict=True)]
    assert dup.hamming(a, b).tolist() == expected
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert dup.hamming(a, b).tolist() == expected


def test_flat_images_match_only_exactly() -> None:
    grey, darker = np.full((48, 48), 128, np.uint8), np.full((48, 48), 60, np.uint8)
    hashes = _hashes([grey, darker, _pattern(5)], [0, 0, 0])
    assert hashes.textured.tolist() == [False, False, True]
    train = _hashes([darker], [0])
    assert dup.nearest_within(hashes, train, max_distance=64).tolist() == [-1, -1, -1]


def test_hashes_survive_npz_round_trip(tmp_path: Path) -> None:
    hashes = _hashes([_pattern(1), _pattern(2)], [0, 2])
    np.savez(tmp_path / "h.npz", **hashes.to_npz())
    with np.load(tmp_path / "h.npz", allow_pickle=False) as npz:
        back = dup.ImageHashes.from_npz(npz)
    assert back.class_names == CLASSES_A and back.labels.tolist() == [0, 2]
    assert (back.exact == hashes.exact).all() and (back.perceptual == hashes.perceptual).all()


# ----------------------------------------------------------------------------- finding duplicates


def test_find_duplicates_counts_planted_copies() -> None:
    p = [_pattern(s) for s in range(20)]
    train = _hashes([*p[:10], p[0], p[1]], [0] * 10 + [1, 0])  # p0 twice (labels differ), p1 twice
    val = _hashes([p[2], _noised(p[3], seed=3), p[10], p[11]], [0, 0, 0, 0])
    test = _hashes([_noised(p[4], seed=4), p[10], p[12]], [0, 0, 0])
    report = dup.find_duplicates(train, {"val": val, "test": test}, max_distance=4)
    assert (report.exact_train_groups, report.exact_train_images, report.conflicting_labels) == (2, 4, 1)
    assert report.exact_cross == {"train_val": 1, "train_test": 0, "val_test": 1}
    assert report.near_cross == {"train_val": 1, "train_test": 1, "val_test": 0}
    assert report.drop["val"].tolist() == [0, 1] and report.match["val"].tolist() == [2, 3]
    # val↔test copies are counted, never dropped: only copies of training images are.
    assert report.drop["test"].tolist() == [0] and report.match["test"].tolist() == [4]
    assert report.counts()["dup_near_train_test"] == 1
    strict = dup.find_duplicates(train, {"val": val}, max_distance=0)
    assert strict.near_cross["train_val"] <= 1 and strict.exact_cross["train_val"] == 1


def test_conflicting_labels_compare_class_names_across_datasets() -> None:
    p = _pattern(7)
    model = _hashes([p], [0], ("happy", "sad"))
    same_name = _hashes([p], [1], ("neutral", "happy"))  # index differs, name agrees
    other_name = _hashes([p], [0], ("neutral", "happy"))
    assert dup.find_duplicates(model, {"x": same_name}, max_distance=4).conflicting_labels == 0
    assert dup.find_duplicates(model, {"x": other_name}, max_distance=4).conflicting_labels == 1


def test_load_dataset_reports_or_drops_validation_copies(folder_a: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    report = load_dataset(_spec(folder_a), tmp_path, cache)  # dedupe: report (the default)
    assert report.duplicates is not None and report.duplicates.mode == "report"
    r = report.duplicates.report
    assert (r.exact_train_groups, r.exact_train_images, r.conflicting_labels) == (1, 2, 1)
    assert r.exact_cross == {"train_val": 1} and r.near_cross == {"train_val": 1}
    assert len(report.y_val) == 3 * 2 + 2 and "duplicate_of_train" not in report.quality
    assert {Path(d["image"]).name for d in report.duplicates.detail["would_drop_val"]} == {"copy.png", "reencoded.jpg"}
    assert "kept" in report.duplicates.describe()

    dropped = load_dataset(_spec(folder_a, dedupe="drop"), tmp_path, cache)
    assert len(dropped.y_val) == 3 * 2 and dropped.quality["duplicate_of_train"] == 2
    np.testing.assert_array_equal(dropped.x_train, report.x_train)  # training data never changes
    matches = {Path(d["image"]).name: Path(d["train_match"]).name for d in dropped.duplicates.detail["dropped_val"]}
    assert matches == {"copy.png": "001.png", "reencoded.jpg": "002.png"}

    none = load_dataset(_spec(folder_a, dedupe="none"), tmp_path, cache)
    assert none.duplicates is None and len(none.y_val) == len(report.y_val)


def test_duplicates_do_not_depend_on_the_input_size(folder_a: Path, tmp_path: Path) -> None:
    """Hashing happens at CANONICAL_PX whatever the model's input: a 48 px and a 32 px load drop
    the same validation images (so their predictions pair up) from identical hashes."""
    cache = tmp_path / "cache"
    at_48 = DataSpec(source="folder", path=str(folder_a), image_size=48, channels=1, dedupe="drop")
    small = load_dataset(_spec(folder_a, dedupe="drop"), tmp_path, cache)
    large = load_dataset(at_48, tmp_path, cache)
    assert large.x_val.shape[1:] == (48, 48, 1) and len(large.y_val) == len(small.y_val)
    assert small.duplicates is not None and large.duplicates is not None
    a, b = small.duplicates.train_hashes, large.duplicates.train_hashes
    assert a.side == b.side == dup.CANONICAL_PX
    np.testing.assert_array_equal(a.exact, b.exact)
    np.testing.assert_array_equal(a.perceptual, b.perceptual)
    assert small.duplicates.detail["dropped_val"] == large.duplicates.detail["dropped_val"]
    # Evaluation hashes the same way: a 48 px split carries its 32 px twin, row for row.
    split = load_split(at_48, tmp_path, cache)
    assert split.hash_x is not None and split.hash_x.shape == (len(split.y), 32, 32, 1)
    np.testing.assert_array_equal(split.hash_x, load_split(_spec(folder_a), tmp_path, cache).x)
    # Hashes logged before (no side recorded) read as side 0: compared at the model's own size.
    legacy = {k: v for k, v in a.to_npz().items() if k != "side"}
    assert dup.ImageHashes.from_npz(legacy).side == 0 and dup.ImageHashes.from_npz(a.to_npz()).side == 32


def test_a_missing_canonical_twin_is_said_not_silent(
    folder_a: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image usable at the model's size but not at CANONICAL_PX (here: made blank at 32 px
    only) sends hashing back to the model's arrays, and duplicates.json says so and why."""
    import harness.data.dataset as ds

    real = ds._drop_blank

    def blank_at_32(arrays: dict, names: dict) -> tuple:
        kept, kept_names, blank = real(arrays, names)
        if kept["val"].x.shape[1] == dup.CANONICAL_PX:  # the canonical copy loses its last val image
            gone = kept_names["val"][-1]
            kept["val"] = dataclasses.replace(kept["val"], x=kept["val"].x[:-1], y=kept["val"].y[:-1])
            kept_names["val"] = kept_names["val"][:-1]
            blank = [*blank, gone]
        return kept, kept_names, blank

    monkeypatch.setattr(ds, "_drop_blank", blank_at_32)
    spec = DataSpec(source="folder", path=str(folder_a), image_size=48, channels=1, dedupe="drop")
    data = load_dataset(spec, tmp_path, tmp_path / "cache")
    detail = data.duplicates.detail
    assert detail["hashed_px"] == 48 and data.duplicates.train_hashes.side == 48
    assert "1 val image(s) unusable at 32 px only" in detail["canonical_fallback"]
    # Without the fault, the canonical size is used and no fallback is recorded.
    monkeypatch.setattr(ds, "_drop_blank", real)
    clean = load_dataset(spec, tmp_path, tmp_path / "cache").duplicates.detail
    assert clean["hashed_px"] == 32 and "canonical_fallback" not in clean


def test_load_split_picks_test_then_validation_then_all(folder_a: Path, folder_b: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    test = load_split(_spec(folder_a), tmp_path, cache)
    assert test.split == "test" and len(test.y) == 3 * 2 + 1 and len(test.names) == len(test.y)
    assert load_split(_spec(folder_a), tmp_path, cache, "validation").x.shape == (8, 32, 32, 1)
    everything = load_split(_spec(folder_b), tmp_path, cache)
    assert everything.split == "all" and everything.class_names == ("happy", "sad", "surprise")
    assert len(everything.y) == 3 + 4 + 5
    # A folder without split folders: "validation" is the carve `harness run` would use.
    carved = load_split(_spec(folder_b, val_fraction=0.25), tmp_path, cache, "validation")
    assert 0 < len(carved.y) < len(everything.y)


def test_match_classes_and_split_choices() -> None:
    from typing import get_args

    from harness.cli.parser import EVAL_SPLIT_CHOICES, TTA_CHOICES
    from harness.runs.evaluate import match_classes
    from harness.spec.schema import TrainSpec

    match = match_classes(("happy", "sad", "anger"), ("happy", "sad", "surprise"))
    assert match.shared == ("happy", "sad") and match.not_in_model == ("surprise",)
    assert match.not_in_data == ("anger",)
    assert EVAL_SPLIT_CHOICES == EVAL_SPLITS
    assert TTA_CHOICES == get_args(TrainSpec.model_fields["tta"].annotation)


def test_with_tta_replaces_only_the_scoring_views() -> None:
    from harness.core.errors import SpecError
    from harness.runs.trained import TrainedModel, with_tta
    from harness.suite.load import load_suite

    spec = load_suite(Path(__file__).parents[1] / "beyond.yaml").experiments["modern_cpu"]
    trained = TrainedModel("r", "modern_cpu", spec, ("a", "b"), Path("w.pt"), None)
    assert spec.train.tta == "crops" and with_tta(trained, None) is trained
    flipped = with_tta(trained, "flip")
    assert flipped.spec.train.tta == "flip" and spec.train.tta == "crops"
    assert flipped.spec.train.model_dump(exclude={"tta"}) == spec.train.model_dump(exclude={"tta"})
    assert flipped.spec.model == spec.model and flipped.spec.data == spec.data
    with pytest.raises(SpecError, match="'mirror'"):
        with_tta(trained, "mirror")


# ----------------------------------------------------------------------------- harness eval


def _suite(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "experiments.yaml"
    path.write_text(textwrap.dedent(
        f"""
        suite: tiny-eval
        defaults:
          data: {{source: folder, path: {data}, image_size: 32, channels: 1}}
          sampler: {{name: natural, per_epoch: 32, cap: 8}}
          model: {{name: cnn, widths: [8, 16], dense: 32}}
          train: {{epochs: 1, batch_size: 16, precision: fp32}}
        experiments:
          tiny_cnn:
            description: a tiny CNN on happy/sad/anger
        """
    ))  # fmt: skip
    return path


@pytest.mark.slow
def test_eval_scores_shared_classes_and_drops_copies(
    folder_a: Path, folder_b: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    import harness.train.scoring
    from harness.cli.main import main
    from harness.tracking.read import load_results

    suite, uri = _suite(tmp_path, folder_a), f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--config", str(suite), "--tracking-uri", uri, "--cache-dir", str(tmp_path / "cache")]
    assert main(["run", *common]) == 0
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name("tiny-eval").experiment_id
    (trained,) = client.search_runs([experiment_id])
    artifacts = {a.path for a in client.list_artifacts(trained.info.run_id, "data")}
    assert {"data/duplicates.json", "data/train_hashes.npz"} <= artifacts
    assert trained.data.metrics["data_dup_exact_train_val"] == 1

    # Another dataset, by experiment name: happy and sad are scored, surprise and anger are not.
    assert main(["eval", "--run", "tiny_cnn", "--data", f"folder:{folder_b}", *common]) == 0
    (run,) = client.search_runs([experiment_id], filter_string="tags.`harness.eval_dataset` = 'folder:b'")
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["harness.kind"] == "eval" and tags["harness.trained_by"] == trained.info.run_id
    assert tags["harness.eval_split"] == "all" and tags["harness.eval_classes"] == "happy,sad"
    assert tags["harness.classes_not_in_model"] == "surprise" and tags["harness.classes_not_in_data"] == "anger"
    assert metrics["eval_images"] == 3 + 4 and metrics["eval_images_unscored"] == 5
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_balanced_accuracy" in metrics and "eval_macro_f1" in metrics
    local = client.download_artifacts(run.info.run_id, "eval/confusion_matrix.json", str(tmp_path))
    confusion = json.loads(Path(local).read_text())
    assert confusion["labels"] == ["happy", "sad"] and sum(map(sum, confusion["counts"])) == 7
    eval_files = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert {"eval/confusion_matrix.csv", "eval/confusion_matrix.html", "eval/classification_report.json"} <= eval_files

    # The training dataset's own test split, by run id: the noised copy of a training image goes.
    argv = ["eval", "--run", trained.info.run_id, "--data", f"folder:{folder_a}", "--dedupe", "drop", *common]
    assert main(argv) == 0
    (own,) = client.search_runs([experiment_id], filter_string="tags.`harness.eval_dataset` = 'folder:a'")
    assert own.data.tags["harness.eval_split"] == "test" and own.data.tags["harness.classes_not_in_data"] == ""
    assert own.data.metrics["eval_dup_near"] == 1 and own.data.metrics["eval_duplicates_dropped"] == 1
    assert own.data.metrics["eval_images"] == 3 * 2

    # The run's own validation split with its own TTA (none) gives the run's own accuracy; --tta
    # re-scores the same weights with other views, and the eval run records which.
    seen: list[str] = []
    views = harness.train.scoring.tta_views
    monkeypatch.setattr(harness.train.scoring, "tta_views", lambda x, mode: seen.append(mode) or views(x, mode))
    val = ["eval", "--run", "tiny_cnn", "--data", f"folder:{folder_a}", "--split", "validation", *common]
    for tta in (None, "crops"):
        assert main(val + (["--tta", tta] if tta else [])) == 0
    by_tta = {
        r.data.params["eval.tta"]: r.data.metrics
        for r in client.search_runs(
            [experiment_id], filter_string="tags.`harness.kind` = 'eval' and tags.`harness.eval_split` = 'validation'"
        )
    }
    assert set(by_tta) == {"none", "crops"} and set(seen) == {"crops"}
    assert by_tta["none"]["eval_accuracy"] == trained.data.metrics["final_val_accuracy"]
    assert by_tta["crops"]["eval_images"] == by_tta["none"]["eval_images"]
    with pytest.raises(SystemExit) as usage:  # not a choice: argparse's usage error
        main([*val, "--tta", "mirror"])
    assert usage.value.code == 2

    assert [r.run_id for r in load_results(uri, "tiny-eval", artifacts=False).runs] == [trained.info.run_id]
    assert main(["eval", "--run", "nope", "--data", f"folder:{folder_b}", *common]) == 2
