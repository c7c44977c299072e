"""The ground-truth validation set generator (data_pipeline.ground_truth) on tiny made data."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from data_pipeline import ground_truth as gt_lib

IDS = ("p1", "p2", "p3", "p4", "p5")
SIZE_MP = 0.01  # about 122 x 82 pixels from the 60 x 40 photos
SIGMA = (2.0, 3.0)


def _photo(seed, h=40, w=60):
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.uniform(0, 255, (h, w, 3)), (2, 2, 0))
    smooth = (smooth - smooth.min()) / np.ptp(smooth) * 200 + 20
    return np.clip(smooth + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def mask_folder(tmp_path_factory):
    """images/ + masks/ + train.txt/val.txt; the val split holds all but p1."""
    root = tmp_path_factory.mktemp("masks")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i, k in enumerate(IDS):
        Image.fromarray(_photo(i)).save(root / "images" / f"{k}.png")
        mask = np.zeros((40, 60), np.uint8)
        mask[8 + i:30, 12:40 + i] = 255
        Image.fromarray(mask).save(root / "masks" / f"{k}.png")
    (root / "train.txt").write_text("p1\n")
    (root / "val.txt").write_text("\n".join(IDS[1:]) + "\n")
    return root


def _config(data_dir, out, **kw):
    args = dict(data_dir=str(data_dir), output_dir=str(out), sizes=(SIZE_MP,), pairs=(4,),
                sigma_ranges=(SIGMA,), progress=False)
    args.update(kw)
    return gt_lib.GroundTruthConfig(**args)


@pytest.fixture(scope="module")
def built(mask_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("valset")
    summary = gt_lib.build(_config(mask_folder, out))
    return out, summary


def _read(path):
    with Image.open(path) as im:
        return np.asarray(im)


def _sets(out):
    return {m: out / gt_lib.set_name(m, SIZE_MP) for m in ("alpha_matte", "conventional")}


def test_layout_shapes_and_manifest(built, mask_folder):
    out, summary = built
    assert summary["written"] == 8 and summary["skipped"] == 0
    assert (out / "README.md").read_text().startswith("# Multi-focus validation pairs")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["folder"] for s in manifest["sets"]] == ["alpha_matte_0.01mp", "conventional_0.01mp"]
    assert len(manifest["pairs"]) == 8
    ids = {p["image_id"] for p in manifest["pairs"]}
    assert ids <= set(IDS[1:])  # the val split only
    for name, folder in _sets(out).items():
        stems = [sorted(p.stem for p in (folder / sub).iterdir()) for sub in gt_lib.SUBFOLDERS]
        assert all(s == stems[0] for s in stems) and len(stems[0]) == 4, name
        assert not list(folder.rglob(".*"))  # no temporary files left
        for stem in stems[0]:
            a, b, gt, fmap = (_read(folder / sub / f"{stem}.png") for sub in gt_lib.SUBFOLDERS)
            assert a.shape == b.shape == gt.shape and a.dtype == np.uint8
            assert fmap.shape == gt.shape[:2] and set(np.unique(fmap)) == {0, 255}
            assert 0.008e6 < gt.shape[0] * gt.shape[1] < 0.012e6 and gt.shape[1] > gt.shape[0]
            assert not np.array_equal(a, gt) and not np.array_equal(b, gt)
    entry = manifest["pairs"][0]
    assert SIGMA[0] <= entry["sigma"] <= SIGMA[1]
    assert entry["grain"]["std"] == pytest.approx(2 / 255)
    assert set(entry) >= {"image_id", "size", "sigma", "model", "swapped", "grain"}


def test_pair_i_is_shared_by_the_models_and_half_are_swapped(built):
    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    by_set = {}
    for p in manifest["pairs"]:
        by_set.setdefault(p["set"], []).append(p)
    am, conv = by_set["alpha_matte_0.01mp"], by_set["conventional_0.01mp"]
    for x, y in zip(am, conv):
        assert (x["stem"], x["sigma"], x["swapped"], x["grain"]) == (
            y["stem"], y["sigma"], y["swapped"], y["grain"])
        sets = _sets(out)
        for sub in ("GT", "MAP"):
            assert np.array_equal(_read(sets["alpha_matte"] / sub / f"{x['stem']}.png"),
                                  _read(sets["conventional"] / sub / f"{x['stem']}.png"))
    assert sum(p["swapped"] for p in am) == 2


def _inside(fmap, value, margin):
    """Pixels of the region `value` farther than `margin` from the other region."""
    region = fmap == value
    return ndimage.distance_transform_edt(region) > margin


def test_a_is_sharp_where_map_is_white(built):
    """Eqs. 12-13: I_A = F*I + (1-F)*G(x)I, so A is I where MAP = 255 (A in focus) and B is I
    where MAP = 0, swapped or not; eqs. 10-11 give the same farther than the kernel reaches."""
    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["pairs"]:
        folder = out / entry["set"]
        a, b, gt, fmap = (_read(folder / sub / f"{entry['stem']}.png")
                          for sub in gt_lib.SUBFOLDERS)
        margin = 1 if entry["model"] == "conventional" else int(np.ceil(2 * entry["sigma"])) + 1
        white, black = _inside(fmap, 255, margin), _inside(fmap, 0, margin)
        assert white.sum() > 50 and black.sum() > 50
        np.testing.assert_array_equal(a[white], gt[white])
        np.testing.assert_array_equal(b[black], gt[black])
        # The other source is blurred there: far from I, with less pixel-scale detail.
        assert np.abs(b[white].astype(int) - gt[white]).mean() > 2
        assert np.abs(a[black].astype(int) - gt[black]).mean() > 2
        if entry["model"] == "conventional":
            whole = fmap == 255
            np.testing.assert_array_equal(a[whole], gt[whole])  # eq. 12 up to the outline


def test_resume_skips_complete_pairs_and_recreates_deleted_files(mask_folder, tmp_path):
    config = _config(mask_folder, tmp_path / "out", models=("conventional",), pairs=(2,))
    first = gt_lib.build(config)
    assert first["written"] == 2
    folder = tmp_path / "out" / "conventional_0.01mp"
    files = sorted(folder.rglob("*.png"))
    before = {p: p.read_bytes() for p in files}
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    again = gt_lib.build(config)
    assert again["written"] == 0 and again["skipped"] == 2
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    victim = files[0]
    victim.unlink()
    (victim.parent / f".{victim.name}.tmp").write_bytes(b"truncated")  # an interrupted write
    third = gt_lib.build(config)
    assert third["written"] == 1 and third["skipped"] == 1
    assert victim.read_bytes() == before[victim]  # the same pixels again
    assert not list(folder.rglob(".*.tmp"))


def test_other_settings_are_refused_unless_overwrite(mask_folder, tmp_path):
    out = tmp_path / "out"
    gt_lib.build(_config(mask_folder, out, models=("conventional",), pairs=(1,)))
    with pytest.raises(gt_lib.GroundTruthError, match="other settings"):
        gt_lib.build(_config(mask_folder, out, models=("conventional",), pairs=(1,), seed=1))
    summary = gt_lib.build(_config(mask_folder, out, models=("alpha_matte",), pairs=(1,),
                                   overwrite=True))
    assert summary["written"] == 1
    assert not (out / "conventional_0.01mp").exists()
    assert (out / "alpha_matte_0.01mp" / "MAP").is_dir()


@pytest.mark.parametrize("kw, message", [
    (dict(pairs=(4, 2)), "--pairs gives 2 count"),
    (dict(sizes=(0.0,)), "outside"),
    (dict(sizes=(0.02,), sigma_ranges=None), "no default sigma range for 0.02"),
    (dict(sigma_ranges=((3.0, 1.0),)), "0 < lo <= hi"),
    (dict(models=("blur",)), "unknown model 'blur'"),
    (dict(mask_smoothing=-1.0), "--mask_smoothing must be >= 0"),
    (dict(sensor_noise=float("nan")), "--sensor_noise must be >= 0"),
    (dict(pairs=(5,)), "has 4 usable image"),
    (dict(split="test"), "split file not found"),
])
def test_bad_settings_raise(mask_folder, tmp_path, kw, message):
    with pytest.raises(gt_lib.GroundTruthError, match=message):
        gt_lib.build(_config(mask_folder, tmp_path / "o", **kw))
    assert not (tmp_path / "o").exists()


def test_sensor_noise_is_added_to_both_sources_independently_not_to_gt(built, mask_folder,
                                                                      tmp_path):
    """--sensor_noise=4: I, MAP and the manifest's pairs stay those of the noise-free build;
    A and B each differ from their noise-free versions by zero-mean noise of std 4 (on the
    0..255 scale, clipped and rounded), uncorrelated between A and B; the manifest and README
    record it. A build without it has no sensor-noise entries (older manifests still match)."""
    clean, _ = built
    out = tmp_path / "noisy"
    gt_lib.build(_config(mask_folder, out, sensor_noise=4.0))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["sensor_noise_std_8bit"] == 4.0
    assert manifest["pairs"][0]["sensor_noise"]["std"] == pytest.approx(4 / 255)
    assert "--sensor_noise=4" in (out / "README.md").read_text()
    clean_manifest = json.loads((clean / "manifest.json").read_text())
    assert "sensor_noise_std_8bit" not in clean_manifest["settings"]
    assert all("sensor_noise" not in p for p in clean_manifest["pairs"])
    diffs = {"A": [], "B": []}
    for name, folder in _sets(out).items():
        for path in sorted((folder / "GT").iterdir()):
            for sub in ("GT", "MAP"):
                assert np.array_equal(_read(folder / sub / path.name),
                                      _read(_sets(clean)[name] / sub / path.name))
            gt = _read(path).astype(float)
            noisy = {k: _read(folder / k / path.name).astype(float) for k in ("A", "B")}
            plain = {k: _read(_sets(clean)[name] / k / path.name).astype(float)
                     for k in ("A", "B")}
            inside = np.ones(gt.shape, bool)  # away from the clipping in both sources
            for k in ("A", "B"):
                inside &= (plain[k] > 20) & (plain[k] < 235)
                assert not np.array_equal(noisy[k], gt)
            for k in ("A", "B"):
                diffs[k].append((noisy[k] - plain[k])[inside])
    a, b = np.concatenate(diffs["A"]), np.concatenate(diffs["B"])
    for d in (a, b):
        assert abs(d.mean()) < 0.1 and 3.8 < d.std() < 4.3
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05  # same pixels, independent draws


def test_mask_resize_and_smoothing():
    """A mask edge of slope 1/3 (one-pixel steps) upscaled 10x: bilinear keeps the steps
    (about 3.5 px off the line), a 1-source-pixel smoothing rounds them off."""
    yy, xx = np.mgrid[0:30, 0:60]
    mask = (3 * (yy - 5) >= xx).astype(np.uint8)
    photo = np.full((30, 60, 3), 128, np.uint8)
    deviation = {}
    for smoothing in (0.0, 1.0):
        image, focus = gt_lib.make_ground_truth(photo, mask, (600, 300), None, smoothing)
        assert image.shape == (300, 600, 3) and (image == 128).all()
        assert set(np.unique(focus)) == {0, 1} and focus.mean() == pytest.approx(mask.mean(), 1e-3)
        rows = focus.argmax(axis=0)[50:550].astype(float)  # the edge's row in each column
        fit = np.polyval(np.polyfit(np.arange(500), rows, 1), np.arange(500))
        deviation[smoothing] = np.abs(rows - fit).max()
    assert deviation[0.0] > 3 and deviation[1.0] < 1


def test_target_size_keeps_the_aspect_ratio():
    assert gt_lib.target_size(400, 267, 12) == (4240, 2830)  # 12.0 MP
    w, h = gt_lib.target_size(400, 300, 0.3)
    assert (w, h) == (632, 474)


# --------------------------------------------------------------------------- entry point


def _run(*args):
    cmd = [sys.executable, "-m", "data_pipeline.ground_truth", "--noprogress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_cli_builds_a_set(mask_folder, tmp_path):
    out = _run(f"--data_dir={mask_folder}", f"--output_dir={tmp_path / 'cli'}", "--sizes=0.01",
               "--pairs=1", "--models=alpha_matte", "--sigma_ranges=1:2")
    assert out.returncode == 0, out.stderr
    assert "wrote 1 pair(s)" in out.stdout
    assert len(list((tmp_path / "cli" / "alpha_matte_0.01mp" / "A").iterdir())) == 1


@pytest.mark.parametrize("args, message", [
    (["--sizes=abc"], "--sizes: expected a comma-separated list of numbers"),
    (["--sizes=-1"], "outside"),
    (["--sigma_ranges=1-2"], "--sigma_ranges: expected lo:hi"),
    (["--bogus=1"], "bogus"),
    (["--split=test"], "split file not found"),
    (["--data_dir=/nonexistent/dir"], "--data_dir not found: /nonexistent/dir"),
])
def test_cli_bad_flags_give_one_line_and_exit_2(mask_folder, tmp_path, args, message):
    base = [f"--data_dir={mask_folder}", f"--output_dir={tmp_path / 'o'}", "--sizes=0.01",
            "--pairs=1", "--sigma_ranges=1:2"]
    out = _run(*base, *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr


def test_cli_refuses_other_settings_in_one_line(mask_folder, tmp_path):
    out_dir = tmp_path / "o"
    gt_lib.build(_config(mask_folder, out_dir, models=("conventional",), pairs=(1,)))
    out = _run(f"--data_dir={mask_folder}", f"--output_dir={out_dir}", "--sizes=0.01",
               "--pairs=1", "--sigma_ranges=2:3", "--models=conventional", "--seed=5")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "pass --overwrite" in out.stderr


def test_stacks_sweep_the_focus_from_a_to_the_last_frame(mask_folder, built, tmp_path):
    """--frames=4: A/..D/ in focus order; A and D are the pair set's A and B (same seed, noise
    streams of A and B kept), the frames between are sharp nowhere and move from A to D."""
    out_pairs, _ = built
    out = tmp_path / "stacks"
    summary = gt_lib.build(_config(mask_folder, out, frames=4))
    assert summary["written"] == 8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["frames"] == 4 and all(p["frames"] == 4 for p in manifest["pairs"])
    assert "--frames=4" in (out / "README.md").read_text()
    for entry in manifest["pairs"]:
        folder, pairs = out / entry["set"], out_pairs / entry["set"]
        name = f"{entry['stem']}.png"
        frames = [_read(folder / c / name).astype(int) for c in "ABCD"]
        gt, fmap = _read(folder / "GT" / name).astype(int), _read(folder / "MAP" / name)
        np.testing.assert_array_equal(frames[0], _read(pairs / "A" / name))
        np.testing.assert_array_equal(frames[3], _read(pairs / "B" / name))
        np.testing.assert_array_equal(fmap, _read(pairs / "MAP" / name))
        margin = int(np.ceil(2 * entry["sigma"])) + 1
        white, black = _inside(fmap, 255, margin), _inside(fmap, 0, margin)
        err_white = [np.abs(f[white] - gt[white]).mean() for f in frames]
        err_black = [np.abs(f[black] - gt[black]).mean() for f in frames]
        assert err_white[0] == 0 and err_black[3] == 0
        assert err_white[1] > 0.5 and err_black[2] > 0.5  # the middle frames are sharp nowhere
        assert err_white[1] < err_white[2] < err_white[3]  # A's layer blurs along the sweep
        assert err_black[0] > err_black[1] > err_black[2]  # D's layer sharpens


def test_stack_frames_and_noise_streams(mask_folder, tmp_path):
    config = _config(mask_folder, tmp_path / "out", models=("conventional",), pairs=(1,),
                     frames=3, sensor_noise=1.0)
    gt_lib.build(config)
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["pairs"][0]
    assert [s[-1] for s in entry["sensor_noise"]["seeds"]] == [3, 5, 4]
    assert sorted(p.name for p in (tmp_path / "out" / "conventional_0.01mp").iterdir()) == [
        "A", "B", "C", "GT", "MAP"]
    with pytest.raises(gt_lib.GroundTruthError, match="--frames must be in"):
        _config(mask_folder, tmp_path / "x", frames=1).validate()
    with pytest.raises(gt_lib.GroundTruthError, match="no stack form"):
        _config(mask_folder, tmp_path / "x", frames=3,
                models=("alpha_matte_filled",)).validate()


def test_pairs_focused_between_the_layers(mask_folder, built, tmp_path):
    """--pair_focus=0.5: A, GT and MAP are the pair set's, B is the frame focused half-way
    (each layer blurred by sigma / 2; `synthesize_focused`), recorded in the manifest and
    the README; the default writes the paper's B and no new key."""
    out_pairs, _ = built
    out = tmp_path / "mid"
    gt_lib.build(_config(mask_folder, out, pair_focus=0.5))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["pair_focus"] == 0.5
    assert all(p["pair_focus"] == 0.5 for p in manifest["pairs"])
    assert "--pair_focus=0.5" in (out / "README.md").read_text()
    pairs_manifest = json.loads((out_pairs / "manifest.json").read_text())
    assert "pair_focus" not in pairs_manifest["settings"]
    assert all("pair_focus" not in p for p in pairs_manifest["pairs"])
    assert any(p["swapped"] for p in manifest["pairs"])
    for entry in manifest["pairs"]:
        folder, pairs = out / entry["set"], out_pairs / entry["set"]
        name = f"{entry['stem']}.png"
        # The foreground's source is A, or B in a swapped pair, as in the pair set.
        sharp, mid = ("B", "A") if entry["swapped"] else ("A", "B")
        for sub in (sharp, "GT", "MAP"):
            np.testing.assert_array_equal(_read(folder / sub / name), _read(pairs / sub / name))
        b, b_pair = _read(folder / mid / name).astype(int), _read(pairs / mid / name).astype(int)
        gt, fmap = _read(folder / "GT" / name).astype(int), _read(folder / "MAP" / name)
        margin = int(np.ceil(2 * entry["sigma"])) + 1
        b_side = _inside(fmap, 0 if not entry["swapped"] else 255, margin)
        a_side = _inside(fmap, 255 if not entry["swapped"] else 0, margin)
        # B's layer is no longer sharp, A's layer is blurred less than in the paper's B.
        assert np.abs(b[b_side] - gt[b_side]).mean() > 0.5
        assert np.abs(b[a_side] - gt[a_side]).mean() < np.abs(b_pair[a_side] - gt[a_side]).mean()


