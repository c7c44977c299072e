"""Batch fusion on Apache Beam (export/beam_fuse.py) against `mfif-fuse` in batch mode.

The slow test exports a SavedModel of a random G with a steep head (conftest's
`decisive_generator`) and the packaged refinement head, fuses a folder of pairs (colour JPEG
with EXIF, grey PNG, 16-bit PNG), a stack of three and a damaged pair on DirectRunner with
two worker processes, and compares every file written with `fuse_lib.fuse_batch` on the same
folder and model: byte for byte.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from export import compare
from mfif_tf import fuse_lib, image_io
from tests.conftest import decisive_generator

beam = pytest.importorskip("apache_beam")

from export import beam_fuse  # noqa: E402 (after the skip: needs apache_beam)

H, W = 48, 64


def _write_folder(root: str) -> None:
    """Pairs p1 (JPEG, EXIF), p2 (grey PNG), p3 (16-bit PNG), stack s of three, damaged x."""
    for letter in "ABC":
        os.makedirs(os.path.join(root, letter))
    a, b, _ = compare.synthetic_pair(H, W, seed=0)
    exif = Image.Exif()
    exif[271] = "TestCam"  # Make
    Image.fromarray(compare.to_uint8(a)).save(os.path.join(root, "A", "p1.jpg"), quality=92,
                                              exif=exif.tobytes())
    Image.fromarray(compare.to_uint8(b)).save(os.path.join(root, "B", "p1.jpg"), quality=92)
    a, b, _ = compare.synthetic_pair(H, W, seed=3)
    for letter, image in (("A", a), ("B", b)):
        grey = compare.to_uint8(image.mean(axis=2))
        Image.fromarray(grey).save(os.path.join(root, letter, "p2.png"))
    a, b, _ = compare.synthetic_pair(H, W, seed=4)
    for letter, image in (("A", a), ("B", b)):
        deep = np.round(image * 65535.0).astype(np.uint16)
        image_io.write_image(os.path.join(root, letter, "p3.png"), deep)
    a, b, _ = compare.synthetic_pair(H, W, sigma=1.5, seed=5)
    c = np.ascontiguousarray(b[:, ::-1])  # in focus where neither a nor b is on one side
    for letter, image in (("A", a), ("B", b), ("C", c)):
        Image.fromarray(compare.to_uint8(image)).save(os.path.join(root, letter, "s.png"))
    Image.fromarray(compare.to_uint8(a)).save(os.path.join(root, "A", "x.png"))
    with open(os.path.join(root, "B", "x.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not an image")


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                out[os.path.relpath(os.path.join(folder, name), root)] = f.read()
    return out


@pytest.fixture(scope="module")
def generator():
    return decisive_generator(2, gain=100.0)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, generator):
    from export import export_lib
    from mfif_tf import fusion

    root = str(tmp_path_factory.mktemp("export"))
    config = export_lib.ExportConfig(export_dir=root, model_name="mfif", version=1)
    # The refined mode with the packaged refinement head, as `mfif-fuse` runs by default.
    export_lib.export_model(generator, config, fusion.resolve_refiner(None))
    return os.path.join(root, "mfif")


@pytest.mark.slow
def test_outputs_are_those_of_fuse_batch(tmp_path, generator, saved_model, capsys):
    inputs = str(tmp_path / "in")
    _write_folder(inputs)
    fuse_out, beam_out = tmp_path / "fuse", tmp_path / "beam"
    report = fuse_lib.fuse_batch(inputs, str(fuse_out / "fused"), generator,
                                 fuse_lib.FuseOptions(), None, str(fuse_out / "focus"),
                                 str(fuse_out / "index"), log=lambda m: None)
    assert sorted(report.done) == ["p1", "p2", "p3", "s"]
    assert [stem for stem, _ in report.failed] == ["x"]

    argv = ["--input_dir", inputs, "--output_dir", str(beam_out / "fused"),
            "--focus_map", str(beam_out / "focus"), "--index_map", str(beam_out / "index"),
            "--saved_model", saved_model, "--direct_num_workers", "2"]
    assert beam_fuse.main(argv) == 2  # the damaged pair
    out, err = capsys.readouterr()
    assert "4 fused into" in out and "1 failed" in out
    assert "beam_fuse: error: x: " in err and "x.png" in err

    expected, got = _files(str(fuse_out)), _files(str(beam_out))
    assert sorted(got) == sorted(expected) == [
        "focus/p1.png", "focus/p2.png", "focus/p3.png",
        "fused/p1.jpg", "fused/p2.png", "fused/p3.png", "fused/s.png",
        "index/p1.png", "index/p2.png", "index/p3.png", "index/s.png"]
    for name in expected:
        assert got[name] == expected[name], f"{name} differs from fuse's"
    # The maps hold both sources (and all three frames of the stack), the EXIF travelled,
    # bit depth and grey layout are kept.
    index = np.asarray(Image.open(beam_out / "index" / "s.png"))
    assert set(np.unique(index)) == {0, 1, 2}
    assert set(np.unique(np.asarray(Image.open(beam_out / "focus" / "p1.png")))) == {0, 255}
    assert Image.open(beam_out / "fused" / "p1.jpg").getexif()[271] == "TestCam"
    assert image_io.read_image(str(beam_out / "fused" / "p3.png")).pixels.dtype == np.uint16
    assert image_io.read_image(str(beam_out / "fused" / "p2.png")).pixels.ndim == 2

    # --skip_existing fuses only what is missing (here in-process, one worker); without it
    # existing outputs are refused before anything runs.
    os.remove(beam_out / "fused" / "p2.png")
    kept = os.stat(beam_out / "fused" / "p1.jpg").st_mtime_ns
    os.remove(os.path.join(inputs, "B", "x.png"))
    os.remove(os.path.join(inputs, "A", "x.png"))
    argv = argv[:-2] + ["--direct_num_workers", "1"]
    assert beam_fuse.main(argv + ["--skip_existing"]) == 0
    out = capsys.readouterr()[0]
    assert "1 fused into" in out and "3 skipped (outputs exist), 0 failed" in out
    assert (beam_out / "fused" / "p2.png").read_bytes() == expected["fused/p2.png"]
    assert os.stat(beam_out / "fused" / "p1.jpg").st_mtime_ns == kept
    with pytest.raises(SystemExit) as exit_info:
        beam_fuse.main(argv)
    assert exit_info.value.code == 2
    assert "already exists (pass --overwrite" in capsys.readouterr()[1]


def _exit_message(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        beam_fuse.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr()[1].strip().splitlines()
    assert len(err) == 1 and err[0].startswith("beam_fuse: error: ")
    return err[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    inputs = tmp_path / "in"
    out = ["--output_dir", str(tmp_path / "out")]
    assert "is not a directory" in _exit_message(
        ["--input_dir", str(tmp_path / "missing"), "--saved_model", str(tmp_path)] + out,
        capsys)
    for letter in "AB":
        (inputs / letter).mkdir(parents=True)
        a, _, _ = compare.synthetic_pair(8, 8)
        Image.fromarray(compare.to_uint8(a)).save(inputs / letter / "01.png")
    args = ["--input_dir", str(inputs)] + out
    assert "--saved_model is not a directory" in _exit_message(
        args + ["--saved_model", str(tmp_path / "nothing")], capsys)
    assert "no SavedModel there" in _exit_message(args + ["--saved_model", str(inputs)],
                                                  capsys)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "01.png").write_bytes(b"the user's file")
    assert "already exists" in _exit_message(args + ["--saved_model", str(inputs)], capsys)
    assert (tmp_path / "out" / "01.png").read_bytes() == b"the user's file"
    assert "pass one of the two" in _exit_message(
        args + ["--saved_model", str(inputs), "--overwrite", "--skip_existing"], capsys)


def test_beam_options_pass_through():
    args, rest = beam_fuse.parse_args(["--input_dir", "i", "--output_dir", "o",
                                       "--saved_model", "m", "--direct_num_workers", "3",
                                       "--job_name=fusion"])
    options = beam_fuse.pipeline_options(args, rest).get_all_options()
    assert options["runner"] == "DirectRunner" and options["direct_num_workers"] == 3
    assert options["direct_running_mode"] == "multi_processing"
    assert options["job_name"] == "fusion"
