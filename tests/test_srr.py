"""Tests of small region removal (section 3.3): equality with skimage, graph and TFLite use."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from skimage.morphology import remove_small_objects

from mfif_tf import srr


def reference(binary: np.ndarray, n: int) -> np.ndarray:
    """skimage's two passes: foreground regions of fewer than n pixels, then background ones.

    In skimage 0.26 `max_size=n - 1` removes components of at most n - 1 pixels (the older
    `min_size=n` removed those of fewer than n pixels and is deprecated).
    """
    binary = np.asarray(binary, bool)
    if n <= 1:
        return binary.copy()
    fg = remove_small_objects(binary, max_size=n - 1, connectivity=1)
    return ~remove_small_objects(~fg, max_size=n - 1, connectivity=1)


def run_srr(m: np.ndarray, n: int | None = None) -> np.ndarray:
    out = srr.small_region_removal(m.astype(np.float32), min_size=n).numpy()
    assert out.dtype == np.float32 and out.shape == m.shape
    assert set(np.unique(out)) <= {0.0, 1.0}
    return out > 0.5


def check(m: np.ndarray, n: int, msg: str = "") -> None:
    np.testing.assert_array_equal(run_srr(m, n), reference(m > 0.5, n), err_msg=msg)


# ---------------------------------------------------------------- maps


def spiral(h: int, w: int) -> np.ndarray:
    """A one-pixel-wide foreground spiral; the background between its turns is a spiral too."""
    m = np.zeros((h, w), np.float32)
    r, c, dr, dc = 0, 0, 0, 1
    m[r, c] = 1

    def free(y: int, x: int) -> bool:
        return 0 <= y < h and 0 <= x < w and not m[y, x]

    def painted(y: int, x: int) -> bool:
        return 0 <= y < h and 0 <= x < w and bool(m[y, x])

    while True:
        for _ in range(2):  # go on, else turn right once
            if free(r + dr, c + dc) and not painted(r + 2 * dr, c + 2 * dc):
                r, c = r + dr, c + dc
                m[r, c] = 1
                break
            dr, dc = dc, -dr
        else:
            return m


def serpentine(h: int, w: int, vertical: bool = False) -> np.ndarray:
    """One-pixel lines joined alternately at the two ends: one region, geodesic length ~hw/2."""
    if vertical:
        return serpentine(w, h).T.copy()
    m = np.zeros((h, w), np.float32)
    m[0::2, :] = 1
    for r in range(1, h, 2):
        m[r, w - 1 if (r // 2) % 2 == 0 else 0] = 1
    return m


def maze(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A perfect maze: one-pixel corridors along a random spanning tree of an (h/2, w/2) grid."""
    rng = np.random.default_rng(seed)
    ch, cw = h // 2 + 1, w // 2 + 1
    idx = np.arange(ch * cw).reshape(ch, cw)
    a = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    b = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    tree = minimum_spanning_tree(
        coo_matrix((rng.random(a.size) + 0.01, (a, b)), shape=(ch * cw, ch * cw))
    ).tocoo()
    m = np.zeros((2 * ch - 1, 2 * cw - 1), np.float32)
    m[0::2, 0::2] = 1
    ra, ca = np.divmod(tree.row, cw)
    rb, cb = np.divmod(tree.col, cw)
    m[ra + rb, ca + cb] = 1
    return m[:h, :w]


