"""Tiled inference of F_hat equals whole-image inference (SE means over the whole image)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from mfif_tf import tiling
from mfif_tf.config import model_config
from mfif_tf.networks import build_generator


@pytest.fixture(scope="module")
def generator():
    tf.keras.utils.set_random_seed(3)
    return build_generator(model_config("compact"))


@pytest.fixture(scope="module")
def decisive_generator():
    """Random weights give F_hat within 0.02 of 0.5; a steeper head makes F_final meaningful
    (most pixels far from the 0.5 threshold), as a trained model's is."""
    tf.keras.utils.set_random_seed(3)
    g = build_generator(model_config("compact"))
    g.head.kernel.assign(g.head.kernel * 300.0)
    return g


def textured_pair(height, width, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    a = rng.integers(0, top, (height, width, 3), dtype=dtype, endpoint=True)
    b = a.copy()
    # Blur the left half of A and the right half of B (box blur), so the map has structure.
    def blur(x):
        x = x.astype(np.float64)
        return ((x + np.roll(x, 1, 0) + np.roll(x, -1, 0) + np.roll(x, 1, 1) + np.roll(x, -1, 1))
                / 5).astype(dtype)
    a[:, : width // 2] = blur(a)[:, : width // 2]
    b[:, width // 2:] = blur(b)[:, width // 2:]
    return a, b


def naive_tiles(g, a, b, tile):
    """Each tile through G on its own: SE means of the tile, not of the image."""
    x = tiling.network_input(a, b)
    out = np.zeros(a.shape[:2], np.float32)
    for y in range(0, a.shape[0], tile):
        for c in range(0, a.shape[1], tile):
            part = x[:, y:y + tile, c:c + tile]
            out[y:y + tile, c:c + tile] = g(part, training=False)[0, :, :, 0]
    return out


def test_tiled_equals_whole_image_and_naive_tiling_does_not(generator):
    a, b = textured_pair(256, 384)
    whole = tiling.predict_focus_map(generator, a, b, tile_size=0)
    tiled = tiling.predict_focus_map(generator, a, b, tile_size=128)
    assert whole.shape == tiled.shape == (256, 384) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=2e-6)
    # The test can fail: tiles that pool only over themselves are far off.
    assert np.abs(naive_tiles(generator, a, b, 128) - whole).max() > 1e-3


def test_tiled_focus_map_binarises_like_whole_image(decisive_generator):
    a, b = textured_pair(256, 384, seed=1)
    whole = tiling.predict_focus_map(decisive_generator, a, b, tile_size=0)
    tiled = tiling.predict_focus_map(decisive_generator, a, b, tile_size=128)
    assert 0.05 < np.mean(whole > 0.5) < 0.95  # a real two-sided map
    agree = np.mean((whole > 0.5) == (tiled > 0.5))
    assert agree >= 0.999
    naive = naive_tiles(decisive_generator, a, b, 128)
    assert np.mean((whole > 0.5) == (naive > 0.5)) < agree


@pytest.mark.parametrize("height,width,tile", [(250, 381, 64), (37, 45, 12), (30, 9, 8)])
def test_odd_sizes_and_small_tiles(generator, height, width, tile):
    """Sizes that are not multiples of 4 (G's mirror padding), tiles at the minimum size."""
    a, b = textured_pair(height, width, seed=2)
    whole = tiling.predict_focus_map(generator, a, b, tile_size=0)
    tiled = tiling.predict_focus_map(generator, a, b, tile_size=tile)
    assert tiled.shape == (height, width)
    np.testing.assert_allclose(tiled, whole, atol=2e-6)


@pytest.mark.parametrize("overrides", [{"branches": "two"}, {"use_se": False}])
def test_ablation_generators_tile_too(overrides):
    tf.keras.utils.set_random_seed(4)
    g = build_generator(model_config("compact", **overrides))
    a, b = textured_pair(72, 100, seed=5)
    whole = tiling.predict_focus_map(g, a, b, tile_size=0)
    np.testing.assert_allclose(tiling.predict_focus_map(g, a, b, tile_size=32), whole, atol=2e-6)


def test_grey_and_16_bit_inputs_scale_from_their_own_range(generator):
    a, b = textured_pair(40, 48, seed=6)
    ref = tiling.predict_focus_map(generator, a, b, tile_size=0)
    a16, b16 = a.astype(np.uint16) * 257, b.astype(np.uint16) * 257
    np.testing.assert_allclose(tiling.predict_focus_map(generator, a16, b16, 0), ref, atol=1e-6)
    af, bf = a / 255.0, b / 255.0
    np.testing.assert_allclose(tiling.predict_focus_map(generator, af, bf, 0), ref, atol=1e-6)
    grey_a, grey_b = a[:, :, 1], b[:, :, 1]
    tripled = tiling.predict_focus_map(generator, np.dstack([grey_a] * 3),
                                       np.dstack([grey_b] * 3), 0)
    np.testing.assert_allclose(tiling.predict_focus_map(generator, grey_a, grey_b, 16), tripled,
                               atol=2e-6)


def test_network_input_range():
    x = tiling.network_input(np.array([[0, 255]], np.uint8), np.array([[0, 65535]], np.uint16))
    assert x.shape == (1, 1, 2, 6)
    np.testing.assert_array_equal(x[0, :, :, 0], [[-1.0, 1.0]])
    np.testing.assert_array_equal(x[0, :, :, 5], [[-1.0, 1.0]])


def test_mirror_index_matches_the_generator_padding():
    for size in (2, 3, 5, 9):
        padded = -(-size // 4) * 4
        values = np.arange(size)
        expected = tf.pad(values[None], [[0, 0], [0, padded - size]], mode="SYMMETRIC")[0]
        np.testing.assert_array_equal(values[tiling._mirror_index(size, padded)], expected)


def test_smallest_image(generator):
    side = tiling.MIN_IMAGE_SIDE
    a, b = textured_pair(side, side, seed=7)
    assert tiling.predict_focus_map(generator, a, b).shape == (side, side)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tiling.predict_focus_map(generator, a[:side - 1], b[:side - 1])


def test_plan_tile_size(generator):
    assert tiling.plan_tile_size(generator, 520, 520) == 0  # fits: one call
    auto = tiling.plan_tile_size(generator, 4000, 6000)
    assert auto == tiling.default_tile_size(generator) == 768
    assert tiling.plan_tile_size(generator, 4000, 6000, 0) == 0
    assert tiling.plan_tile_size(generator, 100, 100, 130) == 132
    assert tiling.plan_tile_size(generator, 100, 100, 1) == 8
    with pytest.raises(ValueError):
        tiling.plan_tile_size(generator, 100, 100, -4)


def test_g_and_its_tile_pieces_are_traced_once_for_every_size(generator):
    """One graph per piece serves every image and tile size (no retracing per photo), and
    the traced G gives what G gives called op by op."""
    compiled = tiling.get_compiled(generator)
    assert tiling.get_compiled(generator) is compiled
    for height, width in ((64, 96), (72, 120)):
        a, b = textured_pair(height, width, seed=height)
        whole = tiling.predict_focus_map(generator, a, b, 0)
        eager = generator(tf.constant(tiling.network_input(a, b)), training=False)
        np.testing.assert_allclose(whole, eager.numpy()[0, :, :, 0], atol=1e-6)
        tiling.predict_focus_map(generator, a, b, 32)
    pieces = [compiled.forward, compiled.stem, compiled.decode, *compiled.blocks]
    assert [f.experimental_get_tracing_count() for f in pieces] == [1] * len(pieces)
    assert tiling.plan_tile_size(generator, 1000, 1000) == 0  # 1 MP in one call


def test_flips_average_three_mirrored_passes(decisive_generator):
    a, b = textured_pair(96, 160, seed=2)
    plain = tiling.predict_focus_map(decisive_generator, a, b, tile_size=0)
    lr = tiling.predict_focus_map(decisive_generator, a[:, ::-1], b[:, ::-1], tile_size=0)
    ud = tiling.predict_focus_map(decisive_generator, a[::-1], b[::-1], tile_size=0)
    want = (plain + lr[:, ::-1] + ud[::-1]) / 3
    got = tiling.predict_focus_map(decisive_generator, a, b, tile_size=0, flips=True)
    assert got.shape == (96, 160) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    # The test can fail: G is not mirror-equivariant, so the mean differs from one pass.
    assert np.abs(got - plain).max() > 1e-3
    # Tiled passes give the same mean, and the progress total counts all three passes.
    totals = []
    tiled = tiling.predict_focus_map(decisive_generator, a, b, tile_size=64, flips=True,
                                     progress_total=totals.append)
    np.testing.assert_allclose(tiled, got, atol=2e-5)
    assert len(totals) == 3


# Three stride-2 stages (G works on multiples of 8) and two blocks: small and fast, and every
# stage's reach differs from the presets'.
DEEPER = dict(stem_channels=8, down_channels=(8, 16, 32), num_blocks=2, se_reduction=4)


def test_geometry_is_read_off_the_layers(generator):
    assert tiling.tile_geometry(generator) == tiling.TileGeometry(
        factor=4, stem_halo=8, block_halo=2, decode_halo=2)
    tf.keras.utils.set_random_seed(5)
    deeper = build_generator(model_config("compact", **DEEPER))
    # The stem now reaches 3 pixels before and 10 after an 8-pixel position.
    assert (deeper.stem_reach().before, deeper.stem_reach().after) == (3, 10)
    assert tiling.tile_geometry(deeper) == tiling.TileGeometry(
        factor=8, stem_halo=16, block_halo=2, decode_halo=2)
    assert tiling.plan_tile_size(deeper, 100, 100, 20) == 24  # a multiple of 8
    assert tiling.plan_tile_size(deeper, 100, 100, 1) == 16


@pytest.mark.parametrize("overrides", [DEEPER, {"num_blocks": 1}])
@pytest.mark.parametrize("height,width,tile", [(72, 100, 32), (45, 61, 16)])
def test_tiled_equals_whole_image_at_another_depth(overrides, height, width, tile):
    tf.keras.utils.set_random_seed(6)
    g = build_generator(model_config("compact", **overrides))
    a, b = textured_pair(height, width, seed=8)
    whole = tiling.predict_focus_map(g, a, b, tile_size=0)
    tiled = tiling.predict_focus_map(g, a, b, tile_size=tile)
    assert tiled.shape == (height, width)
    np.testing.assert_allclose(tiled, whole, atol=2e-6)


@pytest.mark.parametrize("overrides,tile", [({}, 32), (DEEPER, 16)])
def test_each_halo_is_the_least_that_works(overrides, tile):
    """One position less on any stage changes the result: the derived halos are tight.
    (Block tiles are tile / 2 encoded positions, so both sizes give several of them.)"""
    tf.keras.utils.set_random_seed(7)
    g = build_generator(model_config("compact", **overrides))
    a, b = textured_pair(64, 96, seed=9)
    whole = tiling.predict_focus_map(g, a, b, tile_size=0)
    geo = tiling.tile_geometry(g)
    shrunk = [dataclasses.replace(geo, stem_halo=geo.stem_halo - geo.factor),
              dataclasses.replace(geo, block_halo=geo.block_halo - 1),
              dataclasses.replace(geo, decode_halo=geo.decode_halo - 1)]
    for smaller in shrunk:
        out = tiling._tiled_focus_map(g, a, b, tile, None, None, geometry=smaller)
        assert np.abs(out - whole).max() > 1e-5, smaller


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_excitation_in_row_bands_and_threads_equals_one_pass(monkeypatch, threads):
    # 300 x 100 x 64 float32 (7.7 MB) is above the size at which the SE excitation of a tiled
    # G splits into threads; the bands must meet without gaps or overlaps.
    monkeypatch.setattr(tiling, "usable_cpus", lambda: threads)
    rng = np.random.default_rng(0)
    y = rng.normal(size=(300, 100, 64)).astype(np.float32)
    x = rng.normal(size=y.shape).astype(np.float32)
    scale = rng.uniform(size=64).astype(np.float32)
    expected = np.maximum(x + scale * y, 0.0)
    tiling._excite(y, x, scale)
    np.testing.assert_array_equal(y, expected)
