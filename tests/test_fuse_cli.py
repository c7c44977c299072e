"""`mfif-fuse`: image files in and out, EXIF, batch folders, bad input (one-line errors, exit
code 2, nothing written)."""

import errno
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image

from mfif_tf import common, fuse_lib, fusion, image_io
from mfif_tf.config import model_config
from mfif_tf.image_io import InputError
from mfif_tf.model_io import save_generator
from mfif_tf.networks import build_generator

H, W = 40, 56


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "compact")
    tf.keras.utils.set_random_seed(5)
    save_generator(build_generator(model_config("compact")), path)
    return path


@pytest.fixture(scope="module")
def generator(model_dir):
    return fusion.resolve_generator(model_dir)


def exif_block():
    exif = Image.Exif()
    exif[271], exif[272], exif[274] = "TestMake", "TestModel", 6
    exif.get_ifd(0x8769)[0x829A] = 0.01  # ExposureTime
    return exif.tobytes()


def images(seed=0, dtype=np.uint8, grey=False):
    rng = np.random.default_rng(seed)
    shape = (H, W) if grey else (H, W, 3)
    top = np.iinfo(dtype).max
    return [rng.integers(0, top, shape, dtype=dtype, endpoint=True) for _ in range(2)]


def save(path, pixels, exif=None):
    image_io.write_image(str(path), pixels, exif)
    return str(path)


def listing(folder):
    return sorted(os.listdir(folder))


# ------------------------------------------------------------------------------- image I/O


@pytest.mark.parametrize("ext,dtype,grey", [
    (".png", np.uint8, False), (".png", np.uint16, False), (".png", np.uint16, True),
    (".tif", np.uint16, False), (".tif", np.uint8, True), (".tiff", np.uint8, False),
])
def test_lossless_round_trips_keep_bit_depth(tmp_path, ext, dtype, grey):
    pixels = images(1, dtype, grey)[0]
    back = image_io.read_image(save(tmp_path / f"x{ext}", pixels))
    assert back.pixels.dtype == dtype
    np.testing.assert_array_equal(back.pixels, pixels)


def test_jpeg_and_foreign_files_read(tmp_path):
    pixels = images(2)[0]
    back = image_io.read_image(save(tmp_path / "x.jpg", pixels)).pixels
    assert back.shape == pixels.shape and back.dtype == np.uint8
    Image.fromarray(np.dstack([pixels, pixels[:, :, :1]])).save(tmp_path / "rgba.png")
    assert image_io.read_image(str(tmp_path / "rgba.png")).pixels.shape == (H, W, 3)
    Image.fromarray(pixels).save(tmp_path / "x.bmp")
    np.testing.assert_array_equal(image_io.read_image(str(tmp_path / "x.bmp")).pixels, pixels)
    planar = np.moveaxis(images(3, np.uint16)[0], -1, 0)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(image_io.read_image(str(tmp_path / "planar.tif")).pixels,
                                  np.moveaxis(planar, 0, -1))


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif"])
def test_damaged_files_are_named(tmp_path, ext):
    path = save(tmp_path / f"x{ext}", images(4)[0])
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(InputError, match=f"x{ext}: cannot decode the image") as err:
        image_io.read_image(path)
    assert "\n" not in str(err.value)
    open(path, "wb").write(b"this is not an image")
    with pytest.raises(InputError, match="cannot decode"):
        image_io.read_image(path)


