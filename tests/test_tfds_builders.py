"""tfds builders on the dummy data committed beside them, and the pipeline's "tfds" source."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipeline import pipeline, synthesis
from data_pipeline.tfds import register
from data_pipeline.tfds.mfif_alpha_matte import mfif_alpha_matte_dataset_builder as am
from data_pipeline.tfds.mfif_benchmark import mfif_benchmark_dataset_builder as bm

# Dummy data: voc/ (3 train, 2 val) and saliency/ (train 0001-0003, of which 0003 has an empty
# mask and is skipped; val 0004).
ALPHA_SPLITS = {"train": 5, "validation": 3}


class MfifAlphaMatteTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = register.MfifAlphaMatte
    SPLITS = ALPHA_SPLITS
    BUILDER_CONFIG_NAMES_TO_TEST = [
        "alpha_matte", "conventional", "alpha_matte_filled_random_sigma"]


class MfifBenchmarkTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = register.MfifBenchmark
    SPLITS = {"lytro": 2, "grayscale": 1, "triple_set": 1}


def _build(tmp_path, config="alpha_matte", builder_cls=register.MfifAlphaMatte):
    builder = builder_cls(config=config, data_dir=str(tmp_path / "tfds"))
    dummy = builder_cls.code_path.parent / "dummy_data"
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(dummy)))
    return builder


@pytest.fixture(scope="module")
def built_alpha(tmp_path_factory):
    """The built alpha_matte config and its tfds data folder."""
    root = tmp_path_factory.mktemp("alpha")
    return _build(root), str(root / "tfds")


def test_alpha_matte_examples_hold_eqs_10_11(built_alpha):
    ds = built_alpha[0].as_dataset(split="train")
    ids = []
    for ex in tfds.as_numpy(ds):
        ids.append(ex["id"].decode())
        image = ex["image"].astype(np.float32) / 255
        focus = ex["focus"].astype(np.float32)
        assert set(np.unique(focus)) == {0.0, 1.0}
        a, b = synthesis.alpha_matte_pair(image, focus, float(ex["sigma"]))
        # Stored as 8-bit PNG: equal up to rounding.
        assert np.abs(ex["image_a"].astype(np.float32) - a.numpy() * 255).max() <= 0.51
        assert np.abs(ex["image_b"].astype(np.float32) - b.numpy() * 255).max() <= 0.51
        assert ex["image"].shape[-1] == 3
    assert sorted(ids) == ["saliency/0001", "saliency/0002", "voc/2007_000032",
                           "voc/2007_000039", "voc/2008_000002"]


def test_random_sigma_config_is_deterministic(tmp_path):
    b1 = _build(tmp_path / "one", "alpha_matte_random_sigma")
    b2 = _build(tmp_path / "two", "alpha_matte_random_sigma")
    s1 = {e["id"]: (e["sigma"], e["image_b"]) for e in tfds.as_numpy(b1.as_dataset("validation"))}
    s2 = {e["id"]: (e["sigma"], e["image_b"]) for e in tfds.as_numpy(b2.as_dataset("validation"))}
    assert s1.keys() == s2.keys()
    for k in s1:
        assert 1.0 <= s1[k][0] <= 4.0 and s1[k][0] == s2[k][0]
        np.testing.assert_array_equal(s1[k][1], s2[k][1])
    assert len({float(v[0]) for v in s1.values()}) == len(s1)  # one sigma per example


def test_pipeline_reads_built_dataset(built_alpha):
    kw = dict(source="tfds", tfds_data_dir=built_alpha[1],
              batch_size=2, image_size=16, center_crop_size=16)
    train = pipeline.make_training_dataset(seed=1, **kw)
    batches = [{k: v.numpy() for k, v in b.items()} for b in train.take(4)]
    for b in batches:
        assert b["image_a"].shape == (2, 16, 16, 3) and b["focus"].shape == (2, 16, 16, 1)
        assert b["image_a"].min() >= -1 and b["image_a"].max() <= 1
        assert set(np.unique(b["focus"])) <= {0.0, 1.0}
    again = [{k: v.numpy() for k, v in b.items()}
             for b in pipeline.make_training_dataset(seed=1, **kw).take(4)]
    for x, y in zip(batches, again):
        np.testing.assert_array_equal(x["image_b"], y["image_b"])
    val = pipeline.make_eval_dataset(split="val", drop_remainder=False, **kw)
    assert sum(int(b["image"].shape[0]) for b in val) == ALPHA_SPLITS["validation"]
    with pytest.raises(ValueError, match="has splits"):
        pipeline.make_training_dataset(split="test", **kw)
    with pytest.raises(ValueError, match="is not built"):
        pipeline.make_training_dataset(
            **dict(kw, tfds_name="mfif_alpha_matte/alpha_matte_random_sigma"))


def test_benchmark_sources_gt_and_grayscale(tmp_path):
    builder = _build(tmp_path, config=None, builder_cls=register.MfifBenchmark)
    (gray,) = list(tfds.as_numpy(builder.as_dataset("grayscale")))
    assert gray["grayscale"] and gray["sources"].shape == (2, 12, 12, 3)
    np.testing.assert_array_equal(gray["sources"][..., 0], gray["sources"][..., 2])
    assert gray["gt"].shape[0] == 0
    (triple,) = list(tfds.as_numpy(builder.as_dataset("triple_set")))
    assert triple["sources"].shape == (3, 10, 14, 3) and triple["gt"].shape == (1, 10, 14, 3)
    assert not triple["grayscale"]


def test_manual_dir_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither PASCAL VOC"):
        am.find_sources(tmp_path / "empty")
    with pytest.raises(ValueError, match="no test set"):
        bm.find_test_sets(tmp_path / "empty")
    assert bm.split_name("Triple-Set") == "triple_set"
    assert bm.split_name("2020") == "set_2020"


if __name__ == "__main__":
    tfds.testing.test_main()
