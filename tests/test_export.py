"""Tests of the TF Serving export: export/serving.py, export/export_lib.py, export/export.py.

The SavedModel is run twice over: reloaded with `tf.saved_model.load` and compared with the
eager model, and loaded into a TF1 session the way TF Serving's C++ loader does (restore op
of the MetaGraph, then Session.run on the signature's tensor names), fed with the request
bodies of docs/serving.md decoded by TF Serving's REST rules.

The test G is the compact preset with random weights and a head conv scaled by 100, so that
F_hat is far from the 0.5 threshold and F_final has large regions of both values (with plain
random weights F_hat is 0.5 +- 0.003 everywhere).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import ndimage
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from export import compare, export_lib, serving
from mfif_tf import common, fusion, srr
from mfif_tf.config import model_config
from mfif_tf.model_io import save_generator
from tests.conftest import decisive_generator, random_refiner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "serving.md")
SIZE = 64
# The exports here run coarse-to-fine with a small working side, so that 64-pixel images go
# through two refinement levels.
WORKING_SIDE = 24


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def generator():
    return decisive_generator(1, gain=100.0)


@pytest.fixture(scope="module")
def refiner():
    return random_refiner()


@pytest.fixture(scope="module")
def coarse_refiner():
    """R for G below full size: used only for pairs above G's side (`DEFAULT_G_SIDE`)."""
    return random_refiner(seed=7)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, generator, refiner, coarse_refiner):
    root = str(tmp_path_factory.mktemp("export"))
    # The default mode (refined); the TFLite tests export coarse-to-fine.
    config = export_lib.ExportConfig(export_dir=root, model_name="mfif", version=1,
                                     working_side=WORKING_SIDE)
    return export_lib.export_model(generator, config, refiner, coarse_refiner)


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported.saved_model_dir)


class ServingSession:
    """The SavedModel as TF Serving runs it: a TF1 session restored from the MetaGraph."""

    def __init__(self, path: str):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], path)
        self.signatures = dict(meta.signature_def)

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sig = self.signatures[signature]
        feeds = {sig.inputs[k].name: v for k, v in inputs.items()}
        return self.session.run({k: v.name for k, v in sig.outputs.items()}, feeds)


@pytest.fixture(scope="module")
def server(exported):
    s = ServingSession(exported.saved_model_dir)
    yield s
    s.session.close()


@pytest.fixture(scope="module")
def pairs():
    """Two uint8 pairs (2, 64, 64, 3) from different textures."""
    a0, b0, _ = compare.synthetic_pair(SIZE, SIZE, seed=0)
    a1, b1, _ = compare.synthetic_pair(SIZE, SIZE, seed=5)
    return (compare.to_uint8(np.stack([a0, a1])), compare.to_uint8(np.stack([b0, b1])))


def eager_reference(generator, image_a: np.ndarray, image_b: np.ndarray,
                    fraction: float = 0.001, mode: str = "refined", refiner=None):
    """F_hat as `mfif_tf.fuse` computes it (the NumPy strips of `mfif_tf.inference`, or the
    paper's single pass), then SRR and eq. 14 written directly: uint8 (H, W, C) ->
    (fused, F_final, F_hat)."""
    grey = image_a.shape[-1] == 1
    if mode != "paper" and refiner is None:
        refiner = random_refiner()
    f_hat = fusion.predict_f_hat(generator, refiner, image_a[..., 0] if grey else image_a,
                                 image_b[..., 0] if grey else image_b, mode=mode,
                                 working_side=WORKING_SIDE)[..., None]
    n = srr.default_min_size(image_a.shape[0], image_a.shape[1], fraction)
    f_final = srr.small_region_removal(f_hat, min_size=n).numpy()
    fused = np.where(f_final > 0.5, image_a, image_b)
    return fused, f_final, f_hat


def check_against_reference(out: dict, ref: tuple, fused_scale: float = 1.0):
    fused, f_final, f_hat = ref
    np.testing.assert_array_equal(out["focus_map"], f_final)
    np.testing.assert_allclose(out["focus_map_raw"], f_hat, atol=1e-5)
    diff = np.abs(np.asarray(out["fused"], np.float64) * fused_scale - fused.astype(np.float64))
    assert diff.max() <= 1.0, f"fused differs by {diff.max()} grey levels"


