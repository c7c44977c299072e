"""Registration of hand-held focus stacks: each frame is warped onto a reference frame.

A transform is a 3 x 3 matrix M in pixel coordinates (x right, y down, pixel centres at
integers) that maps a point of the moving frame to the reference: p_ref ~ M p_moving.

Method: SIFT features on grey copies shrunk to at most `max_side` pixels, Lowe's ratio test,
and a RANSAC fit of the motion model refined on the inliers (OpenCV). The default model is a
similarity (shift, rotation and one scale), which covers a hand-held camera on a tripod-less
shot and the focus breathing of a lens (the image scale changes by a few percent as the focus
distance changes); "affine" and "homography" are available for stronger perspective changes.
Features that are blurred in one frame and sharp in the other still match at SIFT's coarser
scales, and neighbouring frames of a stack differ little in focus, so stacks are registered
frame to previous frame and the transforms chained (`StackAligner`). When too few features
match (flat, textureless scenes) an ECC fit (enhanced correlation coefficient) from the
identity on a small image pyramid is tried before giving up.
"""

from __future__ import annotations

import cv2
import numpy as np

MODELS = ("translation", "similarity", "affine", "homography")
MIN_INLIERS = 12


class AlignmentError(ValueError):
    """A frame could not be registered to its reference."""


def _grey8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return image


