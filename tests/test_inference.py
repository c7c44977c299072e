"""The inference graph (`mfif_tf.inference`): resampling, the refinement head's band and tiles,
coarse-to-fine levels, and the same F_hat from the NumPy strips of `fuse` and the graph."""

import numpy as np
import pytest
import tensorflow as tf

from mfif_tf import fusion, inference, tiling
from mfif_tf import refiner as refiner_lib
from mfif_tf.image_io import InputError
from tests.conftest import decisive_generator


@pytest.fixture(scope="module")
def generator():
    return decisive_generator(11)


@pytest.fixture(scope="module")
def refiner():
    """R with random, non-zero weights, so that it changes the map in its band."""
    tf.keras.utils.set_random_seed(12)
    r = refiner_lib.build_refiner(refiner_lib.RefinerConfig(channels=8, layers=3))
    rng = np.random.default_rng(3)
    for w in r.weights:
        w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    return r


def _pair(height, width, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    b = np.asarray(tf.image.resize(a[None].astype(np.float32), (height // 4 + 1, width // 4 + 1),
                                   "area").numpy())
    b = tf.image.resize(b, (height, width), "bilinear").numpy()[0]
    half = np.zeros((height, width, 1), bool)
    half[:, : width // 2] = True
    a, b = np.where(half, a, b).round().astype(np.uint8), np.where(half, b, a).round().astype(
        np.uint8)
    if dtype == np.uint16:
        return a.astype(np.uint16) * 257, b.astype(np.uint16) * 257
    return a, b


def _predict_arrays(generator):
    return lambda a, b: tiling.predict_focus_map(generator, a, b)


def _graph(generator, refiner, a, b, side, sizes=None):
    predict = inference.generator_predict(lambda x: generator(x, training=False))
    scale = inference.unit_scale(a.dtype)
    x = lambda s: tf.constant((s.astype(np.float32) * scale)[None])  # noqa: E731
    return inference.coarse_to_fine(predict, refiner, x(a), x(b), side, sizes).numpy()[0, :, :, 0]


# ---------------------------------------------------------------- sizes and resampling


def test_working_shape_never_enlarges_and_keeps_the_aspect():
    assert inference.working_shape(300, 200, 448) == (300, 200)
    assert inference.working_shape(4000, 6000, 448) == (448, 672)
    assert inference.working_shape(2080, 2080, 448) == (448, 448)
    assert inference.working_shape(520, 520, 448) == (448, 448)


@pytest.mark.parametrize("size,work,count", [
    ((300, 200), (300, 200), 1), ((520, 520), (448, 448), 1), ((896, 1000), (448, 500), 1),
    ((2080, 2080), (448, 448), 3), ((4000, 6000), (448, 672), 4)])
def test_level_count_keeps_the_first_level_within_twice_the_working_size(size, work, count):
    assert inference.level_count(*size, *work) == count
    first = inference.level_shape(*size, count - 1)
    assert min(first[0] / work[0], first[1] / work[1]) <= 2.0 + 1e-9
    assert first[0] >= work[0] and first[1] >= work[1]


def test_area_resample_averages_spans():
    rng = np.random.default_rng(0)
    image = rng.random((1, 7, 5, 2)).astype(np.float32)
    # Integer ratios are plain box means.
    got = inference.area_resample(tf.constant(image[:, :6, :4]), 3, 2).numpy()
    want = image[:, :6, :4].reshape(1, 3, 2, 2, 2, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(got, want, atol=1e-6)
    # 7 -> 3 rows: each output row covers 7/3 input rows, weighted by overlap.
    got = inference.area_resample(tf.constant(image), 3, 5).numpy()
    weights = np.array([[1, 1, 1 / 3, 0, 0, 0, 0], [0, 0, 2 / 3, 1, 2 / 3, 0, 0],
                        [0, 0, 0, 0, 1 / 3, 1, 1]]) * 3 / 7
    np.testing.assert_allclose(got, np.einsum("ih,nhwc->niwc", weights, image), atol=1e-6)
    # Constant images stay constant (weights sum to 1).
    flat = inference.area_resample(tf.ones([1, 13, 11, 1]), 4, 3).numpy()
    np.testing.assert_allclose(flat, 1.0, atol=1e-6)


@pytest.mark.parametrize("height,width,k", [(7, 10, 2), (9, 9, 4), (5, 3, 3), (1, 2, 2)])
def test_box_down_matches_numpy_on_the_edge_padded_image(height, width, k):
    rng = np.random.default_rng(height + width)
    image = rng.random((1, height, width, 3)).astype(np.float32)
    ph, pw = -(-height // k) * k, -(-width // k) * k
    padded = np.pad(image, ((0, 0), (0, ph - height), (0, pw - width), (0, 0)), mode="edge")
    want = padded.reshape(1, ph // k, k, pw // k, k, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(inference.box_down(tf.constant(image), k).numpy(), want,
                               atol=1e-6)
    np.testing.assert_allclose(inference.box_down_array((image[0] * 255).round().astype(
        np.uint8), k), np.pad((image[0] * 255).round() / 255, ((0, ph - height),
                                                               (0, pw - width), (0, 0)),
                              mode="edge").reshape(ph // k, k, pw // k, k, 3).mean(axis=(1, 3)),
        atol=1e-6)


def test_to_working_reaches_the_working_size_and_keeps_small_images():
    image = tf.random.uniform([1, 1000, 700, 3], seed=1)
    assert inference.to_working(image, 448).shape == (1, 640, 448, 3)
    small = tf.random.uniform([1, 300, 200, 3], seed=2)
    np.testing.assert_array_equal(inference.to_working(small, 448).numpy(), small.numpy())
    flat = inference.to_working(tf.fill([1, 999, 1501, 3], 0.25), 448).numpy()
    np.testing.assert_allclose(flat, 0.25, atol=1e-5)


# ---------------------------------------------------------------- the refinement head


def test_refiner_band_and_selection(refiner):
    """R changes c only in its band; elsewhere F_hat is c exactly."""
    rng = np.random.default_rng(1)
    height, width = 150, 200
    coarse = np.zeros((1, height, width, 1), np.float32)
    coarse[:, :, 100:] = 1.0
    coarse[:, :, 98:102] = 0.5  # an uncertain outline
    a = rng.random((1, height, width, 3)).astype(np.float32)
    b = rng.random((1, height, width, 3)).astype(np.float32)
    region = refiner_lib.band(tf.constant(coarse)).numpy()
    assert region[0, :, 98 - refiner_lib.BAND_GROW:102 + refiner_lib.BAND_GROW].all()
    assert not region[0, :, :98 - refiner_lib.BAND_GROW].any()
    out = inference.refine(refiner, tf.constant(a), tf.constant(b), tf.constant(coarse)).numpy()
    np.testing.assert_array_equal(out[~region], coarse[~region])
    assert np.abs(out[region] - coarse[region]).max() > 0.01
    # Gated tiles give R's whole-image values inside the band.
    x = refiner_lib.refiner_input(tf.constant(a), tf.constant(b), tf.constant(coarse))
    whole = refiner(inference.replicate_pad(x, refiner.halo, refiner.halo, refiner.halo,
                                            refiner.halo)).numpy()
    np.testing.assert_allclose(out[region], whole[region], atol=1e-5)


def test_refine_on_an_empty_band_returns_c(refiner):
    coarse = tf.zeros([1, 40, 50, 1])
    a = tf.random.uniform([1, 40, 50, 3], seed=4)
    out = inference.refine(refiner, a, a, coarse).numpy()
    np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_refine_in_strips_equals_the_whole_level(refiner, rows):
    rng = np.random.default_rng(rows)
    height, width = 90, 70
    a = rng.random((1, height, width, 3)).astype(np.float32)
    b = rng.random((1, height, width, 3)).astype(np.float32)
    coarse = (rng.random((1, height // 10, width // 10, 1)) > 0.5).astype(np.float32)
    coarse = tf.image.resize(coarse, (height, width), "bilinear").numpy()
    whole = inference.refine(refiner, a, b, coarse).numpy()
    context = inference.context_rows(refiner)
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        lo, hi = max(0, r0 - context), min(height, r1 + context)
        strip = inference.refine(refiner, a[:, lo:hi], b[:, lo:hi], coarse[:, lo:hi],
                                 r0 - lo, hi - r1).numpy()
        np.testing.assert_allclose(strip, whole[:, r0:r1], atol=1e-5)


def test_band_grow_is_saved_with_the_weights_and_sets_the_band(refiner, tmp_path):
    import json

    wide = refiner_lib.build_refiner(refiner_lib.RefinerConfig(channels=8, layers=3,
                                                               band_grow=9))
    for w, v in zip(wide.weights, refiner.weights):
        w.assign(v)
    rng = np.random.default_rng(5)
    height, width = 96, 120
    coarse = np.zeros((1, height, width, 1), np.float32)
    coarse[:, :, 60:] = 1.0
    coarse[:, :, 58:62] = 0.5
    a = rng.random((1, height, width, 3)).astype(np.float32)
    b = rng.random((1, height, width, 3)).astype(np.float32)
    narrow_out = inference.refine(refiner, a, b, coarse).numpy()
    wide_out = inference.refine(wide, a, b, coarse).numpy()
    # The same R inside the default band; 9 - BAND_GROW more columns on each side.
    inner = np.zeros(width, bool)
    inner[58 - refiner_lib.BAND_GROW:62 + refiner_lib.BAND_GROW] = True
    np.testing.assert_allclose(wide_out[:, :, inner], narrow_out[:, :, inner], atol=1e-6)
    np.testing.assert_array_equal(narrow_out[:, :, ~inner], coarse[:, :, ~inner])
    changed = np.abs(wide_out - coarse)[0, :, :, 0].max(axis=0) > 1e-4
    assert changed[58 - 9:58 - refiner_lib.BAND_GROW].any()
    assert changed[62 + refiner_lib.BAND_GROW:62 + 9].any()
    assert not changed[:58 - 9].any() and not changed[62 + 9:].any()
    # Strips with `context_rows` of context (the grow, above R's halo) equal the whole level.
    assert inference.context_rows(wide) == 9
    coarse_t = np.transpose(coarse, (0, 2, 1, 3))
    a_t, b_t = np.transpose(a, (0, 2, 1, 3)), np.transpose(b, (0, 2, 1, 3))
    whole = inference.refine(wide, a_t, b_t, coarse_t).numpy()
    for r0 in range(0, width, 16):
        r1 = min(width, r0 + 16)
        lo, hi = max(0, r0 - 9), min(width, r1 + 9)
        strip = inference.refine(wide, a_t[:, lo:hi], b_t[:, lo:hi], coarse_t[:, lo:hi],
                                 r0 - lo, hi - r1).numpy()
        np.testing.assert_allclose(strip, whole[:, r0:r1], atol=1e-5)
    # Saved and loaded with the weights; a config written before the setting loads with the
    # default.
    refiner_lib.save_refiner(wide, str(tmp_path / "wide"))
    assert refiner_lib.load_refiner(str(tmp_path / "wide")).config.band_grow == 9
    meta = json.loads((tmp_path / "wide" / "refiner.json").read_text())
    del meta["refiner"]["band_grow"]
    (tmp_path / "wide" / "refiner.json").write_text(json.dumps(meta))
    assert (refiner_lib.load_refiner(str(tmp_path / "wide")).config.band_grow
            == refiner_lib.BAND_GROW)
    with pytest.raises(ValueError, match="band_grow"):
        refiner_lib.RefinerConfig(band_grow=-1)


# ---------------------------------------------------------------- coarse to fine


@pytest.mark.parametrize("height,width,side,levels", [(96, 80, 128, 1), (150, 130, 64, 2),
                                                      (300, 260, 40, 3)])
def test_strips_of_fuse_equal_the_exported_graph(generator, refiner, height, width, side,
                                                  levels):
    a, b = _pair(height, width, seed=height)
    work = inference.working_shape(height, width, side)
    assert inference.level_count(height, width, *work) == levels
    arrays = inference.coarse_to_fine_arrays(_predict_arrays(generator), refiner, a, b, side,
                                             strip_rows=37)
    graph = _graph(generator, refiner, a, b, side)
    unrolled = _graph(generator, refiner, a, b, side, sizes=(height, width))
    assert arrays.shape == (height, width)
    np.testing.assert_allclose(arrays, graph, atol=2e-4)
    np.testing.assert_allclose(unrolled, graph, atol=1e-6)
    assert 0.0 < arrays.mean() < 1.0


def test_coarse_to_fine_handles_grey_uint16_and_float(generator, refiner):
    a, b = _pair(120, 100, seed=3, dtype=np.uint16)
    rgb = fusion.fuse_arrays([a, b], generator, mode="coarse_to_fine", working_side=48,
                             refiner=refiner)
    as_float = fusion.fuse_arrays([a / 65535.0, b / 65535.0], generator, mode="coarse_to_fine",
                                  working_side=48,
                                  refiner=refiner)
    np.testing.assert_allclose(rgb.f_hat, as_float.f_hat, atol=1e-5)
    assert rgb.fused.dtype == np.uint16
    grey = fusion.fuse_arrays([a[:, :, 0], b[:, :, 0]], generator, mode="coarse_to_fine",
                              working_side=48,
                              refiner=refiner)
    assert grey.fused.shape == (120, 100) and grey.fused.dtype == np.uint16


def test_paper_mode_is_one_full_resolution_pass(generator):
    a, b = _pair(64, 72, seed=8)
    paper = fusion.fuse_arrays([a, b], generator, mode="paper")
    np.testing.assert_array_equal(paper.f_hat, tiling.predict_focus_map(generator, a, b))


def test_mode_settings_are_checked(generator, refiner):
    a, b = _pair(40, 40)
    with pytest.raises(InputError, match="mode must be one of"):
        fusion.fuse_arrays([a, b], generator, mode="fast", refiner=refiner)
    with pytest.raises(InputError, match="working_side"):
        fusion.fuse_arrays([a, b], generator, mode="coarse_to_fine", working_side=4,
                           refiner=refiner)
    with pytest.raises(InputError, match="scales apply to modes 'refined' and 'paper'"):
        fusion.fuse_arrays([a, b], generator, mode="coarse_to_fine", scales="1,0.5",
                           refiner=refiner)
    with pytest.raises(InputError, match="no refiner.weights.h5"):
        fusion.fuse_arrays([a, b], generator, mode="coarse_to_fine",
                           refiner="/nonexistent/refiner")


def test_refined_mode_redraws_only_the_band_of_the_paper_map(generator, refiner):
    a, b = _pair(150, 130, seed=5)
    paper = fusion.fuse_arrays([a, b], generator, mode="paper").f_hat
    refined = fusion.fuse_arrays([a, b], generator, mode="refined", refiner=refiner,
                                 measure_ratio=0).f_hat
    np.testing.assert_array_equal(refined, inference.refine_arrays(refiner, a, b, paper))
    # By default the focus measure then checks the outline pixel by pixel.
    checked = fusion.fuse_arrays([a, b], generator, mode="refined", refiner=refiner).f_hat
    np.testing.assert_array_equal(checked, inference.measure_arrays(a, b, refined, None))
    assert np.abs(refined - paper).max() > 1e-3
    # R moves an outline only: a map that is certain away from its outline keeps those pixels.
    columns = np.arange(130, dtype=np.float32)
    step = np.broadcast_to(1.0 / (1.0 + np.exp((columns - 60.0) / 1.5)), (150, 130)).copy()
    redrawn = inference.refine_arrays(refiner, a, b, step)
    band = refiner_lib.band(tf.constant(step[None, :, :, None])).numpy()[0, :, :, 0]
    assert 0 < band.sum() < band.size / 2
    np.testing.assert_array_equal(redrawn[~band], step[~band])
    assert np.abs(redrawn[band] - step[band]).max() > 1e-3
    # With R's delta head at zero (as it is initialised), the refined map is the paper map.
    zero = refiner_lib.build_refiner(refiner_lib.RefinerConfig(channels=4, layers=2))
    unchanged = fusion.fuse_arrays([a, b], generator, mode="refined", refiner=zero,
                                   measure_ratio=0).f_hat
    np.testing.assert_allclose(unchanged, paper, atol=1e-5)


@pytest.mark.parametrize("rows", [19, 256])
def test_refined_strips_equal_the_graph_and_scales_apply(generator, refiner, rows):
    a, b = _pair(96, 110, seed=6)
    f_paper = tiling.predict_focus_map(generator, a, b, scales=(1.0, 0.5))
    arrays = inference.measure_arrays(
        a, b, inference.refine_arrays(refiner, a, b, f_paper, strip_rows=rows), None,
        strip_rows=rows)
    via_fuse = fusion.fuse_arrays([a, b], generator, mode="refined", refiner=refiner,
                                  scales="1,0.5").f_hat
    predict = inference.generator_predict(lambda x: generator(x, training=False))
    x = lambda s: tf.constant((s.astype(np.float32) / 255.0)[None])  # noqa: E731
    graph = inference.focus_map(predict, x(a), x(b), "refined", refiner=refiner,
                                scales=(1.0, 0.5)).numpy()[0, :, :, 0]
    batch = inference.focus_map(predict, tf.concat([x(a), x(b)], 0), tf.concat([x(b), x(a)], 0),
                                "refined", refiner=refiner, scales=(1.0, 0.5)).numpy()
    np.testing.assert_array_equal(arrays, via_fuse)
    np.testing.assert_allclose(arrays, graph, atol=2e-4)
    np.testing.assert_allclose(batch[0, :, :, 0], graph, atol=2e-4)
    assert batch.shape == (2, 96, 110, 1)


def test_refined_is_the_default_and_needs_r(generator):
    assert inference.DEFAULT_MODE == "refined"
    predict = inference.generator_predict(lambda x: generator(x, training=False))
    image = tf.zeros([1, 16, 16, 3])
    with pytest.raises(ValueError, match="refined mode needs the refinement head"):
        inference.focus_map(predict, image, image)


def test_refiner_save_and_load_round_trip(refiner, tmp_path):
    refiner_lib.save_refiner(refiner, str(tmp_path), info={"steps": 3})
    loaded = refiner_lib.load_refiner(str(tmp_path))
    x = tf.random.uniform([1, 20, 20, 7], seed=5)
    np.testing.assert_allclose(loaded(x).numpy(), refiner(x).numpy(), atol=1e-6)
    assert loaded.get_config()["config"] == {"channels": 8, "layers": 3,
                                             "band_grow": refiner_lib.BAND_GROW}
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())
