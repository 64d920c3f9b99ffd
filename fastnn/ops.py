"""fastnn's compiled kernels behind NumPy-friendly functions.

Each function validates everything, converts its operands to one float dtype and
C order, allocates the outputs, and calls one kernel with the GIL released.
Names, signatures and results are those of `fastnn.reference`, the readable twin.
"""
import numpy as np

from fastnn._config import get_num_threads
from fastnn._kernels import activations as _act
from fastnn._kernels import batchnorm as _bn
from fastnn._kernels import dropout as _drop
from fastnn._kernels import linear as _lin
from fastnn._kernels import losses as _loss
from fastnn._kernels import softmax as _sm
from fastnn._validation import (
    as_numeric, batchnorm_eps, check_finite, check_ndim, check_same_shape,
    class_labels, dropout_probability, dropout_seed, floats, positive_count,
)

__all__ = [
    "sigmoid", "tanh", "relu", "sigmoid_backward", "tanh_backward", "relu_backward",
    "softmax", "log_softmax", "one_hot", "cross_entropy", "mse_loss",
    "binary_cross_entropy_with_logits", "linear_forward",
    "linear_backward", "batchnorm_forward", "batchnorm_backward", "dropout",
]


def _elementwise(kind, x):
    (x,) = floats(x=x)
    out = np.empty_like(x)
    _act.forward(kind, x.reshape(-1), out.reshape(-1), get_num_threads())
    return out


def _elementwise_backward(kind, a, dy, name_a):
    a, dy = floats(**{name_a: a, "dy": dy})
    check_same_shape(a, dy, name_a, "dy")
    dx = np.empty_like(dy)
    _act.backward(kind, a.reshape(-1), dy.reshape(-1), dx.reshape(-1), get_num_threads())
    return dx


def sigmoid(x):
    """1 / (1 + exp(-x)), elementwise; exact 0 and 1 at the extremes, no overflow."""
    return _elementwise(_act.SIGMOID, x)


def tanh(x):
    """Hyperbolic tangent, elementwise."""
    return _elementwise(_act.TANH, x)


def relu(x):
    """max(x, 0), elementwise (NaN stays NaN)."""
    return _elementwise(_act.RELU, x)


def sigmoid_backward(y, dy):
    """dy * y * (1 - y), given the forward output y."""
    return _elementwise_backward(_act.SIGMOID, y, dy, "y")


def tanh_backward(y, dy):
    """dy * (1 - y**2), given the forward output y."""
    return _elementwise_backward(_act.TANH, y, dy, "y")


def relu_backward(x, dy):
    """dy where x > 0, else 0, given the forward input x."""
    return _elementwise_backward(_act.RELU, x, dy, "x")


def _rowwise(z, log_output):
    (z,) = floats(z=z)
    check_ndim(z, 2, "z")
    out = np.empty_like(z)
    if z.size:
        _sm.softmax(z, out, log_output, get_num_threads())
    return out


def softmax(z):
    """exp(z - max) / sum(exp(z - max)) over each row of a 2-D array."""
    return _rowwise(z, log_output=False)


def log_softmax(z):
    """z - max - log(sum(exp(z - max))) over each row of a 2-D array."""
    return _rowwise(z, log_output=True)


def one_hot(labels, num_classes, dtype=np.float64):
    """(n,) integer labels in [0, num_classes) -> (n, num_classes) with one 1 per row."""
    num_classes = positive_count(num_classes, "num_classes")
    labels = class_labels(labels, num_classes)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        return one_hot(labels, num_classes).astype(dtype)
    out = np.empty((labels.shape[0], num_classes), dtype=dtype)
    _sm.one_hot(labels, out)
    return out


def cross_entropy(logits, target):
    """Fused softmax + cross-entropy: returns (mean loss over rows, dloss/dlogits).

    target is (n,) integer class indices or (n, k) probabilities (one-hot included).
    dlogits = (softmax(logits) * sum(target_row) - target) / n, which is
    (softmax - target) / n for probability rows.
    """
    target = as_numeric(target, "target")
    if target.ndim == 2:
        logits, target = floats(logits=logits, target=target)
    else:
        (logits,) = floats(logits=logits)
    check_ndim(logits, 2, "logits")
    n, k = logits.shape
    if n == 0 or k == 0:
        raise ValueError(f"logits must have at least one row and one class, got shape {logits.shape}")
    if target.ndim == 1:
        if target.shape[0] != n:
            raise ValueError(f"target has {target.shape[0]} labels for {n} rows of logits")
        labels = class_labels(target, k, "target")
        kernel_args = (_sm.cross_entropy_labels, logits, labels, 0.0)
    elif target.ndim == 2:
        check_same_shape(logits, target, "logits", "target")
        check_finite(target, "target")
        kernel_args = (_sm.cross_entropy_probs, logits, target)
    else:
        raise ValueError("target must be (n,) class indices or (n, k) probabilities, "
                         f"got shape {target.shape}")
    dlogits = np.empty_like(logits)
    row_loss = np.empty(n, dtype=np.float64)
    kernel, *args = kernel_args
    loss = kernel(*args, dlogits, row_loss, get_num_threads())
    return float(loss), dlogits


