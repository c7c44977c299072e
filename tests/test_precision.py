"""G in bfloat16 (Keras' mixed_bfloat16 policy) next to float32: the twin, fusion, tiles,
the CLI flags and the CPU-dependent default (`mfif_tf.model_io`, `mfif_tf.fusion`)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.ndimage import gaussian_filter

from export import export_lib
from mfif_tf import common, evaluate_lib, fuse_lib, fusion, inference, model_io, tiling
from mfif_tf import refiner as refiner_lib
from mfif_tf.image_io import InputError
from tests.conftest import decisive_generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# bfloat16 keeps 8 significant bits: F_hat of the test G (in 0.08 .. 0.7) moves by a few
# thousandths; float32 agrees to 1e-6.
BF16_ATOL = 0.02


@pytest.fixture(scope="module")
def generator():
    """The compact preset with random weights and a steeper head (F_hat far from constant)."""
    return decisive_generator(11, gain=100.0)


@pytest.fixture(scope="module")
def twin(generator):
    return model_io.with_precision(generator, "bfloat16")


def pair(height=70, width=90, seed=0):
    """uint8 RGB sources, the first one blurred (so G has something to decide)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return gaussian_filter(a.astype(np.float32), (1, 1, 0)).astype(np.uint8), b


def test_twin_computes_in_bfloat16_with_the_same_float32_weights(generator, twin):
    assert model_io.precision_of(generator) == "float32"
    assert model_io.precision_of(twin) == "bfloat16"
    # Every layer computes in bfloat16, not only the outer model, except G's first
    # convolution, which reads the input in float32 under every policy (networks.STEM_DTYPE).
    assert twin.stem_layers[1].conv.compute_dtype == "bfloat16"
    assert twin.stem_layers[1].bn.compute_dtype == "bfloat16"
    for layer in (twin.stem_layers[0], twin.stem_layers[0].conv, twin.stem_layers[0].bn,
                  generator.stem_layers[0].conv):
        assert layer.compute_dtype == "float32"
    assert twin.stem_dtype == tf.float32 and generator.stem_dtype == tf.float32
    assert twin.blocks[0].se.fc1.compute_dtype == "bfloat16"
    assert twin.head.compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert len(twin.weights) == len(generator.weights)
    for mine, theirs in zip(twin.weights, generator.weights):
        assert mine.dtype == "float32"
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert model_io.with_precision(twin, "bfloat16") is twin
    back = model_io.with_precision(twin, "float32")
    a, b = pair()
    np.testing.assert_array_equal(tiling.predict_focus_map(back, a, b, 0),
                                  tiling.predict_focus_map(generator, a, b, 0))


def test_bfloat16_twin_reads_its_input_in_float32(generator, twin):
    """The twin's stem sees the input unrounded: its first convolution gives what the
    float32 G's gives, bit for bit, and only the next ones round to bfloat16."""
    a, b = pair()
    x = tf.constant(tiling.network_input(a, b), tf.float32)
    branches = twin.to_branches(x)
    first = twin.stem_layers[0](tf.cast(branches, twin.stem_dtype), training=False)
    assert first.dtype == tf.float32
    np.testing.assert_array_equal(
        first.numpy(), generator.stem_layers[0](branches, training=False).numpy())
    assert twin.stem(branches, training=False).dtype == tf.bfloat16


def test_bfloat16_f_hat_is_close_to_float32(generator, twin):
    a, b = pair()
    f32 = tiling.predict_focus_map(generator, a, b, 0)
    bf16 = tiling.predict_focus_map(twin, a, b, 0)
    assert bf16.dtype == np.float32 and bf16.shape == (70, 90)
    assert 0.0 < np.abs(bf16 - f32).max() < BF16_ATOL  # rounded, yet close
    assert np.mean((bf16 > 0.5) == (f32 > 0.5)) > 0.99