def test_unsupported_pixel_types(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((H, W), np.float32))
    with pytest.raises(InputError, match="f.tif: unsupported pixel type float32"):
        image_io.read_image(str(tmp_path / "f.tif"))
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((H, W, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(InputError, match="unsupported image layout"):
        image_io.read_image(str(tmp_path / "c.tif"))


def test_output_set_is_all_or_nothing(tmp_path):
    with pytest.raises(InputError, match="JPEG stores 8 bits"):
        with image_io.OutputSet() as out:
            out.add(str(tmp_path / "ok.png"), images(5)[0])
            out.add(str(tmp_path / "bad.jpg"), images(5, np.uint16)[0])
            out.commit()
    assert listing(tmp_path) == []
    image_io.write_image(str(tmp_path / "a.png"), images(6)[0])
    with pytest.raises(InputError, match="already exists"):
        image_io.write_image(str(tmp_path / "a.png"), images(7)[0])
    assert listing(tmp_path) == ["a.png"]
    image_io.write_image(str(tmp_path / "a.png"), images(7)[0], overwrite=True)
    np.testing.assert_array_equal(image_io.read_image(str(tmp_path / "a.png")).pixels,
                                  images(7)[0])


# ------------------------------------------------------------------------ fusing files


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif"])
def test_fuse_files_keeps_exif(tmp_path, generator, ext):
    a, b = images(8)
    sources = [save(tmp_path / "a.jpg", a, exif_block()), save(tmp_path / "b.jpg", b)]
    out = str(tmp_path / f"fused{ext}")
    result = fuse_lib.fuse_files(sources, out, generator, fuse_lib.FuseOptions())
    with Image.open(out) as im:
        exif = im.getexif()
        assert exif.get(271) == "TestMake" and exif.get(274) == 6
        if ext != ".tif":  # TIFF keeps the first directory's descriptive tags only
            assert float(exif.get_ifd(0x8769)[0x829A]) == pytest.approx(0.01)
    if ext != ".jpg":
        written = image_io.read_image(out).pixels
        np.testing.assert_array_equal(written, result.fused)


def test_16_bit_pairs_stay_16_bit(tmp_path, generator):
    a, b = images(9, np.uint16)
    sources = [save(tmp_path / "a.png", a), save(tmp_path / "b.tif", b)]
    for ext in (".png", ".tif"):
        result = fuse_lib.fuse_files(sources, str(tmp_path / f"f{ext}"), generator,
                                     fuse_lib.FuseOptions())
        written = image_io.read_image(str(tmp_path / f"f{ext}")).pixels
        assert written.dtype == np.uint16
        np.testing.assert_array_equal(written, result.fused)
    with pytest.raises(InputError, match="write .png or .tif to keep 16 bits"):
        fuse_lib.fuse_files(sources, str(tmp_path / "f.jpg"), generator, fuse_lib.FuseOptions())
    assert not os.path.exists(tmp_path / "f.jpg")


def test_maps_are_written(tmp_path, generator):
    a, b = images(10, grey=True)
    c = images(11, grey=True)[0]
    sources = [save(tmp_path / n, x) for n, x in (("a.png", a), ("b.png", b), ("c.png", c))]
    result = fuse_lib.fuse_files(sources[:2], str(tmp_path / "f.png"), generator,
                                 fuse_lib.FuseOptions(), str(tmp_path / "m.png"),
                                 str(tmp_path / "i.png"))
    assert image_io.read_image(str(tmp_path / "f.png")).pixels.shape == (H, W)  # grey out
    focus = image_io.read_image(str(tmp_path / "m.png")).pixels
    np.testing.assert_array_equal(focus, np.where(result.f_final > 0.5, 255, 0))
    np.testing.assert_array_equal(image_io.read_image(str(tmp_path / "i.png")).pixels,
                                  1 - focus // 255)
    stack = fuse_lib.fuse_files(sources, str(tmp_path / "s.png"), generator,
                                fuse_lib.FuseOptions(), index_map=str(tmp_path / "si.png"))
    index = image_io.read_image(str(tmp_path / "si.png")).pixels
    np.testing.assert_array_equal(index, stack.index_map)
    rows, cols = np.indices((H, W))
    np.testing.assert_array_equal(stack.fused, np.stack([a, b, c])[index, rows, cols])
    # Either fusion order names the input frames in the index map.
    sequential = fuse_lib.fuse_files(sources, None, generator,
                                     fuse_lib.FuseOptions(stack_order="sequential"),
                                     index_map=str(tmp_path / "sq.png"))
    np.testing.assert_array_equal(sequential.fused,
                                  np.stack([a, b, c])[sequential.index_map, rows, cols])
    with pytest.raises(InputError, match="--stack_order must be one of bisect, sequential"):
        fuse_lib.FuseOptions(stack_order="reverse").validate()


def test_bad_jobs_are_refused_before_any_work(tmp_path, generator):
    a, b = images(12)
    pa, pb = save(tmp_path / "a.png", a), save(tmp_path / "b.png", b)
    small = save(tmp_path / "small.png", b[:30])
    (tmp_path / "folder.png").mkdir()
    existing = save(tmp_path / "exists.png", np.zeros_like(a))
    opts = fuse_lib.FuseOptions()
    cases = [
        ([pa], "f.png", {}, "need at least two sources to fuse, got one: "),
        ([pa, str(tmp_path / "none.png")], "f.png", {}, "none.png: no such file"),
        ([pa, str(tmp_path / "folder.png")], "f.png", {}, "folder.png: is a directory"),
        ([pa, pb], "exists.png", {}, "exists.png: already exists (pass --overwrite"),
        ([pa, pb], "a.png", {"overwrite": True}, "would replace one of the input files"),
        ([pa, pb], "folder.png", {}, "is a directory, expected an output file"),
        ([pa, pb], "nowhere/f.png", {}, "does not exist"),
        ([pa, pb], "f.gif", {}, "unsupported output format .gif"),
        ([pa, pb, pa], "f.png", {"focus_map": "m.png"}, "--focus_map is for pairs"),
        ([pa, pb], "f.png", {"index_map": "i.jpg"}, "must be lossless"),
        ([pa, small], "f.png", {}, "small.png: size 56x30 differs from"),
        ([pa, pb], "f.png", {"tile_size": -1}, "--tile_size must be >= 0"),
        ([pa, pb], "f.png", {"scales": "1,0.3", "mode": "paper"},
         "--mode/--working_side/--scales: scale '0.3' must be 1/k"),
        ([pa, pb], "f.png", {"scales": "1,0.5", "mode": "coarse_to_fine"},
         "scales apply to mode"),
        ([pa, pb], "f.png", {"working_side": 3}, "working_side must be an integer of at least"),
        ([pa, pb], "f.png", {"mode": "fast"}, "mode must be one of "),
        ([pa, pb], "f.png", {"refiner": "nowhere"}, "--refiner nowhere: no such folder"),
    ]
    for sources, output, kw, message in cases:
        options = fuse_lib.FuseOptions(overwrite=kw.pop("overwrite", False),
                                       tile_size=kw.pop("tile_size", None),
                                       scales=kw.pop("scales", None),
                                       mode=kw.pop("mode", "paper"),
                                       working_side=kw.pop("working_side", 448),
                                       refiner=kw.pop("refiner", None))
        kw = {k: str(tmp_path / v) for k, v in kw.items()}
        with pytest.raises(InputError) as err:
            fuse_lib.fuse_files(sources, str(tmp_path / output), generator, options, **kw)
        assert message in str(err.value), (message, str(err.value))
        assert "\n" not in str(err.value)
    assert listing(tmp_path) == ["a.png", "b.png", "exists.png", "folder.png", "small.png"]
    np.testing.assert_array_equal(image_io.read_image(existing).pixels, 0)  # untouched
    result = fuse_lib.fuse_files([pa, pb], existing, generator,
                                 fuse_lib.FuseOptions(overwrite=True))
    np.testing.assert_array_equal(image_io.read_image(existing).pixels, result.fused)
    assert opts.srr  # defaults: SRR on


def test_damaged_later_frame_leaves_nothing(tmp_path, generator):
    a, b = images(13)
    pa, pb = save(tmp_path / "a.png", a), save(tmp_path / "b.jpg", b)
    data = open(pb, "rb").read()
    open(pb, "wb").write(data[: len(data) // 3])
    with pytest.raises(InputError, match="b.jpg: cannot decode"):
        fuse_lib.fuse_files([pa, pb], str(tmp_path / "f.png"), generator, fuse_lib.FuseOptions(),
                            str(tmp_path / "m.png"))
    assert listing(tmp_path) == ["a.png", "b.jpg"]


def deny_writes_to(monkeypatch, *folders):
    """Makes `os.access` answer "no write permission" for these folders, as it does for a
    user without write permission (root is never refused, so the tests cannot use chmod)."""
    denied = {os.path.abspath(str(f)) for f in folders}
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and os.path.abspath(str(path)) in denied:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_unwritable_outputs_are_refused_before_any_work(tmp_path, generator, monkeypatch):
    a, b = images(14)
    pa, pb = save(tmp_path / "a.png", a), save(tmp_path / "b.png", b)
    (tmp_path / "a_file").write_text("keep")
    (tmp_path / "locked").mkdir()
    deny_writes_to(monkeypatch, tmp_path / "locked")
    read = []
    monkeypatch.setattr(image_io, "read_image", lambda *args: read.append(args) or 1 / 0)
    opts = fuse_lib.FuseOptions()
    cases = [
        ("a_file/f.png", {}, f"output folder {tmp_path / 'a_file'} is not a directory"),
        ("a_file/sub/f.png", {}, "does not exist"),
        ("locked/f.png", {}, f"cannot write to the output folder {tmp_path / 'locked'} "
                             "(permission denied)"),
        ("f.png", {"focus_map": "locked/m.png"}, "locked/m.png: cannot write to the output "
                                                 "folder"),
        ("f.png", {"index_map": "a_file/i.png"}, "is not a directory"),
    ]
    for output, kw, message in cases:
        kw = {k: str(tmp_path / v) for k, v in kw.items()}
        with pytest.raises(InputError) as err:
            fuse_lib.fuse_files([pa, pb], str(tmp_path / output), generator, opts, **kw)
        assert message in str(err.value), (message, str(err.value))
        assert "\n" not in str(err.value)
    assert not read
    assert listing(tmp_path) == ["a.png", "a_file", "b.png", "locked"]
    assert listing(tmp_path / "locked") == []
    for folder, message in ((tmp_path / "locked", "cannot write to the --output_dir folder"),
                            (tmp_path / "locked" / "new", "cannot create the --output_dir "
                                                          "folder (permission denied in"),
                            (tmp_path / "a_file" / "new", "is not a directory")):
        with pytest.raises(InputError, match=re.escape(message)):
            # A model path that does not exist: the folder check must come first.
            fuse_lib.fuse_batch(str(batch_folder(tmp_path / "in", exist_ok=True)), str(folder),
                                str(tmp_path / "no_model"), opts)
    with pytest.raises(InputError, match="cannot write to the --index_map folder"):
        fuse_lib.fuse_batch(str(tmp_path / "in"), str(tmp_path / "out"),
                            str(tmp_path / "no_model"), opts,
                            index_map_dir=str(tmp_path / "locked"))
    assert not read
    assert not os.path.exists(tmp_path / "out") and listing(tmp_path / "locked") == []


def test_batch_item_that_cannot_be_written_fails_alone(tmp_path, generator, monkeypatch):
    root = batch_folder(tmp_path / "in")
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if dst == str(tmp_path / "idx" / "01.png"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    messages = []
    report = fuse_lib.fuse_batch(str(root), str(tmp_path / "out"), generator,
                                 fuse_lib.FuseOptions(progress=False),
                                 index_map_dir=str(tmp_path / "idx"), log=messages.append)
    assert report.done == ["02"] and [s for s, _ in report.failed] == ["01", "03"]
    assert messages[0] == (f"01: {tmp_path / 'idx' / '01.png'}: cannot write the image "
                           "(Read-only file system)")
    # All or nothing: the fused image of 01, renamed before its index map failed, is gone.
    assert listing(tmp_path / "out") == ["02.png"]
    assert listing(tmp_path / "idx") == ["02.png"]


# ------------------------------------------------------------------------------- batches


def batch_folder(root, exist_ok=False):
    if exist_ok and root.exists():
        return root
    for letter, stems in (("A", ["01", "02", "03"]), ("B", ["01", "02", "03"]), ("C", ["01"])):
        (root / letter).mkdir(parents=True)
        for i, stem in enumerate(stems):
            save(root / letter / f"{stem}.png", images(20 + i + ord(letter))[0])
    data = open(root / "B" / "03.png", "rb").read()
    open(root / "B" / "03.png", "wb").write(data[:100])
    return root


def test_batch_fuses_pairs_and_stacks_and_reports_failures(tmp_path, generator):
    root = batch_folder(tmp_path / "in")
    messages = []
    report = fuse_lib.fuse_batch(str(root), str(tmp_path / "out"), generator,
                                 fuse_lib.FuseOptions(progress=False), "tif",
                                 str(tmp_path / "maps"), str(tmp_path / "idx"),
                                 log=messages.append)
    assert report.done == ["01", "02"] and [s for s, _ in report.failed] == ["03"]
    assert len(messages) == 1 and "03.png: cannot decode" in messages[0]
    assert listing(tmp_path / "out") == ["01.tif", "02.tif"]
    assert listing(tmp_path / "maps") == ["02.png"]  # focus maps for pairs only
    assert listing(tmp_path / "idx") == ["01.png", "02.png"]
    assert image_io.read_image(str(tmp_path / "idx" / "01.png")).pixels.max() <= 2
    with pytest.raises(InputError, match="01.tif: already exists"):
        fuse_lib.fuse_batch(str(root), str(tmp_path / "out"), generator,
                            fuse_lib.FuseOptions(progress=False), "tif")


def test_batch_skip_existing_computes_only_missing_outputs(tmp_path, generator, monkeypatch):
    root = batch_folder(tmp_path / "in")
    out, idx = tmp_path / "out", tmp_path / "idx"
    opts = fuse_lib.FuseOptions(progress=False)
    report = fuse_lib.fuse_batch(str(root), str(out), generator, opts, index_map_dir=str(idx),
                                 log=lambda m: None)
    assert report.done == ["01", "02"]
    # An interrupted run: 02 never written, 01's index map missing.
    os.remove(out / "02.png")
    os.remove(idx / "01.png")
    kept = (out / "01.png").stat()
    with pytest.raises(InputError) as err:
        fuse_lib.fuse_batch(str(root), str(out), generator, opts, index_map_dir=str(idx))
    assert str(err.value) == (f"{out / '01.png'}: already exists (pass --overwrite to replace "
                              "it, or --skip_existing to keep it and fuse only the missing "
                              "outputs)")
    with pytest.raises(InputError, match="pass one of the two"):
        fuse_lib.fuse_batch(str(root), str(out), generator,
                            fuse_lib.FuseOptions(overwrite=True, skip_existing=True))
    fused = []
    real = fuse_lib.fuse_files
    monkeypatch.setattr(fuse_lib, "fuse_files",
                        lambda *args: fused.append(args[:2] + args[4:]) or real(*args))
    skip = fuse_lib.FuseOptions(progress=False, skip_existing=True)
    report = fuse_lib.fuse_batch(str(root), str(out), generator, skip, index_map_dir=str(idx),
                                 log=lambda m: None)
    assert report.done == ["01", "02"] and report.skipped == []
    assert [s for s, _ in report.failed] == ["03"]
    assert [(os.path.basename(a[0][0]), a[1], a[2], a[3]) for a in fused] == [
        ("01.png", None, None, str(idx / "01.png")),  # the index map only
        ("02.png", str(out / "02.png"), None, None),  # the fused image only
        ("03.png", str(out / "03.png"), None, str(idx / "03.png"))]
    assert (out / "01.png").stat().st_mtime_ns == kept.st_mtime_ns
    assert (out / "01.png").stat().st_ino == kept.st_ino
    assert listing(out) == ["01.png", "02.png"] and listing(idx) == ["01.png", "02.png"]
    # Everything in place: nothing runs and the model is not even loaded.
    for letter in "AB":
        os.remove(root / letter / "03.png")
    fused.clear()
    report = fuse_lib.fuse_batch(str(root), str(out), str(tmp_path / "no_model"), skip,
                                 index_map_dir=str(idx))
    assert report.skipped == ["01", "02"] and not report.done and not report.failed
    assert not fused


def test_cli_skip_existing(tmp_path, generator, model_dir):
    root = batch_folder(tmp_path / "in")
    for letter in "ABC":
        for name in os.listdir(root / letter):
            if name != "01.png":
                os.remove(root / letter / name)
    for letter in "AB":
        save(root / letter / "02.png", images(50 + ord(letter))[0])
    fuse_lib.fuse_batch(str(root), str(tmp_path / "out"), generator,
                        fuse_lib.FuseOptions(progress=False))
    os.remove(tmp_path / "out" / "02.png")
    done = run_cli("--input_dir", "in", "--output_dir", "out", "--model", model_dir, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("or --skip_existing to keep it and fuse only the missing "
                                        "outputs)")
    done = run_cli("--input_dir", "in", "--output_dir", "out", "--model", model_dir,
                   "--skip_existing", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1 fused into out, 1 skipped (outputs exist), 0 failed"
    assert listing(tmp_path / "out") == ["01.png", "02.png"]
    done = run_cli("a.png", "b.png", "-o", "f.png", "--skip_existing", cwd=tmp_path)
    assert done.returncode == 2 and "are for batch mode" in done.stderr


def test_batch_folder_problems(tmp_path):
    opts = fuse_lib.FuseOptions()
    with pytest.raises(InputError, match="not a directory"):
        fuse_lib.plan_batch(str(tmp_path / "none"), str(tmp_path / "o"), opts)
    (tmp_path / "A").mkdir()
    with pytest.raises(InputError, match="needs subfolders A/ and B/"):
        fuse_lib.plan_batch(str(tmp_path), str(tmp_path / "o"), opts)
    (tmp_path / "B").mkdir()
    save(tmp_path / "A" / "1.png", images(30)[0])
    with pytest.raises(InputError, match="no file for the stems 1"):
        fuse_lib.plan_batch(str(tmp_path), str(tmp_path / "o"), opts)
    save(tmp_path / "B" / "1.jpg", images(31)[0])
    save(tmp_path / "B" / "2.jpg", images(31)[0])
    with pytest.raises(InputError, match="without a partner in A/: 2"):
        fuse_lib.plan_batch(str(tmp_path), str(tmp_path / "o"), opts)
    os.remove(tmp_path / "B" / "2.jpg")
    (tmp_path / "C").mkdir()
    (tmp_path / "D").mkdir()
    save(tmp_path / "D" / "1.png", images(32)[0])
    with pytest.raises(InputError, match="missing from C/ but present in D/"):
        fuse_lib.plan_batch(str(tmp_path), str(tmp_path / "o"), opts)
    os.remove(tmp_path / "D" / "1.png")
    items = fuse_lib.plan_batch(str(tmp_path), str(tmp_path / "o"), opts)
    assert [(i.stem, len(i.sources), os.path.basename(i.output)) for i in items] == [
        ("1", 2, "1.png")]


# ------------------------------------------------------------------ the entry point itself


def run_cli(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "mfif_tf.fuse", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_fuses_a_pair(tmp_path, model_dir):
    a, b = images(40)
    save(tmp_path / "a.jpg", a, exif_block())
    save(tmp_path / "b.jpg", b)
    done = run_cli("a.jpg", "b.jpg", "-o", "fused.png", "--focus_map", "map.png",
                   "--index_map", "idx.png", "--model", model_dir, "--edge_pixels", "1", "--flips",
                   "--mode=paper", "--scales=1,0.5,0.25", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "fused.png: 2 frames of 56x40 fused" in done.stdout
    # The line says what G computed in: the CPU's default precision for a model path.
    assert f"s in {common.cpu_default_precision()}, SRR" in done.stdout
    assert listing(tmp_path) == ["a.jpg", "b.jpg", "fused.png", "idx.png", "map.png"]
    assert set(np.unique(image_io.read_image(str(tmp_path / "map.png")).pixels)) <= {0, 255}
    assert image_io.read_image(str(tmp_path / "fused.png")).exif is not None


def test_cli_errors_exit_2_with_one_line(tmp_path):
    a, b = images(41)
    save(tmp_path / "a.png", a)
    save(tmp_path / "b.png", b)
    done = run_cli("a.png", "b.png", "-o", "fused.png", "--model", "missing_model",
                   cwd=tmp_path)
    assert done.returncode == 2
    ours = [line for line in done.stderr.splitlines() if line.startswith("mfif-fuse")]
    assert ours == ["mfif-fuse: error: model path does not exist: missing_model"]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ours[0]
    assert listing(tmp_path) == ["a.png", "b.png"]


def test_cli_threads_flag(tmp_path, model_dir):
    a, b = images(42)
    save(tmp_path / "a.png", a)
    save(tmp_path / "b.png", b)
    done = run_cli("a.png", "b.png", "-o", "fused.png", "--model", model_dir, "--threads", "1",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert listing(tmp_path) == ["a.png", "b.png", "fused.png"]
    done = run_cli("a.png", "b.png", "-o", "f2.png", "--threads", "-1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "mfif-fuse: error: --threads must be >= 0, got -1"


def test_cli_unwritable_output_folders(tmp_path):
    a, b = images(43)
    save(tmp_path / "a.png", a)
    save(tmp_path / "b.png", b)
    (tmp_path / "a_file").write_text("keep")
    batch_folder(tmp_path / "in")
    for args, message in (
            (["a.png", "b.png", "-o", "a_file/f.png"],
             f"a_file/f.png: output folder {tmp_path / 'a_file'} is not a directory"),
            (["--input_dir", "in", "--output_dir", "a_file/out"],
             f"a_file/out: cannot be the --output_dir folder: {tmp_path / 'a_file'} is not a "
             "directory")):
        done = run_cli(*args, "--model", "missing_model", cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == f"mfif-fuse: error: {message}"
    assert listing(tmp_path) == ["a.png", "a_file", "b.png", "in"]
    assert (tmp_path / "a_file").read_text() == "keep"


def test_cli_model_load_error_is_one_line(tmp_path, generator):
    """A work dir whose config.json does not describe its checkpoint: TensorFlow warns about
    every unrestored value when it deletes the checkpoint at exit, after the message."""
    import dataclasses
    import json

    from mfif_tf.model_io import variables_by_path

    work = tmp_path / "work"
    work.mkdir()
    (work / "config.json").write_text(json.dumps(
        {"model": dataclasses.asdict(model_config("paper"))}))
    ckpt = tf.train.Checkpoint(generator=variables_by_path(generator), step=tf.Variable(3))
    tf.train.CheckpointManager(ckpt, str(work / "checkpoints"), 1).save()
    a, b = images(44)
    save(tmp_path / "a.png", a)
    save(tmp_path / "b.png", b)
    done = run_cli("a.png", "b.png", "-o", "f.png", "--model", "work", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[:2000]
    assert lines[0].startswith("mfif-fuse: error: work: cannot load the model (")
    assert listing(tmp_path) == ["a.png", "b.png", "work"]


def test_tiles_below_the_minimum_are_refused(tmp_path):
    a, b = images(45)
    save(tmp_path / "a.png", a)
    save(tmp_path / "b.png", b)
    done = run_cli("a.png", "b.png", "-o", "f.png", "--tile_size", "7", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "mfif-fuse: error: --tile_size 7 is too small: tiles need at least 64 pixels a side "
        "(below that the halos around each tile cost more than the tile); 0 is the whole "
        "image at once")
    for tile in (0, fuse_lib.MIN_TILE_SIZE, None):
        fuse_lib.FuseOptions(tile_size=tile).validate()
    with pytest.raises(InputError, match="--tile_size 63 is too small"):
        fuse_lib.FuseOptions(tile_size=fuse_lib.MIN_TILE_SIZE - 1).validate()
    assert listing(tmp_path) == ["a.png", "b.png"]


def oversized_png(path, width, height):
    """A PNG whose header announces width x height pixels (its data is a few rows)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * min(width, 1000)) * 2)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))
    return str(path)


def oversized_tiff(path):
    """A TIFF whose header announces 60000 x 60000 pixels in strips it does not hold."""
    save(path, images(46, grey=True)[0])
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(str(path)) as tif:
        for code in (256, 257):  # ImageWidth, ImageLength
            offset = tif.pages[0].tags[code].valueoffset
            data[offset:offset + 4] = struct.pack("<I", 60000)
    path.write_bytes(bytes(data))
    return str(path)


def test_decoder_messages_stay_out_of_the_terminal(tmp_path, capfd):
    png = oversized_png(tmp_path / "big.png", 100000, 100000)
    with pytest.raises(InputError) as err:
        image_io.read_image(png)
    assert str(err.value) == (f"{png}: a PNG of 100000x100000 pixels is too large to decode (at "
                              "most 1000000 pixels a side and 1073741824 pixels)")
    short = oversized_png(tmp_path / "short.png", 3000, 3000)  # rows missing
    with pytest.raises(InputError, match="short.png: cannot decode the image .*libpng error: "
                                         "Not enough image data"):
        image_io.read_image(short)
    with pytest.raises(InputError, match="big.tif: cannot decode the image"):
        image_io.read_image(oversized_tiff(tmp_path / "big.tif"))
    assert capfd.readouterr().err == ""


def test_cli_oversized_inputs_give_one_line(tmp_path):
    save(tmp_path / "a.png", images(47)[0])
    oversized_png(tmp_path / "wide.png", 2000000, 1)
    oversized_tiff(tmp_path / "big.tif")
    for name in ("wide.png", "big.tif"):
        done = run_cli(name, "a.png", "-o", "f.png", cwd=tmp_path)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"mfif-fuse: error: {name}: "), lines
    assert listing(tmp_path) == ["a.png", "big.tif", "wide.png"]


def dead_pid():
    """The process id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def plant_debris(folder, dead):
    """Temporary files of killed runs (removed) and look-alikes (kept); returns both lists."""
    folder.mkdir(exist_ok=True)
    stale = [f".f.png.{dead}.0a1b2c3d.part", ".f.png.k3x_q9za.part",  # mkstemp's names
             f".m.TIF.{dead}.ffffffff.part"]
    kept = [f".f.png.{os.getpid()}.0a1b2c3d.part",  # a live process
            ".f.png.part", f"f.png.{dead}.0a1b2c3d.part", f".f.txt.{dead}.0a1b2c3d.part",
            f".f.png.{dead}.0a1b2c3.part", f".f.png.{dead}.0A1B2C3D.part", ".f.png.k3x_q9z.part",
            f".f.png.{dead}.0a1b2c3d.part.bak", "notes.part"]
    for name in stale + kept:
        (folder / name).write_bytes(b"x")
    (folder / f".d.png.{dead}.00000000.part").mkdir(exist_ok=True)  # a directory
    kept.append(f".d.png.{dead}.00000000.part")
    link = folder / f".l.png.{dead}.11111111.part"
    if not link.is_symlink():
        link.symlink_to(folder / "notes.part")
    kept.append(link.name)
    return stale, kept


def test_stale_temporary_files_are_removed_and_nothing_else(tmp_path, generator):
    dead = dead_pid()
    a, b = images(48)
    pa, pb = save(tmp_path / "a.png", a), save(tmp_path / "b.png", b)
    stale, kept = plant_debris(tmp_path / "out", dead)
    _, kept_maps = plant_debris(tmp_path / "maps", dead)
    fuse_lib.fuse_files([pa, pb], str(tmp_path / "out" / "f.png"), generator,
                        fuse_lib.FuseOptions(), str(tmp_path / "maps" / "m.png"))
    assert listing(tmp_path / "out") == sorted(kept + ["f.png"])
    assert listing(tmp_path / "maps") == sorted(kept_maps + ["m.png"])
    assert (tmp_path / "out" / "notes.part").read_bytes() == b"x"
    # Batch mode: every output folder once, before the items run.
    root = batch_folder(tmp_path / "in")
    plant_debris(tmp_path / "bout", dead)
    plant_debris(tmp_path / "idx", dead)
    fuse_lib.fuse_batch(str(root), str(tmp_path / "bout"), generator,
                        fuse_lib.FuseOptions(progress=False), index_map_dir=str(tmp_path / "idx"),
                        log=lambda m: None)
    assert listing(tmp_path / "bout") == sorted(kept + ["01.png", "02.png"])
    assert listing(tmp_path / "idx") == sorted(kept + ["01.png", "02.png"])
    # Refused jobs change nothing.
    plant_debris(tmp_path / "out", dead)
    with pytest.raises(InputError, match="already exists"):
        fuse_lib.fuse_files([pa, pb], str(tmp_path / "out" / "f.png"), generator,
                            fuse_lib.FuseOptions())
    assert listing(tmp_path / "out") == sorted(stale + kept + ["f.png"])


def test_output_set_temporary_names(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: seen.append(src) or real(src, dst))
    image_io.write_image(str(tmp_path / "x.png"), images(49)[0])
    assert re.fullmatch(rf"\.x\.png\.{os.getpid()}\.[0-9a-f]{{8}}\.part",
                        os.path.basename(seen[0]))
    assert image_io.remove_stale_parts(str(tmp_path)) == []


def test_jpeg_decoding_of_fuse_and_the_savedmodel_agree(tmp_path):
    """docs/fusion.md: Pillow's JPEG pixels (fuse) equal the decoding of the fuse_bytes
    signatures (the accurate integer DCT), not TensorFlow's default fast one; lossless files
    decode identically."""
    from export.serving import decode_rgb

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("20_A.jpg", "20_B.jpg"):
        path = os.path.join(root, "examples", "lytro", name)
        with open(path, "rb") as f:
            data = f.read()
        ours = image_io.read_image(path).pixels
        np.testing.assert_array_equal(ours, decode_rgb(tf.constant(data)).numpy())
        fast = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
        diff = np.abs(ours.astype(int) - fast)
        assert 0 < diff.max() <= 4 and np.mean(diff.max(axis=-1) > 0) > 0.5
        png = save(tmp_path / f"{name}.png", ours)
        with open(png, "rb") as f:
            np.testing.assert_array_equal(tf.io.decode_png(f.read(), channels=3).numpy(), ours)
    with open(os.path.join(root, "docs", "fusion.md")) as f:
        docs = " ".join(f.read().split())
    assert "JPEG sources and the SavedModel" in docs
    assert 'dct_method="INTEGER_ACCURATE"' in docs


def test_batch_with_a_packaged_name_runs_the_default_g_below_full_size(tmp_path):
    """`--model=small` in batch mode on TensorFlow: every item finds the G that runs below
    full size for the small G (the default G, `common.PACKAGED_COARSE_GENERATORS`), as a
    single job does; the small G itself there gives another map."""
    import cv2

    from data_pipeline.embedded import load_embedded

    photo = dict(load_embedded("val"))["coffee"]
    h, w = photo.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2, h // 2), (w // 4, h // 3), 20, 0, 360, 1, -1)
    blurred = cv2.GaussianBlur(photo, (0, 0), 3.0)
    inside = mask.astype(bool)[:, :, None]
    a, b = np.where(inside, photo, blurred), np.where(inside, blurred, photo)
    for letter, pixels in (("A", a), ("B", b)):
        (tmp_path / "in" / letter).mkdir(parents=True)
        save(tmp_path / "in" / letter / "01.png", pixels)
    # A shorter side of 128 puts G below full size on this photo.
    opts = fuse_lib.FuseOptions(engine="tensorflow", g_side=128, precision="float32",
                                progress=False)
    report = fuse_lib.fuse_batch(str(tmp_path / "in"), str(tmp_path / "out"), "small", opts,
                                 focus_map_dir=str(tmp_path / "maps"))
    assert report.done == ["01"] and not report.failed
    written = image_io.read_image(str(tmp_path / "maps" / "01.png")).pixels > 127
    single = fusion.fuse_arrays([a, b], "small", g_side=128, precision="float32").f_final
    np.testing.assert_array_equal(written, single > 0.5)
    small_below = fusion.fuse_arrays([a, b], fusion.resolve_generator("small", "float32"),
                                     g_side=128).f_final
    assert np.mean(written == (small_below > 0.5)) < 0.9999
    assert np.mean(written == mask.astype(bool)) > 0.99