def _loss_operands(outputs, targets, names):
    z, t = floats(**{names[0]: outputs, names[1]: targets})
    check_same_shape(z, t, *names)
    if z.size == 0:
        raise ValueError(f"{names[0]} are empty: the mean of a loss needs at least one element")
    check_finite(t, names[1])
    return z, t


def mse_loss(outputs, targets):
    """mean((outputs - targets)**2) over every element: returns (loss, 2 (z - t) / size)."""
    z, t = _loss_operands(outputs, targets, ("outputs", "targets"))
    dz = np.empty_like(z)
    loss = _loss.mse(z.reshape(-1), t.reshape(-1), dz.reshape(-1))
    return float(loss), dz


def binary_cross_entropy_with_logits(logits, targets):
    """mean(max(z, 0) - z t + log(1 + exp(-|z|))) over every element: returns
    (loss, (sigmoid(z) - t) / size)."""
    z, t = _loss_operands(logits, targets, ("logits", "targets"))
    dz = np.empty_like(z)
    loss = _loss.bce_with_logits(z.reshape(-1), t.reshape(-1), dz.reshape(-1))
    return float(loss), dz


def _linear_operands(x, w, **others):
    arrays = floats(x=x, w=w, **others)
    x, w = arrays[0], arrays[1]
    check_ndim(x, 2, "x")
    check_ndim(w, 2, "w")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"x has {x.shape[1]} features but w expects {w.shape[0]} "
                         f"(x shape {x.shape}, w shape {w.shape})")
    return arrays


def linear_forward(x, w, b):
    """x (n, in) @ w (in, out) + b (out,); b may be None."""
    x, w, b = _linear_operands(x, w, b=b)
    if b is not None and b.shape != (w.shape[1],):
        raise ValueError(f"b must have shape ({w.shape[1]},) to match w {w.shape}, got {b.shape}")
    y = np.empty((x.shape[0], w.shape[1]), dtype=x.dtype)
    _lin.linear_forward(x, w, b, y, get_num_threads())
    return y


def linear_backward(x, w, dy):
    """Gradients of y = x @ w + b: returns (dx, dw, db) = (dy @ w.T, x.T @ dy, dy.sum(0))."""
    x, w, dy = _linear_operands(x, w, dy=dy)
    check_ndim(dy, 2, "dy")
    if dy.shape != (x.shape[0], w.shape[1]):
        raise ValueError(f"dy must have shape {(x.shape[0], w.shape[1])} for x {x.shape} "
                         f"and w {w.shape}, got {dy.shape}")
    dx = np.empty_like(x)
    dw = np.empty_like(w)
    db = np.empty(w.shape[1], dtype=w.dtype)
    _lin.linear_backward(x, w, dy, dx, dw, db, get_num_threads())
    return dx, dw, db


def batchnorm_forward(x, gamma, beta, eps):
    """Training-mode batch norm over axis 0 with the biased batch variance.

    Returns (y, cache) with cache = (x_hat, mean, var, inv_std, gamma).
    """
    x, gamma, beta = floats(x=x, gamma=gamma, beta=beta)
    eps = batchnorm_eps(eps)
    check_ndim(x, 2, "x")
    n, d = x.shape
    if n == 0:
        raise ValueError("batch norm needs at least one row, got an empty batch")
    for name, v in (("gamma", gamma), ("beta", beta)):
        if v.shape != (d,):
            raise ValueError(f"{name} must have shape ({d},) for x {x.shape}, got {v.shape}")
    y = np.empty_like(x)
    x_hat = np.empty_like(x)
    mean, var, inv_std = (np.empty(d, dtype=x.dtype) for _ in range(3))
    _bn.batchnorm_forward(x, gamma, beta, eps, y, x_hat, mean, var, inv_std, get_num_threads())
    return y, (x_hat, mean, var, inv_std, gamma)


def batchnorm_backward(dy, cache):
    """Returns (dx, dgamma, dbeta) for the batch that produced cache."""
    x_hat, _mean, _var, inv_std, gamma = cache
    dy, x_hat, inv_std, gamma = floats(dy=dy, x_hat=x_hat, inv_std=inv_std, gamma=gamma)
    check_same_shape(dy, x_hat, "dy", "the cached x_hat")
    check_ndim(dy, 2, "dy")
    if inv_std.shape != (dy.shape[1],) or gamma.shape != (dy.shape[1],):
        raise ValueError("cache does not come from batchnorm_forward on a batch of this shape")
    dx = np.empty_like(dy)
    dgamma = np.empty_like(gamma)
    dbeta = np.empty_like(gamma)
    _bn.batchnorm_backward(dy, x_hat, inv_std, gamma, dx, dgamma, dbeta, get_num_threads())
    return dx, dgamma, dbeta


def dropout(x, p, seed):
    """Inverted dropout: returns (x * mask, mask), mask = 0 (dropped) or 1/(1-p) (kept).

    Unit i (in C order) is kept when the i-th uniform number of the seed's
    SplitMix64 stream is >= p; p = 0 is the identity.
    """
    p = dropout_probability(p)
    seed = dropout_seed(seed)
    (x,) = floats(x=x)
    y = np.empty_like(x)
    mask = np.empty_like(x)
    _drop.dropout(x.reshape(-1), p, seed, y.reshape(-1), mask.reshape(-1), get_num_threads())
    return y, mask
