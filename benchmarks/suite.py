"""The benchmark suite: which configurations each section measures, running them one per
fresh process, and keeping the results in one JSON file that later runs resume.

Resuming: every configuration has a key ("fusion/refined/1728x1152"). A rerun with the same
--out keeps the rows already measured and runs only the missing (or failed) ones; --force
measures the selected sections again. Rows of the fusion, whole-process, stack and quality
sections also carry a signature (method, mode, working side, scales, hashes of the weights);
a row whose signature differs from the planned one (other weights, a row from before the
coarse-to-fine default) is measured again. The file records the machine; a file measured on
another CPU is refused rather than mixed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmarks import inputs, machine
from benchmarks import methods as methods_lib
from benchmarks.processes import run_srr_bench, run_worker

SECTIONS = ("flops", "srr", "fusion", "whole_process", "stack", "formats", "quality",
            "pipeline", "training")
FORMAT = "mfif-tf-benchmarks/1"
QUICK_SIZES = ("0.27MP", "2MP")
FULL_SIZES = ("0.27MP", "2MP", "12MP", "24MP")
# A 6-frame stack of about 1.7 MP is the case users care about.
STACK_SIZE = "1600x1066"
PROCESS_SIZE = "0.27MP"
PROCESS_REPEATS = 3  # whole-process runs: the median of 3 (fewer only with --repeats)
# The modes with G at full resolution (paper, refined) above this many pixels run G tiled for
# minutes: one timed run (after the warm-up on a 2 MP crop), whatever --repeats and --budget
# allow.
PAPER_ONE_RUN_MIN_PIXELS = 2_100_000
FORMATS = ("keras_fuse", "keras_eager_network", "tf_function_network", "tf_function_xla_network",
           "savedmodel") + tuple(f"tflite/{v}/{q}" for v in ("dynamic", "fixed")
                                 for q in ("float32", "float16", "int8"))
PIPELINE_SETTINGS = {
    # configs/pretrained.flags: batch 8, 128 px random crops of the shorter side at 256.
    "pretrained": dict(batch=8, size=128, crop="random", resize_shorter=256,
                       sigma_range=[1.0, 4.5]),
    # configs/paper.flags (section 4.1.2): batch 1, centre crop 178 resized to 256, sigma 1.
    "paper": dict(batch=1, size=256, crop="center", center_crop_size=178, sigma=1.0),
}


class SuiteError(ValueError):
    """Bad settings or an unusable results file."""


@dataclasses.dataclass
class SuiteConfig:
    """Settings of one `python -m benchmarks.run`.

    Attributes:
      out: the results JSON (read to resume, rewritten after every configuration).
      sections: which of `SECTIONS` to run.
      quick: fusion sizes up to 2 MP, no stacks in the paper modes, no paper-size
        training, fewer pipeline batches.
      force: measure the selected sections again even if their rows exist.
      sizes: fusion sizes (names of `inputs.SIZES` or WIDTHxHEIGHT); empty for the default.
      presets: generator presets of the flops and training sections.
      methods: fusion methods of the fusion, stack and quality sections
        (`benchmarks.methods.METHODS`); the whole-process section runs those of
        `benchmarks.methods.PROCESS_METHODS` among them.
      refiner: R for refined and coarse_to_fine (a folder with refiner.weights.h5); empty for
        the default (beside --model, else the packaged one).
      working_side: coarse_to_fine's working side; 0 for fuse_arrays' default.
      stack_size: the frame size of the stack section (a name of `inputs.SIZES` or WxH).
      stack_depths: N of the stack section.
      repeats: timed runs per configuration at most (the median is reported).
      budget_s: no new run starts when it would end beyond this many seconds of timed runs.
      threads: CPU threads for TF, LiteRT, mfif_tf.fuse and enfuse (0: all cores).
      model: a trained G (model dir or training work dir) for every section that fuses;
        empty for the packaged model.
      lytro_dir: the Lytro pairs (A/, B/); empty skips the quality section.
      train_dir: an images/ + masks/ folder for the pipeline section (besides embedded).
      enfuse: include enfuse when it is installed.
      timeout_s: a configuration taking longer is stopped and reported as failed.
      train_image_size: 0 for the paper's and the shipped model's sizes; else every training
        configuration uses this size (for a quick check of the machinery).
      ghz, flops_per_cycle: override the peak estimate (`benchmarks.machine`).
    """

    out: str
    sections: tuple[str, ...] = SECTIONS
    quick: bool = False
    force: bool = False
    sizes: tuple[str, ...] = ()
    presets: tuple[str, ...] = ("compact", "paper")
    methods: tuple[str, ...] = methods_lib.METHODS
    refiner: str = ""
    working_side: int = 0
    stack_size: str = STACK_SIZE
    stack_depths: tuple[int, ...] = (3, 6, 10)
    repeats: int = 5
    budget_s: float = 120.0
    threads: int = 0
    model: str = ""
    lytro_dir: str = ""
    train_dir: str = ""
    enfuse: bool = True
    timeout_s: float = 4 * 3600.0
    train_image_size: int = 0
    ghz: float | None = None
    flops_per_cycle: int | None = None
    seed: int = 0

    def validate(self) -> None:
        for s in self.sections:
            if s not in SECTIONS:
                raise SuiteError(f"unknown section {s!r}; choose from {', '.join(SECTIONS)}")
        for p in self.presets:
            if p not in ("compact", "paper"):
                raise SuiteError(f"unknown preset {p!r}; choose compact or paper")
        for m in self.methods:
            if m not in methods_lib.METHODS:
                raise SuiteError(f"unknown method {m!r}; choose from "
                                 f"{', '.join(methods_lib.METHODS)}")
        for text in (*self.sizes, self.stack_size):
            try:
                inputs.parse_size(text)
            except ValueError as err:
                raise SuiteError(str(err)) from None
        if self.working_side and self.working_side < 16:
            raise SuiteError(f"working_side must be 0 (default) or at least 16, got "
                             f"{self.working_side}")
        if self.refiner and not os.path.isfile(
                os.path.join(self.refiner, methods_lib.REFINER_WEIGHTS)):
            raise SuiteError(f"--refiner {self.refiner}: no {methods_lib.REFINER_WEIGHTS} there")
        if self.repeats < 1:
            raise SuiteError(f"repeats must be at least 1, got {self.repeats}")
        if any(n < 2 for n in self.stack_depths):
            raise SuiteError(f"stack depths must be at least 2, got {list(self.stack_depths)}")
        if self.threads < 0:
            raise SuiteError(f"threads must be >= 0, got {self.threads}")
        if self.model and not (
                os.path.isfile(os.path.join(self.model, "generator.weights.h5"))
                or os.path.isfile(os.path.join(self.model, "config.json"))):
            raise SuiteError(f"--model {self.model}: neither a model directory (model.json + "
                             "generator.weights.h5) nor a training work dir (config.json)")
        for flag, path in (("--lytro_dir", self.lytro_dir), ("--train_dir", self.train_dir)):
            if path and not os.path.isdir(path):
                raise SuiteError(f"{flag} {path}: not a directory")
        if self.lytro_dir and not all(os.path.isdir(os.path.join(self.lytro_dir, s))
                                      for s in ("A", "B")):
            raise SuiteError(f"--lytro_dir {self.lytro_dir}: needs the folders A/ and B/")
        if self.train_dir and not all(os.path.isdir(os.path.join(self.train_dir, s))
                                      for s in ("images", "masks")):
            raise SuiteError(f"--train_dir {self.train_dir}: needs the folders images/ and masks/")


@dataclasses.dataclass
class Task:
    """One configuration: its key in the results, a title for progress, the worker spec."""

    key: str
    title: str
    spec: dict[str, Any]


# ------------------------------------------------------------------------------ plans


def _common(config: SuiteConfig) -> dict[str, Any]:
    return {"repeats": config.repeats, "budget_s": config.budget_s, "threads": config.threads,
            "seed": config.seed}


def fusion_sizes(config: SuiteConfig) -> list[tuple[int, int]]:
    names = config.sizes or (QUICK_SIZES if config.quick else FULL_SIZES)
    return [inputs.parse_size(n) for n in names]


def _methods(config: SuiteConfig, notes: list[str], with_paper: bool = True,
             among: tuple[str, ...] = methods_lib.METHODS) -> list[str]:
    """The selected methods in their fixed order, minus those that cannot run (with a note
    on why)."""
    methods = [m for m in among if m in config.methods]
    stack_only = [m for m in config.methods if m in methods_lib.STACK_ONLY_METHODS
                  and m not in among]
    if stack_only:
        notes.append(f"{', '.join(stack_only)} left out: stack section only (a pair is the "
                     f"same in either stack order)")
    if not config.enfuse and "enfuse" in methods:
        methods.remove("enfuse")
    if not with_paper and any(methods_lib.is_paper_mode(m) for m in methods):
        methods = [m for m in methods if not methods_lib.is_paper_mode(m)]
        notes.append("paper and paper_two_scales left out (--quick)")
    if any(methods_lib.uses_model(m) for m in methods) and not packaged_model_available() \
            and not config.model:
        methods = [m for m in methods if not methods_lib.uses_model(m)]
        notes.append("our model left out: no packaged model and no --model")
    with_r = [m for m in methods if methods_lib.uses_refiner(m)]
    if with_r and any(methods_lib.refiner_dir(methods_lib.method_model(m, config.model),
                                              config.refiner,
                                              methods_lib.MODEL_METHODS[m]["mode"]) is None
                      for m in with_r):
        methods = [m for m in methods if m not in with_r]
        notes.append(f"{' and '.join(with_r)} left out: no refinement head (give --refiner, or "
                     "install mfif_tf/pretrained/refiner.weights.h5)")
    return methods


def packaged_model_available() -> bool:
    return methods_lib.generator_dir("") is not None


def _method_spec(method: str, config: SuiteConfig) -> dict[str, Any]:
    """The worker spec of a method (its fuse_arrays arguments), and its signature."""
    model = methods_lib.method_model(method, config.model)
    spec: dict[str, Any] = {"method": method, "model": model}
    signature: dict[str, Any] = {"method": method}
    if methods_lib.uses_model(method):
        settings = dict(methods_lib.MODEL_METHODS[method])
        settings["precision"] = methods_lib.method_precision(method)
        if settings["mode"] == "coarse_to_fine":
            settings["working_side"] = config.working_side or None
        if methods_lib.uses_refiner(method):
            spec["refiner"] = config.refiner
        spec.update(settings)
        signature.update(settings)
        signature.update(methods_lib.weights_signature(method, model, config.refiner))
    spec["signature"] = signature
    return spec


def _sign(spec: dict[str, Any], **what: Any) -> dict[str, Any]:
    """Adds the configuration's size or depth to the signature, in its JSON form (so that
    it compares equal after a round trip through the results file)."""
    spec["signature"] = json.loads(json.dumps({**spec["signature"], **what}))
    return spec


def plan(section: str, config: SuiteConfig) -> tuple[list[Task], list[str]]:
    """The configurations of a section, and notes on what is left out and why."""
    common = _common(config)
    notes: list[str] = []
    tasks: list[Task] = []
    if section == "flops":
        tasks.append(Task("flops", "FLOPs of each preset",
                          {"kind": "flops", "presets": list(config.presets), **common}))
    elif section == "srr":
        sizes = ["520x520", "1920x1080"] if config.quick else ["520x520", "3840x2160", "6000x4000"]
        tasks.append(Task("srr", f"SRR TF op vs skimage at {', '.join(sizes)}",
                          {"kind": "srr_bench", "sizes": sizes, "tflite_size": 0 if config.quick
                           else 512, **common}))
    elif section == "fusion":
        methods = _methods(config, notes, among=methods_lib.PAIR_METHODS)
        for h, w in fusion_sizes(config):
            for method in methods:
                spec = _sign({**_method_spec(method, config), "kind": "fusion", "height": h,
                              "width": w, "depth": 2, **common}, size=[w, h])
                if methods_lib.full_resolution_g(method) and h * w > PAPER_ONE_RUN_MIN_PIXELS:
                    spec["repeats"] = 1
                    spec["repeats_note"] = (f"one timed run: G at full resolution above "
                                            f"{PAPER_ONE_RUN_MIN_PIXELS / 1e6:.1f} MP")
                tasks.append(Task(f"fusion/{method}/{w}x{h}", f"{method} pair {w}x{h}", spec))
    elif section == "whole_process":
        h, w = inputs.parse_size(PROCESS_SIZE)
        methods = _methods(config, notes, among=methods_lib.PROCESS_METHODS)
        variants = [v for v, (base, _) in methods_lib.PROCESS_VARIANTS.items()
                    if base in methods]
        for method in [m for m in methods_lib.PROCESS_METHODS if m in methods + variants]:
            base, engine = methods_lib.PROCESS_VARIANTS.get(method, (method, None))
            spec = _method_spec(base, config)
            if engine:
                spec["engine"] = engine
                spec["signature"].update(method=method, engine=engine)
            spec["method"] = method
            spec = _sign({**spec, "kind": "process", "height": h,
                          "width": w, **common,
                          "repeats": min(PROCESS_REPEATS, config.repeats)}, size=[w, h])
            tasks.append(Task(f"whole_process/{method}/{w}x{h}",
                              f"{method} as a process on a {w}x{h} pair", spec))
    elif section == "stack":
        h, w = inputs.parse_size(config.stack_size)
        for method in _methods(config, notes, with_paper=not config.quick):
            for depth in config.stack_depths:
                spec = _sign({**_method_spec(method, config), "kind": "stack", "height": h,
                              "width": w, "depth": depth, **common}, size=[w, h], depth=depth)
                tasks.append(Task(f"stack/{method}/{w}x{h}/N{depth}",
                                  f"{method} stack of {depth} at {w}x{h}", spec))
    elif section == "formats":
        for fmt in FORMATS:
            tasks.append(Task(f"formats/{fmt}", f"compact model as {fmt}",
                              {"kind": "format", "format": fmt, **common}))
    elif section == "quality":
        if not config.lytro_dir:
            notes.append("skipped: give --lytro_dir (a folder with A/ and B/)")
            return [], notes
        for method in _methods(config, notes, among=methods_lib.PAIR_METHODS):
            spec = _sign({**_method_spec(method, config), "kind": "quality",
                          "lytro_dir": config.lytro_dir, **common},
                         lytro_dir=os.path.realpath(config.lytro_dir))
            tasks.append(Task(f"quality/{method}", f"{method} on the Lytro pairs", spec))
    elif section == "pipeline":
        sources = [("embedded", "")] + ([("folder", config.train_dir)] if config.train_dir else [])
        if not config.train_dir:
            notes.append("folder source left out: give --train_dir (images/ + masks/)")
        batches = 10 if config.quick else 50
        for source, data_dir in sources:
            for name, setting in PIPELINE_SETTINGS.items():
                tasks.append(Task(f"pipeline/{source}/{name}", f"input pipeline {source} {name}",
                                  {"kind": "pipeline", "source": source, "data_dir": data_dir,
                                   "setting": name, "batches": batches,
                                   "warmup_batches": max(2, batches // 5), **setting, **common}))
    elif section == "training":
        settings = [("compact", 1, 256)]
        if "paper" in config.presets and not config.quick:
            settings.append(("paper", 1, 256))
        elif "paper" in config.presets:
            notes.append("paper-size training left out (--quick)")
        settings.append(("compact", 8, 128))
        for preset, batch, size in settings:
            size = config.train_image_size or size
            for jit in (False, True):
                xla = "xla" if jit else "no_xla"
                tasks.append(Task(f"training/{preset}/b{batch}/s{size}/{xla}",
                                  f"training {preset} batch {batch} size {size} {xla}",
                                  {"kind": "training", "preset": preset, "batch": batch,
                                   "size": size, "jit": jit, **common}))
    else:
        raise SuiteError(f"unknown section {section!r}")
    return tasks, notes


# -------------------------------------------------------------------------- results file


def new_results(config: SuiteConfig) -> dict[str, Any]:
    return {"format": FORMAT,
            "machine": machine.describe_machine(config.ghz, config.flops_per_cycle),
            "versions": machine.versions(), "runs": [], "sections": {}}


def load_results(config: SuiteConfig) -> dict[str, Any]:
    """The existing results file (checked), or a new one."""
    if not os.path.exists(config.out):
        return new_results(config)
    try:
        with open(config.out) as f:
            results = json.load(f)
    except (OSError, ValueError) as err:
        raise SuiteError(f"{config.out}: not a readable results file ({err}); "
                         "choose another --out") from None
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise SuiteError(f"{config.out}: not a benchmark results file of this suite; "
                         "choose another --out")
    here = machine.read_cpuinfo()
    there = results.get("machine", {}).get("cpu", {})
    if (there.get("model_name"), there.get("logical_cpus")) != (here["model_name"],
                                                                here["logical_cpus"]):
        raise SuiteError(f"{config.out} was measured on {there.get('model_name')} with "
                         f"{there.get('logical_cpus')} CPUs, this is {here['model_name']} with "
                         f"{here['logical_cpus']}; choose another --out")
    results["machine"] = machine.describe_machine(config.ghz, config.flops_per_cycle)
    results["versions"] = machine.versions()
    return results


def save_results(results: dict[str, Any], path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp.", suffix=".json", dir=directory)
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ running


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _resolve_format_spec(spec: dict[str, Any], export_row: dict[str, Any]) -> dict[str, Any]:
    fmt = spec["format"]
    spec = dict(spec, export=export_row)
    if fmt.startswith("tflite/"):
        _, variant, quantization = fmt.split("/")
        names = [n for n in export_row["tflite"]
                 if n.endswith(f"_{quantization}.tflite")
                 and ("dynamic" in n) == (variant == "dynamic")]
        if len(names) != 1:
            raise SuiteError(f"no single TFLite model for {fmt} among "
                             f"{sorted(export_row['tflite'])}")
        spec["format"] = "tflite:" + names[0]
    return spec


def _done(row: dict[str, Any] | None, task: Task | None = None) -> bool:
    """Measured: present, without an error, not "unavailable" (enfuse may be installed
    since) and, when the task has a signature, measured with the same one."""
    if row is None or "error" in row or "unavailable" in row:
        return False
    signature = task.spec.get("signature") if task is not None else None
    return signature is None or row.get("signature") == signature


def _summary(row: dict[str, Any]) -> str:
    if "unavailable" in row:
        return row["unavailable"]
    parts = []
    for key in ("median_wall_s", "examples_per_s", "adversarial_iterations_per_s"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4g}")
    if row.get("runs") and isinstance(row["runs"], int):
        parts.append(f"{row['runs']} runs")
    if row.get("peak_rss_mb"):
        parts.append(f"peak {row['peak_rss_mb']:.0f} MB")
    return ", ".join(parts) or "done"


def run_suite(config: SuiteConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs the selected sections, resuming from `config.out`; returns the results."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    config.validate()
    results = load_results(config)
    results["runs"].append({"started": _now(), "quick": config.quick,
                            "sections": list(config.sections), "repeats": config.repeats,
                            "budget_s": config.budget_s, "threads": config.threads,
                            "methods": list(config.methods), "model": config.model or None,
                            "refiner": config.refiner or None,
                            "working_side": config.working_side or None,
                            "stack_size": config.stack_size,
                            "load_average_start": os.getloadavg()[0]})
    workdir = tempfile.mkdtemp(prefix="mfif-bench-")
    try:
        for section in config.sections:
            tasks, notes = plan(section, config)
            store = results["sections"].setdefault(section, {"rows": {}})
            store["notes"] = notes
            store["order"] = [t.key for t in tasks]
            for note in notes:
                log(f"[{section}] {note}")
            todo = [t for t in tasks
                    if config.force or not _done(store["rows"].get(t.key), t)]
            if not todo:
                log(f"[{section}] all {len(tasks)} configurations already in {config.out} "
                    "(--force to measure again)")
                continue
            export_row = None
            for i, task in enumerate(todo, 1):
                log(f"[{section} {i}/{len(todo)}] {task.title}")
                start = time.perf_counter()
                spec = dict(task.spec, workdir=workdir)
                if spec["kind"] == "format":
                    if export_row is None:
                        log(f"[{section}] exporting the compact model (SavedModel, TFLite)")
                        exported = run_worker(
                            {"kind": "export", "height": 520, "width": 520, "model": config.model,
                             **_common(config), "workdir": workdir},
                            workdir, config.timeout_s, "export")
                        if "error" in exported:
                            log(f"  export failed: {exported['error']}")
                            store["rows"][task.key] = {"error": exported["error"]}
                            break
                        export_row = exported["row"]
                        store["export"] = {k: v for k, v in export_row.items()
                                           if k in ("weights", "mode", "export_s", "sizes")}
                    try:
                        spec = _resolve_format_spec(spec, export_row)
                    except SuiteError as err:
                        log(f"  {err}")
                        store["rows"][task.key] = {"error": str(err), "measured": _now()}
                        continue
                if spec["kind"] == "srr_bench":
                    outcome = run_srr_bench(spec, workdir, config.timeout_s)
                else:
                    outcome = run_worker(spec, workdir, config.timeout_s, task.title)
                elapsed = time.perf_counter() - start
                if "error" in outcome:
                    log(f"  failed after {elapsed:.0f} s: {outcome['error']}")
                    store["rows"][task.key] = {"error": outcome["error"], "measured": _now()}
                else:
                    row = outcome["row"]
                    row["measured"] = _now()
                    row["elapsed_s"] = elapsed
                    row["threads"] = spec.get("threads", 0)
                    if "signature" in spec:
                        row["signature"] = spec["signature"]
                    if "repeats_note" in spec:
                        row["repeats_note"] = spec["repeats_note"]
                    store["rows"][task.key] = row
                    log(f"  {_summary(row)} ({elapsed:.0f} s)")
                save_results(results, config.out)
        results["runs"][-1]["finished"] = _now()
        results["runs"][-1]["load_average_end"] = os.getloadavg()[0]
        save_results(results, config.out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results
