"""Refined mode's G size (`g_side`): G on box-averaged sources above it, the coarse R after."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from mfif_tf import common, fusion, fuse_lib, inference, litert_engine
from mfif_tf.image_io import InputError

from tests.conftest import decisive_generator


def _pair(height=200, width=264, seed=3, sigma=3.0):
    """A textured photo, I_A sharp on a disc and blurred outside it, I_B the other way."""
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.uniform(0, 1, (height, width, 3)), (1.2, 1.2, 0))
    image = (image - image.min()) / np.ptp(image)
    blurred = ndimage.gaussian_filter(image, (sigma, sigma, 0))
    yy, xx = np.mgrid[:height, :width]
    disc = ((yy - height / 2) ** 2 + (xx - width / 2.4) ** 2 < (height / 3) ** 2)[..., None]
    a = np.where(disc, image, blurred)
    b = np.where(disc, blurred, image)
    return [(np.clip(x, 0, 1) * 255).round().astype(np.uint8) for x in (a, b)]


@pytest.mark.parametrize("size", [(10, 10), (48, 60), (49, 49), (64, 64), (64, 65), (65, 65),
                                  (128, 300), (129, 129), (257, 1000), (4000, 6000),
                                  (6000, 4000)])
def test_g_factor_graph_equals_python(size):
    """1 up to a shorter side of 3/4 of g_side (48 here), else the smallest power of two
    from 2 that brings the shorter side to at most g_side, at most MAX_G_FACTOR (4: the
    factors R below full size was trained on)."""
    expected = common.g_factor(*size, 64)
    assert expected >= 1 and expected & (expected - 1) == 0  # a power of two
    assert (expected == 1) == (min(size) <= 48)
    assert expected == common.MAX_G_FACTOR == 4 or min(size) / expected <= 64
    assert expected <= 2 or min(size) / (expected // 2) > 64
    got = inference.g_factor_tensor(tf.constant(size[0]), tf.constant(size[1]), 64)
    assert int(got) == expected
    assert common.g_factor(*size, 0) == 1


def test_small_pairs_and_g_side_0_keep_g_at_full_size():
    """Below the default g_side the default call is the full-size refined fusion, exactly."""
    a, b = _pair()
    default = fusion.fuse_arrays([a, b])
    full = fusion.fuse_arrays([a, b], g_side=0)
    np.testing.assert_array_equal(default.f_hat, full.f_hat)
    np.testing.assert_array_equal(default.fused, full.fused)


def test_large_pairs_run_g_box_averaged_and_the_coarse_refiner_after():
    """g_side=64 on a 200 x 264 pair: G sees the sources averaged over 4 x 4 boxes; the map
    is the coarse_to_fine R's redrawing of that pass, not the refined R's; it still finds
    the disc."""
    a, b = _pair()
    # The packaged G below full size (its own, when the package has one).
    generator = (fusion.resolve_coarse_generator(None, None, "float32")
                 or fusion.resolve_generator(None, "float32"))
    refined_r = fusion.resolve_refiner(None)
    coarse_r = fusion.resolve_refiner(None, None, common.COARSE_REFINER_KEY)
    result = fusion.fuse_arrays([a, b], g_side=64, precision="float32")
    quarter = fusion.predict_f_hat(generator, refined_r, a, b, mode="paper", scales=(0.25,))
    redrawn = inference.refine_arrays(coarse_r, a, b, quarter)
    unchecked = fusion.fuse_arrays([a, b], g_side=64, precision="float32", measure_ratio=0)
    np.testing.assert_allclose(unchecked.f_hat, redrawn, atol=1e-5)
    # By default the focus measure then checks the outline (`inference.measure_check`).
    expected = inference.measure_arrays(a, b, redrawn, quarter, 4)
    np.testing.assert_allclose(result.f_hat, expected, atol=1e-5)
    with_refined_r = fusion.fuse_arrays([a, b], g_side=64, coarse_refiner=refined_r,
                                        precision="float32", measure_ratio=0)
    assert np.abs(with_refined_r.f_hat - unchecked.f_hat).max() > 0.05
    yy, xx = np.mgrid[:200, :264]
    disc = (yy - 100) ** 2 + (xx - 264 / 2.4) ** 2 < (200 / 3) ** 2
    assert ((result.f_final > 0.5) == disc).mean() > 0.97


def test_graph_chooses_the_factor_when_it_runs_and_agrees_with_fuse_arrays():
    """The SavedModel's refined graph (`FusionModule`, one trace for any size) picks G's
    factor from the input size when it runs: 4 for a 200 x 264 pair, 1 for a 48 x 48 one;
    its F_final agrees with `fuse_arrays` for both."""
    from export import serving

    generator = fusion.resolve_generator(None)
    refined_r = fusion.resolve_refiner(None)
    coarse_r = fusion.resolve_refiner(None, None, common.COARSE_REFINER_KEY)
    module = serving.FusionModule(generator, mode="refined", refiner=refined_r,
                                  coarse_refiner=coarse_r, g_side=64,
                                  coarse_generator=fusion.resolve_coarse_generator(None, None))
    serve = tf.function(lambda x, y: module.serve(x, y, 44),
                        input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)] * 2)
    for height, width in ((200, 264), (48, 48)):
        a, b = _pair(height, width)
        out = serve(tf.constant(a[None] / 255.0, tf.float32),
                    tf.constant(b[None] / 255.0, tf.float32))
        expected = fusion.fuse_arrays([a, b], g_side=64, min_size=44, precision="float32")
        agree = (out["focus_map"].numpy()[0, :, :, 0] == expected.f_final).mean()
        assert agree > 0.999, (height, width, agree)
        full = fusion.fuse_arrays([a, b], g_side=0, min_size=44, precision="float32")
        differs = np.abs(full.f_hat - expected.f_hat).max() > 0.05
        assert differs == (height > 48), (height, width)
    assert serve.experimental_get_tracing_count() == 1


def test_static_sizes_fix_the_factor_when_the_graph_is_built():
    a, b = _pair()
    generator = decisive_generator(5)
    refined_r = fusion.resolve_refiner(None)
    coarse_r = fusion.resolve_refiner(None, None, common.COARSE_REFINER_KEY)
    sizes = []

    def predict(x, y):
        sizes.append(tuple(x.shape[1:3]))
        return inference.generator_predict(generator)(x, y)

    x, y = (tf.constant(v[None] / 255.0, tf.float32) for v in (a, b))
    static = inference.focus_map(predict, x, y, "refined", refiner=refined_r,
                                 coarse_refiner=coarse_r, g_side=64)
    assert sizes == [(50, 66)]
    arrays = fusion.predict_f_hat(generator, refined_r, a, b, coarse_refiner=coarse_r,
                                  g_side=64)
    np.testing.assert_allclose(static.numpy()[0, :, :, 0], arrays, atol=1e-4)


@pytest.mark.parametrize("bad", [-1, 8, 2.5, True])
def test_bad_g_side_is_refused_with_its_name(bad):
    a, b = _pair(40, 40)
    with pytest.raises(InputError, match="g_side"):
        fusion.fuse_arrays([a, b], g_side=bad)
    with pytest.raises(InputError, match="--g_side"):
        fuse_lib.FuseOptions(g_side=bad).validate()


def test_litert_engine_runs_what_its_graph_side_gives():
    """The packaged LiteRT graphs run G as `fuse` does with the default g_side (at full size
    up to it, on box means above): an image for which another --g_side gives another box
    factor goes to TensorFlow, and a forced LiteRT job refuses it in one line naming the
    flag."""
    assert litert_engine.GRAPH_G_SIDE == common.DEFAULT_G_SIDE == 640
    for height, width, side in ((480, 640, 0), (480, 640, 1024), (520, 520, 640),
                                (750, 1000, 512), (1000, 1000, 700)):
        assert litert_engine.size_blocker(height, width, side) is None, (height, width, side)
    assert litert_engine.size_blocker(520, 520, 1024) == (
        "520x520: with --g_side=1024 G runs at full size; the LiteRT graph runs it on 2 x 2 "
        "box means (its side is 640)")
    assert "--g_side=0" in litert_engine.size_blocker(750, 1000, 0)
    assert not litert_engine.unsupported(g_side=1024)
    assert fuse_lib.choose_engine(fuse_lib.FuseOptions(), None, (750, 1000, 3)) == "litert"
    other = fuse_lib.FuseOptions(g_side=1024)
    other.validate()
    assert fuse_lib.choose_engine(other, None, (750, 1000, 3)) == "tensorflow"
    assert fuse_lib.choose_engine(other, None, (480, 640, 3)) == "litert"
    # Below full size the check's windows use the ratio: the graph's is 3.
    ratio = fuse_lib.FuseOptions(measure_ratio=5)
    ratio.validate()
    assert fuse_lib.choose_engine(ratio, None, (480, 640, 3)) == "litert"
    assert fuse_lib.choose_engine(ratio, None, (750, 1000, 3)) == "tensorflow"
    assert "--measure_ratio=3, not 5" in litert_engine.size_blocker(750, 1000, 640, 5.0)
    a, b = _pair(64, 80)
    with pytest.raises(InputError, match=r"a\.png: 80x64: with --g_side=32 G runs on 2 x 2 box "
                                         r"means; .*; use --engine=tensorflow"):
        litert_engine.fuse_stack(iter([a, b]), names=["a.png", "b.png"], g_side=32)


@pytest.mark.parametrize("variant", ["dynamic", "fixed"])
def test_tflite_models_run_g_box_averaged_as_fuse_does(variant):
    """TFLite models exported with the R for G below full size make `fuse`'s choice: the
    dynamic-size model picks the factor when it runs (4 for a 200 x 200 pair with g_side 64,
    1 for a 48 x 48 one), the fixed-size model when it is built; F_final agrees with
    `fuse_arrays` on at least 99.9 % of the pixels, and differs from G at full size."""
    from export import tflite

    generator = fusion.resolve_generator(None)
    refined_r = fusion.resolve_refiner(None)
    coarse_r = fusion.resolve_refiner(None, None, common.COARSE_REFINER_KEY)
    module = tflite.TFLiteModule(generator, fixed_size=200, mode="refined", refiner=refined_r,
                                 coarse_refiner=coarse_r, g_side=64,
                                 coarse_generator=fusion.resolve_coarse_generator(None, None))
    graph = tflite.convert(module, variant, "float32")
    assert ("IF" in tflite.op_names(graph)) == (variant == "dynamic")
    model = tflite.TFLiteFuser(graph, num_threads=2)
    for side in (200, 48) if variant == "dynamic" else (200,):
        a, b = _pair(side, side)
        out = model(a / np.float32(255), b / np.float32(255))
        expected = fusion.fuse_arrays([a, b], g_side=64, precision="float32")
        agree = (out["focus_map"][0, :, :, 0] == expected.f_final).mean()
        assert agree >= 0.999, (variant, side, agree)
        np.testing.assert_allclose(out["focus_map_raw"][0, :, :, 0], expected.f_hat, atol=1e-3)
        full = fusion.fuse_arrays([a, b], g_side=0, precision="float32")
        assert (np.abs(full.f_hat - expected.f_hat).max() > 0.05) == (side > 48), side


def test_a_model_directory_may_hold_a_g_of_its_own_below_full_size(tmp_path):
    """A G in the model directory's g_side/ runs where G runs below full size (the factor
    above 1), in `fuse_arrays` and in the SavedModel's graph (one trace for any size); at
    full size the model's own G runs, as without it."""
    from export import serving
    from mfif_tf import model_io

    main, small = decisive_generator(5), decisive_generator(9)
    model = tmp_path / "model"
    model_io.save_generator(main, str(model))
    model_io.save_generator(small, str(model / common.COARSE_REFINER_KEY))
    assert common.find_coarse_generator_dir(str(model)) == str(model / "g_side")
    assert common.find_coarse_generator_dir(str(tmp_path)) is None
    refined_r = fusion.resolve_refiner(None)
    coarse_r = fusion.resolve_refiner(None, None, common.COARSE_REFINER_KEY)
    kw = dict(g_side=64, min_size=44, precision="float32", refiner=refined_r,
              coarse_refiner=coarse_r)
    module = serving.FusionModule(main, mode="refined", refiner=refined_r,
                                  coarse_refiner=coarse_r, g_side=64, coarse_generator=small)
    serve = tf.function(lambda x, y: module.serve(x, y, 44),
                        input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)] * 2)
    for height, width in ((200, 264), (48, 48)):
        a, b = _pair(height, width)
        found = fusion.fuse_arrays([a, b], str(model), **kw)
        given = fusion.fuse_arrays([a, b], main, coarse_generator=small, **kw)
        alone = fusion.fuse_arrays([a, b], main, **kw)  # a Generator: no g_side/ to look in
        np.testing.assert_array_equal(found.f_hat, given.f_hat)
        differs = np.abs(given.f_hat - alone.f_hat).max() > 0.05
        assert differs == (height > 48), (height, width)
        out = serve(tf.constant(a[None] / 255.0, tf.float32),
                    tf.constant(b[None] / 255.0, tf.float32))
        agree = (out["focus_map"].numpy()[0, :, :, 0] == given.f_final).mean()
        assert agree > 0.999, (height, width, agree)
    assert serve.experimental_get_tracing_count() == 1