def test_tiled_bfloat16_matches_whole_image(twin):
    a, b = pair(seed=1)
    whole = tiling.predict_focus_map(twin, a, b, 0)
    tiled = tiling.predict_focus_map(twin, a, b, 32)  # 3 x 3 tiles
    assert tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=BF16_ATOL)


@pytest.mark.parametrize("mode", ["paper", "refined"])
def test_fusion_in_bfloat16(generator, twin, mode):
    a, b = pair(seed=2)
    result = fusion.fuse_arrays([a, b], generator, mode=mode, precision="bfloat16")
    assert result.precision == "bfloat16"
    assert result.fused.dtype == np.uint8 and result.fused.shape == a.shape
    for m in (result.f_hat, result.f_final):
        assert m.dtype == np.float32 and m.shape == (70, 90)
    assert set(np.unique(result.f_final)) <= {0.0, 1.0}
    if mode == "paper":
        np.testing.assert_array_equal(result.f_hat, tiling.predict_focus_map(twin, a, b, 0))
    reference = fusion.fuse_arrays([a, b], generator, mode=mode, precision="float32")
    assert reference.precision == "float32"
    # G's and R's maps: the focus-measure check's outline step, which reads F_hat's side and
    # certainty, may turn a small difference into 0 against 1 at an outline pixel.
    maps = {p: fusion.fuse_arrays([a, b], generator, mode=mode, precision=p,
                                  measure_ratio=0).f_hat for p in ("bfloat16", "float32")}
    np.testing.assert_allclose(maps["bfloat16"], maps["float32"], atol=BF16_ATOL)
    assert ((result.f_hat > 0.5) == (reference.f_hat > 0.5)).mean() > 0.99
    # A Generator without `precision` runs as it is.
    assert fusion.fuse_arrays([a, b], twin, mode="paper").precision == "bfloat16"
    assert fusion.fuse_arrays([a, b], generator, mode="paper").precision == "float32"


def trained_like_refiner(seed=3):
    """R with random weights in every layer (a packaged R's last layer starts at zero)."""
    refiner = refiner_lib.build_refiner(refiner_lib.RefinerConfig(channels=16, layers=4))
    rng = np.random.default_rng(seed)
    for weight in refiner.weights:
        fan_in = np.prod(weight.shape[:-1]) if len(weight.shape) > 1 else np.inf
        weight.assign(rng.normal(0.0, 1.5 / np.sqrt(fan_in), weight.shape).astype(np.float32))
    return refiner


def test_refiner_twin_computes_in_bfloat16_but_its_first_convolution():
    refiner = trained_like_refiner()
    twin = model_io.refiner_with_precision(refiner, "bfloat16")
    assert refiner.compute_dtype == "float32"
    assert twin.compute_dtype == "bfloat16"
    assert [conv.compute_dtype for conv in twin.convs] == ["float32", "bfloat16", "bfloat16"]
    assert twin.out_conv.compute_dtype == "bfloat16"
    for mine, theirs in zip(twin.weights, refiner.weights, strict=True):
        assert mine.dtype == "float32"
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert model_io.refiner_with_precision(twin, "bfloat16") is twin
    back = model_io.refiner_with_precision(twin, "float32")
    assert back.compute_dtype == "float32"
    # The same map to bfloat16 rounding, in float32, on a level with an outline.
    a, b = pair(height=96, width=120, seed=4)
    coarse = np.zeros((96, 120), np.float32)
    coarse[:, 50:] = 1.0
    coarse = gaussian_filter(coarse, 3)
    f32 = inference.refine_arrays(refiner, a, b, coarse)
    bf16 = inference.refine_arrays(twin, a, b, coarse)
    assert bf16.dtype == np.float32
    changed = np.abs(f32 - coarse) > 0.05
    assert changed.mean() > 0.02  # R moves the outline, so the test compares something
    np.testing.assert_allclose(bf16, f32, atol=0.05)
    np.testing.assert_array_equal(bf16[:, :30], f32[:, :30])  # outside the band: c as is


