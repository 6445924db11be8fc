"""Split hygiene: exact and near-duplicate images within training and across splits.

Identity is decided on the preprocessed uint8 arrays the model sees, not on file bytes:

- *exact*: the same pixels after decoding, cropping and resizing (a 64-bit BLAKE2b digest
  of the array). This works for every source, including FER2013's CSV rows, which have no
  file of their own; it catches copies that differ only in metadata or container; it reads
  no file (the arrays come from the cache); and it is what matters to the model. Byte-identical
  files are always pixel-identical, so every byte-level group is found (and a few more: images
  that become identical once downscaled, which are duplicates for the model anyway).
- *near*: a 64-bit DCT perceptual hash (pHash, as `imagehash.phash` computes it: the sign of
  the 8x8 lowest-frequency DCT coefficients against their median), compared by Hamming distance.
  It survives re-encoding, slight noise, small brightness and contrast changes. Flat images
  (whose low-frequency part has a std below `FLAT_STD` grey levels) have no structure for the
  hash to describe: they match only exactly.

Near matches are searched only across splits (an evaluation image against the training set),
by brute force over chunks of bit operations (FER2013 at 32x32 on two busy cores: hashing its
28,709 training images ~0.6 s, matching a 10% validation split against the rest ~0.2 s);
the training split is checked against itself for exact copies only.

Choosing the distance: the 32 set bits of every hash (median threshold) make distances even.
On FER2013's training images, the nearest non-identical neighbour lies at 0/2/4/6/8 bits for
176/464/828/991/1,638 images, and the bulk at 10-16. Inspected by eye, pairs at <= 4 bits
were all the same photograph (re-encoded, shifted or re-cropped), at 6 about one in six were
different people who look alike, at 8 about half: hence `data.dedupe_distance: 4`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# pHash bits: the 8x8 lowest frequencies, as imagehash and phash.org use.
HASH_SIDE = 8
# Images are hashed at one side length whatever the model's input, so runs at 32 px and 48 px
# find the same duplicates and keep the same validation images (their predictions pair up).
# 32 px: the study's input, so its runs hash the very arrays they train on.
CANONICAL_PX = 32
# Images whose low-frequency part varies less than this (std in grey levels, 0..255) are
# "flat": the hash would describe rounding noise, so unrelated flat images could hash alike.
FLAT_STD = 2.0
# Images hashed per step: the float copy of one batch (~12 MB at 32x32x3) stays in cache.
HASH_BATCH = 1024
# Evaluation images compared with the whole training set per step: bounds the temporary
# XOR matrix (CHUNK x n_train uint64) to ~27 MB for FER2013-sized sets.
CHUNK = 128
SPLIT_NAMES = {"val": "validation"}  # how messages name the dataset's split keys
# ITU-R 601 luma, as PIL's RGB → L conversion, so grey images hash like their RGB copies.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ImageHashes:
    """Per-image exact digests and perceptual hashes of one split, with labels by class name."""

    exact: np.ndarray  # uint64: digest of the preprocessed pixels
    perceptual: np.ndarray  # uint64: 64-bit DCT pHash
    textured: np.ndarray  # bool: False for flat images, which match only exactly
    labels: np.ndarray  # int64 index into class_names
    class_names: tuple[str, ...]
    # The side (px) of the images hashed: CANONICAL_PX for every load since hashing became
    # independent of the model's input size; 0 for hashes logged before (at the model's size).
    side: int = 0

    def __len__(self) -> int:
        return len(self.exact)

    def to_npz(self) -> dict[str, np.ndarray]:
        """The arrays to save (np.savez), loadable without pickle."""
        return {
            "exact": self.exact,
            "perceptual": self.perceptual,
            "textured": self.textured,
            "labels": self.labels,
            "class_names": np.array(self.class_names, dtype=str),
            "side": np.array(self.side, dtype=np.int64),
        }

    @classmethod
    def from_npz(cls, npz: Mapping[str, np.ndarray]) -> ImageHashes:
        """The inverse of `to_npz`."""
        return cls(
            exact=np.asarray(npz["exact"], np.uint64),
            perceptual=np.asarray(npz["perceptual"], np.uint64),
            textured=np.asarray(npz["textured"], bool),
            labels=np.asarray(npz["labels"], np.int64),
            class_names=tuple(str(c) for c in npz["class_names"]),
            side=int(npz["side"]) if "side" in npz else 0,
        )


@dataclass(frozen=True)
class DuplicateReport:
    """Duplicates found in a training split and the evaluation splits compared with it.

    Cross-split counts are images of the second split with at least one match in the first
    (pairs would count an image copied five times five times). `near` counts only images
    with no exact match, so exact + near is every duplicated image.
    """

    max_distance: int
    exact_train_groups: int  # sets of >= 2 pixel-identical training images
    exact_train_images: int  # images in those sets
    conflicting_labels: int  # exact sets (over all splits) whose copies carry different labels
    exact_cross: Mapping[str, int] = field(default_factory=dict)  # "train_val" -> images
    near_cross: Mapping[str, int] = field(default_factory=dict)
    # Per evaluation split: indices of images duplicating a training image (exactly or near),
    # and, aligned with them, the index of one such training image.
    drop: Mapping[str, np.ndarray] = field(default_factory=dict)
    match: Mapping[str, np.ndarray] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Flat counts, as logged (`dup_exact_train_val`, `dup_near_train_test`, ...)."""
        out = {
            "dup_exact_train_groups": self.exact_train_groups,
            "dup_exact_train_images": self.exact_train_images,
            "dup_conflicting_labels": self.conflicting_labels,
        }
        out.update({f"dup_exact_{pair}": n for pair, n in self.exact_cross.items()})
        out.update({f"dup_near_{pair}": n for pair, n in self.near_cross.items()})
        return out


