"""Tests of the TFLite models (export/tflite.py) and the on-device example, run with the
LiteRT interpreter and compared with the SavedModel written by the same export.

The test G is the compact preset with random weights and a head conv scaled by 100 (see
tests/test_export.py): F_hat is then far from 0.5 and F_final has regions of both values, so
agreement numbers measure the conversion, not noise around the threshold.

The full-integer models (int8_full) are exported apart, in refined mode (the default), with a
representative folder of a few 64x64 photos and masks written by the test.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import ndimage

from export import compare, export_lib
from export import tflite as tflite_lib
from export.examples import tflite_fuse
from export.tflite import TFLiteConfig, TFLiteFuser, op_names
from mfif_tf import srr
from tests.conftest import decisive_generator, random_refiner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every test shares one SavedModel + TFLite export (minutes on a small CPU): the slow tier.
pytestmark = pytest.mark.slow

FIXED = 64
# Least F_final agreement (%) with the SavedModel and largest |F_hat difference| allowed.
LIMITS = {"float32": (100.0, 1e-5), "float16": (99.5, 5e-3), "int8": (97.0, 0.1)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    generator = decisive_generator(1, gain=100.0)
    # Coarse-to-fine with a small working side: 64-pixel images go through two levels.
    config = export_lib.ExportConfig(
        export_dir=str(tmp_path_factory.mktemp("export")), version=4, tflite=True,
        working_side=24, mode="coarse_to_fine",
        tflite_config=TFLiteConfig(fixed_size=FIXED, working_side=24, mode="coarse_to_fine"))
    return export_lib.export_model(generator, config, random_refiner())


@pytest.fixture(scope="module")
def saved_model(exported):
    return tf.saved_model.load(exported.saved_model_dir).signatures["fuse_float"]


def real_looking_pair(height: int, width: int, seed: int = 2):
    """A textured image with a blurred background in I_A and a blurred disc in I_B, as
    float32 in [0, 1] on the uint8 grid (what a phone camera gives)."""
    a, b, _ = compare.synthetic_pair(height, width, seed=seed)
    return (compare.to_uint8(a) / np.float32(255.0), compare.to_uint8(b) / np.float32(255.0))


def reference(saved_model, a, b):
    out = saved_model(image_a=tf.constant(a[None]), image_b=tf.constant(b[None]))
    return {k: v.numpy()[0] for k, v in out.items()}


def test_files_sizes_and_builtin_ops(exported):
    names = {f"mfif_{v}_{q}.tflite" for v in ("dynamic", f"{FIXED}x{FIXED}")
             for q in ("float32", "float16", "int8")}
    assert set(exported.tflite_models) == names
    assert os.path.dirname(exported.tflite_models["mfif_dynamic_float32.tflite"]).endswith(
        os.path.join("tflite", "mfif", "4"))
    for variant in ("dynamic", f"{FIXED}x{FIXED}"):
        f32, f16, i8 = (exported.sizes[f"mfif_{variant}_{q}.tflite"]
                        for q in ("float32", "float16", "int8"))
        assert 0.4 < f16 / f32 < 0.6 and 0.2 < i8 / f32 < 0.35, (f32, f16, i8)
    for path in exported.tflite_models.values():
        ops = op_names(path)
        assert not any(op.startswith("CUSTOM") for op in ops), ops  # no Flex, no custom ops
        # G and SRR (union-find loops and segment reductions) are inside the model.
        assert {"CONV_2D", "WHILE", "UNSORTED_SEGMENT_MIN", "UNSORTED_SEGMENT_SUM",
                "CUMSUM"} <= ops
        # The decoder's upsampling in sub-pixel form, which LiteRT's CPU delegate takes at
        # any size (a transposed convolution of a dynamic size fell to a reference kernel:
        # 3.5 s against 0.22 s for the int8 model at 520 x 520).
        assert "DEPTH_TO_SPACE" in ops and "TRANSPOSE_CONV" not in ops
        assert "VAR_HANDLE" not in ops  # weights are constants, not uninitialised variables


def test_signature_of_the_models(exported):
    dynamic = TFLiteFuser(exported.tflite_models["mfif_dynamic_float32.tflite"])
    fixed = TFLiteFuser(exported.tflite_models[f"mfif_{FIXED}x{FIXED}_int8.tflite"])
    assert dynamic.input_shape == (1, -1, -1, 3) and dynamic.fixed_size is None
    assert fixed.input_shape == (1, FIXED, FIXED, 3) and fixed.fixed_size == (FIXED, FIXED)
    details = dynamic.runner.get_input_details()
    assert {k: v["dtype"] for k, v in details.items()} == {"image_a": np.float32,
                                                          "image_b": np.float32}
    assert set(dynamic.runner.get_output_details()) == {"fused", "focus_map", "focus_map_raw"}


@pytest.mark.parametrize("quantization", ["float32", "float16", "int8"])
def test_agreement_with_saved_model(exported, saved_model, quantization):
    min_agreement, max_raw = LIMITS[quantization]
    cases = [("dynamic", FIXED, FIXED), ("dynamic", 48, 80), (f"{FIXED}x{FIXED}", FIXED, FIXED)]
    fusers = {}
    for variant, h, w in cases:
        name = f"mfif_{variant}_{quantization}.tflite"
        fuser = fusers.setdefault(name, TFLiteFuser(exported.tflite_models[name]))
        a, b = real_looking_pair(h, w)
        ref = reference(saved_model, a, b)
        out = {k: v[0] for k, v in fuser(a, b).items()}
        assert out["fused"].shape == (h, w, 3) and out["focus_map"].shape == (h, w, 1)
        agree = compare.agreement(out["focus_map"], ref["focus_map"])
        raw = np.abs(out["focus_map_raw"] - ref["focus_map_raw"]).max()
        print(f"{name} {h}x{w}: F_final agreement {agree:.3f} %, max |F_hat diff| {raw:.2e}")
        assert agree >= min_agreement and raw <= max_raw
        assert 0.05 < ref["focus_map"].mean() < 0.95
        # Eq. 14 with the model's own F_final, and SRR's guarantee on it.
        focus = out["focus_map"]
        np.testing.assert_allclose(out["fused"], a * focus + b * (1 - focus), atol=1e-6)
        binary = focus[..., 0] > 0.5
        n = int(srr.default_min_size(h, w))
        for value in (binary, ~binary):
            labels, count = ndimage.label(value)
            assert count == 0 or np.bincount(labels.ravel())[1:].min() >= n


def test_float16_rounds_only_g_weights(exported):
    """float16: G's weights, but its stem's, are stored as float16 and turned into float32 by
    DEQUANTIZE ops; R's weights and every other constant (thresholds, SRR) stay float32."""
    from tensorflow.lite.python import schema_py_generated as schema

    float16, float32 = schema.TensorType.FLOAT16, schema.TensorType.FLOAT32
    for variant in ("dynamic", f"{FIXED}x{FIXED}"):
        with open(exported.tflite_models[f"mfif_{variant}_float16.tflite"], "rb") as f:
            model_t = tflite_lib._read_model(f.read())  # pylint: disable=protected-access
        ops = list(tflite_lib._ops(model_t))  # pylint: disable=protected-access
        for op in ops:  # -1: an optional input left out
            op.inputs = [t for t in op.inputs if t >= 0]
        readers = {}
        for op in ops:
            for t in op.inputs:
                readers.setdefault((op.subgraph, t), []).append(op)

        def name(op):
            return model_t.subgraphs[op.subgraph].tensors[op.outputs[0]].name.decode()

        def constant(op, t):
            tensor = model_t.subgraphs[op.subgraph].tensors[t]
            data = model_t.buffers[tensor.buffer].data
            return data is not None and len(data) > 0

        halves, float32_readers = 0, []
        for op in ops:
            types = {model_t.subgraphs[op.subgraph].tensors[t].type for t in op.inputs}
            if op.name != "DEQUANTIZE":
                assert float16 not in types, name(op)  # only DEQUANTIZE reads float16
                if any(constant(op, t) and model_t.subgraphs[op.subgraph].tensors[t].type
                       == float32 for t in op.inputs):
                    float32_readers.append(name(op))
                continue
            assert types == {float16} and constant(op, op.inputs[0])
            halves += 1
            for reader in readers[(op.subgraph, op.outputs[0])]:
                assert tflite_lib._in_scope(  # pylint: disable=protected-access
                    model_t, reader, tflite_lib.GENERATOR_SCOPE, nested=True), name(reader)
                assert "/stem_conv7" not in name(reader)
        assert halves >= 20  # every block's convolutions
        assert any(f"{tflite_lib.REFINER_SCOPE}/" in n for n in float32_readers)
        assert any("/stem_conv7" in n for n in float32_readers)
        assert any(not n.startswith(tflite_lib.GENERATOR_SCOPE) for n in float32_readers)


