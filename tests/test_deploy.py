"""Models people can use: MLflow Models, the registry, `harness predict`, serving and ONNX.

Real images only where the pipeline meets the world: FER2013 faces (a model trained on a few
hundred of them), scikit-image's astronaut photograph, FER2013 faces pasted into larger scenes at
known boxes (the detector's recall and box IoU are measured), and a short video written with
OpenCV from those scenes. Every path must agree on every image's label: the pyfunc, `harness
predict`, the served model and onnxruntime.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.cli.main import main

REAL_FER2013 = Path(__file__).resolve().parents[2] / "shared/data/fer2013/train"
FACES_PER_CLASS = 40
SUITE = textwrap.dedent(
    """
    suite: fer-deploy
    defaults:
      data: {source: folder, path: FACES, classes: basic7, image_size: 48, channels: 1, dedupe: none}
      sampler: {name: natural, per_epoch: 100000}
      model: {name: cnn, widths: [8, 16, 32], dense: 32}
      train: {epochs: 2, batch_size: 64, precision: fp32, seed: 0}
    experiments:
      small:
        description: a small CNN on FER2013 faces
      wider:
        description: a wider one
        model: {name: cnn, widths: [16, 32, 32], dense: 32}
      rgb32:
        description: the same faces at 32 px RGB (another input size)
        data: {image_size: 32, channels: 3}
    """
)


def _faces(root: Path) -> Path:
    if not REAL_FER2013.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"FER2013 not found at {REAL_FER2013} (CI=true: the test must run)")
        pytest.skip(f"FER2013 not found at {REAL_FER2013}")
    for folder in sorted(REAL_FER2013.iterdir()):
        (root / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.jpg"))[:FACES_PER_CLASS]:
            shutil.copyfile(path, root / folder.name / path.name)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three trained runs in a fresh store, the photo model of `small` registered as fer@champion.

    MLflow's own loaders (mlflow.pyfunc.load_model("models:/...")) read the global tracking URI,
    as a user's would read $MLFLOW_TRACKING_URI: it points at this store for the module.
    """
    import mlflow

    root = tmp_path_factory.mktemp("deploy")
    faces = _faces(root / "faces")
    (root / "experiments.yaml").write_text(SUITE.replace("FACES", str(faces)))
    assert main(["run", "--config", str(root / "experiments.yaml"), "--tracking-uri", _uri(root)]) == 0
    assert main(["register", "small", "--name", "fer", "--alias", "champion", *_common(root)]) == 0
    # set_tracking_uri also sets $MLFLOW_TRACKING_URI (for subprocesses); restoring it with
    # get_tracking_uri()'s default would leave that variable set for every later test in this
    # process, so the variable's own previous value (None: unset) is what is restored.
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(_uri(root))
    yield root
    mlflow.set_tracking_uri(previous)
    assert os.environ.get("MLFLOW_TRACKING_URI") == previous


def _uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def _common(root: Path) -> list[str]:
    return ["--config", str(root / "experiments.yaml"), "--tracking-uri", _uri(root)]


def _client(root: Path):  # noqa: ANN202
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=_uri(root))


def _run(root: Path, name: str):  # noqa: ANN202
    client = _client(root)
    experiment = client.get_experiment_by_name("fer-deploy")
    (run,) = client.search_runs([experiment.experiment_id], filter_string=f"tags.`harness.experiment` = '{name}'")
    return run


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _validation_faces(root: Path, n: int = 12) -> list[Path]:
    return sorted((root / "faces").rglob("*.jpg"))[::23][:n]