def min_region(binary: np.ndarray) -> int:
    """Size of the smallest 4-connected region of either value."""
    sizes = []
    for value in (binary, ~binary):
        labels, count = ndimage.label(value)
        if count:
            sizes.append(np.bincount(labels.ravel())[1:].min())
    return int(min(sizes))


# ---------------------------------------------------------------- layout and CLI


def test_layout_and_models_config(exported):
    root = os.path.dirname(os.path.dirname(exported.saved_model_dir))
    assert exported.saved_model_dir == os.path.join(root, "mfif", "1")
    assert os.path.isfile(os.path.join(root, "mfif", "1", "saved_model.pb"))
    assert os.path.isdir(os.path.join(root, "mfif", "1", "variables"))
    # Nothing else under the base path: TF Serving polls it for integer folders.
    assert os.listdir(os.path.join(root, "mfif")) == ["1"]
    with open(exported.models_config) as f:
        text = f.read()
    assert re.search(r'model_config_list\s*\{\s*config\s*\{\s*name:\s*"mfif"\s*'
                     r'base_path:\s*"/models/mfif"\s*model_platform:\s*"tensorflow"\s*\}\s*\}',
                     text)
    assert exported.sizes["saved_model"] > 1_000_000


def test_refuses_existing_version_and_replaces_atomically(tmp_path):
    target = str(tmp_path / "m" / "1")
    export_lib.write_version_dir(target, lambda d: os.makedirs(d) or open(
        os.path.join(d, "a"), "w").write("old"), overwrite=False)
    with pytest.raises(FileExistsError, match="already exists"):
        export_lib.write_version_dir(target, lambda d: os.makedirs(d), overwrite=False)

    def failing(d):
        os.makedirs(d)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        export_lib.write_version_dir(target, failing, overwrite=True)
    assert open(os.path.join(target, "a")).read() == "old"
    export_lib.write_version_dir(target, lambda d: os.makedirs(d) or open(
        os.path.join(d, "b"), "w").write("new"), overwrite=True)
    assert os.listdir(target) == ["b"]
    assert os.listdir(tmp_path / "m") == ["1"]  # no staging folders left


def test_check_targets_and_models_config_not_overwritten(tmp_path):
    config = export_lib.ExportConfig(export_dir=str(tmp_path), version=3, tflite=True)
    export_lib.check_targets(config)
    os.makedirs(tmp_path / "tflite" / "mfif" / "3")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_lib.check_targets(config)
    config.overwrite = True
    export_lib.check_targets(config)
    with open(tmp_path / "models.config", "w") as f:
        f.write("# mine\n")
    assert export_lib.write_models_config(str(tmp_path), "mfif") is None
    assert open(tmp_path / "models.config").read() == "# mine\n"
    for bad in (dict(version=0), dict(model_name="a/b"), dict(min_size_fraction=2.0)):
        with pytest.raises(ValueError):
            export_lib.ExportConfig(export_dir=str(tmp_path), **bad).validate()


def test_cli_refuses_existing_version(tmp_path, generator):
    model_dir = str(tmp_path / "model")
    save_generator(generator, model_dir)
    os.makedirs(tmp_path / "exp" / "mfif" / "2")
    marker = tmp_path / "exp" / "mfif" / "2" / "keep"
    marker.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "export.export", f"--weights={model_dir}",
         f"--export_dir={tmp_path / 'exp'}", "--model_name=mfif", "--version=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "already exists; pass --overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert marker.read_text() == "x"


def test_library_modules_register_no_flags():
    from absl import flags

    assert "export_dir" not in flags.FLAGS


# ---------------------------------------------------------------- signature definitions


def cli_shape(shape) -> str:
    """A TensorShapeProto as `saved_model_cli show` prints it."""
    if shape.unknown_rank:
        return "unknown_rank"
    return "(" + ", ".join(str(d.size) for d in shape.dim) + ")"


IMG, MAP, VEC = "(-1, -1, -1, -1)", "(-1, -1, -1, 1)", "(-1)"
U8, F32, STR = "DT_UINT8", "DT_FLOAT", "DT_STRING"
TENSOR_IO = lambda dtype: (  # noqa: E731
    {"image_a": (dtype, IMG), "image_b": (dtype, IMG)},
    {"fused": (dtype, IMG), "focus_map": (F32, MAP), "focus_map_raw": (F32, MAP)})
