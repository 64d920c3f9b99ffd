"""fastnn.reference: the kernel layer written as a textbook, in plain NumPy.

Every function here has the same name, signature and return value as its compiled
twin in ``fastnn.ops``; the test suite holds the two equal.  Read this module to
learn what an op computes; call ``fastnn.ops`` to compute it fast.

Conventions shared with ``fastnn.ops``:

* dtypes: float32 and float64.  Non-float inputs (ints, bools) take the float dtype
  of the other float operands (float64 when none is float); float16 becomes float32;
  mixed float32/float64 operands become float64.  Outputs have that common dtype.
* any memory layout is accepted; inputs are never modified.
* bad input raises ``ValueError`` (or ``TypeError`` for a wrong kind of object)
  with a message naming the problem.
"""
import operator

import numpy as np

from fastnn._validation import (
    as_numeric, batchnorm_eps, check_ndim, check_same_shape, dropout_probability,
    dropout_seed)

__all__ = [
    "sigmoid", "tanh", "relu",
    "sigmoid_backward", "tanh_backward", "relu_backward",
    "softmax", "log_softmax", "one_hot", "cross_entropy",
    "mse_loss", "binary_cross_entropy_with_logits",
    "linear_forward", "linear_backward",
    "batchnorm_forward", "batchnorm_backward",
    "dropout",
]


# --------------------------------------------------------------------------- helpers

def _common_float_dtype(arrays):
    """The dtype an op computes in: see the module docstring."""
    float_sizes = []
    for a in arrays:
        if a.dtype.kind == "f":
            float_sizes.append(a.dtype.itemsize)
        elif a.dtype.kind not in "biu":
            raise TypeError(f"expected real numbers, got an array of dtype {a.dtype}")
    if not float_sizes or max(float_sizes) >= 8:
        return np.dtype(np.float64)
    return np.dtype(np.float32)          # float16 and float32 operands only


def _floats(*arrays):
    """Convert arrays (None passes through) to their common float dtype. Object and
    string arrays of numbers become float64 first, as in fastnn.ops (as_numeric)."""
    arrays = [None if a is None else as_numeric(a, "input") for a in arrays]
    dtype = _common_float_dtype([a for a in arrays if a is not None])
    return [None if a is None else a.astype(dtype, copy=False) for a in arrays]


def _check_num_classes(num_classes):
    try:
        num_classes = operator.index(num_classes)
    except TypeError:
        raise TypeError(f"num_classes must be an integer, got {num_classes!r}") from None
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return num_classes


def _check_labels(labels, num_classes, name):
    """Return labels as a 1-D int64 array after checking they are class indices."""
    labels = as_numeric(labels, name)
    check_ndim(labels, 1, name)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)):
            raise ValueError(f"{name} contain NaN or inf; they must be integer class indices")
        if np.any(labels != np.floor(labels)):
            raise ValueError(f"{name} must be integer class indices, got non-integer values")
    elif labels.dtype.kind not in "biu":
        raise TypeError(f"{name} must be integer class indices, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} must be in [0, {num_classes}), got values from "
                         f"{labels.min()} to {labels.max()}")
    return labels.astype(np.int64)


# ----------------------------------------------------------------------- activations

def sigmoid(x):
    """sigma(x) = 1 / (1 + exp(-x)), elementwise.

    With e = exp(-|x|) <= 1 this is 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0:
    exp never overflows, so sigmoid(-1000) is exactly 0 and sigmoid(1000) exactly 1.
    """
    (x,) = _floats(x)
    with np.errstate(under="ignore"):           # exp(-1000) -> 0 is the right answer
        e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def tanh(x):
    """tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x)), elementwise."""
    (x,) = _floats(x)
    return np.asarray(np.tanh(x))       # a 0-d array stays an array, as in ops


def relu(x):
    """relu(x) = max(x, 0), elementwise; NaN stays NaN (so bad values stay visible)."""
    (x,) = _floats(x)
    return np.where((x > 0) | np.isnan(x), x, x.dtype.type(0))


def sigmoid_backward(y, dy):
    """dL/dx = dy * y * (1 - y), given the forward output y = sigmoid(x)."""
    y, dy = _floats(y, dy)
    check_same_shape(y, dy, "y", "dy")
    return np.asarray(dy * y * (1 - y))


def tanh_backward(y, dy):
    """dL/dx = dy * (1 - y^2), given the forward output y = tanh(x)."""
    y, dy = _floats(y, dy)
    check_same_shape(y, dy, "y", "dy")
    return np.asarray(dy * (1 - y * y))


def relu_backward(x, dy):
    """dL/dx = dy where x > 0, else 0, given the forward input x."""
    x, dy = _floats(x, dy)
    check_same_shape(x, dy, "x", "dy")
    return np.where(x > 0, dy, dy.dtype.type(0))


# ------------------------------------------------------------- softmax and friends

def _shifted_rows(z, name):
    """z - max_k z_ik: shifting each row by its maximum leaves softmax unchanged and
    makes every exponent <= 0, so exp cannot overflow (and one term is exactly 1).
    (An array with no columns has nothing to shift: it comes back as it is.)"""
    check_ndim(z, 2, name)
    if z.shape[1] == 0:
        return z.copy()
    return z - z.max(axis=1, keepdims=True)