def _shrink(grey: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy with at most `max_side` pixels a side and its (x, y) scale factors."""
    factor = min(1.0, max_side / max(grey.shape))
    if factor >= 1.0:
        return grey, np.ones(2)
    height, width = grey.shape
    size = (max(8, round(width * factor)), max(8, round(height * factor)))
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return small, np.array([size[0] / width, size[1] / height])


def _to_full(points: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Shrunk-image pixel centres to full-resolution pixel centres."""
    return (points + 0.5) / scale - 0.5


def _small_to_full(scale: np.ndarray) -> np.ndarray:
    """The 3 x 3 form of `_to_full`."""
    return np.array([[1 / scale[0], 0, 0.5 / scale[0] - 0.5],
                     [0, 1 / scale[1], 0.5 / scale[1] - 0.5], [0, 0, 1]])


def _fit(src: np.ndarray, dst: np.ndarray, model: str, threshold: float):
    if model == "homography":
        matrix, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=5000,
                                          confidence=0.999)
        return matrix, mask
    if model == "translation":
        # RANSAC on single-point shifts: the median shift of the largest consistent set.
        shifts = dst - src
        best = np.zeros(len(src), bool)
        for i in range(0, len(src), max(1, len(src) // 500)):
            mask = np.linalg.norm(shifts - shifts[i], axis=1) < threshold
            if mask.sum() > best.sum():
                best = mask
        matrix = np.eye(3)
        matrix[:2, 2] = shifts[best].mean(axis=0) if best.any() else 0.0
        return matrix, best[:, None].astype(np.uint8)
    fit = cv2.estimateAffinePartial2D if model == "similarity" else cv2.estimateAffine2D
    affine, mask = fit(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                       maxIters=5000, confidence=0.999, refineIters=20)
    if affine is None:
        return None, None
    return np.vstack([affine, [0.0, 0.0, 1.0]]), mask


class Features:
    """SIFT keypoints (full-resolution pixel centres, (K, 2) float32) and descriptors of a
    grey frame, detected on its copy shrunk to at most `max_side` pixels (`scale`: the
    shrink factors); `descriptors` None when the frame has fewer than two."""

    def __init__(self, grey: np.ndarray, max_side: int):
        small, self.scale = _shrink(grey, max_side)
        keypoints, self.descriptors = cv2.SIFT_create(nfeatures=5000).detectAndCompute(
            small, None)
        if self.descriptors is None or len(keypoints) < 2:
            self.descriptors = None
        self.points = _to_full(np.float32([k.pt for k in keypoints]).reshape(-1, 2),
                               self.scale)


def _match(reference: Features, moving: Features, model: str):
    """M from the features of two frames (Lowe's ratio test, RANSAC); None if too few
    agree."""
    if reference.descriptors is None or moving.descriptors is None:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(moving.descriptors, reference.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    src = moving.points[[m.queryIdx for m in good]]
    dst = reference.points[[m.trainIdx for m in good]]
    threshold = max(2.0, 1.5 / min(reference.scale.min(), moving.scale.min()))
    matrix, mask = _fit(src.astype(np.float32), dst.astype(np.float32), model, threshold)
    if matrix is None or mask is None or int(mask.sum()) < MIN_INLIERS:
        return None
    return matrix


def _ecc(reference: np.ndarray, moving: np.ndarray, model: str, max_side: int):
    """ECC from the identity, coarse to fine; None when it does not converge."""
    motion = {"translation": cv2.MOTION_TRANSLATION, "similarity": cv2.MOTION_AFFINE,
              "affine": cv2.MOTION_AFFINE, "homography": cv2.MOTION_HOMOGRAPHY}[model]
    ref, scale = _shrink(reference, max_side)
    mov = cv2.resize(moving, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
    scale_mov = np.array([ref.shape[1] / moving.shape[1], ref.shape[0] / moving.shape[0]])
    # ECC warps the template's grid into the input: input(W p) ~ template(p), so with the
    # reference as template W maps reference points to moving points.
    warp = np.eye(3, dtype=np.float32)
    levels = [s for s in (0.25, 0.5, 1.0) if min(ref.shape) * s >= 32] or [1.0]
    previous = levels[0]
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    for level in levels:
        warp[:2, 2] *= level / previous
        warp[2, :2] /= level / previous
        previous = level
        size = (max(8, round(ref.shape[1] * level)), max(8, round(ref.shape[0] * level)))
        t = cv2.resize(ref, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        m = cv2.resize(mov, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        current = warp if motion == cv2.MOTION_HOMOGRAPHY else warp[:2].copy()
        try:
            _, current = cv2.findTransformECC(t, m, current, motion, criteria, None, 5)
        except cv2.error:
            return None
        warp = current if current.shape == (3, 3) else np.vstack([current, [0, 0, 1]])
        warp = warp.astype(np.float32)
    ref_to_mov = (_small_to_full(scale_mov) @ warp.astype(np.float64)
                  @ np.linalg.inv(_small_to_full(scale)))
    return np.linalg.inv(ref_to_mov)


def estimate_transform(reference: np.ndarray, moving: np.ndarray, model: str = "similarity",
                       max_side: int = 1600) -> np.ndarray:
    """The 3 x 3 matrix M with p_reference ~ M p_moving (see the module docstring).

    Raises `AlignmentError` when neither features nor ECC give a fit.
    """
    if model not in MODELS:
        raise ValueError(f"unknown alignment model {model!r}; choose one of {MODELS}")
    ref, mov = _grey8(reference), _grey8(moving)
    return _transform(ref, Features(ref, max_side), mov, Features(mov, max_side), model,
                      max_side)


def _transform(ref: np.ndarray, ref_features: Features, mov: np.ndarray,
               mov_features: Features, model: str, max_side: int) -> np.ndarray:
    """`estimate_transform` for grey frames whose features are known."""
    matrix = _match(ref_features, mov_features, model)
    if matrix is None:
        matrix = _ecc(ref, mov, model, max_side)
    if matrix is None or not np.all(np.isfinite(matrix)):
        raise AlignmentError("too few matching features and no ECC convergence")
    return matrix / matrix[2, 2]


def warp_to_reference(image: np.ndarray, matrix: np.ndarray,
                      shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resamples `image` onto the reference grid (H, W) = `shape` (bilinear).

    Returns the warped image (same dtype) and a bool mask of the pixels that the frame
    really covers; the rest is filled by repeating the frame's edge pixels.
    """
    height, width = shape
    size = (width, height)
    if np.allclose(matrix[2], [0.0, 0.0, 1.0]):
        warped = cv2.warpAffine(image, matrix[:2], size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        covered = cv2.warpAffine(np.ones(image.shape[:2], np.uint8), matrix[:2], size,
                                 flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    else:
        warped = cv2.warpPerspective(image, matrix, size, flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
        covered = cv2.warpPerspective(np.ones(image.shape[:2], np.uint8), matrix, size,
                                      flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    covered = cv2.erode(covered, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return warped, covered.astype(bool)


class StackAligner:
    """Registers the frames of a stack, in order, to the first one.

    Each frame is matched to the previous (unwarped) frame, whose focus is closest, and the
    transforms are chained: M_k = M_{k-1} @ T(k -> k-1). A frame's features are detected
    once and serve both steps it takes part in (the same transforms as `estimate_transform`
    on each pair, for half the detections).
    """

    def __init__(self, model: str = "similarity", max_side: int = 1600):
        if model not in MODELS:
            raise ValueError(f"unknown alignment model {model!r}; choose one of {MODELS}")
        self.model = model
        self.max_side = max_side
        self.shape: tuple[int, int] | None = None
        # The previous frame's grey copy and features: each frame is analysed once.
        self._previous: tuple[np.ndarray, Features] | None = None
        self._to_reference = np.eye(3)

    def register(self, frame: np.ndarray) -> np.ndarray:
        """M of the next frame (the identity for the first) without resampling it: warp it
        with `warp_to_reference(frame, M, self.shape)`."""
        grey = _grey8(frame)
        features = Features(grey, self.max_side)
        if self._previous is None:
            self.shape = frame.shape[:2]
            self._previous = grey, features
            return np.eye(3)
        step = _transform(*self._previous, grey, features, self.model, self.max_side)
        self._to_reference = self._to_reference @ step
        self._previous = grey, features
        return self._to_reference.copy()

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Returns (frame on the reference grid, coverage mask or None, M)."""
        first = self._previous is None
        matrix = self.register(frame)
        if first:
            return frame, None, matrix
        warped, covered = warp_to_reference(frame, matrix, self.shape)
        return warped, covered, matrix
