"""Beam builds of the tfds builders (optional: apache_beam is imported only for them).

A build whose `tfds.download.DownloadConfig` has a `beam_runner` or `beam_options` (the
`tfds build` command's `--beam_pipeline_options`, `build.py`'s too) runs on Apache Beam: the
builders' `_generate_examples` then return `beam.Create(items) | beam.FlatMap(one item)`,
so that reading, checking and synthesising each example happens on the workers. The items
are listed on the launching machine and are small (ids and paths); the function of one
item is a module-level function, so that workers do not unpickle the builder (and
`importable_module` names it by the package's module when the `tfds build` command loaded the
builder from its folder). Without Beam the builders are plain Python generators, as before.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any


def uses_beam(download_config: Any) -> bool:
    """Whether a build with `download_config` runs on Beam (a runner or options given)."""
    return download_config is not None and (
        getattr(download_config, "beam_runner", None) is not None
        or getattr(download_config, "beam_options", None) is not None)


def examples_transform(items: Iterable[Any], process: Callable[..., Iterable[tuple]],
                       **kwargs: Any):
    """`beam.Create(items) | beam.FlatMap(process, **kwargs)`: `process(item, **kwargs)`
    yields the (key, example) pairs of one item (none for an item that is skipped)."""
    import apache_beam as beam

    own = importable_module(process)
    if own is not None:
        process, kwargs = _ByName(own, process.__qualname__, kwargs), {}
    return beam.Create(list(items)) | "Examples" >> beam.FlatMap(process, **kwargs)


class _ByName:
    """`function(item, **kwargs)` of a module-level function named by its module and name;
    the module is imported where it is called (on the worker)."""

    def __init__(self, module: str, name: str, kwargs: dict):
        self.module, self.name, self.kwargs = module, name, kwargs
        self.__name__ = name

    def __call__(self, item):
        function = getattr(importlib.import_module(self.module), self.name)
        return function(item, **self.kwargs)


def importable_module(function: Callable) -> str | None:
    """None when workers can import `function`'s module by its name; when they cannot
    because the `tfds build` command imported the builder from its folder (as
    `mfif_benchmark.mfif_benchmark_dataset_builder`), the name under this package of the
    same file."""
    module = function.__module__
    if module.startswith(f"{__package__}."):
        return None
    own = f"{__package__}.{module}"
    try:
        spec = importlib.util.find_spec(own)
    except ImportError:
        spec = None
    loaded = getattr(sys.modules.get(module), "__file__", None)
    if spec is None or not spec.origin or not loaded or (
            os.path.realpath(spec.origin) != os.path.realpath(loaded)):
        return None
    return own


class BeamSwitch:
    """Mixin of a `GeneratorBasedBuilder`: `self.use_beam` tells `_split_generators` and
    `_generate_examples` whether the running build is a Beam build (`uses_beam`)."""

    use_beam = False

    def _download_and_prepare(self, dl_manager, download_config=None):
        self.use_beam = uses_beam(download_config)
        try:
            return super()._download_and_prepare(dl_manager=dl_manager,
                                                 download_config=download_config)
        finally:
            self.use_beam = False