def softmax(z):
    """softmax(z)_ik = exp(z_ik - m_i) / sum_j exp(z_ij - m_i), with m_i = max_j z_ij."""
    (z,) = _floats(z)
    s = _shifted_rows(z, "z")
    with np.errstate(under="ignore"):
        e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z):
    """log_softmax(z)_ik = z_ik - logsumexp(z_i) = (z_ik - m_i) - log sum_j exp(z_ij - m_i)."""
    (z,) = _floats(z)
    s = _shifted_rows(z, "z")
    if s.size == 0:
        return s                # nothing to normalise (and log of an empty sum is -inf)
    with np.errstate(under="ignore"):
        return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def one_hot(labels, num_classes, dtype=np.float64):
    """(n,) class indices -> (n, num_classes) array T with T[i, labels[i]] = 1, else 0."""
    num_classes = _check_num_classes(num_classes)
    labels = _check_labels(labels, num_classes, "labels")
    t = np.zeros((labels.shape[0], num_classes), dtype=dtype)
    t[np.arange(labels.shape[0]), labels] = 1
    return t


def cross_entropy(logits, target):
    """Fused softmax + cross-entropy, averaged over the n rows: returns (loss, dlogits).

    target is either (n,) class indices y_i or (n, k) weights t_ik (probabilities,
    one-hot included):

        loss    = mean_i [ logsumexp(z_i) - z_i[y_i] ]
                  or mean_i sum_k t_ik (logsumexp(z_i) - z_ik)
        dlogits = (softmax(z) * sum_k t_ik - t) / n

    which is (softmax(z) - t) / n when the rows of t sum to 1; the first form is the
    exact gradient of the loss for any t.  loss is a Python float.
    """
    logits = np.asarray(logits)
    check_ndim(logits, 2, "logits")
    n, k = logits.shape
    if n == 0:
        raise ValueError("cross_entropy needs at least one row, got empty logits "
                         f"of shape {logits.shape}")
    if k == 0:
        raise ValueError(f"cross_entropy needs at least one class, got logits of shape {logits.shape}")
    target = np.asarray(target)
    if target.ndim == 1:                                  # class indices
        if target.shape[0] != n:
            raise ValueError(f"shape mismatch: logits have {n} rows but target has "
                             f"{target.shape[0]} labels")
        labels = _check_labels(target, k, "target labels")
        (z,) = _floats(logits)
        t = one_hot(labels, k, dtype=z.dtype)
    elif target.ndim == 2:                                # probabilities / weights
        if target.shape != logits.shape:
            raise ValueError(f"shape mismatch: target probabilities have shape {target.shape}, "
                             f"logits have shape {logits.shape}")
        z, t = _floats(logits, target)
        if not np.all(np.isfinite(t)):
            raise ValueError("target contains NaN or inf")
    else:
        raise ValueError(f"target must be (n,) class indices or (n, k) probabilities, "
                         f"got a {target.ndim}-D array of shape {target.shape}")

    s = _shifted_rows(z, "logits")
    with np.errstate(under="ignore"):
        lse = np.log(np.exp(s).sum(axis=1, keepdims=True))   # logsumexp(z_i) - m_i
    neg_log_p = lse - s                                       # logsumexp(z_i) - z_ik >= 0
    if target.ndim == 1:
        loss = neg_log_p[np.arange(n), labels].mean()
    else:
        loss = (t * neg_log_p).sum(axis=1).mean()
    dlogits = (softmax(z) * t.sum(axis=1, keepdims=True) - t) / n
    return float(loss), dlogits


def _loss_operands(outputs, targets, names):
    z, t = _floats(outputs, targets)
    check_same_shape(z, t, *names)
    if z.size == 0:
        raise ValueError(f"{names[0]} are empty: the mean of a loss needs at least one element")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{names[1]} contain NaN or inf")
    return z, t


def mse_loss(outputs, targets):
    """Mean squared error over every element, as torch.nn.MSELoss: returns (loss, doutputs).

        loss     = mean((z - t)^2)
        doutputs = 2 (z - t) / size
    """
    z, t = _loss_operands(outputs, targets, ("outputs", "targets"))
    diff = z - t
    return float(np.mean(diff.astype(np.float64) ** 2)), np.asarray(diff * (2.0 / diff.size))


def binary_cross_entropy_with_logits(logits, targets):
    """Binary cross-entropy on logits, mean over every element, as
    torch.nn.BCEWithLogitsLoss: returns (loss, dlogits).

        loss    = mean(max(z, 0) - z t + log(1 + exp(-|z|)))     (never overflows)
        dlogits = (sigmoid(z) - t) / size
    """
    z, t = _loss_operands(logits, targets, ("logits", "targets"))
    z64 = z.astype(np.float64)
    with np.errstate(under="ignore"):
        per = np.maximum(z64, 0) - z64 * t + np.log1p(np.exp(-np.abs(z64)))
    return float(per.mean()), np.asarray((sigmoid(z) - t) * (1.0 / z.size))