def test_pair_focus_frames_follow_the_layer_model():
    """B at focus t blurs the foreground with t * sigma and the background with (1 - t) *
    sigma: eqs. 12-13 per layer for the conventional model; t = 1 is the paper's I_B."""
    rng = np.random.default_rng(3)
    image = (ndimage.gaussian_filter(rng.uniform(0, 255, (48, 64, 3)), (1, 1, 0))).astype(np.uint8)
    focus = np.zeros((48, 64), np.uint8)
    focus[10:38, 16:44] = 1
    from data_pipeline import synthesis
    x, f = image.astype(np.float32) / 255.0, focus.astype(np.float32)[:, :, None]
    blur = lambda v, s: np.asarray(synthesis.gaussian_filter(v, s))  # noqa: E731
    a, b = gt_lib.synthesize_focused(image, focus, 4.0, "conventional", 0.25)
    expected = f * blur(x, 1.0) + (1 - f) * blur(x, 3.0)
    np.testing.assert_array_equal(b, np.rint(np.clip(expected, 0, 1) * 255).astype(np.uint8))
    pair = gt_lib.synthesize(image, focus, 4.0, "conventional")
    np.testing.assert_array_equal(a, pair[0])
    for model in ("conventional", "alpha_matte"):
        same = gt_lib.synthesize_focused(image, focus, 4.0, model, 1.0)
        np.testing.assert_array_equal(same[1], gt_lib.synthesize(image, focus, 4.0, model)[1])


