"""The focus-measure check of G's outline where G runs below full size
(`inference.measure_check`, refined mode above `g_side`)."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import ndimage

from mfif_tf import classical, common, fusion, fuse_lib, inference
from mfif_tf.image_io import InputError

from tests.test_g_side import _pair


def _unit(x):
    return tf.constant(inference.to_unit_rgb(x)[None])


def _grey(x):
    return inference.luminance(_unit(x))


def _edge_pair():
    """A 96 x 220 pair of the conventional model (eqs. 12-13): I_A sharp left of column 100,
    I_B right of it (blur sigma 6); with the (96, 220, 1) mask of I_A's side."""
    rng = np.random.default_rng(1)
    image = ndimage.gaussian_filter(rng.uniform(0, 1, (96, 220, 3)), (1, 1, 0))
    blurred = ndimage.gaussian_filter(image, (6, 6, 0))
    left = np.zeros((96, 220, 1), bool)
    left[:, :100] = True
    a = (np.where(left, image, blurred) * 255).round().astype(np.uint8)
    b = (np.where(left, blurred, image) * 255).round().astype(np.uint8)
    return a, b, left


def test_sml_is_the_classical_baseline_measure():
    rng = np.random.default_rng(0)
    image = (rng.uniform(0, 255, (37, 53, 3))).astype(np.uint8)
    got = inference.sum_modified_laplacian(inference.luminance(_unit(image)), (15, 5, 1))
    for window, sml in zip((15, 5, 1), got):
        expected = classical.sum_modified_laplacian(classical.luminance(image), window)
        np.testing.assert_allclose(sml.numpy()[0, :, :, 0], expected, rtol=1e-4, atol=1e-4)


def test_zone_follows_g_outline_within_its_reach_in_g_pixels():
    """A vertical outline at column 80 of a map G drew at factor 2: the zone is every row's
    columns within `reach` G pixels (2 * reach full-size ones) of it, nothing further."""
    coarse = np.zeros((1, 60, 200, 1), np.float32)
    coarse[:, :, :80] = 1.0
    zone = inference.outline_zone(tf.constant(coarse), 2, reach=5).numpy()[0, :, :, 0]
    columns = np.flatnonzero(zone.all(axis=0))
    assert zone.any(axis=0).sum() == len(columns)  # the same columns on every row
    assert columns.min() >= 80 - 2 * 5 - 2 and columns.max() <= 80 + 2 * 5 + 2
    assert 80 - 2 * 5 <= columns.min() + 2 and columns.max() >= 80 + 2 * 5 - 2
    flat = inference.outline_zone(tf.constant(np.ones_like(coarse)), 2, reach=5)
    assert not flat.numpy().any()


def test_check_takes_the_sharp_source_in_the_zone_and_nothing_else():
    """I_A sharp left of column 100, I_B right of it; G's map puts the outline at 112. In
    the zone the check moves it to the truth; outside the zone, and where both sources are
    flat, F_hat stays."""
    a, b, left = _edge_pair()
    a[:, 180:] = b[:, 180:] = 128  # flat in both: no source is sharper there
    f_hat = np.zeros((1, 96, 220, 1), np.float32)
    f_hat[:, :, :112] = 0.9
    f_hat[:, :, 180:] = 0.7  # a wrong answer in the flat part
    zone = inference.outline_zone(tf.constant(f_hat), 2, reach=8)
    out = inference.measure_check(_grey(a), _grey(b), tf.constant(f_hat), zone).numpy()
    binary = out[0, :, :, 0] > 0.5
    truth = left[:, :, 0]
    band = slice(100 + 8, 112)  # wrongly given to I_A by F_hat, well inside the blur
    assert (binary[:, band] == truth[:, band]).mean() > 0.95
    assert ((out[0, :, :, 0] > 0.5) == truth)[:, :170].mean() > ((f_hat[0, :, :, 0] > 0.5) ==
                                                                 truth)[:, :170].mean()
    outside = ~zone.numpy()[0, :, :, 0]
    np.testing.assert_array_equal(out[0][outside], f_hat[0][outside])
    np.testing.assert_array_equal(out[0, :, 190:], f_hat[0, :, 190:])


