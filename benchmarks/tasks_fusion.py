"""Measurements of fusion, run one configuration per fresh process (`benchmarks.worker`).

Every task takes a spec dict and returns a JSON-able row. Memory: `setup_rss_mb` is the
resident memory once TensorFlow, the model and the input images are loaded; `peak_rss_mb`
the largest resident memory of the process (for enfuse: of the enfuse process).

Methods (`benchmarks.methods`): "refined" (the default mode), "coarse_to_fine", "paper" and
"paper_two_scales" call `mfif_tf.fusion.fuse_arrays` with the trained G (`spec["model"]`,
else the packaged one) and, for refined and coarse_to_fine, the refinement head R
(`spec["refiner"]`, else the one beside the model, else the packaged one): trained weights,
because the cost of those modes depends on them (R runs only in the band where G's map is
uncertain). "classical" is `mfif_tf.classical.fuse_classical`, "enfuse" the enfuse program
on files.

The export formats section still times the compact preset with random weights (seeded)
unless `spec["model"]` is a trained compact model: speed does not depend on the weights there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks import enfuse as enfuse_lib
from benchmarks import inputs, machine
from benchmarks import methods as methods_lib
from benchmarks.timing import median_of, run_timed, set_tf_threads, timed_runs

# Above this many pixels the warm-up runs on a 2-megapixel crop: the same tiled code path and
# tile shapes, without doubling a run of many minutes.
WARMUP_FULL_MAX_PIXELS = 2_100_000
LYTRO_METRICS = ("MI", "TE", "NCIE", "Q_Y", "Q_CB", "Q_G", "Q_M", "SF")  # the paper's first eight


def model_identity(path: str) -> dict[str, Any] | None:
    """Preset, training step and a short hash of a model directory's weights (no paths)."""
    if not path:
        return None
    config = os.path.join(path, "model.json")
    weights = os.path.join(path, "generator.weights.h5")
    if not (os.path.isfile(config) and os.path.isfile(weights)):
        return {"preset": None, "hash": None}
    with open(config) as f:
        meta = json.load(f)
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    info = meta.get("info", {})
    # A training export records its step; the packaged model its steps per stage.
    steps = info.get("steps")
    step = info.get("step") if not isinstance(steps, dict) else " + ".join(
        str(n) for n in steps.values())
    return {"preset": meta.get("model", {}).get("preset"), "step": step,
            "hash": digest.hexdigest()[:12]}


def refiner_identity(model: str, refiner: str, mode: str | None = None) -> dict[str, Any] | None:
    """Where R comes from (packaged, --refiner or beside --model), its training steps and a
    short hash of its weights (no paths)."""
    path = methods_lib.refiner_dir(model or "", refiner or "", mode)
    if path is None:
        return None
    packaged = os.path.realpath(methods_lib.PACKAGED_DIR)
    source = ("--refiner" if refiner else "packaged"
              if os.path.commonpath([os.path.realpath(path), packaged]) == packaged
              else "beside --model")
    steps = None
    config = os.path.join(path, "refiner.json")
    if os.path.isfile(config):
        with open(config) as f:
            steps = json.load(f).get("info", {}).get("steps")
    return {"source": source, "steps": steps,
            "hash": methods_lib.file_hash(os.path.join(path, methods_lib.REFINER_WEIGHTS))}


