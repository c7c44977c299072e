"""Reading and writing the photos that `mfif-fuse` fuses: JPEG, PNG and TIFF, 8 or 16 bit.

Pixels come back as NumPy arrays in the file's own bit depth: uint8 or uint16, (H, W) for grey
and (H, W, 3) RGB for colour (an alpha channel is dropped). The first frame's EXIF travels to
the output: whole in JPEG and PNG (an `eXIf` chunk), and in TIFF the descriptive tags of the
first directory (camera make and model, date, orientation, ...), since the TIFF writer used
here cannot write the Exif sub-directory.

Every output is first written to a hidden temporary file in the destination folder and then
renamed, so a failure never leaves a partial file, and an existing file is only replaced when
asked to. The temporary file is `.<name>.<pid>.<8 hex digits>.part`; one that a killed process
left behind is removed by `remove_stale_parts` at a later run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import stat
import struct
import sys
import tempfile
import warnings
import zlib
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import tifffile
from PIL import Image

READ_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
WRITE_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".tif": "tiff", ".tiff": "tiff"}
_EXIF_PREFIX = b"Exif\x00\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Descriptive tags of the first TIFF directory that are worth carrying to a TIFF output:
# ImageDescription, Make, Model, Orientation, Software, DateTime, Artist, Copyright.
_TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)
_TIFF_ORIENTATION = 274
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
# PNG sizes the decoder (OpenCV with libpng) accepts: libpng's default limit per side, which
# OpenCV keeps, and OpenCV's limit on the pixel count (its environment variable raises it).
PNG_MAX_SIDE = 1_000_000
_PNG_MAX_PIXELS_DEFAULT = 1 << 30


class InputError(ValueError):
    """A problem with the user's input or output paths, told in one line that names it."""


@dataclasses.dataclass
class LoadedImage:
    """An image file's pixels (uint8/uint16, (H, W) or (H, W, 3)) and its EXIF block
    (`b"Exif\\0\\0"` + TIFF structure, or None)."""

    pixels: np.ndarray
    exif: bytes | None
    path: str


def _sniff(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return "other"


def check_input_file(path: str) -> None:
    """One-line errors for a missing path, a directory or an unreadable file."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected an image file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: cannot read the file (permission denied)")


def _exif_from_pil(im: Image.Image) -> bytes | None:
    raw = im.info.get("exif")
    if isinstance(raw, bytes) and raw:
        return raw if raw.startswith(_EXIF_PREFIX) else _EXIF_PREFIX + raw
    return None


def _exif_from_tiff(path: str) -> bytes | None:
    """The descriptive part of a TIFF's first directory, with its Exif and GPS directories."""
    try:
        with Image.open(path) as im:
            source = im.getexif()
            exif = Image.Exif()
            for tag in _TIFF_TEXT_TAGS + (_TIFF_ORIENTATION,):
                if tag in source:
                    exif[tag] = source[tag]
            for ifd in (_EXIF_IFD, _GPS_IFD):
                if ifd in source:
                    sub = source.get_ifd(ifd)
                    if sub:
                        exif.get_ifd(ifd).update(sub)
            return exif.tobytes() if len(exif) else None
    except Exception:  # metadata is a courtesy: a TIFF PIL cannot parse still fuses
        return None


def _normalise_pixels(pixels: np.ndarray, path: str) -> np.ndarray:
    if pixels.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{path}: unsupported pixel type {pixels.dtype}; expected 8- or 16-bit "
                         "unsigned integers")
    if pixels.ndim == 3 and pixels.shape[2] in (1, 2):  # grey, grey + alpha
        pixels = pixels[:, :, 0]
    elif pixels.ndim == 3 and pixels.shape[2] == 4:  # RGB + alpha
        pixels = pixels[:, :, :3]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise InputError(f"{path}: unsupported image layout {pixels.shape}; expected grey or RGB")
    return np.ascontiguousarray(pixels)