BYTES_IO = (
    {"image_a": (STR, VEC), "image_b": (STR, VEC)},
    {"fused_bytes": (STR, VEC), "focus_map_bytes": (STR, VEC), "focus_map_raw_bytes": (STR, VEC)})
FRACTION = {"min_size_fraction": (F32, "unknown_rank")}
EXPECTED_SIGNATURES = {
    "serving_default": TENSOR_IO(U8),
    "fuse_float": TENSOR_IO(F32),
    "fuse_bytes": BYTES_IO,
    "fuse_srr": ({**TENSOR_IO(U8)[0], **FRACTION}, TENSOR_IO(U8)[1]),
    "fuse_float_srr": ({**TENSOR_IO(F32)[0], **FRACTION}, TENSOR_IO(F32)[1]),
    "fuse_bytes_srr": ({**BYTES_IO[0], **FRACTION}, BYTES_IO[1]),
}


def test_signature_definitions(exported, loaded):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(exported.saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    (meta,) = proto.meta_graphs
    assert list(meta.meta_info_def.tags) == ["serve"]
    defs = {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}
    assert set(defs) == set(EXPECTED_SIGNATURES)
    for name, (inputs, outputs) in EXPECTED_SIGNATURES.items():
        sig = defs[name]
        assert sig.method_name == "tensorflow/serving/predict"
        got_in = {k: (types_pb2.DataType.Name(v.dtype), cli_shape(v.tensor_shape))
                  for k, v in sig.inputs.items()}
        got_out = {k: (types_pb2.DataType.Name(v.dtype), cli_shape(v.tensor_shape))
                   for k, v in sig.outputs.items()}
        assert got_in == inputs, name
        assert got_out == outputs, name
        # The same seen from the reloaded SavedModel.
        fn = loaded.signatures[name]
        specs = fn.structured_input_signature[1]
        assert {k: s.dtype.as_datatype_enum for k, s in specs.items()} == {
            k: getattr(types_pb2, d) for k, (d, _) in inputs.items()}
        assert set(fn.structured_outputs) == set(outputs)


def test_signatures_are_the_table_entries(exported):
    """The SavedModel has one signature per entry of `serving.SIGNATURES`, with the entry's
    input specs, and no other."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(exported.saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    defs = {k: v for k, v in proto.meta_graphs[0].signature_def.items()
            if not k.startswith("__")}
    names = [entry.name for entry in serving.SIGNATURES]
    assert len(set(names)) == len(names) and set(defs) == set(names)
    for entry in serving.SIGNATURES:
        sig = defs[entry.name]
        assert list(entry.inputs)[:2] == ["image_a", "image_b"]
        assert {k: (v.dtype, cli_shape(v.tensor_shape)) for k, v in sig.inputs.items()} == {
            k: (spec.dtype.as_datatype_enum, cli_shape(spec.shape.as_proto()))
            for k, spec in entry.inputs.items()}, entry.name
        assert ("min_size_fraction" in sig.inputs) == entry.fraction_input
        if entry.kind.per_pair:
            assert set(sig.outputs) == set(entry.kind.pair_outputs)


def test_a_new_input_kind_is_one_entry(generator, pairs):
    """A table with one more entry (16-bit pixel tensors, decoded by the entry alone) gives a
    module with one more signature, fused by the same core."""

    def decode_uint16(image_a, image_b):
        return tf.cast(image_a, tf.float32) / 65535.0, tf.cast(image_b, tf.float32) / 65535.0

    uint16 = serving.InputKind("uint16", tf.TensorSpec([None, None, None, None], tf.uint16),
                               decode_uint16, serving.UINT8.encode)
    table = serving.SIGNATURES + (serving.Signature("fuse_uint16", uint16),)
    module = serving.ServingModule(generator, mode="paper", signatures=table)
    functions = module.signatures()
    assert list(functions) == [entry.name for entry in table]
    a, b = pairs[0][:1], pairs[1][:1]
    wide = functions["fuse_uint16"](tf.constant(a.astype(np.uint16) * 257),
                                    tf.constant(b.astype(np.uint16) * 257))
    narrow = functions["serving_default"](tf.constant(a), tf.constant(b))
    np.testing.assert_allclose(wide["focus_map_raw"], narrow["focus_map_raw"], atol=1e-5)
    np.testing.assert_array_equal(wide["focus_map"], narrow["focus_map"])
    np.testing.assert_array_equal(wide["fused"], narrow["fused"])
    with pytest.raises(ValueError, match="unique"):
        serving.ServingModule(generator, mode="paper", signatures=table + table[:1])


# ---------------------------------------------------------------- numbers


def test_reloaded_matches_eager(generator, loaded, pairs):
    image_a, image_b = pairs
    out = loaded.signatures["serving_default"](image_a=tf.constant(image_a),
                                               image_b=tf.constant(image_b))
    out = {k: v.numpy() for k, v in out.items()}
    assert out["fused"].dtype == np.uint8
    n = int(srr.default_min_size(SIZE, SIZE))
    for i in range(2):
        ref = eager_reference(generator, image_a[i], image_b[i])
        check_against_reference({k: v[i] for k, v in out.items()}, ref)
        f_final = out["focus_map"][i, ..., 0] > 0.5
        assert 0.05 < f_final.mean() < 0.95  # both sources contribute
        assert min_region(f_final) >= n  # SRR: no region below N = 0.001 W H
    flt = loaded.signatures["fuse_float"](image_a=tf.constant(image_a / np.float32(255)),
                                          image_b=tf.constant(image_b / np.float32(255)))
    np.testing.assert_array_equal(flt["focus_map"].numpy(), out["focus_map"])
    np.testing.assert_allclose(flt["fused"].numpy() * 255.0, out["fused"], atol=1e-3)


def test_serving_session_matches_eager_and_srr_input(generator, server, pairs):
    image_a, image_b = pairs
    out = server.run("fuse_srr", dict(image_a=image_a, image_b=image_b,
                                      min_size_fraction=np.array([0.0, 0.05], np.float32)))
    fused, f_final, f_hat = eager_reference(generator, image_a[1], image_b[1], 0.05)
    np.testing.assert_array_equal(out["focus_map"][1], f_final)
    assert min_region(out["focus_map"][1, ..., 0] > 0.5) >= 205  # ceil(0.05 * 64 * 64)
    # min_size_fraction = 0: no SRR, F_final = F_hat > 0.5.
    np.testing.assert_array_equal(out["focus_map"][0], (out["focus_map_raw"][0] > 0.5) * 1.0)
    default = server.run("serving_default", dict(image_a=image_a, image_b=image_b))
    same = server.run("fuse_srr", dict(image_a=image_a, image_b=image_b,
                                       min_size_fraction=np.float32(0.001)))
    np.testing.assert_array_equal(default["focus_map"], same["focus_map"])
    check_against_reference({k: v[0] for k, v in default.items()},
                            eager_reference(generator, image_a[0], image_b[0]))


def test_savedmodel_runs_g_box_averaged_above_g_side(generator, refiner, coarse_refiner,
                                                     loaded):
    """Exported with the R for G below full size, the reloaded SavedModel picks G's factor
    from each request's size: a 1040 x 1100 pair (shorter side above G's) gets G on 2 x 2
    box means and that R, as `fuse_arrays` does."""
    model = loaded
    a, b, _ = compare.synthetic_pair(1040, 1100, seed=3)
    a, b = compare.to_uint8(a), compare.to_uint8(b)
    out = model.signatures["serving_default"](image_a=tf.constant(a[None]),
                                              image_b=tf.constant(b[None]))
    # The premise: by default this size is above G's side (test_g_side shows that G's map
    # below full size differs from the full-size one).
    assert common.g_factor(1040, 1100, common.DEFAULT_G_SIDE) == 2
    ref = fusion.fuse_arrays([a, b], generator=generator, refiner=refiner,
                             coarse_refiner=coarse_refiner)
    f_final = out["focus_map"].numpy()[0, :, :, 0]
    assert (f_final == ref.f_final).mean() > 0.999
    np.testing.assert_allclose(out["focus_map_raw"].numpy()[0, :, :, 0], ref.f_hat, atol=1e-4)


def test_grey_sources_are_tripled(generator, loaded, pairs):
    grey_a = pairs[0][:1, ..., :1]
    grey_b = pairs[1][:1, ..., :1]
    out = loaded.signatures["serving_default"](image_a=tf.constant(grey_a),
                                               image_b=tf.constant(grey_b))
    assert out["fused"].shape == (1, SIZE, SIZE, 1)
    check_against_reference({k: v.numpy()[0] for k, v in out.items()},
                            eager_reference(generator, grey_a[0], grey_b[0]))


def test_bytes_signature_pairs_of_different_sizes(generator, loaded, pairs):
    a_small, b_small, _ = compare.synthetic_pair(40, 52, seed=3)
    a_small, b_small = compare.to_uint8(a_small), compare.to_uint8(b_small)
    images = [(pairs[0][0], pairs[1][0]), (a_small, b_small)]
    png = lambda x: tf.io.encode_png(x).numpy()  # noqa: E731
    out = loaded.signatures["fuse_bytes"](
        image_a=tf.constant([png(a) for a, _ in images]),
        image_b=tf.constant([png(b) for _, b in images]))
    for i, (a, b) in enumerate(images):
        fused = tf.io.decode_png(out["fused_bytes"][i]).numpy()
        focus = tf.io.decode_png(out["focus_map_bytes"][i]).numpy()
        raw = tf.io.decode_png(out["focus_map_raw_bytes"][i]).numpy()
        ref_fused, ref_final, ref_raw = eager_reference(generator, a, b)
        assert fused.shape == a.shape and focus.shape == a.shape[:2] + (1,)
        np.testing.assert_array_equal(focus, ref_final.astype(np.uint8) * 255)
        assert np.abs(fused.astype(int) - ref_fused).max() <= 1
        assert np.abs(raw.astype(int) - np.round(ref_raw * 255)).max() <= 1


def test_min_size_from_fraction_matches_exact_ceiling():
    fractions = (0.001, 0.0025, 0.0, 0.05, 1.0, 0.3, 0.000125, 0.00012345)
    for h, w in ((520, 520), (4000, 6000), (64, 64), (10, 10), (7, 3), (1080, 1920)):
        got = serving.min_size_from_fraction(tf.constant(fractions, tf.float32), h, w).numpy()
        want = [int(srr.default_min_size(h, w, f)) for f in fractions]
        assert got.tolist() == want, (h, w)
    assert int(serving.min_size_from_fraction(tf.constant(0.001), 6000, 4000)) == 24000


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("signature,inputs,message", [
    ("serving_default", dict(image_a=np.zeros((1, 8, 8, 3), np.uint8),
                             image_b=np.zeros((1, 8, 6, 3), np.uint8)), "same shape"),
    ("serving_default", dict(image_a=np.zeros((1, 8, 8, 4), np.uint8),
                             image_b=np.zeros((1, 8, 8, 4), np.uint8)), "3 channels"),
    ("serving_default", dict(image_a=np.zeros((1, 1, 8, 3), np.uint8),
                             image_b=np.zeros((1, 1, 8, 3), np.uint8)), "at least 2x2"),
    ("fuse_float", dict(image_a=np.full((1, 8, 8, 3), 200.0, np.float32),
                        image_b=np.zeros((1, 8, 8, 3), np.float32)), r"values in \[0, 1\]"),
    ("fuse_srr", dict(image_a=np.zeros((2, 8, 8, 3), np.uint8),
                      image_b=np.zeros((2, 8, 8, 3), np.uint8),
                      min_size_fraction=np.zeros(3, np.float32)), "one per image pair"),
    ("fuse_srr", dict(image_a=np.zeros((1, 8, 8, 3), np.uint8),
                      image_b=np.zeros((1, 8, 8, 3), np.uint8),
                      min_size_fraction=np.float32(-1)), r"lie in \[0, 1\]"),
    ("fuse_bytes", dict(image_a=np.array([b"not an image"], object),
                        image_b=np.array([b"not an image"], object)), "not a JPEG or PNG"),
    ("fuse_bytes", dict(image_a=np.array([b"x", b"y"], object),
                        image_b=np.array([b"x"], object)), "same number of images"),
])
def test_bad_input_names_the_problem(server, signature, inputs, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        server.run(signature, inputs)


def test_bad_bytes_pairs(server, pairs):
    png = lambda x: tf.io.encode_png(x).numpy()  # noqa: E731
    a = png(pairs[0][0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="must have the same size"):
        server.run("fuse_bytes", dict(image_a=np.array([a], object),
                                      image_b=np.array([png(pairs[1][0][:32])], object)))
    jpeg = tf.io.encode_jpeg(pairs[0][0]).numpy()
    # A JPEG cut short: the header is right, the decoder reports the damage.
    with pytest.raises(tf.errors.InvalidArgumentError):
        server.run("fuse_bytes", dict(image_a=np.array([jpeg[:200]], object),
                                      image_b=np.array([jpeg[:200]], object)))


def oversized_png(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height pixels (its data is two short rows)."""
    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 61)) + chunk(b"IEND", b""))