def test_the_pixel_pass_brings_the_outline_to_the_pixel():
    """Sources of the conventional model (eqs. 12-13) with the true outline at column 100
    and F_hat's at 106: the windows leave about two wrong columns on every row (a window
    straddling the outline sees I_A's sharp side); the pixel's own measure, within `band`
    of the outline, halves that, and changes nothing further from the outline."""
    a, b, left = _edge_pair()
    f_hat = np.zeros((1, 96, 220, 1), np.float32)
    f_hat[:, :, :106] = 0.9
    zone = inference.outline_zone(tf.constant(f_hat), 2, reach=8)
    maps = {ratio: inference.measure_check(_grey(a), _grey(b), tf.constant(f_hat), zone,
                                           pixel_ratio=ratio).numpy()[0, :, :, 0]
            for ratio in (0, common.MEASURE_PIXEL_RATIO)}
    wrong = {ratio: ((m > 0.5) != left[:, :, 0]).sum() for ratio, m in maps.items()}
    assert wrong[0] >= 1.5 * 96 and wrong[common.MEASURE_PIXEL_RATIO] < 0.6 * wrong[0]
    moved = np.flatnonzero((maps[0] != maps[common.MEASURE_PIXEL_RATIO]).any(axis=0))
    assert len(moved) and moved.min() >= 100 - common.MEASURE_BAND \
        and moved.max() <= 101 + common.MEASURE_BAND


def test_unsure_outline_pixels_take_the_side_of_their_decided_neighbours():
    """The outline of the conventional model (column 100), F_hat's at 106: steps 1-2 leave
    the pixels whose stencil spans both sides (columns 100-101). Step 3 gives them the side
    of their decided 3 x 3 neighbours where F_hat is unsure (0.6), and leaves F_hat where
    it is sure (0.9): there R's answer stands."""
    a, b, left = _edge_pair()
    maps = {}
    for value in (0.6, 0.9):
        f_hat = np.zeros((1, 96, 220, 1), np.float32)
        f_hat[:, :, :106] = value
        zone = inference.outline_zone(tf.constant(f_hat), 2, reach=8)
        for unsure in (0, common.MEASURE_UNSURE):
            maps[value, unsure] = inference.measure_check(
                _grey(a), _grey(b), tf.constant(f_hat), zone, unsure=unsure).numpy()[0, :, :, 0]
    wrong = {key: (m > 0.5) != left[:, :, 0] for key, m in maps.items()}
    assert wrong[0.6, 0].sum() >= 48 and set(np.flatnonzero(wrong[0.6, 0].any(axis=0))) <= {
        100, 101}
    assert wrong[0.6, common.MEASURE_UNSURE].sum() < 0.2 * wrong[0.6, 0].sum()
    moved = maps[0.6, 0] != maps[0.6, common.MEASURE_UNSURE]
    assert set(np.flatnonzero(moved.any(axis=0))) <= {99, 100, 101, 102}
    np.testing.assert_array_equal(maps[0.9, 0], maps[0.9, common.MEASURE_UNSURE])


