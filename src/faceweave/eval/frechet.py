"""Realism: Fréchet distance (FID-style) and kernel inception distance (KID) on features.

Both compare two sets of feature vectors (N x D), e.g. Inception pool features for
standard FID, or the features of the project's own face networks. Everything runs in
float64 numpy; inputs may be numpy arrays or CPU/GPU torch tensors.

* `frechet_distance(mu1, sigma1, mu2, sigma2)`: the Fréchet (2-Wasserstein) distance
  between two Gaussians (Dowson & Landau 1982; FID, Heusel et al. 2017):
      d² = ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1^½ Σ2 Σ1^½)^½.
  The matrix square root is taken of the symmetric PSD product Σ1^½ Σ2 Σ1^½ through `eigh`
  (it has the same eigenvalues as Σ1 Σ2), instead of `scipy.linalg.sqrtm(Σ1 Σ2)` of a
  non-symmetric matrix, which goes complex or inaccurate for near-singular covariances
  (the usual case: fewer samples than feature dimensions).
* `fd_from_features(a, b)`: the same from samples (with fewer samples than dimensions it
  works in sample space, an n_a x n_b SVD: exact, and far faster at D = 2048). The estimate
  is biased upward, by roughly O(D/n) (Chong & Forsyth 2020, "Effectively Unbiased FID");
  compare FD values only at the same n and feature extractor.
* `kid(a, b)`: unbiased MMD² with the cubic polynomial kernel k(x, y) = (xᵀy / D + 1)³,
  averaged over random subsets (Bińkowski et al. 2018, "Demystifying MMD GANs"). Unbiased
  at every n, so it is the better number for small evaluations.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import FaceweaveError

# A sample covariance needs two samples; below the feature dimension D it is singular and
# the FD estimate is biased upward (a warning says so), but it is still a number that can be
# compared between runs with the same n. Callers wanting stricter limits pass min_samples.
MIN_FD_SAMPLES = 2


class SmallSampleWarning(UserWarning):
    """Fewer samples than feature dimensions: FD is computable but biased upward."""


def _as_float64(name: str, x, ndim: int) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise FaceweaveError(f"{name} must be a numeric array: {e}") from None
    if arr.ndim != ndim:
        want = {1: "a vector (D,)", 2: "a matrix (N, D)"}[ndim]
        raise FaceweaveError(f"{name} must be {want}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise FaceweaveError(
            f"{name} contains {bad} NaN or infinite values; the features came out non-finite "
            "(check the images and the feature extractor's dtype)"
        )
    return arr


def _clip_psd(name: str, eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues of a covariance: rounding-level negatives -> 0, real negatives -> error.

    A singular covariance computed in float32 (torch.cov of n < D features) has negative
    eigenvalues down to about -1e-7 of the largest; 1e-4 leaves room for that and for
    reduced-precision inputs, and still rejects a matrix that is no covariance at all."""
    scale = max(float(np.abs(eigenvalues).max(initial=0.0)), 1e-300)
    if eigenvalues.min(initial=0.0) < -1e-4 * scale:
        raise FaceweaveError(
            f"{name} is not positive semi-definite (eigenvalue {eigenvalues.min():.3g}, largest "
            f"{scale:.3g}); pass a covariance matrix such as feature_statistics() returns"
        )
    return np.clip(eigenvalues, 0.0, None)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); >= 0, in squared feature units.

    mu: (D,), sigma: (D, D) covariance. Singular covariances are fine (eigenvalues are
    clipped at 0 rather than inverted). If LAPACK fails to converge on a badly conditioned
    matrix, both covariances get `eps * I` added and the computation is retried once, as
    pytorch-fid does.
    """
    mu1, mu2 = _as_float64("mu1", mu1, 1), _as_float64("mu2", mu2, 1)
    sigma1, sigma2 = _as_float64("sigma1", sigma1, 2), _as_float64("sigma2", sigma2, 2)
    d = mu1.shape[0]
    for name, arr, shape in (("mu2", mu2, (d,)), ("sigma1", sigma1, (d, d)), ("sigma2", sigma2, (d, d))):
        if arr.shape != shape:
            raise FaceweaveError(f"{name} has shape {arr.shape}, expected {shape} to match mu1 {mu1.shape}")
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.allclose(s, s.T, rtol=1e-5, atol=1e-8 * max(1.0, float(np.abs(s).max()))):
            raise FaceweaveError(f"{name} is not symmetric; pass a covariance matrix")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2

    def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
        vals1, vecs1 = np.linalg.eigh(s1)
        sqrt_s1 = (vecs1 * np.sqrt(_clip_psd("sigma1", vals1))) @ vecs1.T   # Σ1^½, symmetric PSD
        _clip_psd("sigma2", np.linalg.eigvalsh(s2))  # name a bad sigma2 here, not as a bad product
        product = sqrt_s1 @ s2 @ sqrt_s1
        vals = np.linalg.eigvalsh((product + product.T) / 2)
        return float(np.sqrt(np.clip(vals, 0.0, None)).sum())

    try:
        tr_covmean = trace_sqrt_product(sigma1, sigma2)
    except np.linalg.LinAlgError:
        offset = eps * np.eye(d)
        sigma1, sigma2 = sigma1 + offset, sigma2 + offset
        tr_covmean = trace_sqrt_product(sigma1, sigma2)
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    if not np.isfinite(fd):
        raise FaceweaveError("Fréchet distance came out non-finite; the feature statistics overflow float64")
    # Rounding can leave a tiny negative number for identical distributions.
    return max(fd, 0.0)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (mean (D,), unbiased covariance (D, D)), float64."""
    x = _as_float64("features", features, 2)
    if x.shape[0] < 2:
        raise FaceweaveError(f"feature statistics need at least 2 samples, got {x.shape[0]}")
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def fd_from_features(a, b, min_samples: int = MIN_FD_SAMPLES) -> float:
    """Fréchet distance between two feature sets (N_a x D and N_b x D).

    Raises FaceweaveError below `min_samples` per side; warns (SmallSampleWarning) when a side
    has no more samples than feature dimensions, where the covariance is singular and the
    estimate is biased upward (standard FID uses >= 10k samples for D = 2048).
    """
    a, b = _as_float64("features a", a, 2), _as_float64("features b", b, 2)
    if a.shape[1] != b.shape[1]:
        raise FaceweaveError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    n = min(a.shape[0], b.shape[0])
    min_samples = max(int(min_samples), 2)
    if n < min_samples:
        raise FaceweaveError(
            f"fd needs at least {min_samples} samples per side, got {n}; evaluate more images "
            f"(--n), and prefer n > {a.shape[1]} (the feature dimension) for an unbiased-looking FD"
        )
    if n <= a.shape[1]:
        warnings.warn(
            f"fd from {n} samples in {a.shape[1]} feature dimensions: the covariance is singular "
            "and FD is biased upward; compare it only with FDs at the same n (or use kid())",
            SmallSampleWarning, stacklevel=2,
        )
    if n < a.shape[1]:
        return _fd_in_sample_space(a, b)
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def _fd_in_sample_space(a: np.ndarray, b: np.ndarray) -> float:
    """The same Fréchet distance without a D x D matrix, for fewer samples than dimensions.

    With centred samples A (n_a x D), B (n_b x D): Σa = AᵀA / (n_a − 1), Σb = BᵀB / (n_b − 1),
    and the non-zero eigenvalues of Σa Σb are those of (A Bᵀ)(A Bᵀ)ᵀ / ((n_a − 1)(n_b − 1)), so
    tr (Σa^½ Σb Σa^½)^½ is the nuclear norm of A Bᵀ over √((n_a − 1)(n_b − 1)). An SVD of an
    n_a x n_b matrix replaces three D x D eigendecompositions: 500 Inception features take
    a fraction of a second instead of most of a minute (D = 2048).
    """
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    centred_a, centred_b = a - mu_a, b - mu_b
    scale_a, scale_b = a.shape[0] - 1, b.shape[0] - 1
    nuclear_norm = float(np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum())
    tr_covmean = nuclear_norm / np.sqrt(scale_a * scale_b)
    diff = mu_a - mu_b
    traces = (centred_a ** 2).sum() / scale_a + (centred_b ** 2).sum() / scale_b      # tr Σa + tr Σb
    fd = float(diff @ diff + traces - 2.0 * tr_covmean)
    if not np.isfinite(fd):
        raise FaceweaveError("Fréchet distance came out non-finite; the feature statistics overflow float64")
    return max(fd, 0.0)