@pytest.mark.parametrize("kw, message", [
    (dict(pair_focus=0.0), r"--pair_focus must be in \(0, 1\]"),
    (dict(pair_focus=1.5), r"--pair_focus must be in \(0, 1\]"),
    (dict(pair_focus=0.5, frames=3), "--pair_focus applies to pairs"),
    (dict(pair_focus=0.5, models=("alpha_matte_filled",)), "no form focused between"),
])
def test_bad_pair_focus_is_refused(mask_folder, tmp_path, kw, message):
    with pytest.raises(gt_lib.GroundTruthError, match=message):
        _config(mask_folder, tmp_path / "x", **kw).validate()


def test_alpha_matte_stack_ends_are_eqs_10_and_11():
    """synthesize_stack's frames at t = 0 and 1 are synthesize's I_A and I_B, and a middle
    frame of the alpha-matte model lies between them on both layers."""
    rng = np.random.default_rng(0)
    image = (ndimage.gaussian_filter(rng.uniform(0, 255, (48, 64, 3)), (1, 1, 0))).astype(np.uint8)
    focus = np.zeros((48, 64), np.uint8)
    focus[10:38, 16:44] = 1
    pair = gt_lib.synthesize(image, focus, 3.0, "alpha_matte")
    stack = gt_lib.synthesize_stack(image, focus, 3.0, "alpha_matte", 5)
    assert len(stack) == 5
    np.testing.assert_array_equal(stack[0], pair[0])
    np.testing.assert_array_equal(stack[-1], pair[1])
    inner = ndimage.binary_erosion(focus, iterations=8)
    outer = ~ndimage.binary_dilation(focus, iterations=8)
    d_in = [np.abs(f.astype(int) - image)[inner].mean() for f in stack]
    d_out = [np.abs(f.astype(int) - image)[outer].mean() for f in stack]
    assert d_in == sorted(d_in) and d_in[0] == 0
    assert d_out == sorted(d_out, reverse=True) and d_out[-1] == 0