def test_float16_generator_in_if_branches():
    """With two Gs (one for box means) the dynamic model picks G in an IF op, whose branches'
    names start with cond/: G's weights there are stored as float16 too; others are not."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(3, 3, 3, 8)).astype(np.float32) for _ in range(2)]
    head = rng.normal(size=(3, 3, 8, 1)).astype(np.float32)

    def branch(w):
        def run(x):
            with tf.name_scope(tflite_lib.GENERATOR_SCOPE):
                return tf.nn.relu(tf.nn.conv2d(x, tf.constant(w), 1, "SAME"))
        return run

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def model(x):
        y = tf.cond(tf.shape(x)[1] > 8, lambda: branch(weights[0])(x),
                    lambda: branch(weights[1])(x))
        return tf.nn.conv2d(y, tf.constant(head), 1, "SAME")

    float32 = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.get_concrete_function()]).convert()
    half = tflite_lib.float16_generator(float32)
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import schema_py_generated as schema

    float16 = schema.TensorType.FLOAT16
    model_t = tflite_lib._read_model(half)  # pylint: disable=protected-access
    float16_shapes = sorted(tuple(int(d) for d in t.shape)
                            for s, subgraph in enumerate(model_t.subgraphs)
                            for t in subgraph.tensors if s > 0 and t.type == float16)
    assert float16_shapes == [(8,), (8,), (8, 3, 3, 3), (8, 3, 3, 3)]  # each branch's conv
    assert not any(t.type == float16 for t in model_t.subgraphs[0].tensors)  # the head

    for size in (16, 4):  # both branches
        x = rng.random((1, size, size, 3), dtype=np.float32)
        outs = []
        for flatbuffer in (float32, half):
            interpreter = Interpreter(model_content=flatbuffer)
            (source,), (result,) = (interpreter.get_input_details(),
                                    interpreter.get_output_details())
            interpreter.resize_tensor_input(source["index"], x.shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(source["index"], x)
            interpreter.invoke()
            outs.append(interpreter.get_tensor(result["index"]))
        np.testing.assert_allclose(outs[1], outs[0], rtol=1e-2, atol=1e-2)
        assert not np.array_equal(outs[1], outs[0])  # rounded weights


def test_host_checks(exported):
    fixed = TFLiteFuser(exported.tflite_models[f"mfif_{FIXED}x{FIXED}_float32.tflite"])
    a, b = real_looking_pair(FIXED, FIXED)
    with pytest.raises(ValueError, match="takes 64x64 images"):
        fixed(a[:32], b[:32])
    with pytest.raises(ValueError, match="float in"):
        fixed((a * 255).astype(np.uint8), b)
    with pytest.raises(ValueError, match="same shape"):
        fixed(a, b[:, :32])
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        fixed(a * 255.0, b)


def test_example_script(exported, tmp_path):
    a, b = real_looking_pair(50, 70, seed=4)
    paths = {}
    for name, image in (("a.png", a), ("b.png", b)):
        paths[name] = str(tmp_path / name)
        Image.fromarray(compare.to_uint8(image)).save(paths[name])
    a8, b8 = compare.to_uint8(a), compare.to_uint8(b)
    for model in ("mfif_dynamic_float32.tflite", f"mfif_{FIXED}x{FIXED}_float32.tflite"):
        out, focus = str(tmp_path / f"{model}.png"), str(tmp_path / f"{model}.map.png")
        args = ["--model", exported.tflite_models[model], "--image_a", paths["a.png"],
                "--image_b", paths["b.png"], "--output", out, "--focus_map", focus]
        assert tflite_fuse.main(args) == 0
        fused = np.asarray(Image.open(out))
        mask = np.asarray(Image.open(focus)) > 127
        assert fused.shape == (50, 70, 3) and mask.shape == (50, 70)
        np.testing.assert_array_equal(fused, np.where(mask[..., None], a8, b8))
        if "dynamic" in model:  # same answer as the runner at full size
            direct = TFLiteFuser(exported.tflite_models[model])(a8 / np.float32(255),
                                                                b8 / np.float32(255))
            np.testing.assert_array_equal(mask, direct["focus_map"][0, ..., 0] > 0.5)
        assert tflite_fuse.main(args) == 2  # refuses to overwrite its outputs


# ---------------------------------------------------------------- full-integer models (int8_full)

# Least F_final agreement (%) of int8_full with the float32 model of the same export on a
# 64x64 pair: G's int8 activations move the outline of the disc (about 130 pixels long) by
# about a pixel at most, i.e. up to ~3 % of the 4096 pixels, the same bound as for the int8
# (dynamic-range) model above; F_hat may differ by up to `FULL_INTEGER_MAX_RAW` at a pixel
# that neither model's focus-measure check set to 0 or 1 (where F_hat's side or its
# certainty decides the check's outline step, a small difference can flip a pixel).
FULL_INTEGER_MIN_AGREEMENT = 97.0
FULL_INTEGER_MAX_RAW = 0.5


def write_mask_folder(root, count: int = 4, size: int = 64, masks: bool = True) -> str:
    """images/ + masks/ + train.txt: textured photos and disc-shaped foreground masks."""
    os.makedirs(os.path.join(root, "images"))
    if masks:
        os.makedirs(os.path.join(root, "masks"))
    ids = [f"{i:02d}" for i in range(count)]
    for i, k in enumerate(ids):
        image = compare.to_uint8(compare.textured_image(size, size, seed=10 + i))
        Image.fromarray(image).save(os.path.join(root, "images", f"{k}.png"))
        if masks:
            mask = compare.disc_mask(size, size) > 0.5
            Image.fromarray(np.roll(mask, 4 * i, axis=1).astype(np.uint8) * 255).save(
                os.path.join(root, "masks", f"{k}.png"))
    with open(os.path.join(root, "train.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    return str(root)


@pytest.fixture(scope="module")
def full_integer(tmp_path_factory):
    """float32 and int8_full models (dynamic and 64x64) of one refined-mode export."""
    folder = write_mask_folder(tmp_path_factory.mktemp("representative"))
    config = TFLiteConfig(fixed_size=FIXED, quantizations=("float32", "int8_full"),
                          representative_dir=folder, representative_pairs=4, mode="refined")
    return tflite_lib.export_tflite(decisive_generator(1, gain=100.0),
                                    str(tmp_path_factory.mktemp("int8_full")), config,
                                    random_refiner())


def test_full_integer_is_not_a_default():
    assert "int8_full" in tflite_lib.QUANTIZATIONS
    assert "int8_full" not in TFLiteConfig().quantizations
    TFLiteConfig().validate()  # the defaults need no representative data


def test_full_integer_files_and_builtin_ops(full_integer):
    assert set(full_integer) == {f"mfif_{v}_{q}.tflite" for v in ("dynamic", f"{FIXED}x{FIXED}")
                                 for q in ("float32", "int8_full")}
    for variant in ("dynamic", f"{FIXED}x{FIXED}"):
        f32 = os.path.getsize(full_integer[f"mfif_{variant}_float32.tflite"])
        i8 = os.path.getsize(full_integer[f"mfif_{variant}_int8_full.tflite"])
        assert 0.2 < i8 / f32 < 0.45, (f32, i8)  # int8 weights; the head and R's logits float
        ops = op_names(full_integer[f"mfif_{variant}_int8_full.tflite"])
        assert not any(op.startswith("CUSTOM") for op in ops), ops
        assert {"CONV_2D", "WHILE", "UNSORTED_SEGMENT_MIN", "QUANTIZE", "DEQUANTIZE",
                "DEPTH_TO_SPACE"} <= ops


def tensor_dtypes(path: str) -> dict[str, np.dtype]:
    """name -> dtype of every tensor of a model's main graph (`get_tensor_details`)."""
    from ai_edge_litert.interpreter import Interpreter

    return {t["name"]: t["dtype"] for t in Interpreter(model_path=path).get_tensor_details()}


