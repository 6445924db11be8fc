"""The synthetic dataset: AffectNet's on-disk format, its imbalance, determinism, expressions."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.core.classes import AFFECTNET_CLASSES
from harness.core.errors import DataError
from harness.data.synth import example, generator, knobs

# AffectNet's header, spelled out here rather than imported so a change in the generator is caught.
AFFECTNET_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal".split(",")
SCALE = 0.0005  # ~330 training images: every class present, fast to render
VAL_PER_CLASS = 3


def _generate(root: Path, seed: int = 3, workers: int = 1) -> generator.SynthSummary:
    return generator.generate(
        root, seed=seed, scale=SCALE, val_per_class=VAL_PER_CLASS, workers=workers
    )


def _rows(root: Path, split: str) -> list[dict[str, str]]:
    with open(root / f"{split}.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> generator.SynthSummary:
    return _generate(tmp_path_factory.mktemp("synth") / "affectnet")


def test_csvs_have_affectnets_header_and_nine_columns(dataset: generator.SynthSummary) -> None:
    for split in ("training", "validation"):
        with open(dataset.root / f"{split}.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == AFFECTNET_HEADER
        assert len(rows) > 1
        assert all(len(row) == 9 for row in rows[1:])


def test_every_row_points_at_a_decodable_image_with_landmarks_and_box_inside(
    dataset: generator.SynthSummary,
) -> None:
    images = dataset.root / "Manually_Annotated_Images"
    for split in ("training", "validation"):
        for row in _rows(dataset.root, split):
            with Image.open(images / row["subDirectory_filePath"]) as im:
                im.load()
                width, height = im.size
                assert im.format == "JPEG"
            assert 128 <= width <= 224 and 128 <= height <= 224  # real resizing down to 32 px
            x, y, w, h = (int(row[k]) for k in ("face_x", "face_y", "face_width", "face_height"))
            assert x >= 0 and y >= 0 and w > 32 and h > 32
            assert x + w <= width and y + h <= height
            points = np.array([float(v) for v in row["facial_landmarks"].split(";")])
            assert points.shape == (136,)
            xy = points.reshape(68, 2)
            assert (xy[:, 0] >= 0).all() and (xy[:, 0] < width).all()
            assert (xy[:, 1] >= 0).all() and (xy[:, 1] < height).all()
            if row["expression"] != "10":  # the face box encloses the face's landmarks
                assert (xy[:, 0] >= x - 1).all() and (xy[:, 0] <= x + w + 1).all()
                assert (xy[:, 1] >= y - 1).all() and (xy[:, 1] <= y + h + 1).all()


def test_training_counts_follow_the_scale_and_validation_is_balanced(
    dataset: generator.SynthSummary,
) -> None:
    expected = generator.train_counts(SCALE)
    train = np.bincount(
        [int(r["expression"]) for r in _rows(dataset.root, "training")], minlength=11
    )
    val = np.bincount(
        [int(r["expression"]) for r in _rows(dataset.root, "validation")], minlength=11
    )
    assert train.tolist() == [expected[code] for code in range(11)]
    assert val.tolist() == [VAL_PER_CLASS] * 11
    assert dataset.train_counts == {AFFECTNET_CLASSES[c]: n for c, n in expected.items()}
    assert dataset.val_counts == dict.fromkeys(AFFECTNET_CLASSES, VAL_PER_CLASS)


def test_default_scale_keeps_affectnets_imbalance() -> None:
    counts = generator.train_counts(0.02)
    by_name = {AFFECTNET_CLASSES[c]: n for c, n in counts.items()}
    order = [
        "happy",
        "non_face",
        "neutral",
        "none",
        "sad",
        "anger",
        "surprise",
        "uncertain",
        "fear",
        "disgust",
        "contempt",
    ]
    assert sorted(by_name, key=by_name.get, reverse=True) == order
    assert 8000 <= sum(counts.values()) <= 8600
    assert 30 <= by_name["happy"] / by_name["disgust"] <= 40
    # Tiny scales keep every class trainable.
    assert min(generator.train_counts(1e-6).values()) == knobs.MIN_TRAIN_PER_CLASS


def test_valence_and_arousal_follow_affectnets_conventions(dataset: generator.SynthSummary) -> None:
    rows = _rows(dataset.root, "training") + _rows(dataset.root, "validation")
    mean_valence = {}
    for code in range(11):
        mine = [r for r in rows if int(r["expression"]) == code]
        if code >= 8:  # None, Uncertain, No-Face carry AffectNet's -2 placeholder
            assert all(r["valence"] == "-2" and r["arousal"] == "-2" for r in mine)
            continue
        values = np.array([[float(r["valence"]), float(r["arousal"])] for r in mine])
        assert (np.abs(values) <= 1.0).all()
        mean_valence[code] = values[:, 0].mean()
    assert mean_valence[1] > 0.2 > -0.2 > mean_valence[2]  # happy is pleasant, sad is not


def test_synth_json_records_the_settings(dataset: generator.SynthSummary) -> None:
    meta = json.loads((dataset.root / "SYNTH.json").read_text())
    assert meta["seed"] == 3 and meta["scale"] == SCALE and meta["val_per_class"] == VAL_PER_CLASS
    assert meta["version"] == knobs.GENERATOR_VERSION
    assert meta["train_counts"] == dataset.train_counts
    assert not list(dataset.root.glob("*.tmp"))


def test_same_seed_gives_identical_bytes_whatever_the_worker_count(
    dataset: generator.SynthSummary, tmp_path: Path
) -> None:
    again = _generate(tmp_path / "again", workers=2)
    assert _file_digests(again.root) == _file_digests(dataset.root)


def test_regenerating_with_another_seed_replaces_everything(
    dataset: generator.SynthSummary, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(dataset.root, root)
    other = _generate(root, seed=4)
    assert json.loads((root / "SYNTH.json").read_text())["seed"] == 4
    assert (root / "training.csv").read_bytes() != (dataset.root / "training.csv").read_bytes()
    ours, theirs = _file_digests(dataset.root), _file_digests(other.root)
    images = {d for name, d in theirs.items() if name.endswith(".jpg")}
    assert not images & set(ours.values())  # new images, and none of the old ones left over
    listed = {
        r["subDirectory_filePath"] for r in _rows(root, "training") + _rows(root, "validation")
    }
    on_disk = {str(p.relative_to(root / "Manually_Annotated_Images")) for p in root.rglob("*.jpg")}
    assert listed == on_disk


def test_refuses_to_write_over_a_folder_it_did_not_make(tmp_path: Path) -> None:
    foreign = tmp_path / "real_affectnet"
    foreign.mkdir()
    (foreign / "training.csv").write_text("x\n")
    with pytest.raises(DataError, match="SYNTH.json"):
        generator.generate(foreign, scale=1e-6, val_per_class=1, workers=1)
    assert (foreign / "training.csv").read_text() == "x\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"scale": 0.0}, "scale"), ({"seed": -1}, "seed"), ({"min_size": 32}, "min_size")],
)
def test_bad_settings_are_data_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        generator.generate(tmp_path / "ds", **kwargs)


def _face_frame(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Face-aligned axes (right, up) and the inter-ocular distance, from 68 landmarks."""
    left_eye, right_eye = xy[36:42].mean(axis=0), xy[42:48].mean(axis=0)
    right = (right_eye - left_eye) / np.linalg.norm(right_eye - left_eye)
    up = np.array([right[1], -right[0]])  # image y points down
    return right, up, float(np.linalg.norm(right_eye - left_eye))


