"""Tests of mfif_tf.metrics: hand-checkable golden values, symmetry, identities, ranges."""

import math
import subprocess
import sys

import numpy as np
import pytest

from mfif_tf import metrics
from mfif_tf.metrics import _common, features, information, perceptual

Q = information.TSALLIS_Q
SIG5 = 1.0 / (1.0 + math.exp(-5.0))  # both sigmoids of Q_G at a perfect match


def _stripes(n=16, levels=(0, 255), axis=1, period=1):
    """n x n image cycling through ``levels`` every ``period`` pixels along ``axis``."""
    idx = (np.arange(n) // period) % len(levels)
    line = np.asarray(levels, dtype=np.uint8)[idx]
    return np.tile(line, (n, 1)) if axis == 1 else np.tile(line[:, None], (1, n))


def _bit_image(bit, n=16):
    """Pixel k (row-major) is 255 if bit ``bit`` of k is set: bits are independent."""
    k = np.arange(n * n).reshape(n, n)
    return (((k >> bit) & 1) * 255).astype(np.uint8)


def _natural(seed, shape=(40, 48, 3)):
    """Smooth random image with edges (uint8)."""
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    x = ndimage.gaussian_filter(rng.uniform(0, 255, shape), sigma=(2, 2, 0)[: len(shape)])
    x = (x - x.min()) / (x.max() - x.min()) * 255
    return np.round(x).astype(np.uint8)


def _blur(img, sigma):
    from scipy import ndimage

    s = (sigma, sigma, 0)[: img.ndim]
    return np.round(ndimage.gaussian_filter(img.astype(float), s)).astype(np.uint8)


# --------------------------------------------------------------------------- layouts


def test_side_by_side_is_matlab_column_major_view():
    x = np.arange(9 * 10 * 3).reshape(9, 10, 3)
    np.testing.assert_array_equal(metrics.side_by_side(x), x.reshape(9, 30, order="F"))


def test_rgb2gray_weights_and_rounding():
    red = np.zeros((8, 8, 3))
    red[..., 0] = 255
    assert metrics.rgb2gray(red, quantize=False)[0, 0] == pytest.approx(255 * 0.298936021293775)
    assert metrics.rgb2gray(red, quantize=True)[0, 0] == 76  # 76.2287 rounded
    white = np.full((8, 8, 3), 255.0)
    assert metrics.rgb2gray(white, quantize=False)[0, 0] == pytest.approx(255.0)


def test_matlab_round_halves_away_from_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5])
    np.testing.assert_array_equal(_common.matlab_round(x), [1, 2, 3, -1])


# --------------------------------------------------------------------------- golden values


def test_mi_two_level_image_copied_into_fused_is_one():
    # A = F takes 0/255 with probability 1/2 (1 bit), B is constant (0 bits):
    # MI = 2 * (1 / (1 + 1) + 0 / (0 + 1)) = 1.
    a = _stripes()
    b = np.zeros_like(a)
    assert metrics.mutual_information(a, b, a) == pytest.approx(1.0)


def test_mi_maximum_is_two():
    a = _stripes(levels=(0, 85, 170, 255))
    assert metrics.mutual_information(a, a, a) == pytest.approx(2.0)


def test_tsallis_golden_value_with_toolbox_marginals():
    # A = F (two equiprobable levels), B constant. With the toolbox's pairing of p(i, j)
    # with marginal_F(i) * marginal_A(j) (see information.py):
    #   I_q(A;F) = (1 - 2 * 0.5^q * 0.25^(1-q)) / (1 - q) = (1 - 0.5^(1-q)) / (1 - q)
    #   I_q(B;F) = I_q(A;B) = (1 - 0.5) / (1 - q)     (one of two terms is skipped)
    #   H(A) = 1 bit, H(B) = 0 bits.
    a = _stripes()
    b = np.zeros_like(a)
    i_af = (1 - 0.5 ** (1 - Q)) / (1 - Q)
    i_bf = i_ab = 0.5 / (1 - Q)
    expected = (i_af + i_bf) / (1.0 + 0.0 + i_ab)
    assert metrics.tsallis_entropy(a, b, a) == pytest.approx(expected, rel=1e-12)