def test_tilted_stacks_make_every_frame_the_sharpest_somewhere():
    """The tilted scene: per row band of the background the frame closest to I is the one
    `sharpest_frame` names, every frame is the sharpest somewhere, and frame 0 is I on the
    foreground (eq. 12 at t = 0)."""
    rng = np.random.default_rng(1)
    image = np.clip(ndimage.gaussian_filter(rng.uniform(0, 255, (160, 96, 3)), (1, 1, 0)) * 3
                    - 250, 0, 255).astype(np.uint8)
    focus = np.zeros((160, 96), np.uint8)
    focus[60:100, 60:90] = 1  # the background fills the left two thirds of every row
    frames = [f.astype(int) for f in
              gt_lib.synthesize_stack(image, focus, 4.0, "conventional", 4, scene="tilted")]
    named = gt_lib.sharpest_frame(focus, 4, "tilted")
    band, _ = gt_lib.background_bands(160, 4)
    error = np.stack([np.abs(f - image).mean(axis=2) for f in frames])
    winners = set()
    for b in range(8):
        rows = np.flatnonzero(band == b)[4:-4]  # away from the band's blur steps
        if b in (0, 7):
            rows = rows[4:] if b == 0 else rows[:-4]  # and from the image border
        best = int(np.argmin([e[rows, 8:48].mean() for e in error]))
        assert (named[rows, 8:48] == best).all(), b
        winners.add(best)
    assert winners == {1, 2, 3}
    inner = ndimage.binary_erosion(focus, iterations=2)
    np.testing.assert_array_equal(frames[0][inner], image[inner])
    assert (named[focus > 0] == 0).all()


