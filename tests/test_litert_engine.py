"""The LiteRT engine (`mfif_tf.litert_engine`): the packaged graph gives the TensorFlow path's
maps with the packaged weights, for pairs, stacks, 16-bit and grey sources, without SRR and
with edge diffusion; `fuse_lib.choose_engine` picks it only for what it computes; a LiteRT job
never imports TensorFlow."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from data_pipeline.embedded import load_embedded  # noqa: E402
from mfif_tf import fuse_lib, image_io, litert_engine  # noqa: E402
from mfif_tf.image_io import InputError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _photo_pair(name: str = "coffee", sigma: float = 3.0):
    """A real photo as a multi-focus pair: I_A sharp inside an ellipse and blurred outside,
    I_B the other way round; returns (I_A, I_B, the ellipse mask)."""
    photo = dict(load_embedded("val"))[name]
    height, width = photo.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (width // 2, height // 2), (width // 4, height // 3), 20, 0, 360, 1, -1)
    blurred = cv2.GaussianBlur(photo, (0, 0), sigma)
    inside = mask.astype(bool)[:, :, None]
    return np.where(inside, photo, blurred), np.where(inside, blurred, photo), mask


@pytest.fixture(scope="module")
def pair():
    return _photo_pair()


def _tensorflow(frames, **kwargs):
    from mfif_tf import fusion

    # The graph computes in float32, whatever the CPU's default precision.
    return fusion.fuse_stack(iter(frames), None, precision="float32", **kwargs)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


def test_graph_matches_tensorflow_on_a_photo_pair(pair):
    image_a, image_b, mask = pair
    lite = litert_engine.fuse_stack(iter([image_a, image_b]))
    ref = _tensorflow([image_a, image_b])
    assert lite.engine == "litert" and ref.engine == "tensorflow"
    # The model decides this pair (not a trivial map): F_final follows the ellipse.
    assert _agreement(lite.f_final > 0.5, mask.astype(bool)) > 0.95
    assert np.abs(lite.f_hat - ref.f_hat).max() < 1e-3
    assert _agreement(lite.f_final, ref.f_final) >= 0.999
    same = lite.f_final == ref.f_final
    assert lite.fused.dtype == np.uint8 and lite.fused.shape == image_a.shape
    assert np.array_equal(lite.fused[same], ref.fused[same])
    assert set(np.unique(lite.f_final)) <= {0.0, 1.0}


def test_graph_runs_g_on_box_means_above_its_side_as_tensorflow_does(pair):
    """Above a shorter side of 480 (3/4 of its side; here 520) the graph runs G on 2 x 2 box
    means and the R for that step, as `fuse` does: the same F_final."""
    from mfif_tf import common

    image_a, image_b, mask = (cv2.resize(x, None, fx=1.3, fy=1.3, interpolation=cv2.INTER_CUBIC)
                              for x in pair)
    assert 480 < min(image_a.shape[:2]) <= 640
    assert common.g_factor(*image_a.shape[:2], common.DEFAULT_G_SIDE) == 2
    lite = litert_engine.fuse_stack(iter([image_a, image_b]))
    ref = _tensorflow([image_a, image_b])
    assert _agreement(lite.f_final > 0.5, mask.astype(bool)) > 0.95
    # The focus measure's pixel step is a comparison: float rounding may flip a pixel or two
    # (2 of 405,600 here on one CPU), and no more.
    assert np.mean(np.abs(lite.f_hat - ref.f_hat) > 1e-3) < 1e-4
    assert _agreement(lite.f_final, ref.f_final) >= 0.999


@pytest.mark.parametrize("case", ["stack", "uint16", "grey", "no_srr", "edge"])
def test_graph_matches_tensorflow_in_every_supported_setting(pair, case):
    image_a, image_b, _ = pair
    frames, kwargs = [image_a, image_b], {}
    if case == "stack":  # a third frame, sharp in the top band only
        third = np.where(np.arange(image_a.shape[0])[:, None, None] < 120, image_a,
                         cv2.GaussianBlur(image_a, (0, 0), 5.0))
        frames.append(third)
    elif case == "uint16":
        frames = [f.astype(np.uint16) * 257 for f in frames]
    elif case == "grey":
        frames = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    elif case == "no_srr":
        kwargs["srr"] = False
    elif case == "edge":
        kwargs["edge_pixels"] = 3
    lite = litert_engine.fuse_stack(iter(frames), **kwargs)
    ref = _tensorflow(frames, **kwargs)
    assert lite.fused.dtype == frames[0].dtype and lite.fused.shape == frames[0].shape
    assert _agreement(lite.index_map, ref.index_map) >= 0.999
    if case == "no_srr":  # F_final is F_hat: a soft blend, not a selection
        assert np.abs(lite.f_final - ref.f_final).max() < 1e-3
        assert np.abs(lite.fused.astype(int) - ref.fused.astype(int)).max() <= 1
    else:
        same = lite.index_map == ref.index_map
        assert np.array_equal(lite.fused[same], ref.fused[same])


def test_choose_engine_takes_litert_only_for_what_the_graph_computes(tmp_path):
    options = fuse_lib.FuseOptions()
    options.validate()
    assert fuse_lib.choose_engine(options, None, (520, 520, 3)) == "litert"
    side = int(litert_engine.MAX_PIXELS ** 0.5) + 1
    assert fuse_lib.choose_engine(options, None, (side, side, 3)) == "tensorflow"
    for change, flag in ((dict(mode="paper"), "--mode=paper"), (dict(flips=True), "--flips"),
                         (dict(scales="1,0.5"), "--scales"), (dict(tile_size=256), "--tile_size"),
                         (dict(precision="bfloat16"), "--precision=bfloat16"),
                         (dict(min_size=10), "--min_size"),
                         (dict(min_size_fraction=0.01), "--min_size_fraction"),
                         (dict(measure_ratio=0), "--measure_ratio=0")):
        auto = fuse_lib.FuseOptions(**change)
        auto.validate()
        assert fuse_lib.choose_engine(auto, None, (64, 64)) == "tensorflow", change
        forced = fuse_lib.FuseOptions(engine="litert", **change)
        forced.validate()
        with pytest.raises(InputError, match="--engine=litert cannot run this job: .*"
                                             + flag.replace("-", r"\-")):
            fuse_lib.choose_engine(forced, None, (64, 64))
    # Any other ratio gives the graph's maps: at full size only the check's pixel step runs.
    assert fuse_lib.choose_engine(fuse_lib.FuseOptions(measure_ratio=5), None, (64, 64)) \
        == "litert"
    assert fuse_lib.choose_engine(options, str(tmp_path), (64, 64)) == "tensorflow"
    assert fuse_lib.choose_engine(
        fuse_lib.FuseOptions(engine="tensorflow"), None, (64, 64)) == "tensorflow"
    with pytest.raises(InputError, match="--engine must be one of auto, litert, tensorflow"):
        fuse_lib.FuseOptions(engine="onnx").validate()


def test_auto_engine_takes_tensorflow_for_stacks_that_repay_its_start_up():
    # With the constants measured: 1 MP frames in float32 from 9 frames on, 520 x 520 from
    # 30; in bfloat16 from 6 and 16. A pair never (it would need more than 4 MP). The 1 MP
    # frames are 640 x 1560, which the graph runs as `fuse` does by default.
    f32 = fuse_lib.FuseOptions(precision="float32")
    f32.validate()
    assert fuse_lib.choose_engine(f32, None, (640, 1560, 3), frames=8) == "litert"
    assert fuse_lib.choose_engine(f32, None, (640, 1560, 3), frames=9) == "tensorflow"
    assert fuse_lib.choose_engine(f32, None, (520, 520, 3), frames=29) == "litert"
    assert fuse_lib.choose_engine(f32, None, (520, 520, 3), frames=30) == "tensorflow"
    assert not fuse_lib.tensorflow_pays(5, 1_000_000, "bfloat16")
    assert fuse_lib.tensorflow_pays(6, 1_000_000, "bfloat16")
    assert not fuse_lib.tensorflow_pays(2, litert_engine.MAX_PIXELS, "bfloat16")
    # Forced engines are not second-guessed.
    forced = fuse_lib.FuseOptions(engine="litert", precision="float32")
    assert fuse_lib.choose_engine(forced, None, (640, 1560, 3), frames=50) == "litert"


def test_fuse_files_weighs_the_stack_depth(tmp_path, pair, monkeypatch):
    image_a, image_b, _ = pair
    paths = []
    for k, image in enumerate([image_a, image_b, image_a]):
        paths.append(str(tmp_path / f"{k}.png"))
        image_io.write_image(paths[-1], image)
    monkeypatch.setattr(fuse_lib, "TENSORFLOW_EXTRA_START_S", 1e9)
    assert fuse_lib.fuse_files(paths, str(tmp_path / "lite.png"), None,
                               fuse_lib.FuseOptions()).engine == "litert"
    monkeypatch.setattr(fuse_lib, "TENSORFLOW_EXTRA_START_S", 0.0)
    assert fuse_lib.fuse_files(paths, str(tmp_path / "tf.png"), None,
                               fuse_lib.FuseOptions()).engine == "tensorflow"


def test_images_above_the_limit_go_to_tensorflow_or_are_refused(tmp_path, pair, monkeypatch):
    image_a, image_b, _ = pair
    paths = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    image_io.write_image(paths[0], image_a)
    image_io.write_image(paths[1], image_b)
    monkeypatch.setattr(litert_engine, "MAX_PIXELS", 1000)
    auto = fuse_lib.fuse_files(paths, str(tmp_path / "auto.png"), None, fuse_lib.FuseOptions())
    assert auto.engine == "tensorflow"
    forced = fuse_lib.FuseOptions(engine="litert")
    with pytest.raises(InputError, match=r"a.png: 600x400 is above the LiteRT engine's 0.001 "
                                         r"megapixels .* use --engine=tensorflow"):
        fuse_lib.fuse_files(paths, str(tmp_path / "forced.png"), None, forced)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "auto.png", "b.png"]


# Runs `mfif-fuse` in a fresh interpreter and reports whether TensorFlow was imported.
_CLI = r"""
import json, runpy, sys
sys.argv = ["mfif-fuse"] + json.loads(sys.argv[1])
try:
    runpy.run_module("mfif_tf.fuse", run_name="__main__")
