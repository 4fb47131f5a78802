"""A fast Frechet distance to one fixed reference, from symmetric eigenproblems (numpy only).

FID = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2). pytorch-fid takes scipy's general `sqrtm` of
the non-symmetric product S1 S2 (a Schur decomposition: 16-60 s at 2048x2048 on our CPUs). With
A = sqrt(S2), symmetric PSD, S1 S2 = S1 A A is similar (up to its zero eigenvalues) to A S1 A, which
is symmetric PSD, so tr sqrt(S1 S2) = sum of sqrt(eigenvalues of A S1 A): one symmetric eigenvalue
problem (`eigvalsh`, no eigenvectors) per distance once A is known. A is the reference's, computed
once per reference.

From features X (n rows), S1 = Xc^T Xc / (n - 1) with Xc the centred rows, so A S1 A = Yc^T Yc / (n - 1)
with Yc = Xc A = (X A) centred. Projecting all features once (Y = X A) makes every later distance of a
subset or a bootstrap resample of the rows one centring plus one eigenproblem; below n = 2048 rows the
n x n Gram matrix Yc Yc^T / (n - 1) has the same non-zero eigenvalues and is smaller.

The headline FID stays pytorch-fid's own function (ddpm.fid.features.frechet_distance); this one
serves the many distances of FID-infinity and the bootstrap interval. tests/ddpm/fid/test_frechet.py
checks it against pytorch-fid to 1e-6 relative.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric PSD square root of a covariance; rounding's tiny negative eigenvalues become 0."""
    symmetric = (matrix + matrix.T) / 2
    values, vectors = np.linalg.eigh(symmetric)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _trace_sqrt_of_symmetric(matrix: np.ndarray) -> float:
    """tr sqrt(M) for a symmetric PSD M: the sum of the square roots of its eigenvalues."""
    values = np.linalg.eigvalsh((matrix + matrix.T) / 2)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


class FrechetReference:
    """Frechet distances of many (mu, sigma) or feature sets to one reference (mu, sigma)."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray) -> None:
        self.mu = np.asarray(mu, dtype=np.float64)
        sigma = np.asarray(sigma, dtype=np.float64)
        self.trace = float(np.trace(sigma))
        self.root = psd_sqrt(sigma)

    def distance(self, mu: np.ndarray, sigma: np.ndarray) -> float:
        """FID of (mu, sigma) against the reference."""
        diff = np.asarray(mu, dtype=np.float64) - self.mu
        tr_sqrt = _trace_sqrt_of_symmetric(self.root @ sigma @ self.root)
        return float(diff @ diff + np.trace(sigma) + self.trace - 2.0 * tr_sqrt)

    def project(self, features: np.ndarray) -> ProjectedFeatures:
        """Features ready for fast distances of any subset of their rows (one matrix product)."""
        return ProjectedFeatures(self, np.asarray(features, dtype=np.float64))


class ProjectedFeatures:
    """Feature rows X and X A (A = the reference's covariance root), for distances of row subsets."""

    def __init__(self, reference: FrechetReference, features: np.ndarray) -> None:
        if features.ndim != 2 or features.shape[1] != reference.mu.shape[0]:
            raise ValueError(f"features of shape {features.shape} do not match the reference's dimension")
        self.reference = reference
        self.features = features
        self.projected = features @ reference.root

    def distance(self, rows: Sequence[int] | np.ndarray | slice = slice(None)) -> float:
        """FID of the chosen rows (repeats allowed: a bootstrap resample), as np.mean / np.cov would give."""
        chosen = self.features[rows]
        count = chosen.shape[0]
        if count < 2:
            raise ValueError(f"a covariance needs at least 2 rows, got {count}")
        mu = chosen.mean(axis=0)
        centred = chosen - mu
        trace = float(np.einsum("ij,ij->", centred, centred)) / (count - 1)
        projected = self.projected[rows]
        projected = projected - projected.mean(axis=0)
        # Below d rows the n x n Gram matrix is smaller and has the same non-zero eigenvalues.
        gram = projected @ projected.T if count - 1 < projected.shape[1] else projected.T @ projected
        tr_sqrt = _trace_sqrt_of_symmetric(gram / (count - 1))
        diff = mu - self.reference.mu
        return float(diff @ diff + trace + self.reference.trace - 2.0 * tr_sqrt)


def fast_frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """pytorch-fid's calculate_frechet_distance(mu1, sigma1, mu2, sigma2) by symmetric eigenproblems."""
    return FrechetReference(mu2, sigma2).distance(mu1, sigma1)