def model_fuse(spec: dict[str, Any]):
    """(fuse(frames) -> FusionResult, generator, row fields) for a model method: the
    `fuse_arrays` call of spec["method"] with G and R loaded once."""
    from mfif_tf import inference
    from mfif_tf.fusion import (fuse_arrays, resolve_coarse_generator, resolve_generator,
                                resolve_refiner)
    from mfif_tf.model_io import PACKAGED_MODEL_DIR

    model = spec.get("model") or None
    precision = spec.get("precision") or "float32"
    generator = resolve_generator(model, precision)
    kwargs: dict[str, Any] = {"mode": spec["mode"]}
    info: dict[str, Any] = {"mode": spec["mode"], "preset": generator.config.preset,
                            "weights": model_identity(model or PACKAGED_MODEL_DIR),
                            "precision": precision}
    if spec["mode"] in inference.REFINED_MODES:
        kwargs["refiner"] = resolve_refiner(spec.get("refiner") or None, model, spec["mode"],
                                            precision)
        info["refiner"] = refiner_identity(model or "", spec.get("refiner", ""), spec["mode"])
    if spec["mode"] == "refined" and not spec.get("refiner"):
        # R after G below full size, as `fuse_stack` chooses it (a given R serves both).
        kwargs["coarse_refiner"] = resolve_refiner(None, model, inference.COARSE_REFINER_KEY,
                                                   precision)
        # and the G below full size, likewise.
        kwargs["coarse_generator"] = resolve_coarse_generator(None, model, precision)
    if spec.get("measure_ratio") is not None:
        kwargs["measure_ratio"] = float(spec["measure_ratio"])
        info["measure_ratio"] = kwargs["measure_ratio"]
    if spec.get("stack_order"):
        kwargs["stack_order"] = spec["stack_order"]
        info["stack_order"] = spec["stack_order"]
    if spec["mode"] == "refined":
        kwargs["g_side"] = int(spec.get("g_side") or inference.DEFAULT_G_SIDE)
        info["g_side"] = kwargs["g_side"]
    if spec["mode"] == "coarse_to_fine":
        if spec.get("working_side"):
            kwargs["working_side"] = int(spec["working_side"])
        info.update(working_side=kwargs.get("working_side", inference.DEFAULT_WORKING_SIDE),
                    scales=None)
    else:  # refined and paper: G at full resolution, optionally over several scales
        if spec.get("scales"):
            kwargs["scales"] = tuple(spec["scales"])
        info.update(working_side=None, scales=list(kwargs.get("scales", (1.0,))))
    return (lambda frames: fuse_arrays(frames, generator=generator, **kwargs)), generator, info