def test_fusion_precision_reaches_the_refiner(tmp_path, generator):
    refiner = trained_like_refiner()
    path = str(tmp_path / "refiner")
    refiner_lib.save_refiner(refiner, path)
    f32 = fusion.resolve_refiner(path, precision="float32")
    bf16 = fusion.resolve_refiner(path, precision="bfloat16")
    assert f32.compute_dtype == "float32" and bf16.compute_dtype == "bfloat16"
    assert fusion.resolve_refiner(path) is f32
    assert fusion.resolve_refiner(path, precision="bfloat16") is bf16
    assert fusion.resolve_refiner(refiner, precision="bfloat16").compute_dtype == "bfloat16"
    assert fusion.resolve_refiner(refiner) is refiner
    a, b = pair(seed=5)
    # R's own map, without the focus-measure check (whose outline step may turn a small
    # difference of F_hat into 0 against 1).
    maps = {p: fusion.fuse_arrays([a, b], generator, mode="refined", refiner=path,
                                  precision=p, measure_ratio=0).f_hat
            for p in ("float32", "bfloat16")}
    np.testing.assert_allclose(maps["bfloat16"], maps["float32"], atol=BF16_ATOL * 3)
    # R computes as G does: a bfloat16 G given as such takes R (from a path) with it.
    twin = model_io.with_precision(generator, "bfloat16")
    np.testing.assert_array_equal(
        fusion.fuse_arrays([a, b], twin, mode="refined", refiner=path,
                           measure_ratio=0).f_hat, maps["bfloat16"])
    np.testing.assert_array_equal(
        fusion.fuse_arrays([a, b], generator, mode="refined", refiner=f32,
                           measure_ratio=0).f_hat, maps["float32"])
    # `evaluate --precision` runs R in it as well: the same maps as `fuse_arrays`.
    model = str(tmp_path / "model")
    model_io.save_generator(generator, model)
    for p in ("float32", "bfloat16"):
        fuse = evaluate_lib.model_fuse_fn(model, mode="refined", refiner=path, precision=p,
                                          g_side=0, measure_ratio=0)
        np.testing.assert_array_equal(fuse([a, b]).f_hat, maps[p])


