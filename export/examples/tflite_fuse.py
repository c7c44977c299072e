"""Fuses two photos with an MFIF-GAN .tflite model, the way an app on a phone would.

  python export/examples/tflite_fuse.py --model mfif_dynamic_float32.tflite \
      --image_a a.jpg --image_b b.jpg --output fused.png [--focus_map focus_map.png] [--overwrite]

Needs only ai-edge-litert, NumPy and Pillow (no TensorFlow). The model takes float32 RGB in
[0, 1] and returns the fused image (eq. 14), F_final and F_hat. A dynamic-size model runs at
the photos' size. A fixed-size model (e.g. 512x512) runs on the photos resized to its size;
its F_final is then scaled back to the photos' size (nearest neighbour) and eq. 14,
I_A * F_final + I_B * (1 - F_final), is applied to the full-size photos.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image


class Fuser:
    """One loaded model; `fuse(a, b)` takes and returns uint8 RGB arrays (H, W, 3)."""

    def __init__(self, model_path: str, num_threads: int | None = None):
        self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
        self.runner = self.interpreter.get_signature_runner()
        shape = self.runner.get_input_details()["image_a"]["shape_signature"]
        self.size = None if min(shape[1], shape[2]) < 0 else (int(shape[1]), int(shape[2]))

    def fuse(self, image_a: np.ndarray, image_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (fused uint8 (H, W, 3), F_final uint8 0/255 (H, W))."""
        if image_a.shape != image_b.shape:
            raise ValueError(f"the photos differ in size: {image_a.shape[1]}x{image_a.shape[0]} "
                             f"and {image_b.shape[1]}x{image_b.shape[0]}")
        height, width = image_a.shape[:2]
        a, b = image_a, image_b
        if self.size is not None and (height, width) != self.size:
            a, b = _resize(a, self.size), _resize(b, self.size)
        out = self.runner(image_a=_to_input(a), image_b=_to_input(b))
        focus = out["focus_map"][0, :, :, 0] > 0.5
        if focus.shape == (height, width):
            fused = np.clip(np.round(out["fused"][0] * 255.0), 0, 255).astype(np.uint8)
        else:
            mask = Image.fromarray(focus.astype(np.uint8) * 255)
            focus = np.asarray(mask.resize((width, height), Image.NEAREST)) > 127
            fused = np.where(focus[..., None], image_a, image_b)  # eq. 14 with binary F_final
        return fused, focus.astype(np.uint8) * 255


def _to_input(image: np.ndarray) -> np.ndarray:
    return (image.astype(np.float32) / 255.0)[np.newaxis]


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def _read(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help=".tflite model")
    parser.add_argument("--image_a", required=True, help="first source I_A")
    parser.add_argument("--image_b", required=True, help="second source I_B")
    parser.add_argument("--output", required=True, help="fused image to write (PNG)")
    parser.add_argument("--focus_map", default="", help="also write F_final here (PNG)")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)
    for path in (args.output, args.focus_map):
        if path and os.path.exists(path) and not args.overwrite:
            print(f"error: {path} exists; pass --overwrite to replace it", file=sys.stderr)
            return 2
    try:
        fuser = Fuser(args.model, args.threads)
        fused, focus = fuser.fuse(_read(args.image_a), _read(args.image_b))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Image.fromarray(fused).save(args.output)
    if args.focus_map:
        Image.fromarray(focus).save(args.focus_map)
    return 0


if __name__ == "__main__":
    sys.exit(main())