def test_ncie_identical_uniform_images_is_one():
    # Every grey level once: H = 8 bits, so NCC(X, X) = H / log2(256) = 1, R is all ones,
    # its eigenvalues are (3, 0, 0) and NCIE = 1 + (3/3) log_256(3/3) = 1.
    a = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert metrics.ncie(a, a, a) == pytest.approx(1.0)


def test_ncie_independent_images():
    # Bits 0, 1, 2 of the pixel index are independent, so every NCC is 0, R = I and
    # NCIE = 1 + 3 * (1/3) * log_256(1/3) = 1 - log2(3) / 8.
    a, b, f = _bit_image(0), _bit_image(1), _bit_image(2)
    assert metrics.ncie(a, b, f) == pytest.approx(1.0 - math.log2(3.0) / 8.0, abs=1e-12)


def test_q_g_perfect_match_is_sigmoid_product():
    a = _natural(1, (20, 20))
    assert metrics.q_g(a, a, a) == pytest.approx(SIG5 * SIG5, rel=1e-12)


def test_q_m_perfect_match_is_three():
    a = _natural(2, (32, 32))
    assert metrics.q_m(a, a, a) == pytest.approx(3.0)


def test_sf_halved_detail_gives_minus_half():
    # B is constant, so the reference gradients are A's; F = A / 2 halves every
    # difference, so SF_F = SF_A / 2 and rSFe = -1/2.
    a = _natural(3, (24, 24)).astype(np.float64)
    b = np.full_like(a, 7.0)
    assert metrics.spatial_frequency(a, b, a / 2) == pytest.approx(-0.5)
    assert metrics.spatial_frequency(a, b, a) == pytest.approx(0.0)
    assert metrics.spatial_frequency(a, b, b) == pytest.approx(-1.0)


def test_sf_paper_layout_keeps_colour_wraparound():
    # Horizontal stripes per plane, constant along rows: only circshift's wrap-around
    # column between a plane's last and first column can differ (toolbox metricZheng).
    h, w = 8, 8
    f = np.zeros((h, w, 3))
    f[:, 0, :2] = 10.0  # first column of R and G differs from their last column
    layout = metrics.side_by_side(f)
    rows = features._row_differences(layout, pages=3)
    # R and G wrap to their own first column (|0 - 10| at column w-1); B's wrap is dropped.
    assert rows.shape == (h, 3 * w - 1)
    assert np.count_nonzero(rows) == 2 * h + 2 * h  # col 0 -> col 1 step, and the wrap


def test_q_y_and_q_cb_perfect_match_are_one():
    a = _natural(4, (40, 40))
    assert metrics.q_y(a, a, a) == pytest.approx(1.0)
    assert metrics.q_cb(a, a, a) == pytest.approx(1.0)


def test_q_y_flat_windows_are_exact():
    # Constant images: every local variance is exactly 0, so SSIM is 1, not rounding noise.
    a = np.full((20, 20), 200.0)
    assert perceptual.q_y_core(a, a, a) == 1.0


def test_lif_golden():
    # Half the pixels at 255 (p = 0), half at 170: p = sin(pi/2 * (1 - 170/255)) = 1/2,
    # so LIF = 2 * mean(min(p, 1 - p)) = 2 * (0.5 * 0.5) = 0.5.
    img = _stripes(levels=(255, 170))
    assert metrics.lif(img) == pytest.approx(0.5)
    assert metrics.lif(_stripes(levels=(0, 255))) == pytest.approx(0.0)