def test_loaded_models_are_cached_per_precision(tmp_path, generator):
    model_io.save_generator(generator, str(tmp_path / "model"))
    path = str(tmp_path / "model")
    f32 = fusion.resolve_generator(path, "float32")
    bf16 = fusion.resolve_generator(path, "bfloat16")
    assert model_io.precision_of(bf16) == "bfloat16"
    # Alternating precisions reuses both models.
    assert fusion.resolve_generator(path) is f32
    assert fusion.resolve_generator(path, "bfloat16") is bf16
    loaded = model_io.load_generator(path, "bfloat16")
    assert model_io.precision_of(loaded) == "bfloat16"
    for mine, theirs in zip(loaded.weights, generator.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    # Asked first in bfloat16, a model is built in it directly (no float32 model), with the
    # same maps as the copy of a float32 one; float32 asked later is a copy of it.
    model_io.save_generator(generator, str(tmp_path / "other"))
    other = str(tmp_path / "other")
    direct = fusion.resolve_generator(other, "bfloat16")
    assert model_io.precision_of(direct) == "bfloat16"
    assert [k[-1] for k in fusion._GENERATOR_CACHE
            if k[0] == os.path.realpath(other)] == ["bfloat16"]
    a, b = pair(seed=6)
    np.testing.assert_array_equal(tiling.predict_focus_map(direct, a, b, 0),
                                  tiling.predict_focus_map(bf16, a, b, 0))
    again = fusion.resolve_generator(other, "float32")
    assert model_io.precision_of(again) == "float32"
    assert fusion.resolve_generator(other, "bfloat16") is direct


def test_bad_precision_values_are_refused(generator, tmp_path):
    a, b = pair()
    with pytest.raises(InputError, match="precision must be 'float32' or 'bfloat16', got "
                                         "'float16'"):
        fusion.fuse_arrays([a, b], generator, precision="float16")
    with pytest.raises(InputError, match="--precision must be float32 or bfloat16"):
        fuse_lib.FuseOptions(precision="half").validate()
    with pytest.raises(ValueError, match="precision must be"):
        model_io.load_generator("default", "int8")
    with pytest.raises(evaluate_lib.EvaluationError, match="precision must be"):
        evaluate_lib.model_fuse_fn("default", mode="paper", precision="fp16")
    with pytest.raises(ValueError, match="precision must be"):
        export_lib.ExportConfig(export_dir=str(tmp_path), precision="bf16").validate()
    with pytest.raises(ValueError, match="--tflite needs --precision=float32"):
        export_lib.ExportConfig(export_dir=str(tmp_path), precision="bfloat16",
                                tflite=True).validate()


# ------------------------------------------------------------------ the default precision

X86_BF16 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 arch_capabilities
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16
"""
X86_AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"
X86_AVX512_ONLY = "processor\t: 0\nflags\t\t: fpu sse avx avx2 avx512f avx512bw avx512_vnni\n"
X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\nbugs\t\t: avx512_bf16\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("text,has", [(X86_BF16, True), (X86_AMX, True),
                                      (X86_AVX512_ONLY, False), (X86_AVX2, False),
                                      (ARM, False), ("", False)])
def test_bf16_units_are_read_from_cpuinfo_flags(text, has, monkeypatch):
    assert model_io.cpu_has_bf16(text) is has
    monkeypatch.setattr(common, "BF16_DEFAULT_ON_BF16_CPUS", True)
    assert model_io.default_precision(text) == ("bfloat16" if has else "float32")
    monkeypatch.setattr(common, "BF16_DEFAULT_ON_BF16_CPUS", False)
    assert model_io.default_precision(text) == "float32"


def test_default_precision_applies_to_model_paths_only(generator, twin, monkeypatch):
    monkeypatch.setattr(model_io, "default_precision", lambda cpuinfo=None: "bfloat16")
    assert fusion.effective_precision("some/model", None) == "bfloat16"
    assert fusion.effective_precision(None, None) == "bfloat16"
    assert fusion.effective_precision(generator, None) is None  # as it is
    assert fusion.effective_precision(twin, "float32") == "float32"


# ------------------------------------------------------------------ entry points


def run(module, *args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_bad_precision_is_one_line_exit_2(tmp_path):
    done = run("mfif_tf.fuse", "a.png", "b.png", "-o", "f.png", "--precision=float16",
               cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "mfif-fuse: error: flag --precision=float16: value should be one of "
        "<float32|bfloat16>"]
    done = run("mfif_tf.evaluate", f"--dataset_dir={tmp_path}", "--model=default",
               "--precision=fp16", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: flag --precision=fp16: value should be one of <float32|bfloat16>"]
    done = run("export.export", f"--export_dir={tmp_path / 'e'}", "--version=1",
               "--precision=bfloat16", "--tflite", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: --tflite needs --precision=float32")
    assert os.listdir(tmp_path) == []


def test_bfloat16_saved_model_fuses_like_eager_bfloat16(tmp_path, generator):
    import tensorflow as tf

    config = export_lib.ExportConfig(export_dir=str(tmp_path), mode="paper",
                                     precision="bfloat16")
    result = export_lib.export_model(generator, config)
    loaded = tf.saved_model.load(result.saved_model_dir)
    a, b = pair(64, 64, seed=3)
    out = loaded.signatures["serving_default"](image_a=tf.constant(a[None]),
                                               image_b=tf.constant(b[None]))
    eager = fusion.fuse_arrays([a, b], generator, mode="paper", precision="bfloat16")
    served = out["focus_map"].numpy()[0, :, :, 0]
    assert out["fused"].dtype == tf.uint8
    assert np.mean(served == eager.f_final) > 0.99
