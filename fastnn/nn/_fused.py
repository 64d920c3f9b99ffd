"""Model-layer operations beyond the shared kernel API of fastnn.ops / fastnn.reference:
batch-norm running update and eval mode, MSE, BCE on logits, label-smoothed cross-entropy
on class labels, and the l1/l2 penalty.

With ``fastnn.ops`` as the kernel module these call the very cores the compiled training
step (``fastnn._kernels.training``) runs, so a model trained layer by layer from Python and
one trained by the compiled step get identical numbers. With any other kernel module
(``fastnn.reference``) they compute the same formulas in NumPy, written out below.
All arrays passed in are C-contiguous and share one float dtype (the model's).
"""
import numpy as np

from fastnn import ops
from fastnn._config import get_num_threads
from fastnn._kernels import batchnorm as _bn
from fastnn._kernels import losses as _losses
from fastnn._kernels import optimizers as _opt
from fastnn._kernels import softmax as _sm

__all__ = ["bn_running_update", "bn_eval", "mse", "bce_with_logits",
           "cross_entropy_smoothed", "penalty"]


def _compiled(kernels):
    return kernels is ops


def bn_running_update(kernels, mean, var, n, momentum, running_mean, running_var):
    """running = momentum * batch_stat + (1 - momentum) * running, with the unbiased
    variance var * n / (n - 1) for running_var (PyTorch); in place."""
    if _compiled(kernels):
        _bn.batchnorm_running_update(mean, var, n, momentum, running_mean, running_var)
        return
    dt = running_mean.dtype.type
    m, keep, unbias = dt(momentum), dt(1.0 - momentum), dt(n / (n - 1.0))
    running_mean[...] = m * mean + keep * running_mean
    running_var[...] = m * (var * unbias) + keep * running_var


def bn_eval(kernels, x, gamma, beta, running_mean, running_var, eps):
    """Eval-mode batch norm as PyTorch's CPU kernel: alpha = gamma / sqrt(running_var + eps),
    y = x * alpha + (beta - running_mean * alpha)."""
    y = np.empty_like(x)
    if _compiled(kernels):
        _bn.batchnorm_eval(x, gamma, beta, running_mean, running_var, eps, y)
        return y
    dt = x.dtype.type
    alpha = 1 / np.sqrt(running_var + dt(eps)) * gamma
    np.add(x * alpha, beta - running_mean * alpha, out=y)
    return y


def mse(kernels, z, t):
    """mean((z - t)^2) over every element and its gradient (z - t) * (2 / size)."""
    if _compiled(kernels):
        dz = np.empty_like(z)
        loss = _losses.mse(z.reshape(-1), t.reshape(-1), dz.reshape(-1))
        return float(loss), dz
    d = z - t
    return float(np.sum(d.astype(np.float64) ** 2) / d.size), d * d.dtype.type(2.0 / d.size)


def bce_with_logits(kernels, z, t):
    """mean(max(z, 0) - z t + log(1 + exp(-|z|))) and its gradient (sigmoid(z) - t) / size."""
    if _compiled(kernels):
        dz = np.empty_like(z)
        loss = _losses.bce_with_logits(z.reshape(-1), t.reshape(-1), dz.reshape(-1))
        return float(loss), dz
    z64 = z.astype(np.float64)
    with np.errstate(under="ignore"):
        per = np.maximum(z64, 0) - z64 * t + np.log1p(np.exp(-np.abs(z64)))
    grad = (kernels.sigmoid(z) - t) * z.dtype.type(1.0 / z.size)
    return float(per.sum() / per.size), grad


def cross_entropy_smoothed(kernels, z, labels, smoothing):
    """Cross-entropy of logits z against labels smoothed to (1 - s) one_hot + s / k."""
    if _compiled(kernels):
        dz = np.empty_like(z)
        row_loss = np.empty(z.shape[0], dtype=np.float64)
        loss = _sm.cross_entropy_labels(z, labels, smoothing, dz, row_loss, get_num_threads())
        return float(loss), dz
    k = z.shape[1]
    t = kernels.one_hot(labels, k, dtype=z.dtype) * (1.0 - smoothing) + smoothing / k
    return kernels.cross_entropy(z, t)


def penalty(kernels, w, grad, l1, l2):
    """Return l1 * sum|w| + l2 * sum(w^2) (summed in double) and add its gradient
    l1 * sign(w) + 2 * l2 * w to grad, in place."""
    if _compiled(kernels):
        value = _opt.penalty(w, l1, l2)
        _opt.add_penalty_gradient(w, grad, l1, l2, get_num_threads())
        return float(value)
    w64 = w.astype(np.float64)
    value = l1 * float(np.abs(w64).sum()) + l2 * float(np.dot(w64, w64))
    grad += (l1 * np.sign(w64) + 2 * l2 * w64).astype(grad.dtype)
    return value
