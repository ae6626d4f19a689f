"""L2-regularised multinomial logistic regression: loss, gradient, Hessian, Hessian-vector product.

The four functions below read as one derivation, in the style of scikit-learn's
``sklearn/linear_model/_linear_loss.py`` (``LinearModelLoss``). Notation:

    X : (n, D)   rows x_i, the last column is the constant 1 (bias), D = d + 1
    y : (n,)     integer labels in 0..K-1
    W : (K, D)   one row w_k per class; the bias is penalised like every other weight
    Z = X W^T    (n, K) scores,  P = softmax(Z) row-wise (n, K),  Y = one_hot(y) (n, K)

Objective (the same function scikit-learn minimises with C = 1/(n lam), fit_intercept=False on the
augmented X, divided by n C):

    f(W) = 1/n sum_i [ logsumexp(W x_i) - w_{y_i}^T x_i ] + lam/2 ||W||_F^2

Gradient. d/dz_k logsumexp(z) = p_k, so d f_i / d w_k = (p_ik - [y_i = k]) x_i and

    grad f(W) = (P - Y)^T X / n + lam W                                    (K, D)

Hessian. d p_k / d z_l = p_k (delta_kl - p_l), so the per-sample Hessian w.r.t. vec(W) (row-major,
index k*D + j) is (diag(p_i) - p_i p_i^T) kron x_i x_i^T, and

    H = 1/n sum_i (diag(p_i) - p_i p_i^T) kron x_i x_i^T + lam I           (K*D, K*D)
    block (k, l) = X^T diag(p_k * (delta_kl - p_l)) X / n  [+ lam I if k == l]   (D, D)

Every block is symmetric and block (l, k) = block (k, l), so only the K(K+1)/2 blocks with l >= k are
computed: K(K+1)/2 weighted Gram matrices, 2 n D^2 flops each.

Hessian-vector product (never forms H). For a direction V (K, D), with U = X V^T (n, K):

    H vec(V) = R^T X / n + lam V,   R = P * (U - rowsum(P * U))             (K, D)

i.e. two skinny matrix products, the cost of one gradient.

Bounds used by the step-size rules in train.py. Boehning (1992): diag(p) - p p^T <= 1/2 (I - 11^T/K)
(the largest eigenvalue of diag(p) - pp^T is at most 1/2), hence

    L     = ||X||_2^2 / (2n) + lam          smoothness of f
    L_max = max_i ||x_i||^2 / 2 + lam        smoothness of each f_i = per-sample loss + lam/2 ||W||^2
"""
from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import svds
from scipy.special import logsumexp, softmax


def scores(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    return X @ W.T  # (n, K)


def probabilities(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """P = softmax(X W^T) row-wise; scipy subtracts the row max, so no overflow."""
    return softmax(scores(W, X), axis=1)  # (n, K)


def loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float) -> float:
    """f(W) = mean_i [logsumexp(z_i) - z_{i, y_i}] + lam/2 ||W||_F^2, z_i = W x_i (stable log-sum-exp)."""
    Z = scores(W, X)  # (n, K)
    data = np.mean(logsumexp(Z, axis=1) - Z[np.arange(len(y)), y])
    return float(data + 0.5 * lam * np.sum(W * W))


def gradient(W: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """grad f(W) = (P - Y)^T X / n + lam W, shape (K, D)."""
    P = probabilities(W, X)  # (n, K)
    P[np.arange(len(y)), y] -= 1.0  # P - Y without building Y
    return P.T @ X / len(y) + lam * W  # (K, D)


def loss_gradient(W, X, y, lam, return_proba=False):
    """f and grad f at the price of one pass (the line searches need both); optionally also P."""
    Z = scores(W, X)  # (n, K)
    lse = logsumexp(Z, axis=1)  # (n,)
    rows = np.arange(len(y))
    f = float(np.mean(lse - Z[rows, y]) + 0.5 * lam * np.sum(W * W))
    P = np.exp(Z - lse[:, None])  # (n, K) softmax, from the stable log-sum-exp
    R = P.copy() if return_proba else P
    R[rows, y] -= 1.0  # P - Y
    g = R.T @ X / len(y) + lam * W  # (K, D)
    return (f, g, P) if return_proba else (f, g)


def hessian(W, X, y, lam, sample_weight=None, dtype=np.float64) -> np.ndarray:
    """Explicit Hessian (K*D, K*D) w.r.t. vec(W) (row-major: index k*D + j), built block by block.

    block (k, l) = X^T diag(s * p_k * (delta_kl - p_l)) X / n  (+ lam I on the diagonal blocks),
    computed for l >= k only and mirrored (each block is symmetric, and block (l, k) = block (k, l)).
    ``y`` is unused (the softmax Hessian does not depend on the labels); it is accepted so all four
    functions share one signature. ``sample_weight`` s (n,) gives the weighted Hessian
    1/n sum_i s_i H_i + lam I (used for sub-sampled Hessians); ``dtype=np.float32`` halves the cost of
    the Gram products when the result is only a preconditioner.
    """
    n, D = X.shape
    P = probabilities(W, X)  # (n, K)
    K = P.shape[1]
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    Xc = np.asarray(X, dtype=dtype)
    H = np.empty((K * D, K * D), dtype=dtype)
    for k in range(K):
        for l in range(k, K):
            w = s * P[:, k] * ((k == l) - P[:, l]) / n  # (n,) weights of the Gram matrix
            block = Xc.T @ (Xc * w[:, None].astype(dtype))  # (D, D)
            block = 0.5 * (block + block.T)  # symmetric in exact arithmetic; make it so in floating point
            H[k * D:(k + 1) * D, l * D:(l + 1) * D] = block
            if l != k:
                H[l * D:(l + 1) * D, k * D:(k + 1) * D] = block.T
    H[np.diag_indices_from(H)] += lam
    return H


def hessian_vector_product(W, X, y, lam, V, P=None) -> np.ndarray:
    """H vec(V) as a (K, D) array: R^T X / n + lam V with U = X V^T, R = P * (U - rowsum(P * U)).

    ``P`` (n, K) may be passed in to reuse the probabilities across many products at one W (CG).
    """
    if P is None:
        P = probabilities(W, X)  # (n, K)
    U = X @ V.T  # (n, K)
    R = P * (U - np.sum(P * U, axis=1, keepdims=True))  # (n, K)
    return R.T @ X / X.shape[0] + lam * V  # (K, D)


def predict(W, X):
    return np.argmax(scores(W, X), axis=1)


def accuracy(W, X, y) -> float:
    return float(np.mean(predict(W, X) == y))


def smoothness(X, lam) -> tuple[float, float]:
    """(L, L_max): the Boehning bounds above for the full objective and for a single f_i."""
    n = X.shape[0]
    v0 = np.ones(min(X.shape)) / np.sqrt(min(X.shape))  # fixed start: deterministic Lanczos
    sigma = svds(X, k=1, v0=v0, return_singular_vectors=False)[0]  # ||X||_2, Lanczos (no full SVD)
    L = sigma**2 / (2 * n) + lam
    L_max = float(np.max(np.einsum("ij,ij->i", X, X))) / 2 + lam
    return float(L), L_max