def test_bad_bytes_name_the_input_and_the_pair(server, pairs):
    png = tf.io.encode_png(pairs[0][0]).numpy()
    jpeg = tf.io.encode_jpeg(pairs[0][0]).numpy()
    cases = [  # tf.debugging.Assert prints each piece of the message in brackets
        ("image_a", 0, jpeg[:len(jpeg) // 2], "[is a truncated JPEG"),
        ("image_b", 1, jpeg[:-2], "[is a truncated JPEG"),  # only the end marker missing
        ("image_a", 1, jpeg[:150], "[is a truncated JPEG"),  # cut inside the header
        ("image_b", 0, png[:len(png) // 2], "[is a truncated PNG"),
        ("image_b", 1, oversized_png(100000, 100000),
         "[is a PNG of width and height] [100000] [100000] [pixels, more than the decoder "
         "takes"),
        ("image_a", 0, oversized_png(2000000, 1), "[is a PNG of width and height] [2000000] [1]"),
    ]
    for name, index, data, message in cases:
        inputs = {"image_a": [png, png], "image_b": [png, png]}
        inputs[name][index] = data
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=re.escape(f"[{name} of pair] [{index}] {message}")):
            server.run("fuse_bytes", {k: np.array(v, object) for k, v in inputs.items()})
    # Bytes after the end marker (some cameras append data) are no truncation.
    out = server.run("fuse_bytes", dict(image_a=np.array([jpeg + b"\0trailer"], object),
                                        image_b=np.array([png + b"trailer"], object)))
    assert len(out["fused_bytes"]) == 1


# ---------------------------------------------------------------- REST bodies of the docs


def doc_blocks(kind: str) -> dict[tuple[str, str], str]:
    """The JSON blocks of docs/serving.md tagged `<!-- {kind}: signature form -->`."""
    with open(DOCS) as f:
        text = f.read()
    pattern = rf"<!-- {kind}: (\w+) (instances|inputs) -->\s*```json\n(.*?)```"
    return {(m[0], m[1]): m[2] for m in re.findall(pattern, text, re.S)}


def fill_placeholders(body: str, files: dict[str, bytes], pixels: dict[str, np.ndarray]) -> dict:
    def base64_of(m):
        return base64.b64encode(files[m.group(1)]).decode()

    def pixels_of(m):
        image = pixels[m.group(1)]
        return json.dumps((image / 255.0).tolist() if m.group(2) else image.tolist())

    body = re.sub(r"<base64 of ([\w.]+)>", base64_of, body)
    body = re.sub(r'"<pixels of ([\w.]+)( / 255)?>"', pixels_of, body)
    assert "<" not in body, body
    return json.loads(body)


_DTYPES = {types_pb2.DT_UINT8: np.uint8, types_pb2.DT_FLOAT: np.float32,
           types_pb2.DT_STRING: object}


def json_to_array(value, dtype):
    """One JSON value to an array as TF Serving's json_tensor.cc does: nested lists give the
    shape, {"b64": ...} objects are decoded to bytes for DT_STRING, ints for DT_UINT8."""

    def leaf(v):
        if dtype == types_pb2.DT_STRING:
            if isinstance(v, dict):
                assert set(v) == {"b64"}, v
                return base64.b64decode(v["b64"])
            assert isinstance(v, str), v
            return v.encode()
        if dtype == types_pb2.DT_UINT8:
            assert isinstance(v, int) and not isinstance(v, bool), v
            assert 0 <= v <= 255
            return v
        assert isinstance(v, (int, float)) and not isinstance(v, bool), v
        return v

    def walk(v):
        return [walk(x) for x in v] if isinstance(v, list) else leaf(v)

    array = np.array(walk(value), dtype=_DTYPES[dtype])
    if dtype == types_pb2.DT_STRING and array.ndim == 0:
        array = np.array(array.item(), dtype=object)
    return array


def request_to_inputs(body: dict, signature_defs: dict):
    """A REST predict body to (signature name, input arrays, row form?)."""
    name = body.get("signature_name", "serving_default")
    sig_inputs = signature_defs[name].inputs
    if "instances" in body:
        assert "inputs" not in body
        rows = body["instances"]
        assert rows and all(isinstance(r, dict) and "b64" not in r for r in rows)
        for r in rows:  # every instance names every input of the signature
            assert set(r) == set(sig_inputs), (set(r), set(sig_inputs))
        inputs = {}
        for key in sig_inputs:
            arrays = [json_to_array(r[key], sig_inputs[key].dtype) for r in rows]
            assert len({a.shape for a in arrays}) == 1, "instances differ in shape"
            inputs[key] = np.stack(arrays)
        return name, inputs, True
    columns = body["inputs"]
    for key in sig_inputs:
        assert key in columns, f"Missing named input: {key} in 'inputs' object."
    return name, {k: json_to_array(columns[k], sig_inputs[k].dtype) for k in sig_inputs}, False


def outputs_to_response(outputs: dict[str, np.ndarray], row: bool) -> dict:
    """Session outputs to the JSON TF Serving answers with: `_bytes` strings as b64."""

    def encode(name, value):
        if isinstance(value, np.ndarray) and value.dtype == object:
            return [encode(name, v) for v in value]
        if isinstance(value, bytes):
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(value).decode()}
            return value.decode()
        return value.tolist() if isinstance(value, np.ndarray) else value

    if row:
        batch = {len(v) for v in outputs.values()}
        assert len(batch) == 1
        return {"predictions": [{k: encode(k, v[i]) for k, v in outputs.items()}
                                for i in range(batch.pop())]}
    return {"outputs": {k: encode(k, v) for k, v in outputs.items()}}


def structure(value):
    """Keys and b64 wrapping of a response, with the data left out."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return "b64"
        return {k: structure(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [structure(value[0])]
    return "data"


@pytest.fixture(scope="module")
def rest_files(pairs):
    a, b = pairs[0][0], pairs[1][0]

    def encode(image, fmt):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG"
                                                            else {}))
        return buffer.getvalue()

    files = {"a.jpg": encode(a, "JPEG"), "b.jpg": encode(b, "JPEG"),
             "a.png": encode(a, "PNG"), "b.png": encode(b, "PNG")}
    pixels = {name: np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
              for name, data in files.items()}
    return files, pixels


def test_docs_show_all_request_forms():
    assert set(doc_blocks("request")) == {
        ("fuse_bytes", "instances"), ("fuse_bytes_srr", "inputs"),
        ("serving_default", "instances"), ("serving_default", "inputs"),
        ("fuse_float_srr", "instances")}
    assert set(doc_blocks("response")) == set(doc_blocks("request"))


@pytest.mark.parametrize("key", [
    ("fuse_bytes", "instances"), ("fuse_bytes_srr", "inputs"),
    ("serving_default", "instances"), ("serving_default", "inputs"),
    ("fuse_float_srr", "instances")])
def test_docs_rest_requests(generator, server, rest_files, key):
    files, pixels = rest_files
    body = fill_placeholders(doc_blocks("request")[key], files, pixels)
    name, inputs, row = request_to_inputs(json.loads(json.dumps(body)), server.signatures)
    assert name == key[0]
    response = json.loads(json.dumps(outputs_to_response(server.run(name, inputs), row)))
    documented = json.loads(doc_blocks("response")[key])
    assert structure(response) == structure(documented)

    fraction = 0.002 if name == "fuse_bytes_srr" else 0.001
    if name.startswith("fuse_bytes"):
        # JPEG bytes give the maps of `fuse` on Pillow's pixels of the same files.
        a, b = pixels["a.jpg"], pixels["b.jpg"]
        first = (response["predictions"][0] if row else
                 {k: v[0] for k, v in response["outputs"].items()})
        png = {k: np.asarray(Image.open(io.BytesIO(base64.b64decode(v["b64"]))))
               for k, v in first.items()}
        ref_fused, ref_final, _ = eager_reference(generator, a, b, fraction)
        np.testing.assert_array_equal(png["focus_map_bytes"], ref_final[..., 0] * 255)
        assert np.abs(png["fused_bytes"].astype(int) - ref_fused).max() <= 1
    else:
        first = (response["predictions"][0] if row else
                 {k: v[0] for k, v in response["outputs"].items()})
        ref = eager_reference(generator, pixels["a.png"], pixels["b.png"], fraction)
        scale = 255.0 if name.startswith("fuse_float") else 1.0
        check_against_reference({k: np.array(v, np.float32) for k, v in first.items()}, ref,
                                fused_scale=scale)