def test_full_integer_tensor_types(full_integer):
    for variant in ("dynamic", f"{FIXED}x{FIXED}"):
        dtypes = tensor_dtypes(full_integer[f"mfif_{variant}_int8_full.tflite"])
        in_g = {n: d for n, d in dtypes.items() if n.startswith(tflite_lib.GENERATOR_SCOPE + "/")}
        in_r = {n: d for n, d in dtypes.items() if n.startswith(tflite_lib.REFINER_SCOPE + "/")}
        # G: every block's convolutions (weights and outputs) and SE layers are int8 ...
        for block in ("se_res_0", "se_res_1"):
            block_types = {d for n, d in in_g.items() if f"/{block}_" in n}
            assert block_types == {np.int8}, (block, block_types)
        assert any("up1" in n and d == np.int8 for n, d in in_g.items())  # the decoder too
        # ... but not its head: F_hat (the sigmoid) stays float32.
        assert in_g[f"{tflite_lib.GENERATOR_SCOPE}/generator_1/Sigmoid"] == np.float32
        # R's convolutions are int8; its logit arithmetic (log, log1p, sigmoid) is float32.
        assert any("conv0" in n and d == np.int8 for n, d in in_r.items())
        logit = {d for n, d in in_r.items()
                 if n.split(";")[0].endswith(("Log", "Log1p", "Sigmoid"))}
        assert logit == {np.float32}, logit
        # Nothing outside G and R is int8 but the quantisation of their inputs.
        others = [n for n, d in dtypes.items() if d == np.int8 and n not in in_g and n not in in_r]
        assert len(others) <= 2, others
        runner = TFLiteFuser(full_integer[f"mfif_{variant}_int8_full.tflite"]).runner
        assert {d["dtype"] for d in runner.get_input_details().values()} == {np.float32}
        assert {d["dtype"] for d in runner.get_output_details().values()} == {np.float32}


