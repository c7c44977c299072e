"""Tests of the evaluation library, the evaluate entry point and the edge morphology."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from mfif_tf import edge_morphology, evaluate_lib, metrics
from mfif_tf.metrics import boundary as boundary_metrics
from mfif_tf.metrics import report

STEMS = ("01", "02", "03")
SIZE = (36, 40)


def _scene(seed):
    rng = np.random.default_rng(seed)
    sharp = ndimage.gaussian_filter(rng.uniform(0, 255, SIZE + (3,)), (1.5, 1.5, 0))
    sharp = np.round((sharp - sharp.min()) / np.ptp(sharp) * 255).astype(np.uint8)
    blurred = np.round(ndimage.gaussian_filter(sharp.astype(float), (2.5, 2.5, 0))).astype(np.uint8)
    mask = np.zeros(SIZE, bool)
    mask[6:28, 8:26] = True  # foreground in focus in A
    a = np.where(mask[..., None], sharp, blurred)
    b = np.where(mask[..., None], blurred, sharp)
    return a, b, sharp, mask


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A/, B/, GT/ plus folders 'perfect' (eq. 14 with the true mask), 'copyA' and maps."""
    root = tmp_path_factory.mktemp("data")
    for sub in ("A", "B", "GT", "perfect", "copyA", "maps"):
        (root / sub).mkdir()
    for i, stem in enumerate(STEMS):
        a, b, sharp, mask = _scene(i)
        Image.fromarray(a).save(root / "A" / f"{stem}.png")
        Image.fromarray(b).save(root / "B" / f"{stem}.png")
        Image.fromarray(sharp).save(root / "GT" / f"{stem}.png")
        perfect = edge_morphology.fuse_with_map(a, b, mask)
        Image.fromarray(perfect).save(root / "perfect" / f"{stem}.png")
        Image.fromarray(a).save(root / "copyA" / f"{stem}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "maps" / f"{stem}.png")
    return root


def _config(root, out="", **kw):
    return evaluate_lib.EvalConfig(dataset_dir=str(root), output_dir=str(out), progress=False, **kw)


# --------------------------------------------------------------------------- library


def test_find_pairs_by_stem(dataset):
    pairs = evaluate_lib.find_pairs(dataset)
    assert [p.stem for p in pairs] == list(STEMS)
    assert all(p.path_gt is not None for p in pairs)


def test_compare_two_folders_marks_the_best(dataset, tmp_path):
    config = _config(dataset, tmp_path / "out")
    results = evaluate_lib.evaluate_dirs(config, [str(dataset / "perfect"), str(dataset / "copyA")])
    assert [r.name for r in results] == ["perfect", "copyA"]
    perfect, copy_a = results
    assert set(perfect.per_image) == set(STEMS)
    # The fused image equals the ground truth.
    assert perfect.mean["PSNR"] == float("inf") and perfect.mean["SSIM"] == pytest.approx(1.0)
    for name in ("Q_G", "Q_M", "SF", "SSIM"):
        assert perfect.mean[name] > copy_a.mean[name], name
        assert report.best_method({r.name: r.mean for r in results}, name) == "perfect"
    expected = np.mean([perfect.per_image[s]["MI"] for s in STEMS])
    assert perfect.mean["MI"] == pytest.approx(expected)

    text = evaluate_lib.results_markdown(results, config.convention)
    assert "| Q_G ↑ | **" in text and "| LIF ↓ |" in text and "| PSNR ↑ | **inf** |" in text
    written = evaluate_lib.write_outputs(config, results, text)
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["results.json", "table.md", "means.csv", "per_image_perfect.csv", "per_image_copyA.csv"]
    )
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["methods"]["perfect"]["mean"]["PSNR"] is None  # inf is not JSON
    assert data["methods"]["copyA"]["per_image"]["02"]["MI"] == pytest.approx(
        copy_a.per_image["02"]["MI"]
    )
    rows = list(csv.reader((tmp_path / "out" / "per_image_copyA.csv").open()))
    assert rows[0][:3] == ["image", "MI", "TE"]
    assert [r[0] for r in rows[1:]] == list(STEMS) + ["mean"]
    # Existing results are not replaced unless asked.
    with pytest.raises(evaluate_lib.EvaluationError, match="exists"):
        evaluate_lib.evaluate_dirs(config, [str(dataset / "perfect")])
    again = _config(dataset, tmp_path / "out", overwrite=True)
    evaluate_lib.evaluate_dirs(again, [str(dataset / "perfect")])