def test_ag_ramps_and_uint8_arithmetic():
    up = np.tile(np.arange(0, 32, 2, dtype=np.uint8), (16, 1))  # +2 per column
    down = up[:, ::-1].copy()
    # Floating point: g_x = 2, g_y = 0, AG = sqrt(4 / 2).
    assert metrics.average_gradient(up, "luminance") == pytest.approx(math.sqrt(2))
    assert metrics.average_gradient(down, "luminance") == pytest.approx(math.sqrt(2))
    # "paper" (MATLAB uint8): decreasing steps saturate to 0.
    assert metrics.average_gradient(up, "paper") == pytest.approx(math.sqrt(2))
    assert metrics.average_gradient(down, "paper") == pytest.approx(0.0)
    # Squares saturate at 255: a step of 16 counts as sqrt(255 / 2), not 16 / sqrt(2).
    steep = np.tile(np.arange(0, 256, 16).astype(np.uint8), (16, 1))
    assert metrics.average_gradient(steep, "paper") == pytest.approx(math.sqrt(255 / 2))
    assert metrics.average_gradient(steep, "luminance") == pytest.approx(16 / math.sqrt(2))


def test_msd_and_gld_golden():
    img = _stripes(levels=(0, 10))  # columns 0, 10, 0, 10, ...
    assert metrics.gld(img) == pytest.approx(10.0)  # |dx| = 10, |dy| = 0
    half = _stripes(levels=(0, 255))
    assert metrics.msd(half) == pytest.approx(0.25)  # variance of {0, 1}


def test_psnr_and_ssim():
    gt = _natural(5, (24, 24, 3))
    assert metrics.psnr(gt, gt) == math.inf
    off = gt.astype(float) + 1.0
    assert metrics.psnr(gt.astype(float), off) == pytest.approx(10 * math.log10(255.0**2))
    assert metrics.ssim(gt, gt) == pytest.approx(1.0)
    assert metrics.ssim(gt, _blur(gt, 2.0)) < 0.99


# --------------------------------------------------------------------------- properties

SYMMETRIC = ("MI", "TE", "NCIE", "Q_G", "Q_M", "SF", "Q_Y", "Q_CB")


@pytest.fixture(scope="module")
def scene():
    """A colour scene, its two partly blurred sources and an imperfect fusion."""
    sharp = _natural(6, (48, 56, 3))
    blurred = _blur(sharp, 2.0)
    mask = np.zeros(sharp.shape[:2], bool)
    mask[:, :28] = True
    a = np.where(mask[..., None], sharp, blurred)
    b = np.where(mask[..., None], blurred, sharp)
    fused = np.where(np.roll(mask, 3, axis=1)[..., None], a, b)
    return a, b, fused, sharp


@pytest.mark.parametrize("convention", metrics.CONVENTIONS)
def test_symmetric_under_swapping_sources(scene, convention):
    a, b, f, _ = scene
    ab = metrics.compute_all(a, b, f, convention, metrics=SYMMETRIC)
    ba = metrics.compute_all(b, a, f, convention, metrics=SYMMETRIC)
    for name in SYMMETRIC:
        assert ab[name] == pytest.approx(ba[name], rel=1e-12, abs=1e-12), name


@pytest.mark.parametrize("convention", metrics.CONVENTIONS)
def test_ranges_and_fusion_beats_copying_a_source(scene, convention):
    a, b, f, sharp = scene
    fused_scores = metrics.compute_all(a, b, f, convention, ground_truth=sharp)
    copy_scores = metrics.compute_all(a, b, a, convention, ground_truth=sharp)
    for s in (fused_scores, copy_scores):
        assert 0 <= s["MI"] <= 2 and 0 <= s["NCIE"] <= 1 and 0 <= s["Q_G"] <= 1
        assert 0 <= s["Q_M"] <= 3 and 0 <= s["Q_CB"] <= 1 and 0 <= s["LIF"] <= 1
        assert s["Q_Y"] <= 1 + 1e-9 and s["SF"] <= 0.05 and s["AG"] > 0
        assert list(s)[:12] == list(metrics.METRIC_NAMES)
        assert set(s) == set(metrics.METRIC_NAMES) | {"PSNR", "SSIM"}
    # The fusion keeps B's sharp half, the copy of A loses it.
    for name in ("Q_G", "Q_M", "SF", "Q_CB", "PSNR", "SSIM"):
        assert fused_scores[name] > copy_scores[name], name