@dataclass(frozen=True)
class Dedupe:
    """What a dataset load found and did: the report, a JSON account naming the images, the
    training images' hashes (logged, so other data can later be checked against them)."""

    mode: str  # "report" | "drop"
    report: DuplicateReport
    detail: dict[str, Any]
    train_hashes: ImageHashes

    def dropped(self, split: str) -> int:
        """Images removed from `split` (none unless the mode is "drop")."""
        rows = self.report.drop.get(split)
        return 0 if self.mode != "drop" or rows is None else len(rows)

    def describe(self) -> str:
        """One line for the console: what was found, and what was done about it."""
        r = self.report
        parts = [
            f"training holds {r.exact_train_groups:,} set(s) of identical images "
            f"({r.exact_train_images:,} images; {r.conflicting_labels:,} set(s) with conflicting labels)"
        ]
        for split in r.drop:
            pair = f"train_{split}"
            fate = "dropped" if self.mode == "drop" else "kept (data.dedupe: drop removes them)"
            parts.append(
                f"{SPLIT_NAMES.get(split, split)}: {r.exact_cross[pair]:,} exact + "
                f"{r.near_cross[pair]:,} near copies of training images, {fate}"
            )
        return "duplicates: " + "; ".join(parts)


def phash(x: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hashes (uint64) of (N, H, W, C) uint8 images."""
    return _perceptual(x)[0]


def _perceptual(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pHashes and low-frequency std (grey levels) of images, in chunks that stay in cache."""
    hashes, spread = np.zeros(len(x), np.uint64), np.zeros(len(x), np.float32)
    for start in range(0, len(x), HASH_BATCH):
        low = _low_frequencies(x[start : start + HASH_BATCH]).reshape(-1, HASH_SIDE * HASH_SIDE)
        bits = low > np.median(low, axis=1, keepdims=True)
        hashes[start : start + len(low)] = np.packbits(bits, axis=1).view(">u8").ravel()
        spread[start : start + len(low)] = _low_std(low, x.shape[1], x.shape[2])
    return hashes, spread


def _low_frequencies(x: np.ndarray) -> np.ndarray:
    """The (N, 8, 8) lowest DCT-II coefficients (vertical, horizontal) of the images' luma.

    Taken at the images' own size, with no resize (the lowest frequencies of an image and of
    its 32x32 thumbnail agree), as two matrix products over the whole batch; the luma
    weights are folded into the first, so no grey copy of the images is made.
    """
    n, h, w, c = x.shape
    luma = LUMA if c == 3 else np.ones(1, np.float32)
    across = (_dct_basis(w).T[:, None, :] * luma[None, :, None]).reshape(w * c, HASH_SIDE)
    cols = (x.reshape(n * h, w * c).astype(np.float32) @ across).reshape(n, h, HASH_SIDE)
    low = cols.transpose(0, 2, 1).reshape(n * HASH_SIDE, h) @ _dct_basis(h).T
    return low.reshape(n, HASH_SIDE, HASH_SIDE).transpose(0, 2, 1)


def _low_std(low: np.ndarray, h: int, w: int) -> np.ndarray:
    """Std (grey levels) of the image's low-pass part: orthonormal AC energy per pixel."""
    scale_h = np.full(HASH_SIDE, np.sqrt(2.0 / h), np.float32)
    scale_w = np.full(HASH_SIDE, np.sqrt(2.0 / w), np.float32)
    scale_h[0], scale_w[0] = np.sqrt(1.0 / h), np.sqrt(1.0 / w)
    orth = low * np.outer(scale_h, scale_w).ravel()
    ac = (orth[:, 1:] ** 2).sum(axis=1)
    return np.sqrt(ac / (h * w))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between uint64 hashes (broadcasting), as uint8."""
    xor = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(xor)
    table = np.array([bin(i).count("1") for i in range(256)], np.uint8)
    as_bytes = np.ascontiguousarray(xor)[..., None].view(np.uint8)
    return table[as_bytes].sum(axis=-1, dtype=np.uint8)


def digests(x: np.ndarray) -> np.ndarray:
    """64-bit BLAKE2b digests (uint64) of each image's pixels: equal iff the pixels are (w.h.p.)."""
    flat = np.ascontiguousarray(x).reshape(len(x), -1)
    raw = b"".join(hashlib.blake2b(row.data, digest_size=8).digest() for row in flat)
    return np.frombuffer(raw, dtype=np.uint64).copy()


def hash_images(x: np.ndarray, y: np.ndarray, class_names: Sequence[str]) -> ImageHashes:
    """Exact and perceptual hashes of one split's images."""
    perceptual, spread = _perceptual(x)
    return ImageHashes(
        exact=digests(x),
        perceptual=perceptual,
        textured=spread >= FLAT_STD,
        labels=np.asarray(y, np.int64),
        class_names=tuple(class_names),
        side=int(x.shape[1]) if x.ndim == 4 else 0,
    )


def find_duplicates(
    train: ImageHashes, others: Mapping[str, ImageHashes], *, max_distance: int
) -> DuplicateReport:
    """Exact groups within `train`; exact and near matches of each other split in `train`
    (and in the splits listed before it: val↔test); label conflicts over all splits."""
    exact_cross: dict[str, int] = {}
    near_cross: dict[str, int] = {}
    drop: dict[str, np.ndarray] = {}
    match: dict[str, np.ndarray] = {}
    names = list(others)
    for i, split in enumerate(names):
        hashes = others[split]
        exact_hit, exact_at = _exact_matches(hashes.exact, train.exact)
        near_at = nearest_within(hashes, train, max_distance)
        near_hit = (near_at >= 0) & ~exact_hit
        exact_cross[f"train_{split}"] = int(exact_hit.sum())
        near_cross[f"train_{split}"] = int(near_hit.sum())
        drop[split] = np.flatnonzero(exact_hit | near_hit)
        match[split] = np.where(exact_hit, exact_at, near_at)[drop[split]]
        for earlier in names[:i]:
            pair = f"{earlier}_{split}"
            hit, _ = _exact_matches(hashes.exact, others[earlier].exact)
            near = (nearest_within(hashes, others[earlier], max_distance) >= 0) & ~hit
            exact_cross[pair], near_cross[pair] = int(hit.sum()), int(near.sum())
    groups, images = _exact_groups(train.exact)
    return DuplicateReport(
        max_distance=max_distance,
        exact_train_groups=groups,
        exact_train_images=images,
        conflicting_labels=_conflicting_groups([train, *others.values()]),
        exact_cross=exact_cross,
        near_cross=near_cross,
        drop=drop,
        match=match,
    )


def nearest_within(query: ImageHashes, reference: ImageHashes, max_distance: int) -> np.ndarray:
    """For each query image, the index of its nearest textured reference image if within
    `max_distance` bits, else -1 (always -1 for flat query images)."""
    out = np.full(len(query), -1, np.int64)
    ref_rows = np.flatnonzero(reference.textured)
    if len(ref_rows) == 0:
        return out
    ref = reference.perceptual[ref_rows]
    rows = np.flatnonzero(query.textured)
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        distance = hamming(query.perceptual[chunk, None], ref[None, :])
        best = distance.argmin(axis=1)
        close = distance[np.arange(len(chunk)), best] <= max_distance
        out[chunk[close]] = ref_rows[best[close]]
    return out


def _exact_matches(query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which query digests occur in `reference`, and the index of one occurrence (else -1)."""
    if len(reference) == 0:
        return np.zeros(len(query), bool), np.full(len(query), -1, np.int64)
    order = np.argsort(reference, kind="stable")
    pos = np.minimum(np.searchsorted(reference[order], query), len(reference) - 1)
    hit = reference[order][pos] == query
    return hit, np.where(hit, order[pos], -1)


def _exact_groups(exact: np.ndarray) -> tuple[int, int]:
    """(sets of >= 2 identical digests, images in them)."""
    _, counts = np.unique(exact, return_counts=True)
    repeated = counts[counts > 1]
    return len(repeated), int(repeated.sum())


def _conflicting_groups(splits: Sequence[ImageHashes]) -> int:
    """Exact-duplicate sets, over all splits, whose copies carry more than one class name."""
    union = sorted({c for s in splits for c in s.class_names})
    digest = np.concatenate([s.exact for s in splits])
    label = np.concatenate(
        [np.asarray([union.index(c) for c in s.class_names], np.uint64)[s.labels] for s in splits if len(s)]
        or [np.zeros(0, np.uint64)]
    )
    pairs = np.unique(np.stack([digest, label], axis=1), axis=0)
    _, labels_per_digest = np.unique(pairs[:, 0], return_counts=True)
    return int((labels_per_digest > 1).sum())


def _dct_basis(n: int) -> np.ndarray:
    """The first HASH_SIDE rows of the (unnormalised) DCT-II basis for n samples."""
    k = np.arange(HASH_SIDE, dtype=np.float64)[:, None]
    i = np.arange(n, dtype=np.float64)[None, :]
    return np.cos(np.pi * (2 * i + 1) * k / (2 * n)).astype(np.float32)


def summary(report: DuplicateReport, names: Mapping[str, Sequence[str]], dedupe: str) -> dict[str, Any]:
    """JSON-ready account of a report: counts, and each dropped image with the training copy it matches."""
    doc: dict[str, Any] = {"dedupe": dedupe, "max_distance": report.max_distance, **report.counts()}
    for split, rows in report.drop.items():
        key = "dropped" if dedupe == "drop" else "would_drop"
        doc[f"{key}_{split}"] = [
            {"image": _name(names, split, int(r)), "train_match": _name(names, "train", int(m))}
            for r, m in zip(rows, report.match[split], strict=True)
        ]
    return doc


def _name(names: Mapping[str, Sequence[str]], split: str, row: int) -> str:
    listed = names.get(split)
    return listed[row] if listed is not None and row < len(listed) else f"{split} image {row}"