def test_metric_subset_and_names(dataset):
    config = _config(dataset, metrics=("MI", "LIF"))
    (res,) = evaluate_lib.evaluate_dirs(config, [str(dataset / "perfect")], names=["ours"])
    assert res.name == "ours" and list(res.mean) == ["MI", "LIF"]


def test_missing_inputs_give_clear_errors(dataset, tmp_path):
    with pytest.raises(evaluate_lib.EvaluationError, match="missing the folder A/"):
        evaluate_lib.find_pairs(tmp_path)
    partial = tmp_path / "partial"
    partial.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(partial / "01.png")
    with pytest.raises(evaluate_lib.EvaluationError, match=r"stems \['02', '03'\]"):
        evaluate_lib.evaluate_dirs(_config(dataset), [str(partial)])
    bad = tmp_path / "bad"
    bad.mkdir()
    for stem in STEMS:
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(bad / f"{stem}.png")
    with pytest.raises(evaluate_lib.EvaluationError, match="fused is"):
        evaluate_lib.evaluate_dirs(_config(dataset), [str(bad)])


def test_fuse_fn_source_with_timing(dataset, tmp_path):
    maps = {i: _scene(i)[3] for i in range(len(STEMS))}
    calls = []

    def fuse_fn(sources):
        a, b = sources
        calls.append(1)
        mask = maps[max(len(calls) - 2, 0)]  # the first call is the untimed warm-up
        fused = edge_morphology.fuse_with_map(a, b, mask).astype(np.float32) / 255.0
        return fused, {"network": 0.5, "srr": 0.25, "fusion": 0.125 * (len(calls) - 1)}

    config = _config(dataset, tmp_path / "model_out")
    res = evaluate_lib.evaluate_fn(config, fuse_fn, name="model", source="a test function")
    assert res.source == "a test function"
    assert res.mean["PSNR"] == float("inf")  # floats in [0, 1] were scaled back exactly
    assert res.timing["network"] == pytest.approx(0.5)
    assert res.timing["fusion"] == pytest.approx(0.125 * 2)  # mean of 1, 2, 3 eighths
    assert "total" in res.timing and len(calls) == len(STEMS) + 1
    saved = sorted(p.name for p in (tmp_path / "model_out" / "fused").iterdir())
    assert saved == [f"{s}.png" for s in STEMS]
    text = evaluate_lib.results_markdown([res], config.convention)
    assert "Table 2" in text and "network (s)" in text


def test_best_rules():
    means = {"x": {"SF": -0.02, "LIF": 0.39, "MI": 1.0}, "y": {"SF": 0.01, "LIF": 0.38, "MI": 1.1},
             "z": {"SF": -0.05, "LIF": 0.40, "MI": float("nan")}}
    assert report.best_method(means, "SF") == "y"  # closest to 0
    assert report.best_method(means, "LIF") == "y"  # lowest
    assert report.best_method(means, "MI") == "y"  # highest, NaN ignored
    assert "| SF →0 |" in report.markdown_comparison(means)


def test_mean_timing_averages_each_key():
    t = evaluate_lib.mean_timing([{"network": 1.0, "total": 2.0}, {"network": 3.0, "total": 4.0}])
    assert t == {"network": 2.0, "total": 3.0}
    assert evaluate_lib.mean_timing([]) is None


def test_to_uint8_rules():
    assert evaluate_lib.to_uint8(np.array([[0.0, 0.5, 1.0]]), "x").tolist() == [[0, 128, 255]]
    assert evaluate_lib.to_uint8(np.array([[2.0, 300.0]]), "x").tolist() == [[2, 255]]
    with pytest.raises(evaluate_lib.EvaluationError, match="NaN"):
        evaluate_lib.to_uint8(np.array([[np.nan]]), "x")


def test_library_registers_no_flags():
    from absl import flags

    assert "dataset_dir" not in flags.FLAGS