def test_strips_give_the_whole_image_values():
    a, b = _pair(150, 130, sigma=5.0)
    rng = np.random.default_rng(2)
    coarse = ndimage.gaussian_filter(rng.uniform(0, 1, (150, 130)), 8).astype(np.float32)
    coarse = (coarse > np.median(coarse)).astype(np.float32) * 0.8 + 0.1
    f_hat = np.clip(coarse + rng.normal(0, 0.05, coarse.shape), 0, 1).astype(np.float32)
    strips = inference.measure_arrays(a, b, f_hat, coarse, 2, strip_rows=32)
    zone = inference.outline_zone(tf.constant(coarse[None, :, :, None]), 2)
    whole = inference.measure_check(_grey(a), _grey(b), tf.constant(f_hat[None, :, :, None]),
                                    zone).numpy()[0, :, :, 0]
    # Strips read the 8-bit values (luminance in the graph), the whole call float RGB: the
    # same sums to float rounding, so at most a tie at the ratio can differ.
    assert (strips == whole).mean() > 0.9995
    grey_a, grey_b = (np.asarray(Image.fromarray(x).convert("L")) for x in (a, b))
    grey = inference.measure_arrays(grey_a, grey_b, f_hat, coarse, 2, strip_rows=32)
    assert (grey != f_hat).any() and ((grey > 0.5) == (strips > 0.5)).mean() > 0.98
    assert (strips != f_hat).any()
    # G at full size: the pixel step alone, everywhere.
    strips = inference.measure_arrays(a, b, f_hat, None, strip_rows=32)
    whole = inference.measure_check(_grey(a), _grey(b), tf.constant(f_hat[None, :, :, None]),
                                    None, windows=()).numpy()[0, :, :, 0]
    assert (strips == whole).mean() > 0.9995 and (strips != f_hat).any()


def test_fuse_checks_the_outline_over_windows_below_full_size_and_pixels_at_full_size():
    """A 200 x 264 pair: with g_side 64 (G at 1/4) the check brings F_final closer to the
    true disc (97.6 % to 98.5 % of the pixels right); with G at full size only its pixel
    step runs, so F_hat changes only within `MEASURE_BAND` pixels of its outline, and the
    strips of `fuse_arrays` give the graph's map."""
    a, b = _pair()
    yy, xx = np.mgrid[:200, :264]
    disc = (yy - 100) ** 2 + (xx - 264 / 2.4) ** 2 < (200 / 3) ** 2
    checked = fusion.fuse_arrays([a, b], g_side=64, precision="float32")
    unchecked = fusion.fuse_arrays([a, b], g_side=64, precision="float32", measure_ratio=0)
    right = ((checked.f_final > 0.5) == disc).mean()
    assert right > ((unchecked.f_final > 0.5) == disc).mean() + 0.005
    full = fusion.fuse_arrays([a, b], precision="float32")
    full_unchecked = fusion.fuse_arrays([a, b], precision="float32", measure_ratio=0)
    side = full_unchecked.f_hat > 0.5
    square = 2 * common.MEASURE_BAND + 1
    band = ndimage.maximum_filter(side, square) & ~ndimage.minimum_filter(side, square)
    changed = full.f_hat != full_unchecked.f_hat
    assert changed.any() and not (changed & ~band).any()
    assert ((full.f_final > 0.5) == disc).mean() >= ((full_unchecked.f_final > 0.5)
                                                      == disc).mean()
    graph = inference.measure_check(_grey(a), _grey(b),
                                    tf.constant(full_unchecked.f_hat[None, :, :, None]), None,
                                    windows=()).numpy()[0, :, :, 0]
    assert (graph == full.f_hat).mean() > 0.9995


@pytest.mark.parametrize("bad", [-1, 0.5, float("nan"), float("inf"), "3", True])
def test_bad_measure_ratio_is_refused_with_its_name(bad):
    a, b = _pair(40, 40)
    with pytest.raises(InputError, match="measure_ratio"):
        fusion.fuse_arrays([a, b], measure_ratio=bad)
    with pytest.raises(InputError, match="--measure_ratio"):
        fuse_lib.FuseOptions(measure_ratio=bad).validate()
    assert common.check_measure_ratio(0) == 0.0 and common.check_measure_ratio(3) == 3.0


def test_cli_refuses_a_bad_measure_ratio_with_its_name(tmp_path):
    from tests.test_fuse_cli import run_cli

    a, b = _pair(40, 40)
    for name, x in (("a.png", a), ("b.png", b)):
        Image.fromarray(x).save(tmp_path / name)
    done = run_cli("a.png", "b.png", "-o", "out.png", "--measure_ratio=-2", cwd=tmp_path)
    assert done.returncode != 0
    assert "--measure_ratio" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.png").exists()