def test_full_integer_agrees_with_float32(full_integer):
    for variant, h, w in (("dynamic", FIXED, FIXED), ("dynamic", 48, 80),
                          (f"{FIXED}x{FIXED}", FIXED, FIXED)):
        a, b = real_looking_pair(h, w)
        ref = TFLiteFuser(full_integer[f"mfif_{variant}_float32.tflite"])(a, b)
        out = TFLiteFuser(full_integer[f"mfif_{variant}_int8_full.tflite"])(a, b)
        ref, out = ({k: v[0] for k, v in x.items()} for x in (ref, out))
        agree = compare.agreement(out["focus_map"], ref["focus_map"])
        free = ~np.isin(out["focus_map_raw"], (0.0, 1.0)) & ~np.isin(ref["focus_map_raw"],
                                                                     (0.0, 1.0))
        raw = np.abs(out["focus_map_raw"] - ref["focus_map_raw"])[free].max()
        print(f"int8_full {variant} {h}x{w}: F_final agreement {agree:.3f} %, "
              f"max |F_hat diff| {raw:.2e}")
        assert 0.05 < ref["focus_map"].mean() < 0.95
        assert agree >= FULL_INTEGER_MIN_AGREEMENT and raw <= FULL_INTEGER_MAX_RAW
        # F_hat is not rounded to 8 bits (the quantiser's round trip after the sigmoid is
        # removed): most values are off the grid k / 256, except the 0s and 1s the
        # focus-measure check writes near the outline.
        f_hat = out["focus_map_raw"]
        soft = f_hat[(f_hat > 0) & (f_hat < 1)]
        assert soft.size > f_hat.size / 10
        assert np.mean(np.abs(soft * 256 - np.round(soft * 256)) < 1e-4) < 0.5
        # SRR ran in float on the model's own F_hat: exact regions, no clipped run counts.
        own = srr.small_region_removal(tf.constant(f_hat)).numpy()
        np.testing.assert_array_equal(out["focus_map"], own)
        # Eq. 14 in float32 with the model's F_final.
        focus = out["focus_map"]
        np.testing.assert_allclose(out["fused"], a * focus + b * (1 - focus), atol=1e-6)


