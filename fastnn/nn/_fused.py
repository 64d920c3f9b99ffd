"""Model-layer operations beyond the shared kernel API of fastnn.ops / fastnn.reference:
batch-norm running update and eval mode, label-smoothed cross-entropy on class labels, and
the l1/l2 penalty.

With ``fastnn.ops`` as the kernel module these call the very cores the compiled training
step (``fastnn._kernels.training``) runs, so a model trained layer by layer from Python and
one trained by the compiled step get identical numbers. With any other kernel module
(``fastnn.reference``) they compute the same formulas in NumPy, written out below.
All arrays passed in are C-contiguous and share one float dtype (the model's).
"""
import numpy as np

from fastnn import ops
from fastnn._validation import batchnorm_momentum
from fastnn._config import get_num_threads
from fastnn._kernels import batchnorm as _bn
from fastnn._kernels import optimizers as _opt
from fastnn._kernels import softmax as _sm

__all__ = ["bn_running_update", "bn_eval", "cross_entropy_smoothed", "penalty"]


def _compiled(kernels):
    return kernels is ops


def bn_running_update(kernels, mean, var, n, momentum, running_mean, running_var):
    """running = momentum * batch_stat + (1 - momentum) * running, with the unbiased
    variance var * n / (n - 1) for running_var (PyTorch); in place."""
    momentum = batchnorm_momentum(momentum)
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
        return float(_opt.penalty_step(w, grad, l1, l2, get_num_threads()))
    w64 = w.astype(np.float64)
    value = l1 * float(np.abs(w64).sum()) + l2 * float(np.dot(w64, w64))
    grad += (l1 * np.sign(w64) + 2 * l2 * w64).astype(grad.dtype)
    return value