except SystemExit as e:
    code = e.code or 0
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
"""


def _cli(args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", _CLI, json.dumps(args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


def test_cli_litert_job_never_imports_tensorflow(tmp_path, pair):
    image_a, image_b, _ = pair
    image_io.write_image(str(tmp_path / "a.png"), image_a)
    image_io.write_image(str(tmp_path / "b.png"), image_b)
    result, proc = _cli(["a.png", "b.png", "-o", "f.png", "--focus_map", "m.png"], tmp_path)
    assert result == {"code": 0, "tensorflow": False}, proc.stderr
    assert "LiteRT graph" in proc.stdout and proc.stderr == ""
    reference = fuse_lib.fuse_files([str(tmp_path / "a.png"), str(tmp_path / "b.png")],
                                    None, None,
                                    fuse_lib.FuseOptions(engine="tensorflow", precision="float32"),
                                    focus_map=str(tmp_path / "tf_map.png"))
    assert reference.engine == "tensorflow"
    lite_map = image_io.read_image(str(tmp_path / "m.png")).pixels
    tf_map = image_io.read_image(str(tmp_path / "tf_map.png")).pixels
    assert _agreement(lite_map, tf_map) >= 0.999
    # What the graph cannot run goes to TensorFlow, or is refused in one line when forced.
    result, proc = _cli(["a.png", "b.png", "-o", "g.png", "--mode=paper"], tmp_path)
    assert result == {"code": 0, "tensorflow": True}, proc.stderr
    result, proc = _cli(["a.png", "b.png", "-o", "h.png", "--engine=litert", "--flips"],
                        tmp_path)
    assert result["code"] == 2
    assert proc.stderr.strip() == ("mfif-fuse: error: --engine=litert cannot run this job: "
                                   "--flips (use --engine=auto or tensorflow)")
    assert not (tmp_path / "h.png").exists()
    # The small G has its own graph: --model=small runs without TensorFlow too, and its map
    # is its own.
    result, proc = _cli(["a.png", "b.png", "-o", "s.png", "--focus_map", "sm.png",
                         "--model=small"], tmp_path)
    assert result == {"code": 0, "tensorflow": False}, proc.stderr
    small_map = image_io.read_image(str(tmp_path / "sm.png")).pixels
    assert 0.95 < _agreement(small_map, lite_map) < 1.0
    result, proc = _cli(["a.png", "b.png", "-o", "k.png", "--engine=litert",
                         f"--model={tmp_path}"], tmp_path)
    assert result["code"] == 2
    assert proc.stderr.strip() == ("mfif-fuse: error: --engine=litert cannot run this job: "
                                   "--model (the graphs hold the packaged models only) (use "
                                   "--engine=auto or tensorflow)")


@pytest.mark.slow  # a TFLite conversion
def test_shipped_graph_is_built_from_the_packaged_weights(pair):
    """The packaged .tflite is what `export.litert_package` builds from the packaged G and R
    now: a stale graph fails here."""
    from export.litert_package import build_graph

    image_a, image_b, _ = pair
    shipped = litert_engine.GraphRunner(num_threads=2)
    fresh = litert_engine.GraphRunner(build_graph(), num_threads=2)
    f_hat, f_final = shipped(image_a, image_b)
    fresh_hat, fresh_final = fresh(image_a, image_b)
    # Rounding only: the conversion folds constants (BatchNorm into the convolutions) on the
    # CPU it runs on, so a graph built on another CPU model differs in the last bits (1.5e-5
    # here between an AMD-built graph and an Intel rebuild). Other weights move F_hat by far
    # more than 1e-4 (another R: 0.5).
    assert np.abs(f_hat - fresh_hat).max() < 1e-4
    assert _agreement(f_final, fresh_final) >= 0.9999


def test_packaging_tool_refuses_to_replace_a_file_without_overwrite(tmp_path):
    target = tmp_path / "graph.tflite"
    target.write_bytes(b"keep")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    for args, message in (
            ([f"--output={target}"], f"{target}: already exists (pass --overwrite to replace it)"),
            ([f"--output={tmp_path}"], f"{tmp_path}: is a directory, expected a .tflite file name"),
            ([f"--output={tmp_path / 'no' / 'g.tflite'}"], f"{tmp_path / 'no'}: no such folder")):
        proc = subprocess.run([sys.executable, "-m", "export.litert_package", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {message}", proc.stderr
    assert target.read_bytes() == b"keep"


def test_small_model_has_its_own_graph(pair, tmp_path, monkeypatch):
    """`--model=small` names the packaged small G, whose graph ships beside it and gives the
    TensorFlow path's maps with the small weights; other models have no graph."""
    from mfif_tf import common, fusion

    small = common.PACKAGED_MODELS["small"]
    assert litert_engine.graph_path(None) == litert_engine.PACKAGED_GRAPH
    assert litert_engine.graph_path("small") == os.path.join(small, litert_engine.GRAPH_FILE)
    assert litert_engine.graph_path(small) == litert_engine.graph_path("small")
    assert litert_engine.graph_path(str(tmp_path)) is None
    assert litert_engine.unsupported(model="small") == []
    assert litert_engine.unsupported(model=str(tmp_path)) == [
        "--model (the graphs hold the packaged models only)"]
    # A folder called "small" where the command runs is that folder, not the packaged G.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small").mkdir()
    assert litert_engine.graph_path("small") is None
    monkeypatch.undo()

    image_a, image_b, mask = pair
    lite = litert_engine.fuse_stack(iter([image_a, image_b]),
                                    graph=litert_engine.graph_path("small"))
    ref = fusion.fuse_stack(iter([image_a, image_b]), "small", precision="float32")
    default = litert_engine.fuse_stack(iter([image_a, image_b]))
    assert _agreement(lite.f_final > 0.5, mask.astype(bool)) > 0.95
    assert np.abs(lite.f_hat - ref.f_hat).max() < 1e-3
    assert _agreement(lite.f_final, ref.f_final) >= 0.999
    # A graph of other weights: the default model's maps differ.
    assert np.abs(lite.f_hat - default.f_hat).max() > 1e-2