def test_full_integer_needs_good_representative_data(tmp_path):
    def config(folder=""):
        return TFLiteConfig(quantizations=("float32", "int8_full"), representative_dir=folder)

    with pytest.raises(ValueError, match="needs --tflite_representative_dir"):
        config().validate()
    with pytest.raises(ValueError, match="no such folder"):
        config(str(tmp_path / "missing")).validate()
    with pytest.raises(ValueError, match="masks folder not found"):
        config(write_mask_folder(tmp_path / "no_masks", masks=False)).validate()
    empty = write_mask_folder(tmp_path / "empty_masks", count=2)
    for name in ("00", "01"):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(
            os.path.join(empty, "masks", f"{name}.png"))
    with pytest.raises(ValueError, match="no usable examples"):
        config(empty).validate()
    with pytest.raises(ValueError, match="at least 1"):
        TFLiteConfig(quantizations=("int8_full",), representative_pairs=0,
                     representative_dir=write_mask_folder(tmp_path / "ok")).validate()
    module = tflite_lib.TFLiteModule(decisive_generator(1, gain=100.0), fixed_size=FIXED,
                                     mode="paper")
    with pytest.raises(ValueError, match="needs representative pairs"):
        tflite_lib.convert(module, "fixed", "int8_full")


def test_cli_full_integer_without_good_data_is_one_line(tmp_path):
    base = [sys.executable, "-m", "export.export", "--weights=default",
            f"--export_dir={tmp_path / 'exp'}", "--version=1", "--tflite",
            "--tflite_quantizations=float32,int8_full"]
    for extra, message in (([], "needs --tflite_representative_dir"),
                           ([f"--tflite_representative_dir={tmp_path / 'nowhere'}"],
                            "--tflite_representative_dir: no such folder")):
        proc = subprocess.run(base + extra, cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "exp")
