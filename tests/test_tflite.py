"""Tests of the TFLite models (export/tflite.py) and the on-device example, run with the
LiteRT interpreter and compared with the SavedModel written by the same export.

The test G is the compact preset with random weights and a head conv scaled by 100 (see
tests/test_export.py): F_hat is then far from 0.5 and F_final has regions of both values, so
agreement numbers measure the conversion, not noise around the threshold.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import ndimage

from export import compare, export_lib
from export.examples import tflite_fuse
from export.tflite import TFLiteConfig, TFLiteFuser, op_names
from mfif_tf import srr
from tests.conftest import decisive_generator, random_refiner

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
