"""`mfif_alpha_matte`: MFIF training pairs synthesised from segmentation data (section 4.1.1).

Each example holds the all-in-focus photo I, its focus map F and the pair (I_A, I_B) made by the
alpha-matte model (eqs. 10-11; with the hidden background filled in the `*filled*` config) or,
in the `conventional` config, by eqs. 12-13; all at the photo's own resolution, as PNG.
Cropping, resizing and flips happen later in the input pipeline
(`data_pipeline.pipeline.make_training_dataset(source="tfds")`).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from data_pipeline import readers, synthesis
from data_pipeline.tfds import beam_support

_DESCRIPTION = """
Synthetic multi-focus image pairs with the defocus spread effect, built as in MFIF-GAN
(section 4.1.1): a segmentation mask of PASCAL VOC 2012 (every object foreground) or of a
saliency mask folder is the focus map F; a Gaussian blur G(x, y; sigma) with MATLAB imgaussfilt's
kernel (2*ceil(2*sigma)+1 taps, replicate borders) makes I_A (foreground clear) and I_B
(background clear).
"""

_CITATION = """
@article{wang2021mfifgan,
  title={MFIF-GAN: A new generative adversarial network for multi-focus image fusion},
  author={Wang, Yicheng and Xu, Shuang and Liu, Junmin and Zhao, Zixiang and Zhang, Chunxia and
          Zhang, Jiangshe},
  journal={Signal Processing: Image Communication},
  volume={96},
  pages={116295},
  year={2021}
}
@article{everingham2015pascal,
  title={The Pascal Visual Object Classes Challenge: A Retrospective},
  author={Everingham, M. and Eslami, S. M. A. and Van Gool, L. and Williams, C. K. I. and
          Winn, J. and Zisserman, A.},
  journal={International Journal of Computer Vision},
  volume={111}, number={1}, pages={98--136}, year={2015}
}
"""

_MANUAL = """
Give `--manual_dir` (or `download_config=tfds.download.DownloadConfig(manual_dir=...)`) one of:

1. PASCAL VOC 2012: download `VOCtrainval_11-May-2012.tar` (about 2 GB) from the PASCAL VOC
   2012 page, http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ , and extract it. manual_dir is
   the extracted folder (holding `VOCdevkit/VOC2012`) or `VOC2012` itself. The
   `ImageSets/Segmentation/{train,val}.txt` lists give the train and validation splits
   (1464 / 1449 images).
2. A mask folder: `images/<id>.jpg`, `masks/<id>.png` (binary, foreground = 255 or 1),
   optional `train.txt` / `val.txt` listing ids. Without split files, a fixed hash of each id puts
   about one in ten examples into validation.
3. A folder whose subfolders are any of the above (e.g. `ecssd/` and `human_seg/`): all are used.

