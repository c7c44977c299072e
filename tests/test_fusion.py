"""Fusion of pairs and stacks (eq. 14 on the original pixels, SRR, edge diffusion, stacks)."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from mfif_tf import fusion, inference, model_io, tiling
from mfif_tf.config import model_config
from mfif_tf.edge_morphology import diffuse
from mfif_tf.image_io import InputError
from mfif_tf.networks import Generator
from mfif_tf.srr import small_region_removal
from tests.conftest import decisive_generator


@pytest.fixture(scope="module")
def generator():
    """Random weights with a steep head, so F_hat has both sides of 0.5 in quantity."""
    return decisive_generator(11)


class SharpnessOracle(Generator):
    """A stand-in for a trained G with known behaviour: F_hat = 1 where I_A has more local
    Laplacian energy than I_B. It lets the stack test check which frame each pixel takes."""

    def build(self, input_shape):
        pass  # no weights

    def call(self, inputs, training=None):
        x = tf.convert_to_tensor(inputs, tf.float32)
        lap = tf.constant([[0, 1, 0], [1, -4, 1], [0, 1, 0]], tf.float32)[:, :, None, None]

        def energy(rgb):
            response = tf.nn.conv2d(tf.reduce_mean(rgb, -1, keepdims=True), lap, 1, "SAME")
            return tf.nn.avg_pool2d(tf.square(response), 9, 1, "SAME")

        a, b = energy(x[..., :3]), energy(x[..., 3:])
        return tf.sigmoid(50.0 * (a - b) / (a + b + 1e-6))


def pair(height=48, width=64, seed=0, dtype=np.uint8, grey=False):
    rng = np.random.default_rng(seed)
    shape = (height, width) if grey else (height, width, 3)
    top = np.iinfo(dtype).max if dtype != np.float32 else 1.0
    if dtype == np.float32:
        return rng.random(shape, np.float32), rng.random(shape, np.float32)
    return (rng.integers(0, top, shape, dtype=dtype, endpoint=True),
            rng.integers(0, top, shape, dtype=dtype, endpoint=True))


def check_eq14(result, a, b):
    f = result.f_final
    assert set(np.unique(f)) <= {0.0, 1.0}
    mask = f[:, :, None] > 0.5 if a.ndim == 3 else f > 0.5
    np.testing.assert_array_equal(result.fused, np.where(mask, a, b))


@pytest.mark.parametrize("dtype,grey", [(np.uint8, False), (np.uint16, False),
                                        (np.uint8, True), (np.float32, False)])
def test_pair_is_eq14_on_the_original_pixels(generator, dtype, grey):
    a, b = pair(37, 53, dtype=dtype, grey=grey)  # not a multiple of 4
    result = fusion.fuse_arrays([a, b], generator)
    assert result.fused.shape == a.shape and result.fused.dtype == a.dtype
    assert result.f_hat.shape == result.f_final.shape == (37, 53)
    # The default F_hat (mode refined): the paper's single full-resolution pass, its outline
    # redrawn by the packaged refinement head, then checked pixel by pixel near the outline.
    want = inference.measure_arrays(a, b, inference.refine_arrays(
        fusion.resolve_refiner(None), a, b, tiling.predict_focus_map(generator, a, b, 0)), None)
    np.testing.assert_allclose(result.f_hat, want, atol=1e-6)
    # The paper's mode: one full-resolution pass, or the mean over scales.
    single = fusion.fuse_arrays([a, b], generator, mode="paper")
    np.testing.assert_allclose(single.f_hat, tiling.predict_focus_map(generator, a, b, 0),
                               atol=1e-6)
    two = fusion.fuse_arrays([a, b], generator, mode="paper", scales=(1, 0.5))
    np.testing.assert_allclose(
        two.f_hat, tiling.predict_focus_map(generator, a, b, 0, scales=(1.0, 0.5)), atol=1e-6)
    expected = small_region_removal(result.f_hat).numpy()
    np.testing.assert_array_equal(result.f_final, expected)
    check_eq14(result, a, b)
    np.testing.assert_array_equal(result.index_map, result.f_final < 0.5)
    assert result.index_map.dtype == np.uint8


def test_srr_min_size_is_passed_on(generator):
    a, b = pair(seed=1)
    small = fusion.fuse_arrays([a, b], generator, min_size=1)
    big = fusion.fuse_arrays([a, b], generator, min_size=200)
    np.testing.assert_array_equal(small.f_final, (small.f_hat > 0.5).astype(np.float32))
    np.testing.assert_array_equal(big.f_final, small_region_removal(big.f_hat, 200).numpy())


def test_without_srr_eq14_blends_with_f_hat(generator):
    a, b = pair(seed=2)
    result = fusion.fuse_arrays([a, b], generator, srr=False)
    np.testing.assert_array_equal(result.f_final, result.f_hat)
    w = result.f_hat[:, :, None]
    expected = np.rint(b.astype(np.float32) + w * (a.astype(np.float32) - b)).astype(np.uint8)
    assert np.abs(result.fused.astype(int) - expected).max() <= 1


def test_edge_pixels_grow_and_shrink_the_foreground(generator):
    a, b = pair(64, 64, seed=3)
    base = fusion.fuse_arrays([a, b], generator)
    grown = fusion.fuse_arrays([a, b], generator, edge_pixels=2)
    shrunk = fusion.fuse_arrays([a, b], generator, edge_pixels=-2)
    np.testing.assert_array_equal(grown.f_final > 0.5, diffuse(base.f_final > 0.5, 2))
    np.testing.assert_array_equal(shrunk.f_final > 0.5, diffuse(base.f_final > 0.5, -2))
    assert shrunk.f_final.sum() < base.f_final.sum() < grown.f_final.sum()
    check_eq14(grown, a, b)
    soft = fusion.fuse_arrays([a, b], generator, srr=False, edge_pixels=1)
    np.testing.assert_array_equal(soft.f_final > 0.5, diffuse(soft.f_hat > 0.5, 1))


def test_tiled_fusion_agrees_with_whole_image(generator):
    a, b = pair(96, 128, seed=4)
    whole = fusion.fuse_arrays([a, b], generator, tile_size=0)
    tiled = fusion.fuse_arrays([a, b], generator, tile_size=32)
    assert np.mean(whole.f_final == tiled.f_final) >= 0.999


def test_flips_average_mirrored_maps_and_fuse_by_eq14(generator):
    a, b = pair(64, 96, seed=5)
    result = fusion.fuse_arrays([a, b], generator, flips=True, mode="paper", scales=(1, 0.5))
    want = tiling.predict_focus_map(generator, a, b, flips=True, scales=(1, 0.5))
    np.testing.assert_allclose(result.f_hat, want, atol=1e-6)
    check_eq14(result, a, b)
    # Coarse to fine: G's working-resolution map is the mean of the mirrored passes.
    refiner = fusion.resolve_refiner(None)
    result = fusion.fuse_arrays([a, b], generator, flips=True, refiner=refiner,
                                mode="coarse_to_fine")
    want = fusion.predict_f_hat(generator, refiner, a, b, flips=True, mode="coarse_to_fine")
    np.testing.assert_allclose(result.f_hat, want, atol=1e-6)
    assert np.abs(want - fusion.predict_f_hat(generator, refiner, a, b,
                                             mode="coarse_to_fine")).max() > 1e-3
    check_eq14(result, a, b)


@pytest.mark.parametrize("scales", ["1,0.3", (0.5, 0.5), (), (2,), "half"])
def test_bad_scales_name_the_problem(generator, scales):
    a, b = pair(seed=6)
    with pytest.raises(InputError, match="scale"):
        fusion.fuse_arrays([a, b], generator, scales=scales, mode="paper")


def test_timings(generator):
    a, b = pair(seed=5)
    t = fusion.fuse_arrays([a, b], generator).timings
    assert set(t) == set(fusion.TIMING_KEYS)
    assert all(v >= 0 for v in t.values())
    assert t["network"] > 0 and t["srr"] > 0 and t["fusion"] > 0
    assert t["network"] + t["srr"] + t["fusion"] <= t["total"]


def test_grey_and_colour_mix_to_colour(generator):
    a, b = pair(seed=6)
    result = fusion.fuse_arrays([a[:, :, 0], b], generator)
    assert result.fused.shape == b.shape
    check_eq14(result, np.dstack([a[:, :, 0]] * 3), b)


def focus_stack(n=3, height=60, width=90, seed=7, structured=False):
    """n frames of one scene, frame k sharp only in the k-th vertical band. A structured
    scene (discs on smooth noise, plus fine grain) has features at several scales, as
    photos do, so that frames can be registered."""
    rng = np.random.default_rng(seed)
    scene = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if structured:
        base = cv2.GaussianBlur(scene[:, :, 0].astype(np.float32), (0, 0), 3)
        base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
        for _ in range(30):
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(base, centre, int(rng.integers(3, 15)), float(rng.integers(0, 256)), -1)
        grain = rng.normal(0, 8, (height, width, 3))
        scene = np.clip(np.dstack([base, 0.6 * base + 50, 255 - base]) + grain, 0, 255)
        scene = scene.astype(np.uint8)
    blurred = cv2.GaussianBlur(scene, (0, 0), 2.0)
    band = width // n
    frames = []
    for k in range(n):
        frame = blurred.copy()
        frame[:, k * band:(k + 1) * band] = scene[:, k * band:(k + 1) * band]
        frames.append(frame)
    return scene, frames, band


def test_stack_takes_each_region_from_its_sharp_frame():
    oracle = SharpnessOracle(model_config("compact"))
    scene, frames, band = focus_stack()
    result = fusion.fuse_arrays(frames, oracle, tile_size=0)
    assert result.f_hat is None and result.f_final is None
    assert result.index_map.shape == scene.shape[:2] and result.index_map.dtype == np.uint8
    rows, cols = np.indices(scene.shape[:2])
    # Every pixel is the pixel of the frame the index map names.
    np.testing.assert_array_equal(result.fused, np.stack(frames)[result.index_map, rows, cols])
    # Away from the band borders, the sharp frame wins.
    inner = (cols % band >= 5) & (cols % band < band - 5)
    assert np.mean(result.index_map[inner] == (cols // band)[inner]) > 0.99
    assert np.mean(result.fused[inner] == scene[inner]) > 0.99


def test_stack_of_two_is_a_pair_and_results_do_not_depend_on_the_container(generator):
    a, b = pair(seed=8)
    listed = fusion.fuse_arrays([a, b], generator)
    streamed = fusion.fuse_stack(iter([a, b]), generator)
    np.testing.assert_array_equal(listed.fused, streamed.fused)
    np.testing.assert_array_equal(listed.f_final, streamed.f_final)


def test_aligned_pair_registers_the_second_frame(generator):
    scene, frames, _ = focus_stack(2, 120, 160, seed=9, structured=True)
    truth = np.array([[1.02, 0, 3.0], [0, 1.02, -2.0], [0, 0, 1]])  # reference -> frame 1
    shifted = cv2.warpAffine(frames[1], truth[:2], (160, 120), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
    result = fusion.fuse_arrays([frames[0], shifted], generator, align=True)
    assert result.fused.shape == frames[0].shape
    assert np.array_equal(result.transforms[0], np.eye(3))
    corners = np.array([[0, 0, 1], [159, 0, 1], [0, 119, 1], [159, 119, 1.0]]).T
    assert np.abs(result.transforms[1] @ corners - np.linalg.inv(truth) @ corners).max() < 0.5
    assert result.timings["align"] > 0
    # Where the warped frame has no pixels (a strip at the right and top), frame 0 is kept.
    assert np.all(result.f_final[:, -3:] == 1.0) and np.all(result.index_map[:, -3:] == 0)


def test_aligned_frames_may_differ_in_size(generator):
    _, frames, _ = focus_stack(2, 120, 160, seed=10, structured=True)
    result = fusion.fuse_arrays([frames[0], frames[1][4:-4, 6:-6]], generator, align=True)
    assert result.fused.shape == frames[0].shape
    np.testing.assert_allclose(result.transforms[1][:2, 2], [6, 4], atol=0.5)


@pytest.mark.parametrize("sources,message", [
    (lambda a, b: [a], "at least two sources"),
    (lambda a, b: [a, b[:40]], "use --align"),
    (lambda a, b: [a, b.astype(np.int32)], "unsupported dtype int32"),
    (lambda a, b: [a, b.astype(np.uint16)], "same bit depth"),
    (lambda a, b: [a / 100.0, b / 255.0], "must lie in [0, 1]"),
    (lambda a, b: [a[:1], b[:1]], "at least 2x2"),
    (lambda a, b: [np.dstack([a, a[:, :, :1]]), b], "expected an (H, W) grey"),
    (lambda a, b: [a.tolist(), b], "expected a NumPy array"),
])
def test_bad_sources_give_one_line_errors(generator, sources, message):
    a, b = pair(seed=12)
    with pytest.raises(InputError) as err:
        fusion.fuse_arrays(sources(a, b), generator, names=["a.png", "b.png"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_size_error_names_both_files(generator):
    a, b = pair(seed=13)
    with pytest.raises(InputError, match=r"b\.png: size 64x40 differs from a\.png's 64x48"):
        fusion.fuse_arrays([a, b[:40]], generator, names=["a.png", "b.png"])


def test_generator_from_a_model_directory_is_loaded_once(tmp_path, generator):
    model_io.save_generator(generator, str(tmp_path / "model"))
    first = fusion.resolve_generator(str(tmp_path / "model"))
    assert fusion.resolve_generator(tmp_path / "model") is first
    a, b = pair(seed=14)
    np.testing.assert_array_equal(
        fusion.fuse_arrays([a, b], str(tmp_path / "model"), precision="float32").f_hat,
        fusion.fuse_arrays([a, b], generator).f_hat)
    with pytest.raises(model_io.ModelNotFoundError, match="does not exist"):
        fusion.resolve_generator(str(tmp_path / "nothing"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / model_io.CONFIG_FILE).write_text("{}")
    (tmp_path / "broken" / model_io.WEIGHTS_FILE).write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="cannot load the model"):
        fusion.resolve_generator(str(tmp_path / "broken"))


def test_no_installed_model_is_said_plainly(tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "PACKAGED_MODEL_DIR", str(tmp_path))
    with pytest.raises(model_io.ModelNotFoundError, match="no trained model is installed"):
        fusion.resolve_generator(None)


@pytest.mark.parametrize("model", [None, "small"])
def test_the_shipped_model_loads_and_finds_the_sharp_half(model):
    """The packaged weights (the default G's, and the small G's by its name) load and pick
    the sharp side of a half-blurred pair."""
    assert model_io.packaged_model_available()
    rng = np.random.default_rng(3)
    sharp = rng.integers(0, 256, size=(96, 128, 3)).astype(np.uint8)
    from scipy.ndimage import gaussian_filter

    blurred = gaussian_filter(sharp.astype(np.float32), sigma=(3, 3, 0)).astype(np.uint8)
    a, b = sharp.copy(), blurred.copy()
    a[:, 64:], b[:, 64:] = blurred[:, 64:], sharp[:, 64:]
    result = fusion.fuse_arrays([a, b], model)
    assert result.f_final[:, 8:56].mean() > 0.9
    assert result.f_final[:, 72:120].mean() < 0.1


def test_packaged_models_by_name(tmp_path, monkeypatch):
    """`--model=small` and `--model=six_branch` name the packaged Gs (the small one a
    quarter of the default's channels); a folder of that name where the command runs is read
    as that folder. The small G has its own R at full size; below full size the default G
    and the default's R for that step run for it."""
    from mfif_tf import common

    small = common.PACKAGED_MODELS["small"]
    assert common.model_directory("small") == small
    assert common.model_directory("default") == "default"
    assert common.model_directory(None) is None
    config = model_io.load_generator("small").config
    assert (config.stem_channels, config.down_channels, config.num_blocks) == (16, (16, 32), 6)
    assert model_io.load_generator("six_branch").config.branches == "six"
    assert common.find_refiner_dir(None, "small", "refined") == small
    assert common.find_refiner_dir(None, small, None) == small
    assert common.find_refiner_dir(None, "small", "g_side") == \
        common.PACKAGED_REFINER_DIRS["g_side"]
    assert common.find_refiner_dir(None, "six_branch", "refined") == common.PACKAGED_MODEL_DIR
    # Below full size the default G runs (it stays sure of flat regions there).
    assert common.find_coarse_generator_dir("small") == common.PACKAGED_MODEL_DIR
    assert common.find_coarse_generator_dir("six_branch") is None
    monkeypatch.chdir(tmp_path)
    assert common.model_directory("small") == small
    (tmp_path / "small").mkdir()
    assert common.model_directory("small") == "small"
    with pytest.raises(model_io.ModelNotFoundError, match="holds neither"):
        model_io.load_generator("small")


def test_coarse_to_fine_uses_its_own_packaged_refiner(tmp_path):
    """coarse_to_fine loads the packaged R trained for one octave (pretrained/coarse_to_fine),
    refined the one trained at full resolution; a model directory's own R comes first for
    both; on a real-sized pair with one half blurred the coarse-to-fine map (two octaves above
    G's working resolution) follows the sharp half."""
    from scipy.ndimage import gaussian_filter

    from mfif_tf import common, refiner as refiner_lib

    octave = fusion.resolve_refiner(None, mode="coarse_to_fine")
    full = fusion.resolve_refiner(None, mode="refined")
    assert fusion.resolve_refiner(None) is full
    assert common.find_refiner_dir(None, None, "coarse_to_fine") == \
        common.PACKAGED_REFINER_DIRS["coarse_to_fine"]
    # Two different heads (the same architecture since the refined mode's R became six
    # layers): their weights differ.
    assert any(not np.array_equal(np.asarray(u), np.asarray(v))
               for u, v in zip(octave.weights, full.weights))
    own = tmp_path / "model"
    refiner_lib.save_refiner(refiner_lib.build_refiner(), str(own))
    assert common.find_refiner_dir(None, str(own), "coarse_to_fine") == str(own)

    rng = np.random.default_rng(11)
    small = rng.integers(0, 256, size=(96, 128, 3)).astype(np.float32)
    from PIL import Image

    photo = np.stack([np.asarray(Image.fromarray(small[..., c].astype(np.uint8)).resize(
        (1024, 768), Image.BICUBIC), np.float32) for c in range(3)], axis=-1)
    photo += rng.normal(0, 4, photo.shape)
    blurred = gaussian_filter(photo, sigma=(10, 10, 0))
    truth = np.zeros((768, 1024), bool)
    truth[:, :512] = True  # A is sharp on the left
    a = np.where(truth[..., None], photo, blurred).clip(0, 255).astype(np.uint8)
    b = np.where(truth[..., None], blurred, photo).clip(0, 255).astype(np.uint8)
    result = fusion.fuse_arrays([a, b], mode="coarse_to_fine", working_side=192,
                                precision="float32")
    assert np.mean((result.f_final > 0.5) == truth) > 0.97
    by_hand = fusion.predict_f_hat(fusion.resolve_generator(None), octave, a, b,
                                   mode="coarse_to_fine", working_side=192)
    np.testing.assert_allclose(result.f_hat, by_hand, atol=1e-6)