def test_conventions_agree_on_grey_input(scene):
    a, b, f, _ = (x[..., 1] for x in scene)
    paper = metrics.compute_all(a, b, f, "paper")
    lum = metrics.compute_all(a, b, f, "luminance")
    for name in metrics.METRIC_NAMES:
        if name != "AG":  # AG's uint8 arithmetic belongs to the paper convention
            assert paper[name] == pytest.approx(lum[name]), name


def test_paper_convention_reads_colour_side_by_side(scene):
    a, b, f, _ = scene
    side = [metrics.side_by_side(x) for x in (a, b, f)]
    assert metrics.mutual_information(a, b, f) == pytest.approx(information.mi_core(*side))
    assert metrics.mutual_information(a, b, f, "luminance") != pytest.approx(
        information.mi_core(*side)
    )


def test_float_and_uint8_inputs_agree(scene):
    a, b, f, _ = scene
    u = metrics.compute_all(a, b, f)
    d = metrics.compute_all(*(x.astype(np.float64) for x in (a, b, f)))
    for name in metrics.METRIC_NAMES:
        assert u[name] == pytest.approx(d[name]), name


# --------------------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors():
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(metrics.MetricInputError, match="shape mismatch"):
        metrics.compute_all(a, a, a[:, :15])
    with pytest.raises(metrics.MetricInputError, match="H x W or H x W x 3"):
        metrics.compute_all(a[..., :2], a[..., :2], a[..., :2])
    with pytest.raises(metrics.MetricInputError, match="too small"):
        metrics.q_g(a[:4, :4], a[:4, :4], a[:4, :4])
    with pytest.raises(metrics.MetricInputError, match="convention"):
        metrics.compute_all(a, a, a, convention="rgb")
    with pytest.raises(metrics.MetricInputError, match="unknown metric"):
        metrics.compute_all(a, a, a, metrics=("QABF",))
    with pytest.raises(metrics.MetricInputError, match="NaN"):
        metrics.lif(np.full((16, 16), np.nan))
    with pytest.raises(metrics.MetricInputError, match="dtype"):
        metrics.lif(np.zeros((16, 16), bool))


