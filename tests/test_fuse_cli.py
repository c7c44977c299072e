"""`mfif-fuse`: image files in and out, EXIF, batch folders, bad input (one-line errors, exit
code 2, nothing written)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image

from mfif_tf import fuse_lib, fusion, image_io
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
         "scales apply to mode 'paper'"),
        ([pa, pb], "f.png", {"working_side": 3}, "working_side must be an integer of at least"),
        ([pa, pb], "f.png", {"mode": "fast"}, "mode must be one of coarse_to_fine, paper"),
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


# ------------------------------------------------------------------------------- batches


def batch_folder(root):
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