# --------------------------------------------------------------------------- edge morphology


def test_diffuse_disk_and_square():
    f = np.zeros((9, 9), bool)
    f[4, 4] = True
    assert edge_morphology.diffuse(f, 1, "disk").sum() == 5  # plus sign
    assert edge_morphology.diffuse(f, 1, "square").sum() == 9  # 3 x 3
    assert edge_morphology.diffuse(f, 2, "disk").sum() == 13  # |d| <= 2
    block = np.zeros((9, 9), bool)
    block[2:7, 2:7] = True
    shrunk = edge_morphology.diffuse(block, -1, "square")
    assert shrunk.sum() == 9 and shrunk[3:6, 3:6].all()
    np.testing.assert_array_equal(edge_morphology.diffuse(block, 0), block)
    assert not edge_morphology.diffuse(block, -3).any()


def test_diffuse_image_border_does_not_erode():
    f = np.zeros((8, 8), np.uint8)
    f[:, :4] = 255  # foreground touches the left border
    shrunk = edge_morphology.diffuse(f, -2, "disk")
    assert shrunk[:, :2].all() and not shrunk[:, 2:].any()
    grown = edge_morphology.diffuse(f, 2, "disk")
    assert grown[:, :6].all() and not grown[:, 6:].any()


def test_diffuse_rejects_non_binary_maps():
    with pytest.raises(ValueError, match="binary"):
        edge_morphology.diffuse(np.linspace(0, 1, 64).reshape(8, 8), 1)


def test_fuse_with_map_is_eq14():
    a = np.full((8, 8, 3), 200, np.uint8)
    b = np.full((8, 8, 3), 10, np.uint8)
    f = np.zeros((8, 8), bool)
    f[:, :3] = True
    fused = edge_morphology.fuse_with_map(a, b, f)
    assert (fused[:, :3] == 200).all() and (fused[:, 3:] == 10).all()


def test_diffusion_study_table_and_plot(dataset, tmp_path):
    config = _config(dataset, tmp_path / "diff", metrics=("MI", "Q_CB", "LIF"))
    pairs = evaluate_lib.find_pairs(dataset)
    maps = evaluate_lib.maps_from_dir(dataset / "maps", pairs)
    table, text = evaluate_lib.diffusion_study(config, maps, ks=(-2, 0, 2), element="disk")
    assert list(table) == [-2, 0, 2] and list(table[0]) == ["MI", "Q_CB", "LIF"]
    # The true map is best for Q_CB: growing or shrinking it mixes in blurred pixels.
    assert table[0]["Q_CB"] > table[2]["Q_CB"] and table[0]["Q_CB"] > table[-2]["Q_CB"]
    assert "| +2 |" in text and "| -2 |" in text
    png = tmp_path / "diff" / "diffusion.png"
    assert png.stat().st_size > 1000
    with Image.open(png) as im:
        assert im.format == "PNG"
    norm = json.loads((tmp_path / "diff" / "diffusion.json").read_text())["normalised"]
    assert min(norm["Q_CB"]) == 0.0 and max(norm["Q_CB"]) == 1.0


# --------------------------------------------------------------------------- entry point


