"""The stack loop (`mfif_tf.stacking`): fusion order, lazily loaded frames, alignment in
either order. The pair step is a NumPy focus measure here, so no network runs (the frames
are `test_fusion.focus_stack`'s)."""

import cv2
import numpy as np
import pytest

from mfif_tf import stacking
from mfif_tf.image_io import InputError
from tests.test_fusion import focus_stack


def energy_maps(running, frame, bar, timings):
    """A pair step: F = 1 where the running result has the larger local Laplacian energy."""
    del bar, timings

    def energy(x):
        grey = x.astype(np.float32).mean(axis=2) if x.ndim == 3 else x.astype(np.float32)
        return cv2.blur(cv2.Laplacian(grey, cv2.CV_32F) ** 2, (9, 9))

    f = (energy(running) >= energy(frame)).astype(np.float32)
    return f, f, True


def band_stack(n, height=64, width=120, seed=3):
    """n frames of one textured scene, frame k sharp only in the k-th vertical band."""
    return focus_stack(n, height, width, seed, structured=True)


@pytest.mark.parametrize("count,order,expected", [
    (2, "bisect", [0, 1]),
    (3, "bisect", [0, 2, 1]),
    (5, "bisect", [0, 4, 2, 1, 3]),
    (9, "bisect", [0, 8, 4, 2, 6, 1, 3, 5, 7]),
    (6, "bisect", [0, 5, 2, 1, 3, 4]),
    (5, "sequential", [0, 1, 2, 3, 4]),
])
def test_fusion_order(count, order, expected):
    assert stacking.fusion_order(count, order) == expected


def test_every_frame_is_fused_once_in_any_order():
    for count in range(1, 40):
        assert sorted(stacking.fusion_order(count)) == list(range(count))
    with pytest.raises(InputError, match="stack order 'random' is not one of bisect"):
        stacking.fusion_order(4, "random")


@pytest.mark.parametrize("order", ["bisect", "sequential"])
def test_lazy_frames_are_loaded_once_each_in_fusion_order(order):
    scene, frames, band = band_stack(5)
    loads = []

    def load(k):
        loads.append(k)
        return frames[k]

    lazy = stacking.LazyFrames(5, load)
    assert len(lazy) == 5 and loads == []
    result = stacking.fuse_frames(lazy, energy_maps, order=order)
    assert loads == stacking.fusion_order(5, order)
    # The index map names input frames whatever the order: each band from its sharp frame.
    rows, cols = np.indices(scene.shape[:2])
    np.testing.assert_array_equal(result.fused, np.stack(frames)[result.index_map, rows, cols])
    inner = (cols % band >= 6) & (cols % band < band - 6)
    assert np.mean(result.index_map[inner] == (cols // band)[inner]) > 0.99
    assert result.f_final is None and result.index_map.dtype == np.uint8


def test_an_iterator_is_read_whole_for_bisect_and_streamed_for_sequential():
    _, frames, _ = band_stack(4)
    seen = []

    def frames_read():
        for k, frame in enumerate(frames):
            seen.append(k)
            yield frame

    bisect = stacking.fuse_frames(frames_read(), energy_maps)
    assert seen == [0, 1, 2, 3]
    listed = stacking.fuse_frames(frames, energy_maps)
    np.testing.assert_array_equal(bisect.fused, listed.fused)
    np.testing.assert_array_equal(bisect.index_map, listed.index_map)
    seen.clear()
    sequential = stacking.fuse_frames(frames_read(), energy_maps, order="sequential")
    assert seen == [0, 1, 2, 3] and sequential.index_map.shape == listed.index_map.shape


def test_alignment_registers_in_input_order_and_fuses_in_bisect_order():
    """With --align the chained registration runs frame to frame in input order (frames
    read once for it), then the frames are read again and warped in fusion order; the
    transforms match those of the sequential order."""
    _, frames, _ = band_stack(4, 96, 128, seed=5)
    moved = [frames[0]]
    for k in range(1, 4):
        shift = np.array([[1, 0, 1.5 * k], [0, 1, -1.0 * k]], np.float32)
        moved.append(cv2.warpAffine(frames[k], shift, (128, 96), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT))
    loads = []

    def load(k):
        loads.append(k)
        return moved[k]

    bisect = stacking.fuse_frames(stacking.LazyFrames(4, load), energy_maps, align=True,
                                  align_model="translation")
    assert loads == [0, 1, 2, 3] + [0, 3, 1, 2]
    sequential = stacking.fuse_frames(moved, energy_maps, align=True,
                                      align_model="translation", order="sequential")
    assert len(bisect.transforms) == 4 and np.array_equal(bisect.transforms[0], np.eye(3))
    for got, want, k in zip(bisect.transforms, sequential.transforms, range(4)):
        np.testing.assert_allclose(got, want, atol=1e-9)
        np.testing.assert_allclose(got[:2, 2], [-1.5 * k, 1.0 * k], atol=0.3)
    assert bisect.timings["align"] > 0


def test_bad_frames_are_named_in_either_order():
    _, frames, _ = band_stack(3)
    frames[2] = frames[2][:40]
    for order in stacking.STACK_ORDERS:
        with pytest.raises(InputError, match="source 2: size 120x40 differs from source 0"):
            stacking.fuse_frames(frames, energy_maps, order=order)
    with pytest.raises(InputError, match="at least two sources"):
        stacking.fuse_frames([frames[0]], energy_maps)
