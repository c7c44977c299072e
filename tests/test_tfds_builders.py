"""tfds builders on the dummy data committed beside them, and the pipeline's "tfds" source."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipeline import pipeline, synthesis
from data_pipeline.tfds import beam_support, register
from data_pipeline.tfds.mfif_alpha_matte import mfif_alpha_matte_dataset_builder as am
from data_pipeline.tfds.mfif_benchmark import mfif_benchmark_dataset_builder as bm

# Dummy data: voc/ (3 train, 2 val) and saliency/ (train 0001-0003, of which 0003 has an empty
# mask and is skipped; val 0004).
ALPHA_SPLITS = {"train": 5, "validation": 3}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class MfifAlphaMatteTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = register.MfifAlphaMatte
    SPLITS = ALPHA_SPLITS
    BUILDER_CONFIG_NAMES_TO_TEST = [
        "alpha_matte", "conventional", "alpha_matte_filled_random_sigma"]


class MfifBenchmarkTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = register.MfifBenchmark
    SPLITS = {"lytro": 2, "grayscale": 1, "triple_set": 1}


def _build(tmp_path, config="alpha_matte", builder_cls=register.MfifAlphaMatte,
           beam_options=None):
    builder = builder_cls(config=config, data_dir=str(tmp_path / "tfds"))
    dummy = builder_cls.code_path.parent / "dummy_data"
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(dummy), beam_options=beam_options))
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


def _examples(builder) -> dict[str, dict[str, dict]]:
    """{split: {key: example}} of a built dataset."""
    return {split: {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split))}
            for split in builder.info.splits}


def test_generate_examples_is_a_beam_transform_only_in_beam_builds(tmp_path):
    builder = register.MfifBenchmark(data_dir=str(tmp_path))
    folder = str(register.MfifBenchmark.code_path.parent / "dummy_data" / "lytro")
    plain = builder._generate_examples(folder)
    assert [key for key, _ in plain] == ["01", "02"]
    assert not beam_support.uses_beam(tfds.download.DownloadConfig())
    assert not beam_support.uses_beam(None)
    beam = pytest.importorskip("apache_beam")
    assert beam_support.uses_beam(tfds.download.DownloadConfig(beam_runner="DirectRunner"))
    builder.use_beam = True
    assert isinstance(builder._generate_examples(folder), beam.PTransform)


def test_workers_import_a_builder_loaded_from_its_folder(monkeypatch):
    """The `tfds build` command imports a builder folder as `mfif_benchmark.<module>`; Beam
    workers get the function under the package's own module name instead."""
    import types

    assert beam_support.importable_module(bm.make_example) is None
    loaded = types.ModuleType("mfif_benchmark.mfif_benchmark_dataset_builder")
    loaded.__file__ = bm.__file__

    def make_example(pair, folder):
        raise AssertionError("the folder's copy ran")

    make_example.__module__ = loaded.__name__
    monkeypatch.setitem(sys.modules, loaded.__name__, loaded)
    assert beam_support.importable_module(make_example) == bm.__name__
    folder = str(register.MfifBenchmark.code_path.parent / "dummy_data" / "lytro")
    pair = bm.readers.list_test_pairs(folder)[0]
    stand_in = beam_support._ByName(bm.__name__, "make_example", {"folder": folder})
    assert stand_in(pair)["id"] == pair["id"]
    elsewhere = types.ModuleType("copied_builder")
    elsewhere.__file__ = __file__  # another file: left as it is
    make_example.__module__ = elsewhere.__name__
    monkeypatch.setitem(sys.modules, elsewhere.__name__, elsewhere)
    assert beam_support.importable_module(make_example) is None


@pytest.mark.slow
def test_beam_build_gives_the_same_examples(tmp_path):
    """Both builders built on Beam's DirectRunner with two worker processes hold the
    examples of the plain build, key by key, feature by feature."""
    pytest.importorskip("apache_beam")
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=2",
                               "--direct_running_mode=multi_processing"])
    for cls, config in ((register.MfifAlphaMatte, "alpha_matte_random_sigma"),
                        (register.MfifBenchmark, None)):
        plain = _examples(_build(tmp_path / "plain", config, cls))
        beamed = _examples(_build(tmp_path / "beam", config, cls, beam_options=options))
        assert {s: sorted(v) for s, v in beamed.items()} == {s: sorted(v)
                                                             for s, v in plain.items()}
        for split, examples in plain.items():
            for key, example in examples.items():
                for name, value in example.items():
                    np.testing.assert_array_equal(beamed[split][key][name], value,
                                                  err_msg=f"{split} {key} {name}")
    assert sorted(plain) == ["grayscale", "lytro", "triple_set"]


# Imports the builders and builds one with apache_beam unimportable.
NO_BEAM = """
import sys
sys.modules["apache_beam"] = None  # import apache_beam raises ImportError
import tensorflow_datasets as tfds
import data_pipeline, data_pipeline.pipeline
from data_pipeline.tfds import build, register
builder = build.build("mfif_benchmark", sys.argv[1], data_dir=sys.argv[2])
print(builder.info.splits["lytro"].num_examples)
"""


@pytest.mark.slow
def test_data_pipeline_needs_no_beam(tmp_path):
    dummy = str(register.MfifBenchmark.code_path.parent / "dummy_data")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", NO_BEAM, dummy, str(tmp_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "2"


if __name__ == "__main__":
    tfds.testing.test_main()
