"""`mfif_benchmark`: multi-focus test sets (Lytro, MFFW, grayscale, your own) as tfds splits.

Every subfolder of manual_dir laid out as `A/`, `B/` (optionally `C/`, ... and `GT/`) becomes a
split named after the folder (lower case, characters other than letters, digits and `_`
replaced by `_`). Sources are paired by file stem (`data_pipeline.readers.list_test_pairs`).
"""

from __future__ import annotations

import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from data_pipeline import readers
from data_pipeline.tfds import beam_support

_DESCRIPTION = """
Multi-focus image fusion test sets: for every scene two or more source images focused at
different depths (`sources`, in folder order A, B, C, ...) and, when the set has one, an
all-in-focus reference (`gt`, an empty sequence otherwise). Grayscale sets are stored with the
gray channel tripled, as MFIF-GAN feeds them to its generator (section 4.1.2); `grayscale`
marks them.
"""

_CITATION = """
@article{nejati2015lytro,
  title={Multi-focus image fusion using dictionary-based sparse representation},
  author={Nejati, Mansour and Samavi, Shadrokh and Shirani, Shahram},
  journal={Information Fusion}, volume={25}, pages={72--84}, year={2015}
}
@article{xu2020mffw,
  title={MFFW: A new dataset for multi-focus image fusion},
  author={Xu, Shuang and Wei, Xiaoli and Zhang, Chunxia and Liu, Junmin and Zhang, Jiangshe},
  journal={arXiv preprint arXiv:2002.04780}, year={2020}
}
@article{liu2020survey,
  title={Multi-focus image fusion: A survey of the state of the art},
  author={Liu, Yu and Wang, Lei and Cheng, Juan and Li, Chang and Chen, Xun},
  journal={Information Fusion}, volume={64}, pages={71--91}, year={2020}
}
"""

_MANUAL = """
Put each test set in its own subfolder of `--manual_dir`, with the source images in `A/`, `B/`
(and `C/`, `D/`, ... for more than two sources) and optionally the all-in-focus references in
`GT/`; files of one scene share their stem (`A/01.jpg`, `B/01.jpg`). For example:

  manual_dir/lytro/{A,B}/01.jpg ...        Lytro, 20 pairs (Nejati et al. 2015)
  manual_dir/mffw/{A,B}/...                MFFW (Xu et al. 2020, arXiv:2002.04780)
  manual_dir/grayscale/{A,B}/...           the 10 grayscale pairs (Liu et al. 2020)
  manual_dir/my_scenes/{A,B,C,GT}/...      your own

The split of each set is its folder name in lower case (`lytro`, `mffw`, `grayscale`, ...).
manual_dir must be a local folder (also for Beam builds, whose workers read the files by
path: on a distributed runner, a folder every worker sees).
"""


def split_name(folder: str) -> str:
    """tfds split name of a test-set folder."""
    name = re.sub(r"\W", "_", folder.strip().lower())
    if not name or not re.match(r"^[a-z]", name):
        name = f"set_{name}"
    return name


def find_test_sets(manual_dir: epath.PathLike) -> dict[str, str]:
    """{split name: folder} of the test sets in `manual_dir` (or manual_dir itself)."""
    root = epath.Path(manual_dir)

    def is_set(p: epath.Path) -> bool:
        return (p / "A").is_dir() and (p / "B").is_dir()

    if is_set(root):
        return {split_name(root.name): str(root)}
    sets: dict[str, str] = {}
    for p in sorted(root.iterdir()):
        if p.is_dir() and is_set(p):
            name = split_name(p.name)
            if name in sets:
                raise readers.DataError(
                    f"test sets {sets[name]} and {p} map to the same split name {name!r}")
            sets[name] = str(p)
    if not sets:
        raise readers.DataError(
            f"manual_dir {root} has no test set: expected subfolders with A/ and B/")
    return sets


def _read(path: str) -> tuple[np.ndarray, bool]:
    """uint8 (H, W, 3) image and whether the file is grayscale."""
    try:
        with Image.open(path) as im:
            gray = im.mode in ("L", "LA", "I", "I;16", "1", "F")
    except (OSError, SyntaxError) as e:
        raise readers.DataError(f"cannot read image {path}: {e}") from None
    return readers.read_rgb(path), gray


class Builder(beam_support.BeamSwitch, tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for mfif_benchmark."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(doc="file stem shared by the sources"),
                "sources": tfds.features.Sequence(
                    tfds.features.Image(shape=(None, None, 3)),
                    doc="source images I_A, I_B, ... (folders A, B, ...)"),
                "gt": tfds.features.Sequence(
                    tfds.features.Image(shape=(None, None, 3)),
                    doc="all-in-focus reference: one image, or none"),
                "grayscale": tfds.features.Scalar(np.bool_, doc="sources were grayscale"),
            }),
            supervised_keys=None,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        sets = find_test_sets(dl_manager.manual_dir)
        return {name: self._generate_examples(folder) for name, folder in sets.items()}

    def _generate_examples(self, folder: str):
        if self.use_beam:  # each worker reads its own scenes
            return beam_support.examples_transform(
                readers.list_test_pairs(folder), _beam_examples, folder=folder)
        return self._examples(folder)

    def _examples(self, folder: str):
        for pair in readers.list_test_pairs(folder):
            yield pair["id"], make_example(pair, folder)


def make_example(pair: dict, folder: str) -> dict:
    """The features of one scene of `readers.list_test_pairs(folder)`."""
    images, grays = zip(*(_read(p) for p in pair["sources"]))
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise readers.DataError(
            f"sources of {pair['id']!r} in {folder} differ in size: "
            + ", ".join(f"{p} {im.shape[1]}x{im.shape[0]}"
                        for p, im in zip(pair["sources"], images)))
    gt = [] if pair["gt"] is None else [_read(pair["gt"])[0]]
    return {
        "id": pair["id"],
        "sources": list(images),
        "gt": gt,
        "grayscale": all(grays),
    }


def _beam_examples(pair: dict, folder: str):
    """Beam builds: the example of one scene."""
    yield pair["id"], make_example(pair, folder)