def _read_pil(path: str) -> LoadedImage:
    with Image.open(path) as im:
        im.load()
        exif = _exif_from_pil(im)
        if im.mode in ("I;16", "I;16B", "I;16L"):
            pixels = np.asarray(im).astype(np.uint16)
        elif im.mode in ("L", "RGB"):
            pixels = np.asarray(im)
        elif im.mode in ("1", "LA", "La"):
            pixels = np.asarray(im.convert("L"))
        elif im.mode in ("RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "P", "PA", "LAB", "HSV"):
            pixels = np.asarray(im.convert("RGB"))
        else:
            raise InputError(f"{path}: unsupported image mode {im.mode}")
    return LoadedImage(pixels, exif, path)


# Temporary files of `OutputSet`: `.<name>.<pid>.<8 hex>.part`, and those of earlier versions,
# `.<name>.<8 of a-z 0-9 _>.part` (tempfile.mkstemp's names); <name> is an output image name.
_OUTPUT_NAME = r"\.(?P<name>.+\.(?i:jpe?g|png|tiff?))"
_PART = re.compile(_OUTPUT_NAME + r"\.(?P<pid>[0-9]+)\.[0-9a-f]{8}\.part")
_OLD_PART = re.compile(_OUTPUT_NAME + r"\.[a-z0-9_]{8}\.part")


def _temp_path(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.part")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it exists, and is someone else's
        return True
    return True


def remove_stale_parts(folder: str) -> list[str]:
    """Removes the temporary files that `OutputSet` left in `folder` when its process was
    killed (kill -9, a power cut): regular files named exactly like ours whose process no
    longer runs (those of earlier versions, without a process id, always). Nothing else is
    touched. Returns the paths removed."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        new, old = _PART.fullmatch(name), _OLD_PART.fullmatch(name)
        if not (new or old) or (new and _process_alive(int(new["pid"]))):
            continue
        path = os.path.join(folder, name)
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.remove(path)
                removed.append(path)
        except OSError:  # gone meanwhile, or not ours to remove
            pass
    return removed


class _DecoderFailed(OSError):
    """A decoder gave up without a reason of its own (it printed one, see `_decoder_output`)."""


def _check_png_size(path: str) -> None:
    """Refuses a PNG whose header announces more pixels than the decoder accepts."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[12:16] != b"IHDR":
        return  # the decoder reports the damage
    width, height = struct.unpack(">II", head[16:24])
    max_pixels = _PNG_MAX_PIXELS_DEFAULT
    with contextlib.suppress(ValueError):
        max_pixels = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", max_pixels))
    if max(width, height) > PNG_MAX_SIDE or width * height > max_pixels:
        raise InputError(f"{path}: a PNG of {width}x{height} pixels is too large to decode (at "
                         f"most {PNG_MAX_SIDE} pixels a side and {max_pixels} pixels)")


def _read_png(path: str) -> LoadedImage:
    _check_png_size(path)
    pixels = cv2.imread(path, cv2.IMREAD_UNCHANGED)  # cv2 keeps 16-bit colour, PIL does not
    if pixels is None:
        raise _DecoderFailed("undecodable PNG")
    if pixels.ndim == 3 and pixels.shape[2] >= 3:
        pixels = pixels[:, :, [2, 1, 0] + list(range(3, pixels.shape[2]))]
    try:
        with Image.open(path) as im:
            exif = _exif_from_pil(im)
    except Exception:  # metadata is a courtesy (PIL refuses some images OpenCV decodes)
        exif = None
    return LoadedImage(pixels, exif, path)


def _read_tiff(path: str) -> LoadedImage:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        pixels = page.asarray()
        planar = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
    if planar and pixels.ndim == 3:
        pixels = np.moveaxis(pixels, 0, -1)
    return LoadedImage(pixels, _exif_from_tiff(path), path)


class _ListHandler(logging.Handler):
    def __init__(self, messages: list[str]):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _decoder_output(messages: list[str]) -> Iterator[None]:
    """Collects into `messages` what the decoders print or log in the block instead of
    letting it reach the terminal: libpng and OpenCV write to the stderr file descriptor,
    tifffile logs, PIL warns about very large images. A failure is then told in one line
    (with the decoder's reason when the exception has none); a success prints nothing."""
    logger = logging.getLogger("tifffile")
    handler, propagate = _ListHandler(messages), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        try:
            capture = tempfile.TemporaryFile()
        except OSError:  # no writable temporary folder: the messages are dropped
            capture = open(os.devnull, "w+b")
        with capture, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                capture.seek(0)
                native = capture.read(1 << 16).decode("utf-8", "replace").splitlines()
                messages[:0] = [line.strip() for line in native if line.strip()]
    finally:
        os.close(saved)
        logger.removeHandler(handler)
        logger.propagate = propagate


def read_image(path: str) -> LoadedImage:
    """Reads a JPEG, PNG or TIFF (also BMP, WebP) file; raises `InputError` naming the file.
    What the decoders print or log never reaches the terminal (see `_decoder_output`)."""
    check_input_file(path)
    kind = _sniff(path)
    messages: list[str] = []
    try:
        with _decoder_output(messages):
            if kind == "png":
                image = _read_png(path)
            elif kind == "tiff":
                image = _read_tiff(path)
            else:
                image = _read_pil(path)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path}: not enough memory to decode the image") from None
    except Exception as err:  # decoders raise many types for damaged files
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, _DecoderFailed) and messages:
            detail = "; ".join(messages[:2])
        raise InputError(f"{path}: cannot decode the image (corrupt, truncated or not an "
                         f"image: {detail})") from None
    image.pixels = _normalise_pixels(image.pixels, path)
    return image