def _expression_measures(code: int, n: int = 30) -> dict[str, float]:
    """Mean mouth opening, mouth-corner lift and brow height of `n` faces, in eye distances."""
    opening, corner_lift, brow_height = [], [], []
    for _, xy, _, _, _ in example.iter_examples(seed=11, code=code, n=n):
        right, up, eyes = _face_frame(xy)
        opening.append(np.linalg.norm(xy[66] - xy[62]) / eyes)
        lip_centre = (xy[62] + xy[66]) / 2
        corner_lift.append(((xy[48] + xy[54]) / 2 - lip_centre) @ up / eyes)
        eye_corners = xy[[36, 39, 42, 45]].mean(axis=0)  # unlike the lids, corners stay put
        brow_height.append((xy[17:27].mean(axis=0) - eye_corners) @ up / eyes)
    return {
        "opening": np.mean(opening),
        "corner_lift": np.mean(corner_lift),
        "brow_height": np.mean(brow_height),
    }


def test_expressions_move_the_landmarks_the_way_faces_do() -> None:
    neutral, happy, sad, surprise, anger = (_expression_measures(code) for code in (0, 1, 2, 3, 6))
    assert surprise["opening"] > neutral["opening"] + 0.1
    assert surprise["brow_height"] > neutral["brow_height"] + 0.05
    assert happy["corner_lift"] > neutral["corner_lift"] > sad["corner_lift"]
    assert anger["brow_height"] < neutral["brow_height"] - 0.02
