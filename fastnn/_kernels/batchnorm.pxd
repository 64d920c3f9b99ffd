# Training-mode batch normalisation cores (shared with the training step).
# Statistics run per feature in double, two passes (mean, then squared deviations) so
# a constant or large-offset feature gives var = 0 exactly rather than a negative value.
# Features are independent, so threads split the columns: results do not depend on the
# thread count.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for


cdef inline void batchnorm_forward_core(
        const floating* x, const floating* gamma, const floating* beta, double eps,
        floating* y, floating* x_hat,
        floating* mean, floating* var, floating* inv_std,   # OUT (d,) biased batch stats
        Py_ssize_t n, Py_ssize_t d, int n_threads) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef int t = threads_for(n * d, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef double m, v, diff, istd, xh
    for j in prange(d, schedule="static", num_threads=t):
        m = 0
        for i in range(n):
            m = m + x[i * d + j]
        m = m / n
        v = 0
        for i in range(n):
            diff = x[i * d + j] - m
            v = v + diff * diff
        v = v / n
        istd = 1.0 / sqrt(v + eps)
        mean[j] = <floating>m
        var[j] = <floating>v
        inv_std[j] = <floating>istd
        for i in range(n):
            xh = (x[i * d + j] - m) * istd
            x_hat[i * d + j] = <floating>xh
            y[i * d + j] = <floating>(gamma[j] * xh + beta[j])


cdef inline void batchnorm_backward_core(
        const floating* dy, const floating* x_hat, const floating* inv_std,
        const floating* gamma,
        floating* dx,        # OUT (n, d), or NULL to skip it
        floating* dgamma, floating* dbeta,
        Py_ssize_t n, Py_ssize_t d, int n_threads) noexcept nogil:
    """dx = gamma * inv_std / n * (n * dy - sum(dy) - x_hat * sum(dy * x_hat))."""
    cdef Py_ssize_t i, j
    cdef int t = threads_for(n * d, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef double sum_dy, sum_dy_xh, scale
    for j in prange(d, schedule="static", num_threads=t):
        sum_dy = 0
        sum_dy_xh = 0
        for i in range(n):
            sum_dy = sum_dy + dy[i * d + j]
            sum_dy_xh = sum_dy_xh + dy[i * d + j] * x_hat[i * d + j]
        dbeta[j] = <floating>sum_dy
        dgamma[j] = <floating>sum_dy_xh
        if dx != NULL:
            scale = gamma[j] * inv_std[j] / n
            for i in range(n):
                dx[i * d + j] = <floating>(scale * (n * dy[i * d + j] - sum_dy
                                                    - x_hat[i * d + j] * sum_dy_xh))


cdef inline void batchnorm_running_update_core(
        const floating* mean, const floating* var,   # IN  (d,) biased batch statistics
        Py_ssize_t n, double momentum,
        floating* running_mean, floating* running_var,  # IN/OUT (d,)
        Py_ssize_t d) noexcept nogil:
    """PyTorch: running = momentum * batch_stat + (1 - momentum) * running, with the
    unbiased batch variance var * n / (n - 1); n >= 2."""
    cdef Py_ssize_t j
    cdef floating m = <floating>momentum, keep = <floating>(1.0 - momentum)
    cdef floating unbias = <floating>(n / (n - 1.0))
    for j in range(d):
        running_mean[j] = m * mean[j] + keep * running_mean[j]
        running_var[j] = m * (var[j] * unbias) + keep * running_var[j]


cdef inline void batchnorm_eval_core(
        const floating* x, const floating* gamma, const floating* beta,
        const floating* running_mean, const floating* running_var, double eps,
        floating* y, Py_ssize_t n, Py_ssize_t d) noexcept nogil:
    """Eval mode as PyTorch's CPU kernel: alpha = gamma / sqrt(running_var + eps),
    y = x * alpha + (beta - running_mean * alpha), in the array dtype."""
    cdef Py_ssize_t i, j
    cdef floating inv_std, alpha, shift
    for j in range(d):
        if floating is float:
            inv_std = 1 / sqrtf(running_var[j] + <float>eps)
        else:
            inv_std = 1 / sqrt(running_var[j] + eps)
        alpha = inv_std * gamma[j]
        shift = beta[j] - running_mean[j] * alpha
        for i in range(n):
            y[i * d + j] = x[i * d + j] * alpha + shift
