"""Information-theory metrics: MI (Q_MI), TE (Q_TE) and NCIE (Q_NCIE).

Section 4.1.3 of the paper, computed as in the toolbox of Liu et al. (TPAMI 2012):
every image is first stretched to 0..255 and rounded (``normalize1``), then 256-bin
histograms give the probabilities.

* MI, Hossny's normalised mutual information:
  ``MI = 2 * (I(A;F) / (H(A) + H(F)) + I(B;F) / (H(B) + H(F)))`` (bits).
* TE, Nava's Tsallis-entropy metric with q = 0.43137:
  ``TE = (I_q(A;F) + I_q(B;F)) / (H(A)^q + H(B)^q + I_q(A;B))`` with the Tsallis mutual
  information ``I_q(X;Y) = (1 - sum_ij p(i,j)^q / (m(i) n(j))^(q-1)) / (1 - q)``. The toolbox
  pairs the joint probability p(i, j) (i: value in X, j: value in Y) with the marginal of Y
  at i and the marginal of X at j (its two marginal vectors are swapped); the published
  numbers carry that, so it is kept here. Terms whose marginal product is 0 are skipped.
* NCIE, Wang's nonlinear correlation information entropy: nonlinear correlation
  coefficients ``NCC(X, Y) = (H(X) + H(Y) - H(X, Y)) / log2(256)`` fill the 3 x 3 matrix R
  of (A, B, F); with its eigenvalues r, ``NCIE = 1 + sum_i (r_i/3) log_256(r_i/3)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mfif_tf.metrics import _common

TSALLIS_Q = 0.43137  # Nava's constant, toolbox metricMI(..., 3)
BINS = 256


def _mutual_information(p: np.ndarray) -> tuple[float, float, float, float]:
    """Returns (I, H_xy, H_x, H_y) in bits from a joint probability table."""
    h_x = _common.entropy_bits(p.sum(axis=1))
    h_y = _common.entropy_bits(p.sum(axis=0))
    h_xy = _common.entropy_bits(p)
    return h_x + h_y - h_xy, h_xy, h_x, h_y


def _tsallis(p: np.ndarray, q: float) -> float:
    """Tsallis mutual information as the toolbox computes it (see module docstring)."""
    marg_rows = p.sum(axis=1)  # marginal of the first image
    marg_cols = p.sum(axis=0)  # marginal of the second image
    # Toolbox quirk: p(i, j) meets marg_cols(i) * marg_rows(j).
    prod = np.outer(marg_cols, marg_rows)
    mask = prod != 0
    total = np.sum(p[mask] ** q * prod[mask] ** (1.0 - q))
    return float((1.0 - total) / (1.0 - q))


@dataclasses.dataclass(frozen=True)
class JointTables:
    """Joint probabilities of the normalised images: (A, B), (A, F) and (B, F)."""

    ab: np.ndarray
    af: np.ndarray
    bf: np.ndarray


def joint_tables(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> JointTables:
    """normalize1 each image, then the three 256 x 256 joint histograms (shared by all)."""
    a, b, f = (_common.normalize1(x) for x in (a, b, f))
    return JointTables(
        ab=_common.joint_histogram(a, b, BINS),
        af=_common.joint_histogram(a, f, BINS),
        bf=_common.joint_histogram(b, f, BINS),
    )


def mi_from_tables(t: JointTables) -> float:
    i_af, _, h_a, h_f1 = _mutual_information(t.af)
    i_bf, _, h_b, h_f2 = _mutual_information(t.bf)
    return 2.0 * (i_af / (h_a + h_f1) + i_bf / (h_b + h_f2))


def te_from_tables(t: JointTables, q: float = TSALLIS_Q) -> float:
    i_af, i_bf, i_ab = _tsallis(t.af, q), _tsallis(t.bf, q), _tsallis(t.ab, q)
    _, _, h_a, h_b = _mutual_information(t.ab)
    return (i_af + i_bf) / (h_a**q + h_b**q + i_ab)


def _ncc(p: np.ndarray) -> float:
    mi, _, _, _ = _mutual_information(p)
    return mi / np.log2(BINS)


def ncie_from_tables(t: JointTables) -> float:
    n_ab, n_af, n_bf = _ncc(t.ab), _ncc(t.af), _ncc(t.bf)
    r = np.array([[1.0, n_ab, n_af], [n_ab, 1.0, n_bf], [n_af, n_bf, 1.0]])
    eig = np.linalg.eigvalsh(r) / 3.0
    eig = eig[eig > 0]  # 0 log 0 = 0
    h_r = -np.sum(eig * np.log2(eig)) / np.log2(BINS)
    return float(1.0 - h_r)


def mi_core(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    return mi_from_tables(joint_tables(a, b, f))


def te_core(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    return te_from_tables(joint_tables(a, b, f))


def ncie_core(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    return ncie_from_tables(joint_tables(a, b, f))


def mutual_information(
    image_a: np.ndarray, image_b: np.ndarray, fused: np.ndarray, convention: str = "paper"
) -> float:
    """MI (Hossny's normalised mutual information, range 0..2, higher is better)."""
    return mi_core(*_common.prepare(image_a, image_b, fused, convention).layout)


def tsallis_entropy(
    image_a: np.ndarray, image_b: np.ndarray, fused: np.ndarray, convention: str = "paper"
) -> float:
    """TE (Tsallis-entropy metric, q = 0.43137, higher is better)."""
    return te_core(*_common.prepare(image_a, image_b, fused, convention).layout)


def ncie(
    image_a: np.ndarray, image_b: np.ndarray, fused: np.ndarray, convention: str = "paper"
) -> float:
    """NCIE (nonlinear correlation information entropy, range 0..1, higher is better)."""
    return ncie_core(*_common.prepare(image_a, image_b, fused, convention).layout)