def test_metrics_do_not_import_tensorflow():
    code = (
        "import sys, mfif_tf.metrics, mfif_tf.metrics.report, mfif_tf.edge_morphology, "
        "mfif_tf.evaluate_lib; "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- registry

# The named functions of the public API, by metric name: each must agree with the registry.
FUSION_FUNCTIONS = {
    "MI": metrics.mutual_information, "TE": metrics.tsallis_entropy, "NCIE": metrics.ncie,
    "Q_G": metrics.q_g, "Q_M": metrics.q_m, "SF": metrics.spatial_frequency,
    "Q_Y": metrics.q_y, "Q_CB": metrics.q_cb,
}
FUSED_FUNCTIONS = {"LIF": metrics.lif, "AG": metrics.average_gradient, "MSD": metrics.msd,
                   "GLD": metrics.gld}
REFERENCE_FUNCTIONS = {"PSNR": metrics.psnr, "SSIM": metrics.ssim}
MAP_FUNCTIONS = {"BF1": metrics.boundary_f1, "BF3": metrics.boundary_f3,
                 "MAP_ACC": metrics.map_acc}


def test_names_and_best_rules_come_from_the_one_table():
    assert metrics.METRIC_NAMES == ("MI", "TE", "NCIE", "Q_G", "Q_M", "SF", "Q_Y", "Q_CB",
                                    "LIF", "AG", "MSD", "GLD")  # Table 1 order
    assert metrics.REFERENCE_METRIC_NAMES == ("PSNR", "SSIM")
    assert metrics.FOCUS_MAP_METRIC_NAMES == ("BF1", "BF3", "MAP_ACC")
    assert metrics.ALL_METRIC_NAMES == tuple(m.name for m in metrics.METRICS)
    assert list(metrics.REGISTRY) == list(metrics.ALL_METRIC_NAMES)
    assert {n: r for n, r in metrics.BEST_RULE.items() if r != "max"} == {"LIF": "min",
                                                                          "SF": "zero"}
    assert metrics.HIGHER_IS_BETTER == {n: n != "LIF" for n in metrics.ALL_METRIC_NAMES}
    assert type(metrics.BEST_RULE) is dict  # written to results.json as is
    named = {**FUSION_FUNCTIONS, **FUSED_FUNCTIONS, **REFERENCE_FUNCTIONS, **MAP_FUNCTIONS}
    assert set(named) == set(metrics.ALL_METRIC_NAMES)


@pytest.mark.parametrize("convention", metrics.CONVENTIONS)
def test_registry_agrees_with_the_named_functions(scene, convention):
    a, b, f, sharp = scene
    every = metrics.compute_all(a, b, f, convention, ground_truth=sharp)
    for name, fn in FUSION_FUNCTIONS.items():
        assert metrics.compute(name, a, b, f, convention=convention) == every[name], name
        assert fn(a, b, f, convention) == pytest.approx(every[name], rel=1e-12), name
    for name, fn in FUSED_FUNCTIONS.items():
        assert metrics.compute(name, fused=f, convention=convention) == every[name], name
        assert fn(f, convention) == pytest.approx(every[name], rel=1e-12), name
    for name, fn in REFERENCE_FUNCTIONS.items():
        got = metrics.compute(name, fused=f, ground_truth=sharp, convention=convention)
        assert got == every[name] == fn(sharp, f, convention), name
    true_map = np.zeros(f.shape[:2], np.uint8)
    true_map[:, :28] = 255
    predicted = np.roll(true_map, 2, axis=1)
    maps = metrics.focus_map_metrics(predicted, true_map)
    assert list(maps) == list(metrics.FOCUS_MAP_METRIC_NAMES)
    for name, fn in MAP_FUNCTIONS.items():
        assert metrics.compute(name, focus_map=predicted, true_map=true_map) == maps[name]
        assert fn(predicted, true_map) == maps[name], name


def test_a_new_entry_is_computed_and_checked(scene, monkeypatch):
    a, b, f, _ = scene
    extra = metrics.Metric("MEAN_F", "fused", "max", lambda x: float(np.mean(x.fused)))
    monkeypatch.setattr(metrics.registry, "METRICS", metrics.METRICS + (extra,))
    scores = metrics.compute_all(a, b, f)
    assert list(scores)[-1] == "MEAN_F" and scores["MEAN_F"] == pytest.approx(f.mean())
    assert list(metrics.compute_all(a, b, f, metrics=("MEAN_F", "MI"))) == ["MI", "MEAN_F"]


def test_registry_errors():
    a = np.zeros((16, 16), np.uint8)
    with pytest.raises(metrics.MetricInputError, match="unknown metric 'QABF'"):
        metrics.compute("QABF", a, a, a)
    with pytest.raises(metrics.MetricInputError, match="needs image_a, image_b"):
        metrics.compute("MI", fused=a)
    with pytest.raises(metrics.MetricInputError, match="needs ground_truth"):
        metrics.compute("PSNR", a, a, a)
    with pytest.raises(metrics.MetricInputError, match="needs focus_map, true_map"):
        metrics.compute("BF1", a, a, a)
    with pytest.raises(metrics.MetricInputError, match="unknown focus map metric"):
        metrics.focus_map_metrics(a, a, ("MI",))
    with pytest.raises(metrics.MetricInputError, match=r"unknown metric\(s\) \['BF1'\]"):
        metrics.compute_all(a, a, a, metrics=("BF1",))  # focus-map metrics need maps
    with pytest.raises(ValueError, match="unknown view"):
        metrics.Metric("X", "colour", "max", lambda x: 0.0)
    with pytest.raises(ValueError, match="unknown best rule"):
        metrics.Metric("X", "fused", "largest", lambda x: 0.0)
    with pytest.raises(ValueError, match="registered twice"):
        metrics.registry._index(metrics.METRICS + (metrics.METRICS[0],))
