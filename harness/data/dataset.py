"""From a data spec to in-memory uint8 arrays: list records, then load or build the cache."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.core.errors import DataError
from harness.data.cache import Arrays, Preprocess, load_or_build
from harness.data.duplicates import CANONICAL_PX, Dedupe, find_duplicates, hash_images, summary
from harness.data.sources import SOURCES
from harness.data.splits import carve_validation
from harness.spec.schema import class_names

if TYPE_CHECKING:
    from harness.data.cache import Arrays
    from harness.data.duplicates import Dedupe
    from harness.data.records import ImageRecord, Listing
    from harness.spec.schema import DataSpec

# Reasons for skipping that mean an item is broken (not left out on purpose, nor a stray file).
DAMAGE = frozenset({"unreadable", "missing_file", "unsafe_path", "bad_label", "row_missing_fields",
                    "row_extra_fields", "wrong_pixel_count", "bad_usage", "empty_file"})  # fmt: skip
# The splits `harness eval` can score, as named on its command line.
EVAL_SPLITS = ("test", "validation", "train", "all")


@dataclass(frozen=True)
class Dataset:
    """Preprocessed training and validation images (N, H, W, C uint8) with integer labels."""

    name: str
    root: Path
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    digest: str  # identifies the file list and labels, logged with every run
    cache_path: Path | None = None
    quality: dict[str, int] = field(default_factory=dict)  # skipped items by reason
    quality_examples: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # each unreadable image -> why
    split_path: Path | None = None  # the saved validation split, when it was carved from training
    duplicates: Dedupe | None = None  # duplicate hygiene, unless data.dedupe is "none"

    @property
    def num_classes(self) -> int:
        """How many classes the model predicts."""
        return len(self.class_names)

    def class_counts(self, labels: np.ndarray) -> list[int]:
        """Images per class, in class order."""
        return np.bincount(labels, minlength=self.num_classes).tolist()


def resolve_path(spec: DataSpec, project_root: Path) -> Path:
    """The dataset folder: relative paths are relative to the project (suite file) folder."""
    path = Path(spec.path).expanduser()
    return path if path.is_absolute() else (project_root / path)


def load_dataset(
    spec: DataSpec, project_root: Path, cache_dir: Path, *, progress: bool = False
) -> Dataset:
    """List the source's records, then load (or build) their preprocessed arrays.

    A source without a validation split gets one carved from its training records (see
    `harness.data.splits`); its test split, if any, is left for a later evaluation.
    """

    root = resolve_path(spec, project_root)
    listing = SOURCES.get(spec.source)(spec, root, class_names(spec))
    split_path = None
    if not listing.val and listing.train:
        listing, split_path = carve_validation(
            listing, fraction=spec.val_fraction, seed=spec.split_seed, cache_dir=cache_dir
        )
    splits = {"train": listing.train, "val": listing.val}
    for split, records in splits.items():
        if not records:
            reasons = ", ".join(f"{k}: {v}" for k, v in listing.skipped.items()) or "none listed"
            example = next(iter(listing.skipped_examples.values()), None)
            raise DataError(
                f"{root}: no usable {split} images (skipped {reasons}"
                + (f"; e.g. {example})" if example else ")")
            )
    _check_mostly_usable(root, listing.skipped, len(listing.train) + len(listing.val), listing.skipped_examples)
    prep = Preprocess(image_size=spec.image_size, channels=spec.channels)
    arrays, cache_path, _ = load_or_build(cache_dir, splits, prep, progress=progress)
    unreadable = {p: a.errors.get(p, "cannot be decoded") for a in arrays.values() for p in a.unreadable}
    arrays, names, quality, examples = _usable(arrays, splits, listing, spec.drop_blank)
    for split, a in arrays.items():
        if len(a.y) == 0:
            raise DataError(f"{root}: no readable {split} images ({_unreadable(a)})")
    _check_mostly_usable(root, quality, sum(len(a.y) for a in arrays.values()), examples)
    dedupe = None
    if spec.dedupe != "none":
        hashed, fallback = _canonical(arrays, names, splits, listing, spec, cache_dir, progress)
        arrays, dedupe = _dedupe(arrays, hashed, names, listing.class_names, spec, fallback)
        if dedupe.dropped("val"):
            quality["duplicate_of_train"] = dedupe.dropped("val")
            examples["duplicate_of_train"] = dedupe.detail["dropped_val"][0]["image"]
        if len(arrays["val"].y) == 0:
            raise DataError(f"{root}: every validation image duplicates a training image (data.dedupe: drop)")
    return Dataset(
        name=listing.name,
        root=root,
        class_names=listing.class_names,
        x_train=arrays["train"].x,
        y_train=arrays["train"].y,
        x_val=arrays["val"].x,
        y_val=arrays["val"].y,
        digest=_digest(splits, listing.class_names),
        cache_path=cache_path,
        quality=quality,
        quality_examples=examples,
        unreadable=unreadable,
        split_path=split_path,
        duplicates=dedupe,
    )


@dataclass(frozen=True)
class Split:
    """One preprocessed split of a dataset, for evaluation: images, labels and their names."""

    name: str  # the dataset's
    root: Path
    split: str  # one of EVAL_SPLITS
    class_names: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    names: list[str]  # each image's file (or CSV row), aligned with x
    digest: str
    quality: dict[str, int] = field(default_factory=dict)
    quality_examples: dict[str, str] = field(default_factory=dict)
    # The images as hashed for duplicates (CANONICAL_PX), aligned with x; None: x itself.
    hash_x: np.ndarray | None = None


def load_split(
    spec: DataSpec, project_root: Path, cache_dir: Path, split: str | None = None, *, progress: bool = False
) -> Split:
    """One split of the spec's dataset, decoded through the cache; the test split included.

    `split` None picks the source's test split, else its own validation split, else every
    image (a folder without split folders is one pool). "train" and "validation" are what
    `harness run` trains and validates on, carved as it carves them when the source has no
    validation split; "all" is every listed image.
    """

    root = resolve_path(spec, project_root)
    listing = SOURCES.get(spec.source)(spec, root, class_names(spec))
    chosen = split or ("test" if listing.test else "validation" if listing.val else "all")
    if chosen not in EVAL_SPLITS:
        raise DataError(f"{root}: no split '{chosen}' (choose from {', '.join(EVAL_SPLITS)})")
    if chosen in ("train", "validation") and not listing.val and listing.train:
        listing, _ = carve_validation(listing, fraction=spec.val_fraction, seed=spec.split_seed, cache_dir=cache_dir)
    key = {"validation": "val"}.get(chosen, chosen)
    records = {
        "train": listing.train, "val": listing.val, "test": listing.test,
        "all": [*listing.train, *listing.val, *listing.test],
    }[key]  # fmt: skip
    if not records:
        raise DataError(f"{root}: the dataset has no {chosen} split (found: {_split_counts(listing)})")
    prep = Preprocess(image_size=spec.image_size, channels=spec.channels)
    arrays, _, _ = load_or_build(cache_dir, {key: records}, prep, progress=progress)
    arrays, names, quality, examples = _usable(arrays, {key: records}, listing, spec.drop_blank)
    a = arrays[key]
    if len(a.y) == 0:
        raise DataError(f"{root}: no readable {chosen} images ({_unreadable(a)})")
    hash_x = None
    if spec.dedupe != "none":
        hash_x = _canonical(arrays, names, {key: records}, listing, spec, cache_dir, progress)[0][key]
    return Split(
        name=listing.name,
        root=root,
        split=chosen,
        class_names=listing.class_names,
        x=a.x,
        y=a.y,
        names=names[key],
        digest=_digest({key: records}, listing.class_names),
        quality=quality,
        quality_examples=examples,
        hash_x=hash_x,
    )


def _check_mostly_usable(root: Path, skipped: dict[str, int], usable: int, examples: dict[str, str]) -> None:
    """More damaged items than usable ones means the wrong folder or a broken copy: an error.

    A few damaged images or rows are normal in real datasets and are only skipped and counted;
    what was left out on purpose (another class set, blank faces, duplicates) is no damage.
    """
    damaged = {k: v for k, v in skipped.items() if k in DAMAGE}
    if sum(damaged.values()) > usable:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(damaged.items()))
        example = examples.get(max(damaged, key=damaged.__getitem__), "")
        raise DataError(
            f"{root}: more images are damaged than usable ({reasons}; {usable} usable; e.g. {example}); "
            "is data.path the right folder?"
        )


def _unreadable(a: Arrays) -> str:
    """'N unreadable, e.g. FILE (why)': what a split with nothing readable tells the user."""
    if not a.unreadable:
        return "0 unreadable"
    first = a.unreadable[0]
    why = f" ({a.errors[first]})" if first in a.errors else ""
    return f"{len(a.unreadable)} unreadable, e.g. {first}{why}"


def _split_counts(listing: Listing) -> str:
    counts = {"train": len(listing.train), "validation": len(listing.val), "test": len(listing.test)}
    return ", ".join(f"{n} {split}" for split, n in counts.items())


def _usable(
    arrays: dict[str, Arrays], splits: dict[str, list[ImageRecord]], listing: Listing, drop_blank: bool
) -> tuple[dict[str, Arrays], dict[str, list[str]], dict[str, int], dict[str, str]]:
    """The decoded arrays and their images' names, less blank images when asked; what the
    listing and decoding skipped, by reason, with an example of each."""
    quality = dict(listing.skipped)
    examples = dict(listing.skipped_examples)
    unreadable = [p for a in arrays.values() for p in a.unreadable]
    if unreadable:
        quality["unreadable"] = len(unreadable)
        examples["unreadable"] = unreadable[0]  # why each one failed: Dataset.unreadable
    names = {split: _decoded_names(splits[split], a) for split, a in arrays.items()}
    if drop_blank:
        arrays, names, blank = _drop_blank(arrays, names)
        if blank:
            quality["blank_image"], examples["blank_image"] = len(blank), blank[0]
    return arrays, names, quality, examples


def _drop_blank(
    arrays: dict[str, Arrays], names: dict[str, list[str]]
) -> tuple[dict[str, Arrays], dict[str, list[str]], list[str]]:
    """The arrays and names without images whose pixels all share one value; those images' names.

    Such images carry no face (FER2013 has 11 all-black training images); they are dropped
    after the cache, so the cache holds every decodable image whatever the setting.
    """

    kept, kept_names, blank = dict(arrays), dict(names), []
    for split, a in arrays.items():
        if len(a.y) == 0:
            continue
        flat = a.x.reshape(len(a.x), -1)
        is_blank = flat.min(axis=1) == flat.max(axis=1)
        if is_blank.any():
            blank += [names[split][i] for i in np.flatnonzero(is_blank)]
            kept[split] = Arrays(a.x[~is_blank], a.y[~is_blank], a.unreadable, a.errors)
            kept_names[split] = [n for n, b in zip(names[split], is_blank, strict=True) if not b]
    return kept, kept_names, blank


def _canonical(
    arrays: dict[str, Arrays],
    names: dict[str, list[str]],
    splits: dict[str, list[ImageRecord]],
    listing: Listing,
    spec: DataSpec,
    cache_dir: Path,
    progress: bool,
) -> tuple[dict[str, np.ndarray], str | None]:
    """Per split, the images to hash for duplicates, row for row with `arrays`: the same images
    at CANONICAL_PX (decoded through the cache), so duplicates do not depend on the input size.

    The study's 32 px arrays are hashed as they are. Should a row have no canonical twin (an
    image decodable or blank at one size only), the arrays themselves are hashed, as before, and
    the second value says which image and why (it goes into the run's duplicates.json).
    """

    own = {split: a.x for split, a in arrays.items()}
    if spec.image_size == CANONICAL_PX:
        return own, None
    prep = Preprocess(image_size=CANONICAL_PX, channels=spec.channels)
    canon, _, _ = load_or_build(cache_dir, splits, prep, progress=progress)
    canon, canon_names, _, _ = _usable(canon, splits, listing, spec.drop_blank)
    out = {}
    for split in arrays:
        row = {name: i for i, name in enumerate(canon_names[split])}
        if len(row) != len(canon_names[split]):
            return own, f"{split}: image names repeat at {CANONICAL_PX} px; hashed at {spec.image_size} px"
        missing = [name for name in names[split] if name not in row]
        if missing:
            return own, (
                f"{len(missing)} {split} image(s) unusable at {CANONICAL_PX} px only (e.g. {missing[0]});"
                f" hashed at {spec.image_size} px"
            )
        out[split] = canon[split].x[[row[name] for name in names[split]]]
    return out, None


def _dedupe(
    arrays: dict[str, Arrays],
    hashed: dict[str, np.ndarray],
    names: dict[str, list[str]],
    class_names: tuple[str, ...],
    spec: DataSpec,
    fallback: str | None = None,
) -> tuple[dict[str, Arrays], Dedupe]:
    """Find duplicates within training and across splits (hashing `hashed`, row for row with
    `arrays`); with "drop", remove from every other split the images that duplicate a training
    image. Training images are never removed."""

    hashes = {split: hash_images(hashed[split], a.y, class_names) for split, a in arrays.items()}
    others = {split: h for split, h in hashes.items() if split != "train"}
    report = find_duplicates(hashes["train"], others, max_distance=spec.dedupe_distance)
    kept = dict(arrays)
    if spec.dedupe == "drop":
        for split, rows in report.drop.items():
            keep = np.ones(len(arrays[split].y), bool)
            keep[rows] = False
            a = arrays[split]
            kept[split] = Arrays(a.x[keep], a.y[keep], a.unreadable, a.errors)
    detail = {"hashed_px": int(hashed["train"].shape[1]), **summary(report, names, spec.dedupe)}
    if fallback:
        detail["canonical_fallback"] = fallback
    return kept, Dedupe(spec.dedupe, report, detail, hashes["train"])


def _decoded_names(records: list[ImageRecord], a: Arrays) -> list[str]:
    """Names of the decoded rows of `a`: the records minus the unreadable ones, in order."""
    unreadable = set(a.unreadable)
    decoded = [r.location() for r in records if r.location() not in unreadable]
    if len(decoded) != len(a.y):  # a file listed twice, once unreadable: positions are ambiguous
        return [f"decoded image {i}" for i in range(len(a.y))]
    return decoded


def _digest(splits: dict, class_names: tuple[str, ...]) -> str:
    """A content-independent identity of the dataset: relative paths, sizes, labels, boxes."""
    digest = hashlib.sha256("|".join(class_names).encode())
    for split, records in sorted(splits.items()):
        digest.update(split.encode())
        for r in records:
            # The row is appended only when set, so the digests of file datasets are unchanged.
            row = "" if r.row is None else f"|{r.row}"
            digest.update(f"{r.path.name}|{r.size}|{r.label}|{r.box}{row}\n".encode())
    return digest.hexdigest()[:16]
