"""Registration of hand-held stacks: synthetic shifts, rotations and focus-breathing scale
changes are recovered."""

import cv2
import numpy as np
import pytest

from mfif_tf import align

H, W = 240, 320


def scene(seed=0, dtype=np.uint8):
    """A textured RGB scene: smooth noise plus discs of random grey levels."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.random((H, W)).astype(np.float32) * 255, (0, 0), 2)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    for _ in range(40):
        centre = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        cv2.circle(base, centre, int(rng.integers(4, 25)), float(rng.integers(0, 256)), -1)
    rgb = np.dstack([base, 0.7 * base + 40, 255 - base]).clip(0, 255)
    if dtype == np.uint16:
        return (rgb * 257).astype(np.uint16)
    return rgb.astype(np.uint8)


def similarity(scale, degrees, tx, ty):
    a = np.deg2rad(degrees)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx],
                     [scale * np.sin(a), scale * np.cos(a), ty], [0.0, 0.0, 1.0]])


def moved(image, ref_to_moving, blur=1.5):
    """The frame a camera moved by `ref_to_moving` would see, refocused (blurred)."""
    out = cv2.warpPerspective(image, ref_to_moving, (W, H), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
    return cv2.GaussianBlur(out, (0, 0), blur) if blur else out


def corner_error(estimate, truth):
    corners = np.array([[0, 0, 1], [W - 1, 0, 1], [0, H - 1, 1], [W - 1, H - 1, 1.0]]).T
    p, q = estimate @ corners, truth @ corners
    return np.abs(p[:2] / p[2] - q[:2] / q[2]).max()


@pytest.mark.parametrize("truth", [
    similarity(1.0, 0.0, 6.5, -3.25),  # a shift
    similarity(1.04, 0.0, -5.0, 3.0),  # focus breathing: 4 % larger
    similarity(0.97, -1.0, 2.0, 7.5),  # smaller, slightly rotated
])
@pytest.mark.parametrize("model", ["similarity", "homography"])
def test_recovers_shift_and_scale(truth, model):
    reference = scene()
    matrix = align.estimate_transform(reference, moved(reference, truth), model)
    assert corner_error(matrix, np.linalg.inv(truth)) < 0.5


def test_similarity_keeps_its_form_and_works_on_shrunk_copies():
    """max_side below the image size: features are matched on shrunk copies and mapped back."""
    truth = similarity(1.03, 0.5, 4.0, -6.0)
    reference = scene(1, np.uint16)
    matrix = align.estimate_transform(reference, moved(reference, truth), "similarity",
                                      max_side=200)
    assert corner_error(matrix, np.linalg.inv(truth)) < 1.0
    a, b = matrix[0, :2]
    np.testing.assert_allclose(matrix[1, :2], [-b, a], atol=1e-9)  # rotation + one scale


def test_translation_and_affine_models():
    truth = similarity(1.0, 0.0, -4.25, 5.5)
    reference = scene(2)
    frame = moved(reference, truth, blur=0)
    for model in ("translation", "affine"):
        matrix = align.estimate_transform(reference, frame, model)
        assert corner_error(matrix, np.linalg.inv(truth)) < 0.5


def test_ecc_fallback_recovers_a_shift():
    truth = similarity(1.0, 0.0, 3.0, -2.0)
    reference = scene(3)
    grey = align._grey8(reference), align._grey8(moved(reference, truth, blur=1.0))
    matrix = align._ecc(*grey, "affine", 1600)
    assert corner_error(matrix, np.linalg.inv(truth)) < 0.5


def test_warp_brings_the_frame_onto_the_reference():
    truth = similarity(1.03, 0.8, 5.0, -4.0)
    reference = scene(4)
    frame = moved(reference, truth, blur=0)
    matrix = align.estimate_transform(reference, frame)
    warped, covered = align.warp_to_reference(frame, matrix, (H, W))
    assert warped.shape == reference.shape and warped.dtype == reference.dtype
    assert 0.9 < covered.mean() < 1.0  # the moved frame misses a border strip
    inner = covered.copy()
    inner[:10], inner[-10:], inner[:, :10], inner[:, -10:] = False, False, False, False
    diff = np.abs(warped.astype(float) - reference.astype(float))[inner]
    assert np.median(diff) < 3.0
    unaligned = np.abs(frame.astype(float) - reference.astype(float))[inner]
    assert np.median(unaligned) > 4 * np.median(diff)


def test_stack_aligner_chains_frame_to_frame():
    reference = scene(5)
    steps = [similarity(1.02, 0.0, 3.0, 1.0), similarity(1.02, 0.3, -2.0, 2.0)]
    truth = np.eye(3)
    aligner = align.StackAligner("similarity")
    frame, covered, matrix = aligner(reference)
    assert covered is None and np.array_equal(matrix, np.eye(3)) and frame is reference
    for step in steps:
        truth = step @ truth  # reference -> this frame
        frame, covered, matrix = aligner(moved(reference, truth, blur=0.8))
        assert frame.shape == reference.shape and covered.shape == (H, W)
        assert corner_error(matrix, np.linalg.inv(truth)) < 0.6


def test_stack_aligner_analyses_each_frame_once(monkeypatch):
    """A stack of N frames is analysed N times (each frame's features serve the step to it
    and the step from it), with the transforms of frame-to-frame `estimate_transform`."""
    reference = scene(6)
    frames = [reference] + [moved(reference, similarity(1.0 + 0.01 * k, 0.2 * k, 2.0 * k, -k),
                                  blur=0.8) for k in (1, 2, 3)]
    chained, expected = np.eye(3), [np.eye(3)]
    for previous, frame in zip(frames, frames[1:]):
        chained = chained @ align.estimate_transform(previous, frame)
        expected.append(chained)
    analysed = []

    class Counted(align.Features):
        def __init__(self, grey, max_side):
            analysed.append(grey.shape)
            super().__init__(grey, max_side)

    monkeypatch.setattr(align, "Features", Counted)
    aligner = align.StackAligner("similarity")
    matrices = [aligner.register(frame) for frame in frames]
    assert len(analysed) == len(frames)
    for got, want in zip(matrices, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_flat_frames_cannot_be_aligned():
    flat = np.full((H, W, 3), 128, np.uint8)
    with pytest.raises(align.AlignmentError):
        align.estimate_transform(flat, flat.copy())
    with pytest.raises(ValueError, match="unknown alignment model"):
        align.estimate_transform(flat, flat, "projective")