def checkerboard(h: int, w: int, cell: int = 1) -> np.ndarray:
    yy, xx = np.indices((h, w))
    return ((yy // cell + xx // cell) % 2).astype(np.float32)


def soft_blobs(h: int, w: int, seed: int) -> np.ndarray:
    """A focus-map-like F_hat in [0, 1]: smooth blobs, soft edges and speckle."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((h // 8 + 2, w // 8 + 2))
    field = np.kron(coarse, np.ones((8, 8)))[:h, :w]
    f = 1.0 / (1.0 + np.exp(-(field + 0.8 * rng.standard_normal((h, w)))))
    return f.astype(np.float32)


def border_regions(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.float32)
    m[0, :] = 1  # top row touches three borders
    m[:, -1] = 1
    m[h - 3 :, :2] = 1  # corner block
    m[h // 2, 0] = 1  # single pixel on the left border
    m[-1, w // 2] = 1  # single pixel on the bottom border
    m[h // 2 - 1 : h // 2 + 2, w // 2 - 1 : w // 2 + 2] = 1
    m[h // 2, w // 2] = 0  # one-pixel hole in a 3x3 ring
    return m


ADVERSARIAL = {
    "spiral_31x31": lambda: spiral(31, 31),
    "spiral_40x64": lambda: spiral(40, 64),
    "serpentine_h": lambda: serpentine(33, 20),
    "serpentine_v": lambda: serpentine(20, 33, vertical=True),
    "maze_61x45": lambda: maze(61, 45),
    "checkerboard": lambda: checkerboard(17, 23),
    "checkerboard_3": lambda: checkerboard(30, 30, 3),
    "zeros": lambda: np.zeros((12, 9), np.float32),
    "ones": lambda: np.ones((12, 9), np.float32),
    "single_pixel": lambda: np.pad(np.ones((1, 1), np.float32), ((5, 6), (3, 4))),
    "single_hole": lambda: 1 - np.pad(np.ones((1, 1), np.float32), ((5, 6), (3, 4))),
    "border_regions": lambda: border_regions(20, 25),
    "one_row": lambda: (np.arange(50) % 7 < 3).astype(np.float32)[None],
    "one_column": lambda: (np.arange(50) % 5 < 2).astype(np.float32)[:, None],
    "one_pixel_map": lambda: np.ones((1, 1), np.float32),
    "diagonal_line": lambda: np.eye(24, dtype=np.float32),  # 4-connectivity: 24 separate pixels
    "nested_rings": lambda: (np.abs(np.indices((15, 15)) - 7).max(0) % 2 == 0).astype(np.float32),
}


# ---------------------------------------------------------------- equality with skimage


def test_golden_example_by_hand():
    m = np.array(
        [
            [1, 1, 0, 0, 0, 1],
            [1, 1, 0, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 1, 0],
            [0, 1, 0, 0, 1, 0],
            [0, 1, 1, 1, 1, 0],
        ],
        np.float32,
    )
    # N = 4: the 2x2 block (4 px) and the ring (10 px) stay, the single pixels (1 px) go; then
    # the ring's hole (2 px) is filled. The large background region stays.
    want = np.array(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 1, 0],
            [0, 1, 1, 1, 1, 0],
            [0, 1, 1, 1, 1, 0],
        ],
        bool,
    )
    np.testing.assert_array_equal(run_srr(m, 4), want)
    np.testing.assert_array_equal(reference(m > 0.5, 4), want)


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_maps_equal_skimage(name):
    m = ADVERSARIAL[name]()
    assert m.ndim == 2
    area = m.size
    for n in sorted({0, 1, 2, 3, 5, 8, max(1, area // 20), area // 2, area, area + 1}):
        check(m, n, f"{name}, N={n}")


def test_spiral_is_one_long_region():
    m = spiral(31, 31)
    from scipy import ndimage

    assert ndimage.label(m > 0.5)[1] == 1 and ndimage.label(m < 0.5)[1] == 1
    n = int(m.sum())
    np.testing.assert_array_equal(run_srr(m, n), np.ones_like(m, bool))  # kept, then gaps filled
    check(m, n + 1)


@pytest.mark.parametrize("density", [0.05, 0.3, 0.5, 0.6, 0.9])
def test_random_noise_equals_skimage(density):
    rng = np.random.default_rng(int(density * 100))
    for h, w in [(64, 64), (37, 91), (128, 5)]:
        m = (rng.random((h, w)) < density).astype(np.float32)
        for n in (2, 4, 17, int(np.ceil(h * w / 1000)), h * w // 4):
            check(m, n, f"{h}x{w} N={n}")


def test_many_random_maps_random_n():
    rng = np.random.default_rng(7)
    for _ in range(60):
        h, w = rng.integers(1, 48, size=2)
        m = (rng.random((h, w)) < rng.uniform(0.1, 0.9)).astype(np.float32)
        n = int(rng.integers(0, 40))
        check(m, n, f"{h}x{w} N={n}")


def test_soft_focus_maps_with_default_n():
    for seed, (h, w) in enumerate([(520, 520), (300, 700), (641, 257)]):
        f = soft_blobs(h, w, seed)
        n = int(np.ceil(0.001 * h * w))
        got = srr.small_region_removal(f).numpy() > 0.5
        np.testing.assert_array_equal(got, reference(f > 0.5, n))
        assert not np.array_equal(got, f > 0.5)  # something was removed


def test_batch_equals_per_map_and_does_not_leak_across_maps():
    rng = np.random.default_rng(3)
    h, w, n = 24, 30, 25
    maps = [
        (rng.random((h, w)) < 0.55).astype(np.float32),
        np.zeros((h, w), np.float32),
        np.zeros((h, w), np.float32),
        np.ones((h, w), np.float32),
    ]
    # A 20-px stripe at the bottom of map 1 right above a 15-px stripe at the top of map 2:
    # both are below N = 25, together they would not be.
    maps[1][-1, :20] = 1
    maps[2][0, :15] = 1
    maps[2][2:] = serpentine(h - 2, w)
    batch = np.stack(maps)[..., None]
    out = srr.small_region_removal(batch, min_size=n).numpy()
    assert out.shape == batch.shape
    for i, m in enumerate(maps):
        want = reference(m > 0.5, n)
        np.testing.assert_array_equal(out[i, ..., 0] > 0.5, want, err_msg=f"map {i}")
    assert not out[1, -1].any() and not out[2, 0].any()
    assert out[2, 2:, :, 0].sum() == maps[2][2:].sum()  # the serpentine stays


def test_shapes_and_default_n_per_image():
    f = soft_blobs(40, 50, 1)
    n = 2  # ceil(0.001 * 40 * 50)
    want = reference(f > 0.5, n)
    for x in (f, f[..., None], f[None, ..., None]):
        out = srr.small_region_removal(x)
        assert out.shape == x.shape and out.dtype == tf.float32
        np.testing.assert_array_equal(out.numpy().reshape(want.shape) > 0.5, want)


# ---------------------------------------------------------------- N, threshold, dtypes


def test_default_min_size_is_exact_ceiling():
    assert int(srr.default_min_size(520, 520)) == 271  # 270.4 -> regions of <= 270 px go
    assert int(srr.default_min_size(4000, 6000)) == 24000  # not 24001 from float rounding
    assert int(srr.default_min_size(10, 100)) == 1  # nothing is removed
    assert int(srr.default_min_size(10, 10)) == 1
    assert int(srr.default_min_size(20, 100, 0.0025)) == 5
    assert int(srr.default_min_size(7, 3, 0.0)) == 0
    # Dynamic sizes (tensors) give the same numbers.
    for h, w, f in [(520, 520, 0.001), (4000, 6000, 0.001), (333, 777, 0.0025), (1, 1, 1.0)]:
        dyn = srr.default_min_size(tf.constant(h), tf.constant(w), f)
        assert int(dyn) == int(srr.default_min_size(h, w, f)), (h, w, f)


def test_region_of_exactly_n_pixels_is_kept():
    m = np.zeros((30, 30), np.float32)
    m[2, 2:7] = 1  # 5 px
    m[10:12, 10:12] = 1  # 4 px
    out = run_srr(m, 5)
    assert out[2, 2:7].all() and not out[10:12, 10:12].any()
    assert run_srr(m, 4.5)[2, 2:7].all()  # float N: sizes < 4.5 go
    assert not run_srr(m, 5.5)[2, 2:7].any()


def test_threshold_is_strict_and_nan_is_background():
    m = np.full((5, 5), 0.9, np.float32)
    m[2, 2] = 0.5  # exactly 0.5 is background, as in im2bw
    out = srr.small_region_removal(m, min_size=0).numpy()
    assert out[2, 2] == 0 and out.sum() == 24
    m[2, 2] = np.nan
    assert srr.small_region_removal(m, min_size=0).numpy()[2, 2] == 0
    m[2, 2] = 0.5000001
    assert srr.small_region_removal(m, min_size=0).numpy()[2, 2] == 1
    assert srr.small_region_removal(m, min_size=0, threshold=0.95).numpy().sum() == 0


def test_other_input_dtypes():
    m = checkerboard(6, 6, 2)
    want = reference(m > 0.5, 5)
    for x in (m.astype(np.float64), m.astype(np.float16), m.astype(np.uint8), m > 0.5):
        np.testing.assert_array_equal(srr.small_region_removal(x, min_size=5).numpy() > 0.5, want)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        srr.small_region_removal(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="shape"):
        srr.small_region_removal(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        srr.small_region_removal(np.zeros((0, 4), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        srr.small_region_removal(tf.constant([["a", "b"]]))
    with pytest.raises(ValueError, match="min_size"):
        srr.small_region_removal(np.zeros((4, 4), np.float32), min_size=-1)
    with pytest.raises(ValueError, match="scalar"):
        srr.small_region_removal(np.zeros((4, 4), np.float32), min_size=tf.constant([1, 2]))
    with pytest.raises(ValueError, match="min_size_fraction"):
        srr.small_region_removal(np.zeros((4, 4), np.float32), min_size_fraction=2.0)


def test_refuses_xla_compilation():
    # Under jit_compile XLA pads the data-dependent sizes and the maps come out wrong.
    compiled = tf.function(lambda f: srr.small_region_removal(f, min_size=3), jit_compile=True)
    with pytest.raises(RuntimeError, match="XLA"):
        compiled(tf.zeros([8, 8]))


# ---------------------------------------------------------------- rounds


def test_rounds_grow_slowly_with_region_length():
    # The vertical serpentine is one region of ~3000 px geodesic length at 64x96 and ~50000 at
    # 256x384: min-label propagation needs that many rounds, union-find with pointer jumping a
    # handful (the last round only confirms).
    rounds = []
    for h, w in [(64, 96), (256, 384)]:
        for m in (serpentine(h, w, vertical=True), maze(h, w)):
            _, stats = srr.small_region_removal_with_stats(m, min_size=10**9)
            rounds.append(int(stats.rounds_fg))
            assert int(stats.rounds_fg) <= 10 and int(stats.rounds_bg) <= 4
            assert int(stats.num_runs) > 0
    assert max(rounds) <= min(rounds) + 4


# ---------------------------------------------------------------- graph, SavedModel, TFLite


class _SRRModule(tf.Module):
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, 1], tf.float32),
            tf.TensorSpec([], tf.int32),
        ]
    )
    def with_n(self, f_hat, min_size):
        return srr.small_region_removal(f_hat, min_size=min_size)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)])
    def default_n(self, f_hat):
        return srr.small_region_removal(f_hat)


def _test_maps():
    rng = np.random.default_rng(11)
    return [
        (rng.random((2, 33, 47, 1)) < 0.45).astype(np.float32),
        soft_blobs(64, 64, 5)[None, ..., None],
        spiral(40, 52)[None, ..., None],
        maze(31, 60)[None, ..., None],
    ]


def _expected(x: np.ndarray, n: int) -> np.ndarray:
    return np.stack([reference(m[..., 0] > 0.5, n) for m in x])[..., None]


@pytest.mark.slow
def test_savedmodel_with_dynamic_shape_and_min_size_input():
    module = _SRRModule()
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp)
        loaded = tf.saved_model.load(tmp)
        for x in _test_maps():
            for n in (3, 40):
                got = loaded.with_n(tf.constant(x), tf.constant(n, tf.int32)).numpy()
                np.testing.assert_array_equal(got > 0.5, _expected(x, n))
            n_default = int(np.ceil(0.001 * x.shape[1] * x.shape[2]))
            got = loaded.default_n(tf.constant(x)).numpy()
            np.testing.assert_array_equal(got > 0.5, _expected(x, n_default))


def _convert_builtins_only(concrete_fn, module) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_fn], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _run_tflite(model: bytes, *inputs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    details = sorted(interpreter.get_input_details(), key=lambda d: d["index"])
    for d, value in zip(details, inputs):
        interpreter.resize_tensor_input(d["index"], value.shape)
    interpreter.allocate_tensors()
    for d, value in zip(details, inputs):
        interpreter.set_tensor(d["index"], value)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _op_names(model: bytes) -> set[str]:
    import contextlib
    import io
    import re

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.tflite")
        with open(path, "wb") as fh:
            fh.write(model)
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            tf.lite.experimental.Analyzer.analyze(model_path=path)
    return set(re.findall(r"Op#\d+ (\w+)\(", text.getvalue()))


@pytest.mark.slow
def test_tflite_builtins_dynamic_shape_and_min_size_input():
    module = _SRRModule()
    model = _convert_builtins_only(module.with_n.get_concrete_function(), module)
    ops = _op_names(model)
    assert {"WHILE", "UNSORTED_SEGMENT_MIN", "UNSORTED_SEGMENT_SUM", "GATHER"} <= ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    for x in _test_maps():
        for n in (3, 40):
            got = _run_tflite(model, x, np.array(n, np.int32))
            np.testing.assert_array_equal(got > 0.5, _expected(x, n))


@pytest.mark.slow
def test_tflite_builtins_fixed_shape_default_n():
    module = _SRRModule()
    fixed = tf.function(lambda f_hat: srr.small_region_removal(f_hat)).get_concrete_function(
        tf.TensorSpec([1, 64, 64, 1], tf.float32)
    )
    model = _convert_builtins_only(fixed, module)
    rng = np.random.default_rng(2)
    for x in [
        soft_blobs(64, 64, 9)[None, ..., None],
        (rng.random((1, 64, 64, 1)) < 0.6).astype(np.float32),
        checkerboard(64, 64, 2)[None, ..., None],
    ]:
        np.testing.assert_array_equal(_run_tflite(model, x) > 0.5, _expected(x, 5))  # ceil(4.096)


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["dynamic_range_int8", "float16"])
def test_tflite_quantized_conversions_stay_exact(quantization):
    # The prefix count uses a float matmul (FULLY_CONNECTED); the quantized kernels must not
    # change the integer counts it produces.
    module = _SRRModule()
    fixed = tf.function(lambda f_hat: srr.small_region_removal(f_hat)).get_concrete_function(
        tf.TensorSpec([1, 96, 80, 1], tf.float32)
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fixed], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    model = converter.convert()
    rng = np.random.default_rng(4)
    for x in [
        soft_blobs(96, 80, 3)[None, ..., None],
        (rng.random((1, 96, 80, 1)) < 0.5).astype(np.float32),
        checkerboard(96, 80)[None, ..., None],  # 64 run starts in every block of 64 pixels
    ]:
        np.testing.assert_array_equal(_run_tflite(model, x) > 0.5, _expected(x, 8))  # ceil(7.68)