# ------------------------------------------------------------------------------- writing


def output_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in WRITE_FORMATS:
        raise InputError(f"{path}: unsupported output format {ext or '(no extension)'}; use "
                         ".png, .jpg or .tif")
    return WRITE_FORMATS[ext]


def unwritable_reason(folder: str) -> str | None:
    """Why no file can be created in the existing directory `folder`, or None."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):  # no statvfs: the access check below still applies
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    return None


def check_output_folder(folder: str, what: str = "output folder") -> None:
    """Refuses a folder that is not a directory or in which no file can be created; a folder
    still to be created is judged by the nearest existing folder above it."""
    existing = os.path.abspath(folder)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"{folder}: cannot be the {what}: {existing} is not a directory")
    reason = unwritable_reason(existing)
    if reason and existing == os.path.abspath(folder):
        raise InputError(f"{folder}: cannot write to the {what} ({reason})")
    if reason:
        raise InputError(f"{folder}: cannot create the {what} ({reason} in {existing})")


def check_output_path(path: str, overwrite: bool, inputs: Sequence[str] = ()) -> None:
    """Refuses outputs in missing or unwritable folders, onto directories, onto inputs, or
    onto existing files without `overwrite`."""
    output_format(path)
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected an output file name")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError(f"{path}: output folder {folder} is not a directory")
    if not os.path.isdir(folder):
        raise InputError(f"{path}: output folder {folder} does not exist")
    reason = unwritable_reason(folder)
    if reason:
        raise InputError(f"{path}: cannot write to the output folder {folder} ({reason})")
    real = os.path.realpath(path)
    if any(os.path.exists(p) and os.path.realpath(p) == real for p in inputs):
        raise InputError(f"{path}: output would replace one of the input files")
    if os.path.exists(path) and not overwrite:
        raise InputError(f"{path}: already exists (pass --overwrite to replace it)")


def check_can_store(path: str, pixels: np.ndarray) -> None:
    if output_format(path) == "jpeg" and pixels.dtype != np.uint8:
        raise InputError(f"{path}: JPEG stores 8 bits per channel but the image is "
                         f"{pixels.dtype}; write .png or .tif to keep 16 bits")


def _png_with_exif(png: bytes, exif: bytes) -> bytes:
    """Inserts an eXIf chunk (PNG 1.5 extension) before the first IDAT chunk."""
    data = exif[len(_EXIF_PREFIX):] if exif.startswith(_EXIF_PREFIX) else exif
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + data) & 0xFFFFFFFF)
    pos = len(_PNG_SIGNATURE)
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            return png[:pos] + chunk + png[pos:]
        pos += 12 + length
    raise ValueError("PNG without image data")


def _tiff_tags(exif: bytes | None) -> list[tuple]:
    """TIFF extratags for the descriptive first-directory tags of an EXIF block."""
    if not exif:
        return []
    parsed = Image.Exif()
    parsed.load(exif)
    tags = []
    for tag in _TIFF_TEXT_TAGS:
        value = parsed.get(tag)
        if isinstance(value, str) and value:
            tags.append((tag, "s", 0, value, True))
    orientation = parsed.get(_TIFF_ORIENTATION)
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        tags.append((_TIFF_ORIENTATION, "H", 1, orientation, True))
    return tags


def encode_image(f, path: str, pixels: np.ndarray, exif: bytes | None = None,
                 jpeg_quality: int = 95) -> None:
    """Writes `pixels` to the open binary file `f` in the format of `path`'s extension."""
    fmt = output_format(path)
    check_can_store(path, pixels)
    if fmt == "jpeg":
        extra = {"exif": exif} if exif else {}
        Image.fromarray(pixels).save(f, format="JPEG", quality=int(jpeg_quality),
                                     subsampling=0 if jpeg_quality >= 90 else 2, **extra)
    elif fmt == "png":
        bgr = pixels[:, :, ::-1] if pixels.ndim == 3 else pixels
        ok, data = cv2.imencode(".png", np.ascontiguousarray(bgr),
                                [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise OSError("PNG encoder failed")
        data = data.tobytes()
        f.write(_png_with_exif(data, exif) if exif else data)
    else:
        photometric = "rgb" if pixels.ndim == 3 else "minisblack"
        tifffile.imwrite(f, pixels, photometric=photometric, extratags=_tiff_tags(exif),
                         compression="zlib" if pixels.size > 0 else None, metadata=None)


def _os_detail(err: OSError) -> str:
    """An OSError's reason without its file names, e.g. "Read-only file system"."""
    return err.strerror or str(err).splitlines()[0] or type(err).__name__


class OutputSet:
    """Writes several files all or nothing: each goes to a temporary file beside its
    destination; `commit` renames them all, `discard` removes the temporaries.

    Use as a context manager: leaving the block without `commit` discards.
    """

    def __init__(self, overwrite: bool = False):
        self.overwrite = overwrite
        self._pending: list[tuple[str, str]] = []

    def add(self, path: str, pixels: np.ndarray, exif: bytes | None = None,
            jpeg_quality: int = 95) -> None:
        tmp = _temp_path(path)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as err:  # a read-only file system, no permission, a missing folder
            raise InputError(f"{path}: cannot write the image ({_os_detail(err)})") from None
        self._pending.append((tmp, path))
        try:
            with open(tmp, "wb") as f:
                encode_image(f, path, pixels, exif, jpeg_quality)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        except InputError:
            raise
        except OSError as err:  # a full disk
            raise InputError(f"{path}: cannot write the image ({_os_detail(err)})") from None
        except Exception as err:  # an encoder limit (JPEG: 65535 pixels a side)
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"{path}: cannot write the image ({detail})") from None

    def commit(self) -> None:
        """Renames every temporary file onto its destination. If a rename fails, the files
        this commit created are removed again (replaced files cannot be brought back)."""
        for tmp, path in self._pending:
            if os.path.exists(path) and not self.overwrite:
                raise InputError(f"{path}: already exists (pass --overwrite to replace it)")
        created = []
        for tmp, path in self._pending:
            existed = os.path.lexists(path)
            try:
                os.replace(tmp, path)
            except OSError as err:
                for done in created:
                    try:
                        os.remove(done)
                    except OSError:
                        pass
                raise InputError(f"{path}: cannot write the image ({_os_detail(err)})") from None
            if not existed:
                created.append(path)
        self._pending = []

    def discard(self) -> None:
        for tmp, _ in self._pending:
            try:
                os.remove(tmp)
            except OSError:
                pass
        self._pending = []

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def write_image(path: str, pixels: np.ndarray, exif: bytes | None = None,
                jpeg_quality: int = 95, overwrite: bool = False) -> None:
    """Writes one image atomically (see `OutputSet`)."""
    with OutputSet(overwrite) as out:
        out.add(path, pixels, exif, jpeg_quality)
        out.commit()