def _run_cli(*args):
    cmd = [sys.executable, "-m", "mfif_tf.evaluate", "--noprogress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_cli_compares_folders(dataset, tmp_path):
    out = _run_cli(
        f"--dataset_dir={dataset}",
        f"--fused_dir={dataset / 'perfect'}",
        f"--fused_dir={dataset / 'copyA'}",
        "--metrics=MI,Q_G,LIF",
        f"--output_dir={tmp_path / 'cli'}",
    )
    assert out.returncode == 0, out.stderr
    assert "| metric | perfect | copyA |" in out.stdout
    assert (tmp_path / "cli" / "results.json").exists()


def test_cli_fuses_with_the_shipped_model_and_records_its_settings(map_dataset, tmp_path):
    out = _run_cli(f"--dataset_dir={map_dataset}", "--model=default", "--mode=paper",
                   "--scales=1,0.5,0.25", "--flips", "--metrics=MI,Q_CB,MAP_ACC",
                   f"--output_dir={tmp_path / 'm'}")
    assert out.returncode == 0, out.stderr
    saved = json.loads((tmp_path / "m" / "results.json").read_text())["methods"]["model"]
    assert saved["source"] == "model default, mode paper, scales 1,0.5,0.25, flips on, SRR on"
    assert sorted(saved["per_image"]) == list(STEMS)
    assert saved["timing_seconds"]["network"] > 0
    assert list(saved["mean"]) == ["MI", "Q_CB", "MAP_ACC"]  # F_final against MAP/
    assert 0.0 <= saved["mean"]["MAP_ACC"] <= 1.0


def _stack_folder(dataset, root, subs, sources):
    for sub in subs:
        (root / sub).mkdir(parents=True)
    for sub, source in sources.items():
        for stem in STEMS:
            data = (dataset / source / f"{stem}.png").read_bytes()
            (root / sub / f"{stem}.png").write_bytes(data)
    return root


def test_stack_folders_without_gt_are_named_as_unused(dataset, tmp_path):
    """A stack folder (A/, B/, C/, D/) without GT/: scored as A/ + B/, and the CLI says C/
    and D/ are not used; an empty E/ and a folder after a gap are not sources."""
    root = _stack_folder(dataset, tmp_path / "stack", ("A", "B", "C", "D", "E", "G"),
                         {"A": "A", "B": "B", "C": "A", "D": "B", "G": "A"})
    assert evaluate_lib.unused_source_folders(root) == ["C/", "D/"]
    assert evaluate_lib.unused_source_folders(dataset) == []
    pairs = evaluate_lib.find_pairs(root)
    assert [p.stem for p in pairs] == list(STEMS) and all(not p.paths_more for p in pairs)
    out = _run_cli(f"--dataset_dir={root}", f"--fused_dir={dataset / 'perfect'}",
                   "--metrics=MI")
    assert out.returncode == 0, out.stderr
    assert "also holds C/, D/: each stem is scored as the pair A/ + B/" in out.stderr
    assert "C/, D/ are not used" in out.stderr
    plain = _run_cli(f"--dataset_dir={dataset}", f"--fused_dir={dataset / 'perfect'}",
                     "--metrics=MI")
    assert plain.returncode == 0 and "not used" not in plain.stderr


def test_stacks_with_gt_are_fused_whole_and_scored_against_it(dataset, tmp_path):
    """With GT/, A/ B/ C/ D/ are stacks: the fusion function gets all four frames, the
    result is scored by PSNR/SSIM against GT and by where frame 0 is taken against MAP/; the
    two-source metrics are left out. A stem missing from C/ ends its stack there."""
    root = _stack_folder(dataset, tmp_path / "stack", ("A", "B", "C", "D", "GT", "MAP"),
                         {"A": "A", "B": "copyA", "C": "B", "D": "copyA", "GT": "GT",
                          "MAP": "maps"})
    (root / "C" / f"{STEMS[2]}.png").unlink()
    (root / "D" / f"{STEMS[2]}.png").unlink()
    assert evaluate_lib.unused_source_folders(root) == []
    pairs = evaluate_lib.find_pairs(root)
    assert [len(p.paths_more) for p in pairs] == [2, 2, 0]
    assert [q.parent.name for q in pairs[0].paths_more] == ["C", "D"]
    counts = []

    def fuse_fn(sources):
        counts.append(len(sources))
        from mfif_tf import classical
        return classical.fuse_classical(sources)

    result = evaluate_lib.evaluate_fn(
        _config(root, metrics=("MI", "PSNR", "SSIM", "MAP_ACC")), fuse_fn)
    assert counts[1:] == [4, 4, 2]  # after the warm-up call
    for stem in STEMS[:2]:
        scores = result.per_image[stem]
        assert set(scores) == {"PSNR", "SSIM", "MAP_ACC"}
        # The stack is A, a copy of A, B, a copy of A: fused, it is close to GT, and the
        # first frame is taken on most of A's in-focus region (copies tie with it).
        assert scores["PSNR"] > 30 and scores["MAP_ACC"] > 0.5
    assert "MI" in result.per_image[STEMS[2]]  # a pair: all metrics
    (root / "D" / f"{STEMS[2]}.png").write_bytes((root / "A" / f"{STEMS[2]}.png").read_bytes())
    with pytest.raises(evaluate_lib.EvaluationError, match="is in D/ but not in C/"):
        evaluate_lib.find_pairs(root)
    (root / "D" / f"{STEMS[2]}.png").unlink()
    out = _run_cli(f"--dataset_dir={root}", f"--fused_dir={dataset / 'perfect'}",
                   "--metrics=PSNR,MI")
    assert out.returncode == 0, out.stderr
    assert "holds focus stacks (A/, B/, C/, D/) and GT/: each stack is fused whole" in out.stderr


def test_cli_reports_bad_input_in_one_line(dataset, tmp_path):
    out = _run_cli(f"--dataset_dir={tmp_path}", f"--fused_dir={dataset / 'perfect'}")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:") and "missing the folder A/" in out.stderr
    assert "Traceback" not in out.stderr
    out = _run_cli(f"--dataset_dir={dataset}", "--model=default", "--mode=paper",
                   "--scales=1,2")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: scale '2' must be in (0, 1] (1 is full resolution)"
    out = _run_cli(f"--dataset_dir={dataset}", "--model=default", "--mode=coarse_to_fine",
                   "--scales=1,0.5")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: scales apply to mode")


def test_cli_errors_exit_2_in_one_line_like_the_other_tools(dataset, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.json").write_text("{}")
    (tmp_path / "a_file").write_text("keep")
    model_dir = tmp_path / "not_a_model"
    model_dir.mkdir()
    cases = [
        ([f"--fused_dir={dataset / 'perfect'}", f"--output_dir={tmp_path / 'out'}"],
         f"error: {tmp_path / 'out'}: results.json exists; pass --overwrite to replace it"),
        ([f"--fused_dir={dataset / 'perfect'}", f"--output_dir={tmp_path / 'a_file' / 'o'}"],
         f"error: {tmp_path / 'a_file' / 'o'}: cannot be the output folder: "
         f"{tmp_path / 'a_file'} is not a directory"),
        ([f"--model={model_dir}", "--mode=paper"],
         f"error: {model_dir} holds neither generator.weights.h5 + model.json nor a training "
         "work dir"),
        (["--fused_dir=x", "--no_such_flag"], "error: Unknown command line flag 'no_such_flag'"),
        ([], "error: give --dataset_dir and either --focus_map_dir or any of --fused_dir, "
             "--model, --classical"),
    ]
    for args, message in cases:
        out = _run_cli(f"--dataset_dir={dataset}" if args else "--metrics=MI", *args)
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip() == message
    assert (tmp_path / "out" / "results.json").read_text() == "{}"
    assert (tmp_path / "a_file").read_text() == "keep"


def test_fuse_fn_returning_a_fusion_result_keeps_its_timings(dataset, tmp_path):
    from types import SimpleNamespace

    def fuse_fn(sources):
        a, b = sources
        return SimpleNamespace(fused=a, timings={"network": 0.25, "srr": 0.5, "fusion": 0.125})

    res = evaluate_lib.evaluate_fn(_config(dataset, tmp_path / "out"), fuse_fn, name="model")
    assert res.timing["network"] == pytest.approx(0.25)
    assert res.timing["srr"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- focus-map metrics


def _square(shift=0, size=40):
    m = np.zeros((size, size), np.uint8)
    m[10 + shift:30 + shift, 10:30] = 255
    return m


def test_boundary_pixels_are_both_sides_of_the_edge():
    m = _square() > 0
    b = boundary_metrics.boundary(m)
    assert b[9, 10:30].all() and b[10, 10:30].all()  # outer and inner row
    assert not b[9, 9] and not b[11, 11]  # diagonal corner and interior
    assert b.sum() == 4 * 20 + (4 * 20 - 4)  # outer ring (no corners) + inner ring
    assert not boundary_metrics.boundary(np.ones((5, 5), bool)).any()  # image border: none


def test_boundary_f_scores_of_a_shifted_square():
    true = _square()
    same = metrics.focus_map_metrics(true, true)
    assert same == {"BF1": 1.0, "BF3": 1.0, "MAP_ACC": 1.0}
    shifted = metrics.focus_map_metrics(_square(2), true)
    assert shifted["BF1"] < 1.0 and shifted["BF3"] == 1.0
    assert shifted["MAP_ACC"] == pytest.approx(1 - 2 * 2 * 20 / 40**2)
    assert metrics.boundary_f1(_square(2), true) == shifted["BF1"]
    assert metrics.boundary_f3(_square(5), true) < 1.0
    # Precision and recall by hand at d = 1: the rows 2 px away miss, the others hit.
    pred_b, true_b = boundary_metrics.boundary(_square(2) > 0), boundary_metrics.boundary(true > 0)
    dist = ndimage.distance_transform_edt(~true_b)
    p = np.mean(dist[pred_b] <= 1)
    r = np.mean(ndimage.distance_transform_edt(~pred_b)[true_b] <= 1)
    assert shifted["BF1"] == pytest.approx(2 * p * r / (p + r))


def test_focus_map_metrics_degenerate_cases_and_inputs():
    ones, zeros, square = np.ones((20, 20)), np.zeros((20, 20)), _square(size=40)[:20, :20]
    # No boundary in either map: the boundaries agree (1.0), the regions may not (MAP_ACC).
    assert metrics.focus_map_metrics(ones, zeros) == {"BF1": 1.0, "BF3": 1.0, "MAP_ACC": 0.0}
    # A boundary in only one of them: 0 (precision or recall is 0).
    assert metrics.focus_map_metrics(ones, square)["BF3"] == 0.0
    assert metrics.focus_map_metrics(square, zeros)["BF1"] == 0.0
    # 0/1, 0/255 and soft maps are binarised at half range.
    soft = (square > 0) * 0.75 + 0.1
    assert metrics.focus_map_metrics(soft, square // 255) == {"BF1": 1.0, "BF3": 1.0,
                                                               "MAP_ACC": 1.0}
    assert metrics.map_acc(square[:, ::-1], square) == pytest.approx(
        np.mean((square[:, ::-1] > 0) == (square > 0)))
    assert list(metrics.focus_map_metrics(square, square, ("MAP_ACC",))) == ["MAP_ACC"]
    with pytest.raises(metrics.MetricInputError, match="shape mismatch"):
        metrics.focus_map_metrics(square, _square())
    assert set(metrics.FOCUS_MAP_METRIC_NAMES) <= set(metrics.BEST_RULE)


@pytest.fixture(scope="module")
def map_dataset(tmp_path_factory):
    """A/, B/, GT/, MAP/ (the true masks) plus fused folders and focus-map folders."""
    root = tmp_path_factory.mktemp("mapdata")
    for sub in ("A", "B", "GT", "MAP", "perfect", "true_maps", "shifted_maps"):
        (root / sub).mkdir()
    for i, stem in enumerate(STEMS):
        a, b, sharp, mask = _scene(i)
        Image.fromarray(a).save(root / "A" / f"{stem}.png")
        Image.fromarray(b).save(root / "B" / f"{stem}.png")
        Image.fromarray(sharp).save(root / "GT" / f"{stem}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "MAP" / f"{stem}.png")  # 0/1 PNG
        Image.fromarray(edge_morphology.fuse_with_map(a, b, mask)).save(
            root / "perfect" / f"{stem}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "true_maps" / f"{stem}.png")
        shifted = np.roll(mask, 2, axis=0)
        Image.fromarray((shifted * 255).astype(np.uint8)).save(
            root / "shifted_maps" / f"{stem}.png")
    return root


def test_find_pairs_attaches_map(map_dataset, dataset, tmp_path):
    pairs = evaluate_lib.find_pairs(map_dataset)
    assert [p.path_map.name for p in pairs] == [f"{s}.png" for s in STEMS]
    assert evaluate_lib.load_focus_map(pairs[0].path_map).sum() == _scene(0)[3].sum()
    assert all(p.path_map is None for p in evaluate_lib.find_pairs(dataset))
    for sub in ("A", "B", "MAP"):
        (tmp_path / sub).mkdir()
        for stem in STEMS[: 2 if sub == "MAP" else 3]:
            Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / sub / f"{stem}.png")
    with pytest.raises(evaluate_lib.EvaluationError, match=r"MAP/ lacks the stems \['03'\]"):
        evaluate_lib.find_pairs(tmp_path)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "MAP" / "03.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "MAP" / "04.png")
    with pytest.raises(evaluate_lib.EvaluationError, match=r"MAP/ has stems that A/ lacks"):
        evaluate_lib.find_pairs(tmp_path)


def test_fused_map_dirs_score_the_maps(map_dataset):
    config = _config(map_dataset, metrics=("MI", "BF1", "BF3", "MAP_ACC"))
    folders = [str(map_dataset / "perfect")] * 3
    maps = [str(map_dataset / "true_maps"), str(map_dataset / "shifted_maps"), None]
    true, shifted, nomap = evaluate_lib.evaluate_dirs(config, folders, ["t", "s", "n"], maps)
    assert true.mean["BF1"] == true.mean["BF3"] == true.mean["MAP_ACC"] == 1.0
    assert shifted.mean["BF1"] < 1.0 and shifted.mean["BF3"] == 1.0
    assert shifted.mean["MAP_ACC"] < 1.0
    assert list(nomap.mean) == ["MI"]  # no map: no map metrics
    text = evaluate_lib.results_markdown([true, shifted, nomap], config.convention, False)
    assert "| BF1 ↑ | **1.00000** |" in text and "| MAP_ACC ↑ |" in text
    assert text.count("n/a") == 3
    with pytest.raises(evaluate_lib.EvaluationError, match="2 focus map folders given for 3"):
        evaluate_lib.evaluate_dirs(config, folders, None, maps[:2])


def test_fuse_fn_focus_map_is_scored(map_dataset, tmp_path):
    from types import SimpleNamespace

    def fuse_fn(sources):
        a, b = sources
        fmap = np.zeros(a.shape[:2], np.float32)
        fmap[6:28, 8:26] = 1.0  # the true mask of every scene
        return SimpleNamespace(fused=a, timings={}, f_final=fmap)

    res = evaluate_lib.evaluate_fn(_config(map_dataset, metrics=("MAP_ACC", "BF1")), fuse_fn)
    assert res.mean == {"MAP_ACC": 1.0, "BF1": 1.0}


def test_cli_classical_with_ground_truth_and_maps(map_dataset, tmp_path):
    out_dir = tmp_path / "cli"
    out = _run_cli(f"--dataset_dir={map_dataset}", "--classical",
                   f"--fused_dir={map_dataset / 'perfect'}",
                   f"--fused_map_dir={map_dataset / 'shifted_maps'}",
                   f"--fused_dir={map_dataset / 'perfect'}", "--fused_map_dir=",
                   "--name=ours", "--name=nomap",
                   "--metrics=MI,PSNR,BF1,BF3,MAP_ACC", f"--output_dir={out_dir}")
    assert out.returncode == 0, out.stderr
    assert "| metric | classical | ours | nomap |" in out.stdout
    table = (out_dir / "table.md").read_text()
    assert "| BF3 ↑ |" in table and "| MAP_ACC ↑ |" in table
    saved = json.loads((out_dir / "results.json").read_text())["methods"]
    assert set(saved["classical"]["mean"]) == {"MI", "PSNR", "BF1", "BF3", "MAP_ACC"}
    assert 0.5 < saved["classical"]["mean"]["MAP_ACC"] <= 1.0
    assert saved["classical"]["source"].startswith("classical")
    assert saved["ours"]["mean"]["BF3"] == 1.0 and "BF1" not in saved["nomap"]["mean"]
    rows = list(csv.reader((out_dir / "per_image_classical.csv").open()))
    assert rows[0] == ["image", "MI", "PSNR", "BF1", "BF3", "MAP_ACC"]
    assert sorted(p.name for p in (out_dir / "fused_classical").iterdir()) == [
        f"{s}.png" for s in STEMS]
    bad = _run_cli(f"--dataset_dir={map_dataset}", f"--fused_dir={map_dataset / 'perfect'}",
                   f"--fused_map_dir={map_dataset / 'true_maps'}", "--fused_map_dir=x")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: 2 --fused_map_dir given for 1 --fused_dir; give one "
                                  "per --fused_dir ('' for none)")