def test_tilted_stack_sets_mark_the_first_frame_in_map(mask_folder, tmp_path):
    out = tmp_path / "tilted"
    gt_lib.build(_config(mask_folder, out, models=("conventional",), frames=4,
                         stack_scene="tilted"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["stack_scene"] == "tilted"
    assert all(p["scene"] == "tilted" for p in manifest["pairs"])
    assert "--stack_scene=tilted" in (out / "README.md").read_text()
    for entry in manifest["pairs"]:
        fmap = _read(out / entry["set"] / "MAP" / f"{entry['stem']}.png")
        white = fmap == 255
        if entry["swapped"]:  # the last frame of the sweep comes first: the top rows
            assert white[0].all() and not white[-1].any()
        else:  # the foreground only: the background is sharpest in later frames
            assert not white[0].any() and not white[-1].any() and white.any()
    with pytest.raises(gt_lib.GroundTruthError, match="give --frames of 3 or more"):
        _config(mask_folder, tmp_path / "x", stack_scene="tilted").validate()


def test_sharpest_frame_of_the_two_scenes():
    focus = np.zeros((40, 10), np.uint8)
    focus[15:25, 3:7] = 1
    sweep = gt_lib.sharpest_frame(focus, 5, "sweep")
    assert set(np.unique(sweep[focus > 0])) == {0} and set(np.unique(sweep[focus == 0])) == {4}
    tilted = gt_lib.sharpest_frame(focus, 5, "tilted")
    assert set(np.unique(tilted[focus > 0])) == {0}
    column = tilted[:, 0]
    assert column[0] == 4 and column[-1] == 1  # top row at depth ~1, bottom at ~0.3
    assert list(column) == sorted(column, reverse=True)