# ---------------------------------------------------------------------------- linear

def linear_forward(x, w, b):
    """y = x @ w + b, with x (n, in), w (in, out) and b (out,) or None."""
    x, w, b = _floats(x, w, b)
    check_ndim(x, 2, "x")
    check_ndim(w, 2, "w")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"shape mismatch: x has shape {x.shape} (in={x.shape[1]}) but w has "
                         f"shape {w.shape} (in={w.shape[0]})")
    y = x @ w
    if b is not None:
        if b.shape != (w.shape[1],):
            raise ValueError(f"shape mismatch: b must have shape ({w.shape[1]},), got {b.shape}")
        y = y + b
    return y


def linear_backward(x, w, dy):
    """Gradients of y = x @ w + b: dx = dy @ w.T, dw = x.T @ dy, db = sum_i dy_i."""
    x, w, dy = _floats(x, w, dy)
    check_ndim(x, 2, "x")
    check_ndim(w, 2, "w")
    check_ndim(dy, 2, "dy")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"shape mismatch: x has shape {x.shape} (in={x.shape[1]}) but w has "
                         f"shape {w.shape} (in={w.shape[0]})")
    if dy.shape != (x.shape[0], w.shape[1]):
        raise ValueError(f"shape mismatch: dy must have shape {(x.shape[0], w.shape[1])}, "
                         f"got {dy.shape}")
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)


# ------------------------------------------------------------------------- batchnorm

def batchnorm_forward(x, gamma, beta, eps):
    """Training-mode batch normalisation of x (n, d) over its rows:

        mean = (1/n) sum_i x_i,   var = (1/n) sum_i (x_i - mean)^2   (biased)
        inv_std = 1 / sqrt(var + eps),   x_hat = (x - mean) * inv_std
        y = gamma * x_hat + beta

    Returns (y, cache) with cache = (x_hat, mean, var, inv_std, gamma).
    """
    x, gamma, beta = _floats(x, gamma, beta)
    check_ndim(x, 2, "x")
    n, d = x.shape
    if n == 0:
        raise ValueError(f"batchnorm needs at least one row, got empty x of shape {x.shape}")
    if gamma.shape != (d,):
        raise ValueError(f"shape mismatch: gamma must have shape ({d},), got {gamma.shape}")
    if beta.shape != (d,):
        raise ValueError(f"shape mismatch: beta must have shape ({d},), got {beta.shape}")
    eps = batchnorm_eps(eps)
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    y = gamma * x_hat + beta
    return y, (x_hat, mean, var, inv_std, gamma.copy())


def batchnorm_backward(dy, cache):
    """Gradients of batchnorm_forward, from dy (n, d) and its cache:

        dbeta = sum_i dy_i,   dgamma = sum_i dy_i * x_hat_i
        dx = gamma * inv_std / n * (n * dy - dbeta - x_hat * dgamma)
    """
    if not isinstance(cache, tuple) or len(cache) != 5:
        raise ValueError("cache must be the 5-tuple (x_hat, mean, var, inv_std, gamma) "
                         "returned by batchnorm_forward")
    dy, x_hat, mean, var, inv_std, gamma = _floats(dy, *cache)
    check_ndim(dy, 2, "dy")
    check_same_shape(dy, x_hat, "dy", "x_hat")
    n = dy.shape[0]
    dbeta = dy.sum(axis=0)
    dgamma = (dy * x_hat).sum(axis=0)
    dx = gamma * inv_std / n * (n * dy - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- dropout

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(seed, index):
    """SplitMix64's index-th output for a seed, all arithmetic mod 2**64:

        z = seed + (index + 1) * 0x9E3779B97F4A7C15
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        return z ^ (z >> 31)
    """
    index = np.asarray(index, dtype=np.uint64)
    with np.errstate(over="ignore"):            # uint64 arithmetic wraps: that is the point
        z = np.uint64(seed) + (index + np.uint64(1)) * _GOLDEN_GAMMA
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def _uniform(seed, n):
    """u_i = (splitmix64(seed, i) >> 11) * 2**-53 for i < n: 53 random bits, exact in [0, 1)."""
    bits = _splitmix64(seed, np.arange(n, dtype=np.uint64)) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0 ** -53


def dropout(x, p, seed):
    """Inverted dropout: returns (y, mask) with y = x * mask.

    For the flat C-order index i, u_i = (splitmix64(seed, i) >> 11) * 2**-53; the unit
    is kept iff u_i >= p.  mask_i = 1 / (1 - p) for a kept unit and 0 for a dropped
    one, so E[y] = x.  seed is any int (taken mod 2**64) or None for a fresh one.
    p must be in [0, 1); p = 0 gives y = a copy of x and a mask of ones.
    """
    (x,) = _floats(x)
    p = dropout_probability(p)
    seed = dropout_seed(seed)
    if p == 0.0:
        return x.copy(), np.ones_like(x)
    keep = _uniform(seed, x.size).reshape(x.shape) >= p
    mask = np.where(keep, 1.0 / (1.0 - p), 0.0).astype(x.dtype)
    return np.asarray(x * mask), mask
