"""AffectNet adapter, preprocessing cache and samplers on tiny trees written by the tests."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.core.classes import CLASS_SETS
from harness.core.errors import DataError
from harness.data.affectnet import COLUMNS, list_affectnet
from harness.data.cache import Preprocess, decode, load_or_build
from harness.data.records import ImageRecord
from harness.data.samplers import SAMPLERS, class_weights

ALL11 = CLASS_SETS["all11"]


def _image(path: Path, colour: tuple[int, int, int], size: int = 96) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (size, size), (0, 0, 0))
    # The face box (16..80) is coloured; outside it stays black, so cropping is observable.
    img.paste(colour, (16, 16, 80, 80))
    img.save(path, quality=95)


def _row(rel: str, code: int) -> list[str]:
    landmarks = ";".join(["40.0"] * 136)
    return [rel, "16", "16", "64", "64", landmarks, str(code), "0.1", "0.2"]


def make_tree(root: Path, *, header: bool = True, extra_rows: list[list[str]] | None = None) -> Path:
    """Two images per class in train, one per class in validation, plus optional odd rows."""
    images = root / "Manually_Annotated_Images"
    train, val = [], []
    for code in range(11):
        for i in range(2):
            rel = f"{code}/train_{i}.jpg"
            _image(images / rel, (20 * code + 10, 100, 200 - 10 * code))
            train.append(_row(rel, code))
        rel = f"{code}/val.jpg"
        _image(images / rel, (20 * code + 10, 100, 200 - 10 * code))
        val.append(_row(rel, code))
    train += extra_rows or []
    for name, rows in (("training.csv", train), ("validation.csv", val)):
        with open(root / name, "w", newline="") as fh:
            writer = csv.writer(fh)
            if header:
                writer.writerow(COLUMNS)
            writer.writerows(rows)
    return root


def test_reads_csv_with_header_and_crops_the_face_box(tmp_path: Path) -> None:
    listing = list_affectnet(make_tree(tmp_path), ALL11)
    assert len(listing.train) == 22 and len(listing.val) == 11
    assert sorted({r.label for r in listing.train}) == list(range(11))
    first = listing.train[0]
    assert first.box == (16, 16, 64, 64)
    pixels = decode(first, Preprocess(image_size=32, channels=3))
    assert pixels is not None and pixels.shape == (32, 32, 3)
    # The crop removed the black border entirely.
    assert pixels.min() > 0


def test_header_less_csv_is_detected(tmp_path: Path) -> None:
    listing = list_affectnet(make_tree(tmp_path, header=False), ALL11)
    assert len(listing.train) == 22 and not listing.skipped


def test_class_set_selects_and_renumbers(tmp_path: Path) -> None:
    listing = list_affectnet(make_tree(tmp_path), CLASS_SETS["basic7"])
    assert {r.label for r in listing.train} == set(range(7))
    assert listing.skipped["class_not_in_set"] == 4 * 2 + 4


def test_bad_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    corrupt = tmp_path / "Manually_Annotated_Images" / "bad" / "corrupt.jpg"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "Manually_Annotated_Images" / "bad" / "empty.jpg").write_bytes(b"")
    extra = [
        _row("missing/nowhere.jpg", 1),
        _row("bad/corrupt.jpg", 1),
        _row("bad/empty.jpg", 2),
        _row("0/train_0.jpg", 17),
        _row("0/train_0.jpg", "x"),  # type: ignore[arg-type]
        _row("../../etc/passwd", 1),
        _row("/etc/passwd", 1),
        ["only_one_field"],
    ]
    listing = list_affectnet(make_tree(tmp_path, extra_rows=extra), ALL11)
    assert listing.skipped["missing_file"] == 1
    assert listing.skipped["bad_label"] == 2
    assert listing.skipped["unsafe_path"] == 2
    assert listing.skipped["row_missing_fields"] == 1
    assert "training.csv" in listing.skipped_examples["missing_file"]
    arrays, _, _ = load_or_build(tmp_path / "cache", {"train": listing.train}, Preprocess(32, 3), workers=1)
    # The corrupt and the empty file are listed but cannot be decoded.
    assert len(arrays["train"].unreadable) == 2 and len(arrays["train"].y) == 22


def test_missing_csv_and_folder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset folder not found"):
        list_affectnet(tmp_path / "nope", ALL11)
    tmp_path.joinpath("training.csv").write_text("")
    with pytest.raises(DataError, match="no validation.csv"):
        list_affectnet(tmp_path, ALL11)


def test_cache_is_reused_rebuilt_on_change_and_on_damage(tmp_path: Path) -> None:
    listing = list_affectnet(make_tree(tmp_path / "data"), ALL11)
    splits = {"train": listing.train, "val": listing.val}
    cache = tmp_path / "cache"
    first, path, built = load_or_build(cache, splits, Preprocess(32, 3), workers=2)
    assert built and path.exists()
    started = time.perf_counter()
    second, path2, built2 = load_or_build(cache, splits, Preprocess(32, 3), workers=2)
    assert not built2 and path2 == path and time.perf_counter() - started < 1.0
    np.testing.assert_array_equal(first["train"].x, second["train"].x)
    # A changed setting is another key.
    _, path3, built3 = load_or_build(cache, splits, Preprocess(24, 1), workers=1)
    assert built3 and path3 != path
    # A changed file list is another key.
    _, path4, built4 = load_or_build(cache, {"train": listing.train[:-1], "val": listing.val}, Preprocess(32, 3))
    assert built4 and path4 != path
    # A damaged cache file is detected by its checksum and rebuilt.
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    third, _, rebuilt = load_or_build(cache, splits, Preprocess(32, 3), workers=1)
    assert rebuilt
    np.testing.assert_array_equal(first["train"].x, third["train"].x)


def test_parallel_and_serial_decoding_agree(tmp_path: Path) -> None:
    listing = list_affectnet(make_tree(tmp_path / "data"), ALL11)
    a, _, _ = load_or_build(tmp_path / "c1", {"train": listing.train}, Preprocess(32, 3), workers=1)
    b, _, _ = load_or_build(tmp_path / "c2", {"train": listing.train}, Preprocess(32, 3), workers=2)
    np.testing.assert_array_equal(a["train"].x, b["train"].x)


def test_odd_image_modes_decode(tmp_path: Path) -> None:
    prep = Preprocess(16, 3)
    cases = {
        "cmyk.jpg": Image.new("CMYK", (40, 40), (0, 128, 128, 0)),
        "palette.png": Image.new("P", (40, 40), 3),
        "sixteen.png": Image.new("I;16", (40, 40), 3000),
        "alpha.png": Image.new("RGBA", (40, 40), (10, 20, 30, 128)),
        "gray.jpg": Image.new("L", (40, 40), 90),
    }
    for name, img in cases.items():
        img.save(tmp_path / name)
        out = decode(ImageRecord(tmp_path / name, 0), prep)
        assert out is not None and out.shape == (16, 16, 3), name
    gray = decode(ImageRecord(tmp_path / "gray.jpg", 0), Preprocess(16, 1))
    assert gray is not None and gray.shape == (16, 16, 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_natural_sampler_draws_per_epoch_without_replacement(seed: int) -> None:
    labels = np.repeat(np.arange(3), [700, 200, 100])
    idx = SAMPLERS.get("natural")(labels, 500, 0, np.random.default_rng(seed))
    assert len(idx) == 500 and len(set(idx.tolist())) == 500
    small = SAMPLERS.get("natural")(labels, 5000, 0, np.random.default_rng(seed))
    assert sorted(small.tolist()) == list(range(1000))


def test_balanced_sampler_caps_each_class_and_redraws() -> None:
    labels = np.repeat(np.arange(4), [700, 200, 100, 5])
    rng = np.random.default_rng(0)
    first = SAMPLERS.get("balanced")(labels, 0, 150, rng)
    second = SAMPLERS.get("balanced")(labels, 0, 150, rng)
    assert np.bincount(labels[first]).tolist() == [150, 150, 100, 5]
    assert len(set(first.tolist())) == len(first)
    assert set(first.tolist()) != set(second.tolist())  # redrawn each epoch


def test_class_weights_are_inverse_frequency() -> None:
    labels = np.array([0, 0, 0, 1])
    w = class_weights(labels, 3)
    # scikit-learn's "balanced" weights: n / (k * n_c), zero for an absent class.
    np.testing.assert_allclose(w, [4 / 9, 4 / 3, 0.0], rtol=1e-6)
