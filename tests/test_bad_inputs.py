"""Garbage in: a corpus of malformed suite files and datasets, each run through `harness run`.

Every case must end with exit code 2 and one line on stderr that names the file (or folder) and
the problem, without a traceback, and leave the project as it was: the tracking store, the
preprocessing cache and the inputs themselves byte for byte (empty `*.lock` files excepted: the
cache's flocks are created on first use and never removed, see harness/locks.py).

Damaged *individual* images or rows are a different matter: they are skipped, counted and named
(see `test_bad_images_among_good_ones_are_skipped_and_named`); only a split with nothing usable
left is an error. README "Reliability" states the policy.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import struct
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_data import make_tree

from harness.cli.main import main
from harness.core.errors import SpecError
from harness.suite.load import load_suite

GOOD_SUITE = textwrap.dedent(
    """
    suite: tiny
    defaults:
      data: {source: SOURCE, path: DATA, image_size: 16}
      sampler: {name: natural, per_epoch: 32, cap: 8}
      model: {name: cnn, widths: [4, 8], dense: 16}
      train: {epochs: 1, batch_size: 16, precision: fp32}
    experiments:
      a:
        description: first
        model: {name: residual_cnn, widths: [4, 8], dense: 16, num_blocks: 1}
      b:
        description: second
        extends: a
        sampler: {name: balanced}
    """
)


def _suite(source: str = "affectnet", data: str = "data") -> str:
    return GOOD_SUITE.replace("SOURCE", source).replace("DATA", data)


def _replace(old: str, new: str) -> str:
    text = _suite()
    assert old in text
    return text.replace(old, new)


# name -> (text of experiments.yaml (None: no file), extra CLI args, what the message must say)
SPEC_CASES: dict[str, tuple[str | None, list[str], str]] = {
    "yaml syntax error": ("experiments: {a: [\n", [], r"invalid YAML \(line \d+, column \d+\)"),
    "yaml tab indentation": ("suite: x\nexperiments:\n\ta: 1\n", [], r"invalid YAML \(line 3"),
    "wrong type": (_replace("epochs: 1", "epochs: ten"), [], r"train\.epochs: .*integer"),
    "unknown top-level key": (_suite() + "experimets: {}\n", [], r"experimets: unknown key; did you mean 'experiments'"),
    "unknown section key": (_replace("per_epoch: 32", "per_epoh: 32"), [], r"per_epoh: unknown key; did you mean 'per_epoch'"),
    "unknown model": (_replace("name: residual_cnn", "name: residul_cnn"), [], r"unknown model 'residul_cnn'; did you mean 'residual_cnn'"),
    "unknown model parameter": (_replace("num_blocks: 1", "num_block: 1"), [], r"num_block: unknown key; did you mean 'num_blocks'"),
    "unknown sampler": (_replace("name: balanced", "name: balancd"), [], r"unknown sampler 'balancd'; did you mean 'balanced'"),
    "unknown data source": (_replace("source: affectnet", "source: afectnet"), [], r"unknown data source 'afectnet'; did you mean 'affectnet'"),
    "unknown optimizer": (_replace("precision: fp32", "precision: fp32, optimizer: adamm"), [], r"unknown optimizer 'adamm'"),
    "empty experiment list": ("suite: x\nexperiments: {}\n", [], r"experiments: the suite lists no experiments"),
    "no experiments key": ("suite: x\ndefaults: {}\n", [], r"the suite lists no experiments"),
    "cyclic extends": (_replace("    description: first\n", "    description: first\n    extends: b\n"), [], r"extends: cycle (a -> b -> a|b -> a -> b)"),
    "missing extends": (_replace("extends: a", "extends: z"), [], r"b\.extends: no experiment 'z'"),
    "zero epochs": (_replace("epochs: 1", "epochs: 0"), [], r"train\.epochs: Input should be greater than or equal to 1"),
    "negative batch size": (_replace("batch_size: 16", "batch_size: -16"), [], r"train\.batch_size: Input should be greater than or equal to 1"),
    "zero image size": (_replace("image_size: 16", "image_size: 0"), [], r"data\.image_size: Input should be greater than or equal to 8"),
    "negative per-epoch count": (_replace("per_epoch: 32", "per_epoch: -1"), [], r"sampler\.per_epoch"),
    "negative model width": (_replace("widths: [4, 8], dense: 16, num", "widths: [4, -8], dense: 16, num"), [], r"experiments\.a\.model"),
    "duplicate key": (_suite() + "  a:\n    description: again\n", [], r"duplicate key 'a'"),
    "document is a list": ("- a\n- b\n", [], r"expected a mapping"),
    "empty file": ("", [], r"expected a mapping"),
    "not text": ("", [], r"cannot read"),  # written as bytes in the test
    "missing suite file": (None, [], r"file not found"),
    "unknown experiment on the command line": (_suite(), ["nope"], r"no experiment 'nope'"),
    "unknown profile": (_suite(), ["--profile", "ful"], r"no profile 'ful'"),
    "negative --epochs": (_suite(), ["--epochs", "-3"], r"train\.epochs"),
}


def _rows(n: int, rel: Callable[[int], str], code: Callable[[int], str]) -> list[list[str]]:
    landmarks = ";".join(["40.0"] * 136)
    return [[rel(i), "16", "16", "64", "64", landmarks, code(i), "0.1", "0.2"] for i in range(n)]


def _rewrite_csv(data: Path, name: str, rows: list[list[str]], header: list[str] | None = None) -> None:
    from harness.data.affectnet import COLUMNS

    with open(data / name, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header or COLUMNS)
        writer.writerows(rows)


def _bomb_png() -> bytes:
    """A PNG whose header claims 100,000 x 100,000 pixels (10 G): PIL must refuse it, not decode it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def _truncated_jpeg(path: Path) -> bytes:
    good = path.read_bytes()
    return good[: len(good) // 3]


BAD_IMAGES: dict[str, Callable[[Path], bytes]] = {
    "corrupt": lambda p: b"\xff\xd8\xff\xe0" + os.urandom(400),
    "truncated": _truncated_jpeg,
    "zero bytes": lambda p: b"",
    "decompression bomb": lambda p: _bomb_png(),
    "not an image": lambda p: b"name,age\nalice,3\n",
}
IMAGE_PROBLEMS = {
    "corrupt": r"(UnidentifiedImageError|OSError|SyntaxError)",
    "truncated": r"(OSError|truncated)",
    "zero bytes": r"UnidentifiedImageError",
    "decompression bomb": r"DecompressionBombError",
    "not an image": r"UnidentifiedImageError: cannot identify image file",
}


def _train_images(data: Path) -> list[Path]:
    return sorted((data / "Manually_Annotated_Images").glob("*/train_*.jpg"))


def _every_train_image(kind: str) -> Callable[[Path], None]:
    def damage(data: Path) -> None:
        for image in _train_images(data):
            image.write_bytes(BAD_IMAGES[kind](image))
    return damage


def _symlinks_out(data: Path) -> None:
    secret = data.parent / "outside.jpg"
    shutil.copy(_train_images(data)[0], secret)
    for image in _train_images(data):
        image.unlink()
        image.symlink_to(secret)


# name -> (how to break a good AffectNet tree at DATA (or None: no tree), source, message)
DATA_CASES: dict[str, tuple[Callable[[Path], None] | None, str, str]] = {
    "missing data directory": (None, "affectnet", r"{data}: dataset folder not found"),
    "empty data directory": (lambda d: [shutil.rmtree(d), d.mkdir()], "affectnet", r"{data}: no training\.csv"),
    "csv missing a column": (
        lambda d: _rewrite_csv(d, "training.csv", [r[:6] for r in _rows(3, lambda i: f"0/train_{i}.jpg", str)],
                               ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks"]),
        "affectnet", r"{data}/training\.csv: header lacks column\(s\) expression",
    ),
    "csv rows missing fields": (
        lambda d: _rewrite_csv(d, "training.csv", [r[:3] for r in _rows(3, lambda i: f"0/train_{i}.jpg", str)]),
        "affectnet", r"{data}: no usable train images \(skipped row_missing_fields: 3; e\.g\. training\.csv:2\)",
    ),
    "label codes out of range": (
        lambda d: _rewrite_csv(d, "training.csv", _rows(3, lambda i: f"{i}/train_0.jpg", lambda i: ["11", "-1", "x"][i])),
        "affectnet", r"{data}: no usable train images \(skipped bad_label: 3; e\.g\. training\.csv:2\)",
    ),
    "paths escaping the root": (
        lambda d: _rewrite_csv(d, "training.csv", _rows(2, lambda i: ["../../etc/passwd", "0/../../../x.jpg"][i], lambda i: "0")),
        "affectnet", r"{data}: no usable train images \(skipped unsafe_path: 2; e\.g\. training\.csv:2\)",
    ),
    "absolute paths": (
        lambda d: _rewrite_csv(d, "training.csv", _rows(2, lambda i: ["/etc/passwd", "~/x.jpg"][i], lambda i: "0")),
        "affectnet", r"{data}: no usable train images \(skipped unsafe_path: 2; e\.g\. training\.csv:2\)",
    ),
    "symlinks leading out of the root": (
        _symlinks_out, "affectnet", r"{data}: no usable train images \(skipped unsafe_path: 22; e\.g\. training\.csv:2\)",
    ),
    "most image files missing": (
        lambda d: [p.unlink() for p in _train_images(d)[2:]],
        "affectnet", r"{data}: more images are damaged than usable \(missing_file: 20; 13 usable; e\.g\. training\.csv:\d+\); is data\.path the right folder\?",
    ),
    "fer2013 rows with extra fields": (
        lambda d: [shutil.rmtree(d), d.mkdir(), (d / "fer2013.csv").write_text(
            "emotion,pixels,Usage\n" + "".join(f"3,{' '.join(['7'] * 2304)},Training,extra\n" for _ in range(3)))],
        "fer2013", r"{data}: no usable train images \(skipped row_extra_fields: 3; e\.g\. fer2013\.csv:2\)",
    ),
    "fer2013 csv missing the pixels column": (
        lambda d: [shutil.rmtree(d), d.mkdir(), (d / "fer2013.csv").write_text("emotion,Usage\n3,Training\n")],
        "fer2013", r"{data}/fer2013\.csv: header lacks column\(s\) pixels",
    ),
    **{
        f"every training image {kind}": (
            _every_train_image(kind), "affectnet",
            r"{data}: no readable train images \(22 unreadable, e\.g\. {data}/Manually_Annotated_Images/0/train_0\.jpg \("
            + IMAGE_PROBLEMS[kind],
        )
        for kind in BAD_IMAGES
    },
}


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (links as their target), hashed; empty lock files left out."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            out[str(path)] = "-> " + os.readlink(path)
        elif path.is_file() and not (path.suffix == ".lock" and path.stat().st_size == 0):
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def store_and_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder holding a tracking store with one run and a preprocessing cache."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("project")
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.create_experiment("tiny")
    run = client.create_run(experiment, run_name="earlier")
    client.set_terminated(run.info.run_id)
    cache = folder / ".cache" / "harness"
    cache.mkdir(parents=True)
    (cache / "0123456789abcdef01234567.npz").write_bytes(b"an earlier cache")
    (cache / "0123456789abcdef01234567.json").write_text('{"sha256": "x"}')
    return folder


def _project(tmp_path: Path, store_and_cache: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(store_and_cache, project, symlinks=True)
    return project


def _run_and_check(project: Path, argv: list[str], named: Path, pattern: str, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    before = _snapshot(project)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    code = main(["run", "--config", str(project / "experiments.yaml"), "--tracking-uri", uri, *argv])
    out, err = capsys.readouterr()
    assert code == 2, err
    # The one line, once tqdm's progress bar (redrawn with carriage returns) is set aside.
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and not line.startswith("preprocessing:")]
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert "Traceback" not in err + out
    assert str(named) in err, err
    assert re.search(pattern, err), err
    assert _snapshot(project) == before


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_bad_suite_file(case: str, tmp_path: Path, store_and_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = _project(tmp_path, store_and_cache)
    make_tree(project / "data")
    text, argv, pattern = SPEC_CASES[case]
    suite = project / "experiments.yaml"
    if case == "not text":
        suite.write_bytes(b"suite: \xff\xfe\x00bad\n")
    elif text is not None:
        suite.write_text(text)
    _run_and_check(project, argv, suite, pattern, capsys)


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_dataset(case: str, tmp_path: Path, store_and_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = _project(tmp_path, store_and_cache)
    data = project / "data"
    damage, source, pattern = DATA_CASES[case]
    if damage is not None:
        make_tree(data)
        damage(data)
    (project / "experiments.yaml").write_text(_suite(source))
    _run_and_check(project, [], data, pattern.format(data=data), capsys)


def test_corpus_is_large_enough() -> None:
    assert len(SPEC_CASES) + len(DATA_CASES) >= 25


@pytest.mark.slow
def test_bad_images_among_good_ones_are_skipped_and_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The policy for single damaged images: train on the rest; name each one, count it, log it."""
    import json

    from mlflow import MlflowClient

    data = make_tree(tmp_path / "data")
    damaged = {}
    for kind, image in zip(BAD_IMAGES, _train_images(data)[::4], strict=False):
        image.write_bytes(BAD_IMAGES[kind](image))
        damaged[kind] = image
    (tmp_path / "experiments.yaml").write_text(_suite())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["run", "a", "--config", str(tmp_path / "experiments.yaml"), "--tracking-uri", uri]) == 0
    err = capsys.readouterr().err
    import re

    for kind, image in damaged.items():
        assert re.search(rf"warning: skipped unreadable image {re.escape(str(image))}: {IMAGE_PROBLEMS[kind]}", err), (kind, err)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["data_skipped"] == len(BAD_IMAGES)
    quality = json.loads(Path(client.download_artifacts(run.info.run_id, "data/quality.json", str(tmp_path))).read_text())
    assert quality["skipped"] == {"unreadable": len(BAD_IMAGES)}
    assert set(quality["unreadable"]) == {str(p) for p in damaged.values()}


# Random YAML documents built from the suite's own vocabulary, so many get deep into validation.
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(
        st.sampled_from(["suite", "defaults", "profiles", "experiments", "data", "model", "train", "sampler",
                         "name", "epochs", "batch_size", "description", "extends", "source", "path",
                         "widths", "a", "b", "cnn", "residual_cnn", "balanced", "tags", "full"])
        | st.text(max_size=4) | st.integers(-2, 2),
        children,
        max_size=5,
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=yaml_values, raw=st.booleans(), text=st.text(max_size=40))
def test_random_yaml_gives_a_suite_or_a_spec_error(tmp_path: Path, doc: object, raw: bool, text: str) -> None:
    """Random documents, or random text, into the loader: a valid suite or SpecError, nothing else."""
    path = tmp_path / "random.yaml"
    path.write_text(text if raw else yaml.safe_dump(doc))
    try:
        suite = load_suite(path)
    except SpecError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert suite.experiments


# ----------------------------------------------------------------------------- safe by default


def test_yaml_tags_that_run_code_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "experiments.yaml"
    path.write_text(f'experiments: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(SpecError, match=r"invalid YAML .*could not determine a constructor"):
        load_suite(path)
    assert not marker.exists()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_weights_that_run_code_when_unpickled_are_refused(tmp_path: Path) -> None:
    import torch

    from harness.core.errors import TrackingError
    from harness.models.build import rebuild_model

    (tmp_path / "experiments.yaml").write_text(_suite())
    spec = load_suite(tmp_path / "experiments.yaml").experiments["a"]
    marker, weights = tmp_path / "pwned", tmp_path / "weights.pt"
    torch.save({"net.0.weight": _Payload(marker)}, weights)
    with pytest.raises(TrackingError, match="refused by the safe loader"):
        rebuild_model(spec, 11, weights, "r1")
    assert not marker.exists()


def test_every_torch_load_and_yaml_load_in_the_code_is_the_safe_kind() -> None:
    """A static guard: the two safe calls above must stay the only kind in the package."""
    import ast

    root = Path(__file__).resolve().parents[1] / "harness"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = getattr(node.func.value, "id", "")
            keywords = {k.arg: k.value for k in node.keywords}
            if owner == "torch" and node.func.attr == "load":
                flag = keywords.get("weights_only")
                assert isinstance(flag, ast.Constant) and flag.value is True, f"{path}:{node.lineno}"
            if owner == "yaml" and node.func.attr in ("load", "load_all", "unsafe_load", "full_load"):
                loader = keywords.get("Loader")
                assert loader is not None and getattr(loader, "id", "") == "_UniqueKeyLoader", f"{path}:{node.lineno}"
            if owner == "pickle" and node.func.attr in ("load", "loads"):
                pytest.fail(f"{path}:{node.lineno}: pickle.load of data from disk")


def test_documented_mlflow_servers_bind_to_localhost() -> None:
    import re

    root = Path(__file__).resolve().parents[1]
    commands = [
        line for doc in (root / "README.md", *(root / "docs").glob("*.md"))
        for line in doc.read_text().splitlines() if re.search(r"mlflow (ui|server)\b", line) and "--backend-store-uri" in line
    ]  # fmt: skip
    assert len(commands) >= 2  # `mlflow ui` and `mlflow server`
    for line in commands:
        assert "--host 127.0.0.1" in line, line