def _polynomial_mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int, coef0: float) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) with k(x, y) = (xᵀy / D + coef0)^degree."""
    m, d = x.shape
    k_xx = (x @ x.T / d + coef0) ** degree
    k_yy = (y @ y.T / d + coef0) ** degree
    k_xy = (x @ y.T / d + coef0) ** degree
    sum_xx = k_xx.sum() - np.trace(k_xx)  # off-diagonal terms only: that is what makes it unbiased
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid(a, b, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance between feature sets a (N_a x D) and b (N_b x D): (mean, std).

    Each of `subsets` rounds draws `subset_size` rows from each side without replacement
    (capped at the smaller set's size, so small evaluations still run) and computes the
    unbiased polynomial-kernel MMD²; the mean and (population) std over rounds are returned,
    as in Bińkowski et al. 2018 and torch-fidelity. Can be slightly negative when the two
    sets come from the same distribution. Deterministic for a given seed.
    """
    a, b = _as_float64("features a", a, 2), _as_float64("features b", b, 2)
    if a.shape[1] != b.shape[1]:
        raise FaceweaveError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    m = min(int(subset_size), a.shape[0], b.shape[0])
    if m < 2:
        raise FaceweaveError(
            f"kid needs at least 2 samples per side, got {min(a.shape[0], b.shape[0])}; evaluate more images (--n)"
        )
    if subsets < 1:
        raise FaceweaveError(f"kid needs subsets >= 1, got {subsets}")
    rng = np.random.default_rng(seed)
    values = np.array([
        _polynomial_mmd2_unbiased(a[rng.choice(a.shape[0], m, replace=False)],
                                  b[rng.choice(b.shape[0], m, replace=False)], degree, coef0)
        for _ in range(subsets)
    ])
    return float(values.mean()), float(values.std())