manual_dir must be a local folder (also for Beam builds, whose workers read the files by
path: on a distributed runner, a folder every worker sees).
"""


@dataclasses.dataclass
class AlphaMatteConfig(tfds.core.BuilderConfig):
    """Synthesis settings of one config.

    Attributes:
      synthesis: "alpha_matte" (eqs. 10-11), "alpha_matte_filled" (eqs. 10-11 with the hidden
        background filled) or "conventional" (eqs. 12-13).
      sigma: sigma of G when `sigma_range` is None.
      sigma_range: (lo, hi): per-example sigma ~ U[lo, hi], drawn from a hash of the example id
        (same id, same sigma, on every machine).
    """

    synthesis: str = "alpha_matte"
    sigma: float = 1.0
    sigma_range: tuple[float, float] | None = None


def _stable_unit(text: str) -> float:
    """A number in [0, 1) from a hash of `text` (independent of Python's hash seed)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _is_mask_folder(path: epath.Path) -> bool:
    return (path / "images").is_dir() and (path / "masks").is_dir()


def _is_voc(path: epath.Path) -> bool:
    return any((path.joinpath(*sub) / "JPEGImages").is_dir()
               for sub in ((), ("VOC2012",), ("VOCdevkit", "VOC2012")))


def _kind_of(path: epath.Path) -> str | None:
    if _is_voc(path):
        return "voc"
    if _is_mask_folder(path):
        return "folder"
    return None


def find_sources(manual_dir: epath.PathLike) -> list[tuple[str, str, str]]:
    """[(name, kind, path)] of the training sources in `manual_dir`; kind "voc" or "folder"."""
    root = epath.Path(manual_dir)
    own = _kind_of(root)
    if own:
        return [(root.name, own, str(root))]
    found = [(p.name, _kind_of(p), str(p))
             for p in sorted(root.iterdir()) if p.is_dir() and _kind_of(p)]
    if not found:
        raise readers.DataError(
            f"manual_dir {root} holds neither PASCAL VOC 2012 (JPEGImages/) nor a mask "
            f"folder (images/ + masks/), directly or in a subfolder")
    return found


def list_split(kind: str, path: str, split: str) -> list[readers.Example]:
    """Examples of split "train" or "val" of one source."""
    if kind == "voc":
        return readers.list_voc(path, split)
    if any((epath.Path(path) / f"{s}.txt").is_file() for s in ("train", "val")):
        return readers.list_mask_folder(path, split)
    everything = readers.list_mask_folder(path, "all")
    want_val = split == "val"
    return [e for e in everything if (_stable_unit(e.id) < 0.1) == want_val]


def keyed_examples(sources, split: str) -> list[tuple[str, readers.Example]]:
    """[(key "<source name>/<id>", example)] of one split of every source."""
    examples = []
    for name, kind, path in sources:
        examples += [(f"{name}/{e.id}", e) for e in list_split(kind, path, split)]
    return examples


class Builder(beam_support.BeamSwitch, tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for mfif_alpha_matte."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL
    BUILDER_CONFIGS = [
        AlphaMatteConfig(
            name="alpha_matte", synthesis="alpha_matte", sigma=1.0,
            description="Alpha-matte pairs (eqs. 10-11), sigma = 1 as in the paper's data."),
        AlphaMatteConfig(
            name="conventional", synthesis="conventional", sigma=1.0,
            description="Pairs without defocus spread (eqs. 12-13), sigma = 1; the ablation."),
        AlphaMatteConfig(
            name="alpha_matte_random_sigma", synthesis="alpha_matte", sigma_range=(1.0, 4.0),
            description="Alpha-matte pairs with sigma ~ U[1, 4] per example, closer to the "
                        "defocus of real photos."),
        AlphaMatteConfig(
            name="alpha_matte_filled_random_sigma", synthesis="alpha_matte_filled",
            sigma_range=(1.0, 4.5),
            description="Alpha-matte pairs with the hidden background filled (no dark seam "
                        "along the boundary), sigma ~ U[1, 4.5] as in the shipped model's recipe."),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "alpha_matte"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(doc="source name and file id"),
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png",
                                             doc="I, the all-in-focus photo"),
                "focus": tfds.features.Image(shape=(None, None, 1), encoding_format="png",
                                             doc="F, 1 = foreground, in focus in image_a"),
                "image_a": tfds.features.Image(shape=(None, None, 3), encoding_format="png",
                                               doc="I_A, foreground clear"),
                "image_b": tfds.features.Image(shape=(None, None, 3), encoding_format="png",
                                               doc="I_B, background clear"),
                "sigma": tfds.features.Scalar(np.float32, doc="sigma of G"),
            }),
            supervised_keys=None,
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        sources = find_sources(dl_manager.manual_dir)
        return {
            "train": self._generate_examples(sources, "train"),
            "validation": self._generate_examples(sources, "val"),
        }

    def _sigma(self, key: str) -> float:
        cfg = self.builder_config
        return example_sigma(key, cfg.sigma, cfg.sigma_range)

    def _generate_examples(self, sources, split):
        cfg = self.builder_config
        if self.use_beam:  # each worker checks and synthesises its own examples
            return beam_support.examples_transform(
                keyed_examples(sources, split), _beam_examples, sigma=cfg.sigma,
                sigma_range=cfg.sigma_range, synthesis_kind=cfg.synthesis)
        return self._examples(sources, split)

    def _examples(self, sources, split):
        examples = keyed_examples(sources, split)
        good, skipped = readers.validate_examples([e for _, e in examples])
        kept = {id(e) for e in good}
        if skipped:
            logging.warning("mfif_alpha_matte %s: skipped %d of %d examples (first: %s: %s)",
                            split, len(skipped), len(examples), skipped[0].path,
                            skipped[0].reason)
        for key, example in examples:
            if id(example) not in kept:
                continue
            yield key, make_example(key, example, self._sigma(key),
                                    self.builder_config.synthesis)


def example_sigma(key: str, sigma: float,
                  sigma_range: tuple[float, float] | None) -> float:
    """sigma of G for the example `key`: `sigma`, or drawn from `sigma_range` by a hash."""
    if sigma_range is None:
        return float(sigma)
    lo, hi = sigma_range
    return float(lo + (hi - lo) * _stable_unit(f"sigma/{key}"))


def make_example(key: str, example: readers.Example, sigma: float,
                 synthesis_kind: str) -> dict:
    """The features of one checked example: I and F read, (I_A, I_B) synthesised."""
    image = readers.read_rgb(example.image_path)
    focus = readers.read_focus_map(example.mask_path, example.mask_kind)[..., None]
    image_a, image_b = synthesis.synthesize_pair(
        image.astype(np.float32) / 255.0, focus.astype(np.float32), sigma, synthesis_kind)
    return {
        "id": key,
        "image": image,
        "focus": focus,
        "image_a": _to_uint8(image_a.numpy()),
        "image_b": _to_uint8(image_b.numpy()),
        "sigma": np.float32(sigma),
    }


def _beam_examples(item, sigma, sigma_range, synthesis_kind):
    """Beam builds: the example of one (key, `readers.Example`), or none when the checks
    of `readers.validate_examples` skip it (logged on the worker)."""
    key, example = item
    good, _ = readers.validate_examples([example], num_threads=1)
    if good:
        yield key, make_example(key, example, example_sigma(key, sigma, sigma_range),
                                synthesis_kind)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