@pytest.mark.slow
@pytest.mark.realdata
def test_every_run_logs_its_network_as_an_mlflow_model_with_its_contract(project: Path) -> None:
    import mlflow.pytorch
    import torch

    client = _client(project)
    run = _run(project, "small")
    experiment = client.get_experiment_by_name("fer-deploy")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    models = client.search_logged_models([experiment.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    network = next(m for m in models if m.name == "network")
    assert str(network.status).endswith("READY")
    assert network.tags["harness.class_names"] == "neutral,happy,sad,surprise,fear,disgust,anger"  # basic7's order
    assert {m.key for m in network.metrics} >= {"final_val_accuracy", "train_tflop"}
    info = mlflow.models.get_model_info(f"models:/{network.model_id}")
    assert info.metadata["class_names"] == ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
    assert info.metadata["input"]["shape"] == ["batch", 1, 48, 48] and info.signature is not None
    loaded = mlflow.pytorch.load_model(f"models:/{network.model_id}")
    x = torch.rand(3, 1, 48, 48)
    assert loaded(x).shape == (3, 7)
    assert run.data.tags["mlflow.source.name"].startswith("harness")


@pytest.mark.slow
@pytest.mark.realdata
def test_the_photo_model_on_face_crops_gives_what_harness_eval_gives(project: Path) -> None:
    import mlflow.pyfunc

    from harness.models.build import rebuild_model
    from harness.runs.trained import load_trained
    from harness.tracking.write import open_existing
    from harness.train.scoring import probabilities

    photo = mlflow.pyfunc.load_model("models:/fer@champion")
    files = _validation_faces(project)
    import pandas as pd

    frame = pd.DataFrame({"image": [base64.b64encode(f.read_bytes()).decode() for f in files]})
    got = photo.predict(frame, params={"detector": "none"})
    assert list(got["image"]) == list(range(len(files))) and got["face_found"].all()
    # The same faces as the dataset adapter prepares them, through the model `harness eval` rebuilds.
    from harness.data.cache import Preprocess, decode_or_error
    from harness.data.records import ImageRecord

    tracker = open_existing(_uri(project), "fer-deploy")
    trained = load_trained(tracker, "small", project / "dl")
    model = rebuild_model(trained.spec, 7, trained.weights)
    x = np.stack([decode_or_error(ImageRecord(path=f, label=0), Preprocess(48, 1)) for f in files])
    import torch

    expected = probabilities(model, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), trained.spec, "cpu")
    labels = [trained.class_names[i] for i in expected.argmax(1)]
    assert list(got["label"]) == labels
    columns = [f"p_{c}" for c in trained.class_names]
    assert np.allclose(got[columns].to_numpy(), expected, atol=1e-6)
    assert (got[columns].sum(axis=1) - 1).abs().max() < 1e-5


@pytest.mark.slow
@pytest.mark.realdata
def test_register_best_and_newest_and_a_name_clash(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = _client(project)
    scores = {_run(project, n).info.run_id: _run(project, n).data.metrics["final_val_accuracy"] for n in ("small", "wider", "rgb32")}
    assert main(["register", "--best", "val_accuracy", "--name", "best", *_common(project)]) == 0
    (version,) = client.search_model_versions("name = 'best'")
    assert scores[version.run_id] == max(scores.values())  # every experiment and seed competed
    assert main(["register", "wider", "--name", "newest", *_common(project)]) == 0
    (version,) = client.search_model_versions("name = 'newest'")
    assert version.run_id == _run(project, "wider").info.run_id
    capsys.readouterr()
    # 32 px RGB under the name that holds 48 px grey models: refused, then forced.
    assert main(["register", "rgb32", "--name", "fer", *_common(project)]) == 2
    assert "name clash" in capsys.readouterr().err
    assert main(["register", "rgb32", "--name", "fer", "--force", *_common(project)]) == 0
    assert main(["register", "--best", "test_accuracy", "--name", "x", *_common(project)]) == 2
    assert "choose a validation metric" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.realdata
def test_predict_draws_a_box_and_a_label_on_a_real_photo(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image
    from skimage import data

    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(_jpeg(data.astronaut()))
    out, drawn = tmp_path / "rows.jsonl", tmp_path / "drawn"
    capsys.readouterr()
    assert main(["predict", "models:/fer@champion", str(photo), "--annotate", str(drawn), "--out", str(out), *_common(project)]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["face_found"] and row["label"] in {"anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    x, y, w, h = row["x"], row["y"], row["width"], row["height"]
    assert 150 <= x <= 200 and 40 <= y <= 90 and 70 <= w <= 130  # her face, measured by hand
    assert abs(sum(v for k, v in row.items() if k.startswith("p_")) - 1) < 1e-4
    annotated = np.asarray(Image.open(drawn / "astronaut.jpg").convert("RGB")).astype(int)
    original = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    assert np.abs(annotated - original)[y : y + h, x].mean() > 40  # the box's left edge is drawn
    assert row["label"] in capsys.readouterr().out


def _scene(rng: np.random.Generator, faces: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 480x640 textured scene with faces pasted at known boxes (upscaled to 96-144 px)."""
    from PIL import Image
    from skimage import data

    scene = np.asarray(Image.fromarray(data.coffee()).resize((640, 480))).copy()
    boxes = []
    for i, face in enumerate(faces):
        side = int(rng.integers(96, 145))
        x, y = 40 + i * 200 + int(rng.integers(0, 30)), int(rng.integers(40, 480 - side - 20))
        grey = np.asarray(Image.fromarray(face).resize((side, side), Image.Resampling.BICUBIC))
        scene[y : y + side, x : x + side] = grey[..., None]
        boxes.append((x, y, side, side))
    return scene, boxes


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.mark.slow
@pytest.mark.realdata
def test_faces_in_scenes_are_found_and_a_video_gives_a_row_per_sampled_frame(project: Path, tmp_path: Path) -> None:
    import cv2
    from PIL import Image

    from harness.predict.faces import haar

    rng = np.random.default_rng(0)
    happy = [np.asarray(Image.open(p)) for p in sorted((project / "faces" / "happy").glob("*.jpg"))[:30]]
    found, ious, scenes = 0, [], []
    for k in range(10):
        scene, boxes = _scene(rng, happy[3 * k : 3 * k + 3])
        scenes.append(scene)
        detected = haar(Image.fromarray(scene))
        for box in boxes:
            best = max((_iou(box, d) for d in detected), default=0.0)
            found += best >= 0.3
            ious.append(best)
    recall = found / 30
    assert recall >= 0.6, f"Haar recall {recall:.2f} on pasted FER2013 faces"
    assert np.median([i for i in ious if i >= 0.3]) >= 0.5
    video = tmp_path / "scenes.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 480))
    for scene in scenes:
        writer.write(cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "frames.csv"
    assert main(["predict", "models:/fer@champion", str(video), "--every", "3", "--out", str(out), *_common(project)]) == 0
    import pandas as pd

    rows = pd.read_csv(out)
    assert sorted(rows["frame"].unique()) == [0, 3, 6, 9]
    assert rows.groupby("frame").size().min() >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.realdata
def test_served_model_pyfunc_predict_and_onnx_agree_on_every_image(project: Path, tmp_path: Path) -> None:
    import mlflow.pyfunc
    import pandas as pd
    from skimage import data

    images = [f.read_bytes() for f in _validation_faces(project)] + [_jpeg(data.astronaut())]
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": _uri(project), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/fer@champion", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        body = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(b).decode()] for b in images] + [["bm90IGFuIGltYWdl"]]}}
        served = pd.DataFrame(_post(port, body, server)["predictions"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert served["error"].iloc[-1].startswith(f"{len(images)}: not a readable image")
    served = served[served["error"] == ""]
    local = mlflow.pyfunc.load_model("models:/fer@champion").predict(pd.DataFrame({"image": images}))
    assert list(served["label"]) == list(local["label"])
    assert np.allclose(served["score"], local["score"], atol=1e-6)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, raw in enumerate(images):
        (folder / f"{i:02d}.jpg").write_bytes(raw)
    labels = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"{runtime}.csv"
        assert main(["predict", "models:/fer@champion", str(folder), "--runtime", runtime, "--out", str(out), *_common(project)]) == 0
        labels[runtime] = list(pd.read_csv(out)["label"])
    assert labels["torch"] == labels["onnx"] == list(local["label"])


def _post(port: int, body: dict, server: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 120
    while True:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})  # fmt: skip
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer: {server.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.realdata
def test_export_writes_one_checked_onnx_file_logged_with_the_run(project: Path, tmp_path: Path) -> None:
    import onnx

    out = tmp_path / "fer.onnx"
    assert main(["export", "small", "--onnx", str(out), *_common(project)]) == 0
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a dynamic batch
    assert json.loads({p.key: p.value for p in model.metadata_props}["class_names"])[0] == "neutral"
    run = _run(project, "small")
    assert run.data.metrics["onnx_max_abs_prob_diff"] <= 1e-4
    assert "model/model.onnx" in {a.path for a in _client(project).list_artifacts(run.info.run_id, "model")}


@pytest.mark.parametrize(
    "model",
    [
        {"name": "cnn"}, {"name": "cnn", "norm": "batch", "pool_first": True},
        {"name": "residual_cnn", "activation": "gtu"}, {"name": "residual_cnn", "norm": "layer"},
        {"name": "interleaved_cnn", "norm": "batch", "pool_first": True, "blocks_per_stage": [0, 1, 1, 1]},
        {"name": "resnext", "stem": "imagenet", "depths": [1, 1], "widths": [16, 32], "stem_width": 16, "cardinality": 4, "base_width": 4},
        {"name": "resnet", "stem": "deep", "depths": [1, 1], "widths": [16, 32], "stem_width": 16},
    ],  # fmt: skip
    ids=lambda m: "-".join(str(v) for v in m.values())[:40],
)
@pytest.mark.parametrize("whitening", ["none", "zca"])
def test_every_model_family_exports_and_matches_torch_at_any_batch(model: dict, whitening: str, tmp_path: Path) -> None:
    from harness.models.build import build_network
    from harness.models.inputs import with_input_layer
    from harness.predict.onnx import export_onnx, verify
    from harness.spec.schema import DataSpec, ExperimentSpec
    from harness.suite.validate import derive_spec

    base = ExperimentSpec(name="x", description="x", data=DataSpec(image_size=32, channels=3, whitening=whitening))
    spec = derive_spec(tmp_path / "x.yaml", base, "x", [{"model": model}])
    rng = np.random.default_rng(0)
    net = build_network(spec.model, num_classes=5, data=spec.data)
    trained = with_input_layer(net, rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), whitening, 0).eval()
    path = export_onnx(trained, spec, tuple("abcde"), tmp_path / "m.onnx")
    for batch in (1, 7, 33):  # the export example had 2
        checked = verify(trained, path, rng.random((batch, 3, 32, 32)).astype(np.float32))
        assert checked["onnx_max_abs_prob_diff"] <= 1e-4


def _bad_inputs(folder: Path) -> dict[str, Path]:
    """One file of every kind `harness predict` must name and skip."""
    from test_bad_inputs import _bomb_png

    folder.mkdir(parents=True, exist_ok=True)
    good = _jpeg(np.full((64, 64, 3), 120, np.uint8))
    bad = {
        "not an image": b"name,age\nalice,3\n",
        "truncated": good[: len(good) // 3],
        "empty": b"",
        "decompression bomb": _bomb_png(),
    }
    paths = {}
    for kind, data in bad.items():
        paths[kind] = folder / f"{kind.replace(' ', '_')}.png"
        paths[kind].write_bytes(data)
    paths["unopenable video"] = folder / "broken.mp4"
    paths["unopenable video"].write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    return paths


@pytest.mark.slow
@pytest.mark.realdata
def test_bad_inputs_are_named_and_the_rest_still_predicted(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    bad = _bad_inputs(tmp_path / "in")
    face = Image.open(_validation_faces(project)[0])
    odd = {
        "grey": face.convert("L"), "rgba": face.convert("RGBA"),
        "16bit": Image.fromarray(np.asarray(face.convert("L"), np.uint16) * 257),
    }  # fmt: skip
    for name, image in odd.items():
        image.save(tmp_path / "in" / f"{name}.png")
    # The same face stored on its side with an EXIF tag saying so: read upright.
    sideways = face.convert("RGB").rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 CW to view
    sideways.save(tmp_path / "in" / "exif.jpg", exif=exif, quality=100)
    face.convert("RGB").save(tmp_path / "in" / "upright.jpg", quality=100)
    out = tmp_path / "rows.csv"
    capsys.readouterr()
    assert main(["predict", "models:/fer@champion", str(tmp_path / "in"), "--detector", "none", "--out", str(out), *_common(project)]) == 0
    err = capsys.readouterr().err
    for kind, path in bad.items():
        assert str(path) in err, kind
    assert "not a readable image" in err and "empty file" in err and "too large to decode safely" in err
    assert "cannot be opened as a video" in err
    import pandas as pd

    rows = pd.read_csv(out).set_index("source")
    assert {Path(s).stem for s in rows.index} == {"grey", "rgba", "16bit", "exif", "upright"}
    assert rows.loc[str(tmp_path / "in" / "exif.jpg"), "width"] == rows.loc[str(tmp_path / "in" / "upright.jpg"), "width"]
    assert abs(rows.loc[str(tmp_path / "in" / "exif.jpg"), "score"] - rows.loc[str(tmp_path / "in" / "upright.jpg"), "score"]) < 0.02
    # Nothing readable at all: the whole command fails, naming why.
    assert main(["predict", "models:/fer@champion", str(bad["empty"]), str(bad["unopenable video"]), *_common(project)]) == 2
    assert "nothing predicted" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("models:/nope@champion", "no such registered model, version or alias"),
        ("models:/fer@nope", "no such registered model, version or alias"),
        ("models:/fer/99", "no such registered model, version or alias"),
        ("no_such_experiment", "no FINISHED training run of experiment 'no_such_experiment'"),
        ("0123456789abcdef0123456789abcdef", "no run 0123456789abcdef0123456789abcdef"),
    ],
)
def test_a_model_that_does_not_exist_is_named(project: Path, ref: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["predict", ref, str(_validation_faces(project)[0]), *_common(project)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.realdata
def test_a_model_whose_preprocessing_is_unknown_is_refused(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = _client(project)
    source = _run(project, "small")
    experiment = client.get_experiment_by_name("fer-deploy")
    run = client.create_run(experiment.experiment_id, tags={**source.data.tags, "harness.experiment": "alien"})
    folder = project / "alien"
    folder.mkdir()
    (folder / "spec.yaml").write_text("name: alien\ndescription: x\ndata: {image_size: 48, channels: 2, colour: lab}\n")
    client.log_artifact(run.info.run_id, str(folder / "spec.yaml"))
    for path in ("data/class_counts.json", "model/weights.pt"):
        local = client.download_artifacts(source.info.run_id, path, str(folder))
        client.log_artifact(run.info.run_id, local, path.rsplit("/", 1)[0])
    client.set_terminated(run.info.run_id, "FINISHED")
    capsys.readouterr()
    assert main(["predict", "alien", str(_validation_faces(project)[0]), *_common(project)]) == 2
    assert "its preprocessing" in capsys.readouterr().err
