"""Preprocessing benchmark: the harness's cache decoder against a plain PIL loop, in one run.

Both sides turn the same files into the same (N, 32, 32, 3) uint8 arrays. The harness side is
`harness.data.cache.decode_all` (worker processes, JPEG draft mode, chunked streaming); the plain
side is what a study script would write: one process, open, convert, crop to the face box, resize
with the same bilinear filter, `np.asarray`, no draft mode. Two inputs:

- fer2013: 48x48 grayscale JPEGs from the real FER2013 training folders (no face box). Draft
  mode cannot shrink a 48 px image towards 32 px, so the gain is the worker processes alone.
- affectnet: AffectNet-format images of 400-700 px with faces of ~220-640 px, generated once
  per run by `harness.data.synth.generate` into a temporary folder and listed by
  `harness.data.affectnet.list_affectnet`: here draft mode decodes at 1/2-1/8 size.

Every figure is the median of several repeats, the timed variants interleaved within each
repeat so that load from other processes falls on all of them alike. Besides the two sides, the
harness also runs in one process (`workers=1`: what its decode path gains alone) and on CHUNK + 1
images with and without workers (the difference is the worker pool's start-up), so that
ratio = single-process gain x parallel gain, and a missed target shows which part fell short.
The arrays of both sides are compared (draft mode decodes approximately), and the run fails if
they differ by more than MAX_MEAN_ABS_DIFF grey levels on average.

    .venv/bin/python bench/preprocess.py            # the full run, writes reports/bench.json
    .venv/bin/python bench/preprocess.py --quick    # small inputs, prints only (unless --out)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import common
import numpy as np
from common import REPO, REPORT, merge_report, time_variants
from PIL import Image

# Only what the decoder's workers need anyway, at the top: spawned workers re-import this
# script, and the harness's own entry point (harness/cli.py) keeps its top level as light.
from harness.data.cache import CHUNK, Preprocess, decode_all, worker_count
from harness.data.records import ImageRecord

FER2013_TRAIN = REPO.parent / "shared" / "data" / "fer2013" / "train"
# The study's input: 32x32 RGB (FER2013's grey faces become three equal channels).
PREP = Preprocess(image_size=32, channels=3)
# Images per input (full, quick). 8,000 FER2013 faces take ~1 s per plain pass here; synth
# scale 0.003 is 1,262 training images (~15 s to generate at 400-700 px on two cores).
FER2013_IMAGES = (8000, 1000)
AFFECTNET_SCALE = (0.003, 0.0005)
# AffectNet's images are mostly several hundred pixels wide; synth's faces fill 55-92 %.
AFFECTNET_SIZES = (400, 700)
REPEATS = 5
# Targets on the 2-core reference machine: fer2013 can gain only from the second core;
# affectnet gains from draft decoding on top.
TARGET_RATIO = {"fer2013": 1.8, "affectnet": 4.0}
# Draft decoding plus bilinear from ~50 px differs from bilinear from the full-size face by
# about one grey level on average (measured); three would mean a different preprocessing.
MAX_MEAN_ABS_DIFF = 3.0


@dataclass(frozen=True)
class Result:
    """The timings and agreement of one input."""

    name: str
    images: int
    seconds: dict[str, list[float]]  # variant -> seconds per repeat
    mean_abs_diff: float
    worst_image_abs_diff: float
    notes: dict[str, object]
    workers: int = 1  # the harness's default worker count

    def img_s(self, variant: str) -> float:
        """Images per second, from the median of the repeats."""
        return self.images / statistics.median(self.seconds[variant])

    @property
    def ratio(self) -> float:
        """How many times faster the harness is than the plain loop."""
        return self.img_s("harness") / self.img_s("plain")

    @property
    def pool_startup_s(self) -> float:
        """Seconds a worker pool adds before any image is decoded.

        The "small" variants decode CHUNK + 1 images: two chunks, one of a single image, so the
        pool's second worker saves almost nothing and the difference is the pool's start and stop.
        """
        median = {k: statistics.median(v) for k, v in self.seconds.items()}
        return median["harness_small"] - median["harness_small_1proc"]


def plain_decode(records: Sequence[ImageRecord], prep: Preprocess) -> np.ndarray:
    """The straightforward loop: open, convert, crop to the box, resize, as an array."""
    mode = "RGB" if prep.channels == 3 else "L"
    size = (prep.image_size, prep.image_size)
    out = np.empty((len(records), prep.image_size, prep.image_size, prep.channels), np.uint8)
    for i, record in enumerate(records):
        with Image.open(record.path) as im:
            face = im.convert(mode)
            if record.box is not None:
                x, y, w, h = record.box
                face = face.crop((x, y, x + w, y + h))
            face = face.resize(size, Image.Resampling.BILINEAR)
            out[i] = np.asarray(face, dtype=np.uint8).reshape(out.shape[1:])
    return out


def decode_only(records: Sequence[ImageRecord]) -> int:
    """JPEG decoding and nothing else (open + load): the floor of any decoder that reads every pixel."""
    for record in records:
        with Image.open(record.path) as im:
            im.load()
    return len(records)


# The records a parallel-ceiling worker decodes from (set once in each worker by its initializer).
_PART_RECORDS: list[ImageRecord] = []


def _set_part_records(records: list[ImageRecord]) -> None:
    global _PART_RECORDS
    _PART_RECORDS = records


def _decode_part(bounds: tuple[int, int]) -> int:
    """One worker's share of the parallel ceiling: the harness's one-process decoder, kept local."""
    low, high = bounds
    return len(harness_decode(_PART_RECORDS[low:high], PREP, 1))


def parallel_ceiling_variant(
    records: Sequence[ImageRecord], workers: int
) -> tuple[Callable[[], int], Callable[[], None]]:
    """The best any split of the harness's decoder over `workers` processes can do here.

    Each of `workers` processes, started and warmed before the timing, decodes its own contiguous
    share with `decode_all(workers=1)` and sends back only a count: no start-up, no transfer, no
    scheduling. What that reaches against one process is how far this machine's cores scale this
    work (shared caches, memory bandwidth and, on a virtual machine, the host's scheduling), so
    `img/s of this variant / plain` is a measured ceiling for the harness's ratio with this decoder.
    Returns the timed call and the pool's close.
    """
    import multiprocessing

    n = len(records)
    bounds = [(i * n // workers, (i + 1) * n // workers) for i in range(workers)]
    pool = multiprocessing.get_context("fork").Pool(workers, _set_part_records, (list(records),))
    try:
        pool.map(_decode_part, [(0, 1)] * workers, chunksize=1)  # imports and PIL's plugins, untimed
    except BaseException:
        pool.terminate()
        raise

    def run() -> int:
        return sum(pool.map(_decode_part, bounds, chunksize=1))

    def close() -> None:
        pool.terminate()  # idle by now; never waits on a worker that died
        pool.join()

    return run, close


def harness_decode(
    records: Sequence[ImageRecord], prep: Preprocess, workers: int | None
) -> np.ndarray:
    """The cache's decoder; every benchmark image must be readable."""
    arrays = decode_all(records, prep, workers=workers)
    if arrays.unreadable:
        raise RuntimeError(
            f"harness could not read {len(arrays.unreadable)} images, e.g. {arrays.unreadable[0]}"
        )
    return arrays.x


def measure(
    name: str, records: Sequence[ImageRecord], repeats: int, notes: dict[str, object]
) -> Result:
    """Time harness (all cores), harness (one process) and the plain loop on the same records."""
    for record in records:  # page cache: both sides read from memory, not disk
        record.path.read_bytes()
    plain_decode(records[:32], PREP)  # imports and PIL's plugin registry, outside the timing
    small = records[: CHUNK + 1]
    workers = worker_count(len(records))  # as many processes as decode_all uses
    parallel, close_parallel = parallel_ceiling_variant(records, workers)
    variants = {
        "harness": lambda: harness_decode(records, PREP, None),
        # One process isolates what draft decoding gains from what the processes gain.
        "harness_1proc": lambda: harness_decode(records, PREP, 1),
        "plain": lambda: plain_decode(records, PREP),
        "decode_only": lambda: decode_only(records),
        "harness_small": lambda: harness_decode(small, PREP, None),
        "harness_small_1proc": lambda: harness_decode(small, PREP, 1),
        "parallel_ceiling": parallel,
    }
    try:
        seconds, outputs = time_variants(variants, repeats)
    finally:
        close_parallel()
    if not np.array_equal(outputs["harness"], outputs["harness_1proc"]):
        raise AssertionError(f"{name}: the harness's output depends on its worker count")
    diff = np.abs(outputs["harness"].astype(np.int16) - outputs["plain"].astype(np.int16))
    per_image = diff.reshape(len(records), -1).mean(axis=1)
    notes = {**notes, "draft_reduction": draft_reductions(records, PREP)}
    return Result(name, len(records), seconds, float(diff.mean()), float(per_image.max()), notes, workers)


def draft_reductions(records: Sequence[ImageRecord], prep: Preprocess) -> dict[str, int]:
    """How many images JPEG draft mode decodes at 1/1, 1/2, 1/4 or 1/8 size (header reads only).

    Asks PIL with the request `harness.data.cache.decode` makes for a face box: a decode never
    smaller than image_size across the box's shorter side. Box-less images have the whole image
    as their box.
    """
    mode = "RGB" if prep.channels == 3 else "L"
    counts: Counter[str] = Counter()
    for record in records:
        with Image.open(record.path) as im:
            if im.format != "JPEG":
                counts["not_jpeg"] += 1
                continue
            w, h = im.size
            box = record.box or (0, 0, w, h)
            scale = min(box[2], box[3]) / prep.image_size
            im.draft(mode, (max(1, int(w / scale)), max(1, int(h / scale))))
            counts[f"1/{round(w / im.size[0])}"] += 1
    return dict(sorted(counts.items()))


def fer2013_records(root: Path, n: int) -> list[ImageRecord]:
    """`n` training images spread evenly over the sorted listing (so over every class)."""
    from harness.core.classes import FER2013_CLASSES
    from harness.data.fer2013 import list_fer2013

    records = list_fer2013(root, FER2013_CLASSES).train
    n = min(n, len(records))
    return [records[i * len(records) // n] for i in range(n)]


def affectnet_records(root: Path, scale: float) -> tuple[list[ImageRecord], dict[str, object]]:
    """Generate an AffectNet-format dataset of large images under `root`; its training records."""
    from harness.core.classes import CLASS_SETS
    from harness.data.affectnet import list_affectnet
    from harness.data.synth.generator import generate

    low, high = AFFECTNET_SIZES
    summary = generate(root, seed=0, scale=scale, val_per_class=0, min_size=low, max_size=high)
    records = list_affectnet(root, CLASS_SETS["all11"]).train
    sides = [min(r.box[2], r.box[3]) for r in records if r.box is not None]
    notes = {
        "generate_seconds": round(summary.seconds, 1),
        "image_px": [low, high],
        "face_px_min_median_max": [min(sides), int(statistics.median(sides)), max(sides)],
    }
    return records, notes


def report_keys(result: Result) -> dict[str, float]:
    """The flat numeric keys of one input in reports/bench.json."""
    prefix = f"preprocess_{result.name}"
    target = TARGET_RATIO[result.name]
    harness, one_proc, plain = (result.img_s(v) for v in ("harness", "harness_1proc", "plain"))
    return {
        f"{prefix}_images": result.images,
        f"{prefix}_harness_img_s": round(harness, 1),
        f"{prefix}_harness_1proc_img_s": round(one_proc, 1),
        f"{prefix}_plain_img_s": round(plain, 1),
        f"{prefix}_ratio": round(result.ratio, 2),
        # ratio = single_process_gain x parallel_gain: the decode path, then the processes.
        f"{prefix}_single_process_gain": round(one_proc / plain, 2),
        f"{prefix}_parallel_gain": round(harness / one_proc, 2),
        f"{prefix}_pool_startup_s": round(result.pool_startup_s, 3),
        f"{prefix}_target_ratio": target,
        f"{prefix}_target_met": int(result.ratio >= target),
        f"{prefix}_mean_abs_diff": round(result.mean_abs_diff, 3),
        # The ceiling: a decoder whose only cost were decoding each JPEG whole, spread over the
        # harness's workers with no start-up, against the plain loop. Where it sits near or
        # below the target, the target is out of reach on these images, whatever the code does.
        f"{prefix}_ceiling": round(result.img_s("decode_only") * result.workers / plain, 2),
        # The measured ceiling: the harness's own decoder run in already-started processes, each
        # on an equal share, nothing sent back (parallel_ceiling_variant). Where it sits below
        # the target, splitting this decoder over this machine's cores does not reach it.
        f"{prefix}_parallel_ceiling": round(result.img_s("parallel_ceiling") / plain, 2),
        f"{prefix}_core_scaling": round(result.img_s("parallel_ceiling") / one_proc, 2),
    }


def print_table(results: Sequence[Result]) -> None:
    """One row per input: throughput of each side, the ratio against its target, agreement."""
    header = (
        f"{'input':<10} {'images':>6} {'harness':>9} {'1 proc':>9} {'plain':>9} "
        f"{'ratio':>6} {'target':>7} {'met':>4} {'ceiling':>8} {'split':>6} {'pool s':>7} {'MAD':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        target = TARGET_RATIO[r.name]
        print(
            f"{r.name:<10} {r.images:>6} {r.img_s('harness'):>9.0f} {r.img_s('harness_1proc'):>9.0f} "
            f"{r.img_s('plain'):>9.0f} {r.ratio:>5.2f}x {target:>6.1f}x {'yes' if r.ratio >= target else 'NO':>4} "
            f"{r.img_s('decode_only') * r.workers / r.img_s('plain'):>7.2f}x "
            f"{r.img_s('parallel_ceiling') / r.img_s('plain'):>5.2f}x {r.pool_startup_s:>7.2f} {r.mean_abs_diff:>6.3f}"
        )
    print(
        "img/s, median of the repeats; 1 proc: decode_all(workers=1); pool s: the worker pool's"
        " start-up; ceiling: decoding alone over the workers, against plain; split: the harness's"
        " one-process decoder in already-running processes, each on its share (the measured"
        " ceiling); MAD: mean |harness - plain|"
        " in grey levels"
    )


def write_report(path: Path, results: Sequence[Result], details: dict[str, object]) -> None:
    """Merge this benchmark's keys into the JSON report (read, update, atomic write)."""
    keys = {k: v for result in results for k, v in report_keys(result).items()}
    merge_report(path, keys, "preprocess", details)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, for a smoke test")
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help="timed repeats per variant (median)"
    )
    parser.add_argument(
        "--fer2013", type=Path, default=FER2013_TRAIN, help="FER2013 train/<class>/ folders"
    )
    common.add_out_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    size = 1 if args.quick else 0
    out = args.out or (None if args.quick else REPORT)
    results = []
    if args.fer2013.is_dir():
        records = fer2013_records(args.fer2013, FER2013_IMAGES[size])
        print(f"fer2013: {len(records)} images from {args.fer2013}", file=sys.stderr)
        results.append(measure("fer2013", records, args.repeats, {"source": str(args.fer2013)}))
    else:
        print(f"fer2013: skipped, {args.fer2013} is not a folder", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as tmp:
        print("affectnet: generating images ...", file=sys.stderr)
        records, notes = affectnet_records(Path(tmp) / "affectnet", AFFECTNET_SCALE[size])
        print(f"affectnet: {len(records)} images, {notes}", file=sys.stderr)
        results.append(measure("affectnet", records, args.repeats, notes))
    print_table(results)
    details = {
        **common.machine(
            " ".join(["bench/preprocess.py", *(argv if argv is not None else sys.argv[1:])])
        ),
        "repeats": args.repeats,
        "quick": args.quick,
        "image_size": PREP.image_size,
        "channels": PREP.channels,
        "inputs": {
            r.name: {
                "seconds": {k: [round(s, 3) for s in v] for k, v in r.seconds.items()},
                "worst_image_mean_abs_diff": round(r.worst_image_abs_diff, 2),
                **r.notes,
            }
            for r in results
        },
    }
    if out is not None:
        write_report(out, results, details)
        print(f"wrote {out}", file=sys.stderr)
    bad = [r.name for r in results if r.mean_abs_diff > MAX_MEAN_ABS_DIFF]
    if bad:
        print(
            f"error: harness and plain outputs differ by > {MAX_MEAN_ABS_DIFF} grey levels: {bad}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