def _network_plan(generator, info: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """Where G runs for this size: its input size, whole image or tiles, R's levels (refined:
    G on the sources box-averaged by `g_factor` of the method's g_side, R once at full
    resolution; coarse_to_fine: one R level per octave from the working size)."""
    from mfif_tf import inference, tiling

    if info["mode"] == "coarse_to_fine":
        work_h, work_w = inference.working_shape(height, width, info["working_side"])
        return {"network_input": [work_w, work_h],
                "tile_size": tiling.plan_tile_size(generator, work_h, work_w),
                "refiner_levels": inference.level_count(height, width, work_h, work_w)}
    k = 1
    if info["mode"] == "refined":
        k = inference.g_factor(height, width, info.get("g_side", inference.DEFAULT_G_SIDE))
    g_h, g_w = -(-height // k), -(-width // k)
    plan = {"network_input": [g_w, g_h],
            "tile_size": tiling.plan_tile_size(generator, g_h, g_w)}
    if info["mode"] == "refined":
        plan["refiner_levels"] = 1
    return plan


def get_generator(preset: str, model: str, seed: int):
    """(G, description): the trained model when `model` is of this preset, else random."""
    import keras

    from mfif_tf.config import model_config
    from mfif_tf.model_io import load_generator
    from mfif_tf.networks import build_generator

    if model:
        identity = model_identity(model)
        generator = load_generator(model)
        if generator.config.preset == preset:
            return generator, f"trained ({identity and identity.get('hash')})"
    keras.utils.set_random_seed(seed)
    return build_generator(model_config(preset)), f"random (seed {seed})"


def _frames(spec: dict[str, Any]) -> list[np.ndarray]:
    h, w, depth = spec["height"], spec["width"], spec.get("depth", 2)
    if depth == 2:
        return list(inputs.synthetic_pair(h, w, spec.get("seed", 0)))
    return inputs.synthetic_stack(h, w, depth, spec.get("seed", 0))


def _warmup_frames(frames: list[np.ndarray], method: str) -> tuple[list[np.ndarray], str]:
    """The modes with G at full resolution (paper, refined) above 2.1 MP warm up on a 2 MP
    crop (same tiled path, no doubled minutes-long run); everything else on the frames
    themselves."""
    h, w = frames[0].shape[:2]
    if h * w <= WARMUP_FULL_MAX_PIXELS or not methods_lib.full_resolution_g(method):
        return frames, "full size"
    ch, cw = inputs.SIZES["2MP"]
    return [np.ascontiguousarray(f[:min(h, ch), :min(w, cw)]) for f in frames], "2 MP crop"


def fusion_task(spec: dict[str, Any]) -> dict[str, Any]:
    """A pair or stack fused by one of `benchmarks.methods.METHODS`."""
    method = spec["method"]
    frames = _frames(spec)
    h, w = frames[0].shape[:2]
    row: dict[str, Any] = {"method": method, "height": h, "width": w,
                           "megapixels": h * w / 1e6, "depth": len(frames),
                           "mode": None, "working_side": None, "scales": None}
    if method == "enfuse":
        return {**row, **_enfuse_runs(spec, frames)}
    set_tf_threads(spec.get("threads", 0))
    if method == "classical":
        from mfif_tf.classical import fuse_classical

        fuse = lambda fs: fuse_classical(fs)  # noqa: E731
        row["weights"] = "none"
    elif methods_lib.uses_model(method):
        fuse, generator, info = model_fuse(spec)
        row.update(info)
        row.update(_network_plan(generator, info, h, w))
    else:
        raise ValueError(f"unknown method {method!r}")
    row["setup_rss_mb"] = machine.rss_mb()
    warm, row["warmup"] = _warmup_frames(frames, method)
    fuse(warm)
    del warm
    peak_before = machine.peak_rss_mb()
    machine.reset_peak_rss()
    splits: list[dict[str, float]] = []
    fused: list[np.ndarray] = []

    def run():
        result = fuse(frames)
        splits.append({k: v for k, v in result.timings.items() if v or k == "total"})
        fused[:] = [result.fused]

    runs = timed_runs(run, spec["repeats"], spec["budget_s"])
    row.update(runs.summary())
    row["split_s"] = median_of(splits)
    row["peak_rss_mb"] = max(peak_before or 0.0, machine.peak_rss_mb() or 0.0)
    row["psnr_db"] = psnr_against_sharp(fused[0], spec)
    return row


def psnr_against_sharp(fused: np.ndarray, spec: dict[str, Any]) -> float | None:
    """PSNR (dB, 8-bit peak) of a fused synthetic pair or stack against the all-sharp image
    its frames were blurred from (`inputs.sharp_image`: every pixel is sharp in one frame,
    so a perfect index map reproduces it); None when they are equal."""
    truth = inputs.sharp_image(spec["height"], spec["width"], spec.get("seed", 0))
    error = np.mean((np.asarray(fused, np.float64) - truth) ** 2)
    return None if error == 0 else float(10.0 * np.log10(255.0**2 / error))


def _enfuse_runs(spec: dict[str, Any], frames: list[np.ndarray]) -> dict[str, Any]:
    binary = machine.enfuse_binary()
    if binary is None:
        return {"unavailable": "enfuse is not installed (Debian package enfuse)"}
    threads = spec.get("threads", 0) or None
    with tempfile.TemporaryDirectory() as tmp:
        paths = enfuse_lib.write_sources(frames, tmp)
        out = os.path.join(tmp, "fused.tif")
        enfuse_lib.run_enfuse(binary, paths, out, threads)  # warm-up (page cache)
        peaks: list[float] = []
        cpu: list[float] = []

        def run():
            seconds, cpu_seconds, peak = enfuse_lib.run_enfuse(binary, paths, out, threads)
            peaks.append(peak)
            cpu.append(cpu_seconds)
            return seconds

        runs = timed_runs(run, spec["repeats"], spec["budget_s"])
        summary = runs.summary()
        summary["psnr_db"] = psnr_against_sharp(enfuse_lib.read_result(out), spec)
        # This process only waits: the work and its CPU time are the child's.
        summary["cpu_s"] = cpu
        summary["median_cpu_s"] = float(np.median(cpu))
        return {**summary, "peak_rss_mb": max(peaks), "weights": "none",
                "warmup": "full size", "split_s": {"total": summary["median_wall_s"]},
                "note": "whole process: start-up, TIFF read, blend, LZW TIFF write"}


# --------------------------------------------------------------------- export formats


# The formats section compares runtimes of G; it runs every format in mode "paper" (G at full
# resolution, one pass), so that each one's F_hat is G's own map.
FORMATS_MODE = "paper"


def export_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Writes the compact G (trained or random), its SavedModel and TFLite models (mode
    paper) and the Keras reference maps on the synthetic pair into `spec["workdir"]`."""
    set_tf_threads(spec.get("threads", 0))
    from export import export_lib
    from export.tflite import TFLiteConfig
    from mfif_tf.fusion import fuse_arrays
    from mfif_tf.model_io import save_generator

    workdir = spec["workdir"]
    generator, weights = get_generator("compact", spec.get("model", ""), spec.get("seed", 0))
    save_generator(generator, os.path.join(workdir, "model"))
    a, b = inputs.synthetic_pair(spec["height"], spec["width"], spec.get("seed", 0))
    np.save(os.path.join(workdir, "image_a.npy"), a)
    np.save(os.path.join(workdir, "image_b.npy"), b)
    reference = fuse_arrays([a, b], generator=generator, mode=FORMATS_MODE)
    np.save(os.path.join(workdir, "f_hat.npy"), reference.f_hat)
    np.save(os.path.join(workdir, "f_final.npy"), reference.f_final)
    start = time.perf_counter()
    config = export_lib.ExportConfig(
        export_dir=os.path.join(workdir, "export"), tflite=True, mode=FORMATS_MODE,
        tflite_config=TFLiteConfig(fixed_size=spec["height"], mode=FORMATS_MODE))
    result = export_lib.export_model(generator, config)
    return {"weights": weights, "mode": FORMATS_MODE, "export_s": time.perf_counter() - start,
            "saved_model_dir": result.saved_model_dir, "tflite": result.tflite_models,
            "sizes": result.sizes}


def format_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One way of running the exported compact model on the 520 x 520 pair."""
    tf = set_tf_threads(spec.get("threads", 0))
    from mfif_tf import tiling
    from mfif_tf.model_io import load_generator

    workdir, fmt = spec["workdir"], spec["format"]
    export = spec["export"]
    a = np.load(os.path.join(workdir, "image_a.npy"))
    b = np.load(os.path.join(workdir, "image_b.npy"))
    ref_hat = np.load(os.path.join(workdir, "f_hat.npy"))
    ref_final = np.load(os.path.join(workdir, "f_final.npy"))
    row: dict[str, Any] = {"format": fmt, "height": a.shape[0], "width": a.shape[1]}
    size = None
    if fmt in ("keras_fuse", "keras_eager_network", "tf_function_network",
               "tf_function_xla_network"):
        generator = load_generator(os.path.join(workdir, "model"))
        x = tf.constant(tiling.network_input(a, b))
        if fmt == "keras_fuse":
            from mfif_tf.fusion import fuse_arrays

            row["runs_what"] = "G (eager) + SRR + eq. 14"

            def call():
                result = fuse_arrays([a, b], generator=generator, mode=FORMATS_MODE)
                return result.f_hat, result.f_final
        else:
            row["runs_what"] = "G only"
            if fmt == "keras_eager_network":
                net = lambda t: generator(t, training=False)  # noqa: E731
            else:
                net = tf.function(lambda t: generator(t, training=False),
                                  jit_compile=fmt == "tf_function_xla_network")

            def call():
                return np.asarray(net(x)[0, :, :, 0]), None
    elif fmt == "savedmodel":
        loaded = tf.saved_model.load(export["saved_model_dir"])
        signature = loaded.signatures["serving_default"]
        feed = dict(image_a=tf.constant(a[None]), image_b=tf.constant(b[None]))
        row["runs_what"] = "G + SRR + eq. 14 in the graph (uint8 in)"
        size = export["sizes"]["saved_model"]

        def call():
            out = signature(**feed)
            return out["focus_map_raw"].numpy()[0, :, :, 0], out["focus_map"].numpy()[0, :, :, 0]
    elif fmt.startswith("tflite:"):
        from export.tflite import TFLiteFuser

        name = fmt.split(":", 1)[1]
        fuser = TFLiteFuser(export["tflite"][name], num_threads=spec.get("threads", 0) or None)
        a01, b01 = a.astype(np.float32) / 255.0, b.astype(np.float32) / 255.0
        row["runs_what"] = "G + SRR + eq. 14 (XNNPACK)"
        size = export["sizes"][name]

        def call():
            out = fuser(a01, b01)
            return out["focus_map_raw"][0, :, :, 0], out["focus_map"][0, :, :, 0]
    else:
        raise ValueError(f"unknown format {fmt!r}")
    row["setup_rss_mb"] = machine.rss_mb()
    call()
    call()  # tracing, XLA compilation, delegate set-up
    runs = timed_runs(call, spec["repeats"], spec["budget_s"])
    row.update(runs.summary())
    f_hat, f_final = runs.last
    row["max_abs_f_hat_diff"] = float(np.abs(f_hat - ref_hat).max())
    if f_final is None:  # network only: compare the binarised maps
        row["f_final_agreement_pct"] = 100.0 * float(np.mean((f_hat > 0.5) == (ref_hat > 0.5)))
        row["agreement_of"] = "F_hat > 0.5"
    else:
        row["f_final_agreement_pct"] = 100.0 * float(np.mean((f_final > 0.5) == (ref_final > 0.5)))
        row["agreement_of"] = "F_final"
    row["size_mb"] = None if size is None else size / 1e6
    row["peak_rss_mb"] = machine.peak_rss_mb()
    return row


# ----------------------------------------------------------------------- Lytro quality


def quality_task(spec: dict[str, Any]) -> dict[str, Any]:
    """The paper's first eight metrics (Table 1) averaged over the Lytro pairs, and the
    time per pair, for one of `benchmarks.methods.METHODS`."""
    from mfif_tf import evaluate_lib

    method = spec["method"]
    config = evaluate_lib.EvalConfig(dataset_dir=spec["lytro_dir"], metrics=LYTRO_METRICS,
                                     progress=False)
    pairs = evaluate_lib.find_pairs(config.dataset_dir)
    times: list[float] = []
    cpu: list[float] = []
    row: dict[str, Any] = {"method": method, "pairs": len(pairs), "mode": None,
                           "working_side": None, "scales": None}
    tmp = tempfile.TemporaryDirectory()
    if method == "enfuse":
        binary = machine.enfuse_binary()
        if binary is None:
            return {**row, "unavailable": "enfuse is not installed (Debian package enfuse)"}
        threads = spec.get("threads", 0) or None
        warm = [False]

        def source(pair, image_a, image_b):
            out = os.path.join(tmp.name, f"{pair.stem}.tif")
            paths = [str(pair.path_a), str(pair.path_b)]
            if not warm[0]:
                enfuse_lib.run_enfuse(binary, paths, out, threads)
                warm[0] = True
            seconds, cpu_seconds, _ = enfuse_lib.run_enfuse(binary, paths, out, threads)
            times.append(seconds)
            cpu.append(cpu_seconds)
            fused = enfuse_lib.read_result(out)
            os.remove(out)
            return evaluate_lib.FusedOutput(fused, {"total": seconds})

        row["note"] = "whole process on the JPEG files: start-up, decode, blend, TIFF write"
    else:
        set_tf_threads(spec.get("threads", 0))
        if method == "classical":
            from mfif_tf.classical import fuse_classical

            fuse = fuse_classical
            row["weights"] = "none"
        elif methods_lib.uses_model(method):
            fuse, _, info = model_fuse(spec)
            row.update(info)
        else:
            raise ValueError(f"unknown method {method!r}")

        def timed(sources):
            start = time.process_time()
            result = fuse(sources)
            cpu.append(time.process_time() - start)
            times.append(result.timings["total"])
            return result.fused, result.timings

        source = evaluate_lib.fused_from_fn(timed, warmup=True)
    with tmp:
        result = evaluate_lib.evaluate_method(method, pairs, source, config)
    if method != "enfuse":
        times[:], cpu[:] = times[1:], cpu[1:]  # the warm-up call
    row["metrics"] = result.mean
    row["median_wall_s"] = float(np.median(times))
    row["median_cpu_s"] = float(np.median(cpu))
    row["mean_wall_s"] = float(np.mean(times))
    row["timing_split_s"] = result.timing
    return row


# ---------------------------------------------------------------------- whole process

_FUSED_IN = re.compile(r"fused in ([0-9.]+) s \((?:network|LiteRT graph) ([0-9.]+) s"
                       r"(?: in (\w+))?")


def process_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One pair fused by a command-line tool as its own process, from PNG files to a PNG
    file: `python -m mfif_tf.fuse A.png B.png -o fused.png --mode=MODE` (the method's mode,
    refined (the tool's default) in `benchmarks.methods.PROCESS_METHODS`; start-up of Python
    and TensorFlow included) or enfuse. One untimed run first (page cache), then
    spec["repeats"] runs; the median is reported. CPU time and peak RSS are the child's."""
    from PIL import Image

    method = spec["method"]
    h, w = spec["height"], spec["width"]
    row: dict[str, Any] = {"method": method, "height": h, "width": w, "megapixels": h * w / 1e6,
                           "depth": 2, "mode": None, "working_side": None, "scales": None}
    threads = spec.get("threads", 0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, pixels in zip(("A.png", "B.png"), inputs.synthetic_pair(h, w,
                                                                         spec.get("seed", 0))):
            paths.append(os.path.join(tmp, name))
            Image.fromarray(pixels).save(paths[-1])
        out = os.path.join(tmp, "fused.png")
        if method == "enfuse":
            binary = machine.enfuse_binary()
            if binary is None:
                return {**row, "unavailable": "enfuse is not installed (Debian package enfuse)"}
            command = enfuse_lib.enfuse_command(binary, paths, out)
            env, cwd = enfuse_lib.enfuse_env(threads or None), None
            shown = ["enfuse", *command[1:]]
            row["weights"] = "none"
        elif methods_lib.uses_model(methods_lib.PROCESS_VARIANTS.get(method, (method,))[0]):
            mode = spec["mode"]
            # The mode is passed even when it is the tool's default, so that the row says
            # what ran whatever the default becomes.
            command = [sys.executable, "-m", "mfif_tf.fuse", *paths, "-o", out, f"--mode={mode}"]
            if spec.get("model"):
                command.append(f"--model={spec['model']}")
            if spec.get("refiner") and methods_lib.uses_refiner(method):
                command.append(f"--refiner={spec['refiner']}")
            if spec.get("working_side") and mode == "coarse_to_fine":
                command.append(f"--working_side={int(spec['working_side'])}")
            if spec.get("g_side") and mode == "refined":
                command.append(f"--g_side={int(spec['g_side'])}")
            if spec.get("scales") and mode != "coarse_to_fine":
                command.append("--scales=" + ",".join(f"{v:g}" for v in spec["scales"]))
            if spec.get("engine"):
                command.append(f"--engine={spec['engine']}")
            if threads:
                command.append(f"--threads={threads}")
            env, cwd = dict(os.environ), methods_lib.ROOT
            shown = ["python", *command[1:]]
            from mfif_tf import inference

            row.update(mode=mode,
                       weights=model_identity(spec.get("model") or methods_lib.PACKAGED_DIR))
            if mode == "coarse_to_fine":
                row["working_side"] = spec.get("working_side") or inference.DEFAULT_WORKING_SIDE
            else:
                row["scales"] = list(spec.get("scales") or [1.0])
            row["engine"] = spec.get("engine") or "auto"
            if methods_lib.uses_refiner(methods_lib.PROCESS_VARIANTS.get(method, (method,))[0]):
                row["refiner"] = refiner_identity(spec.get("model") or "",
                                                  spec.get("refiner", ""))
        else:
            raise ValueError(f"whole-process timing has no command for {method!r}")
        # No machine paths in the reports: the packaged models' folders relative to the
        # project, where the command runs.
        row["command"] = " ".join(shown).replace(tmp + os.sep, "").replace(
            methods_lib.ROOT + os.sep, "")

        def once():
            if os.path.exists(out):
                os.remove(out)
            result = run_timed(command, env=env, cwd=cwd, name=method)
            if not os.path.exists(out):
                raise RuntimeError(f"{method} wrote no output")
            return result

        row["first_run_s"] = once()[0]  # untimed: fills the page cache
        wall, cpu, peaks, inside, network = [], [], [], [], []
        for _ in range(spec["repeats"]):
            seconds, cpu_seconds, peak, stdout = once()
            wall.append(seconds)
            cpu.append(cpu_seconds)
            peaks.append(peak)
            found = _FUSED_IN.search(stdout)
            if found:
                inside.append(float(found.group(1)))
                network.append(float(found.group(2)))
                if row.get("mode"):  # LiteRT's graph computes in float32
                    row["precision"] = found.group(3) or "float32"
    row.update({"runs": len(wall), "wall_s": wall, "cpu_s": cpu,
                "median_wall_s": statistics.median(wall), "median_cpu_s": statistics.median(cpu),
                "peak_rss_mb": max(peaks)})
    if inside:
        row["median_in_process_s"] = statistics.median(inside)
        row["median_network_s"] = statistics.median(network)
    return row
