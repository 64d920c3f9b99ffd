# Training-mode batch normalisation cores (shared with the training step).
# Statistics run per feature in double, two passes (mean, then squared deviations) so
# a constant or large-offset feature gives var = 0 exactly rather than a negative value.
# Features are independent, so threads split the columns: results do not depend on the
# thread count.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for


cdef enum:
    FEATURE_BLOCK = 64


# Each block of features is swept row by row (contiguous loads that vectorise) with the
# per-feature sums in small arrays; every feature still sums its rows in order, so the
# result is what a column-by-column loop gives, bit for bit.
cdef inline void batchnorm_forward_block(
        const floating* x, const floating* gamma, const floating* beta, double eps,
        floating* y, floating* x_hat, floating* mean, floating* var, floating* inv_std,
        Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0, Py_ssize_t w) noexcept nogil:
    cdef double m[FEATURE_BLOCK]
    cdef double v[FEATURE_BLOCK]
    cdef double istd[FEATURE_BLOCK]
    cdef Py_ssize_t i, j
    cdef double diff, xh
    x += j0
    y += j0
    x_hat += j0
    for j in range(w):
        m[j] = 0
        v[j] = 0
    for i in range(n):
        for j in range(w):
            m[j] = m[j] + x[i * d + j]
    for j in range(w):
        m[j] = m[j] / n
    for i in range(n):
        for j in range(w):
            diff = x[i * d + j] - m[j]
            v[j] = v[j] + diff * diff
    for j in range(w):
        v[j] = v[j] / n
        istd[j] = 1.0 / sqrt(v[j] + eps)
        mean[j0 + j] = <floating>m[j]
        var[j0 + j] = <floating>v[j]
        inv_std[j0 + j] = <floating>istd[j]
    for i in range(n):
        for j in range(w):
            xh = (x[i * d + j] - m[j]) * istd[j]
            x_hat[i * d + j] = <floating>xh
            y[i * d + j] = <floating>(gamma[j0 + j] * xh + beta[j0 + j])


cdef inline void batchnorm_forward_core(
        const floating* x, const floating* gamma, const floating* beta, double eps,
        floating* y, floating* x_hat,
        floating* mean, floating* var, floating* inv_std,   # OUT (d,) biased batch stats
        Py_ssize_t n, Py_ssize_t d, int n_threads) noexcept nogil:
    cdef Py_ssize_t b, n_blocks = (d + FEATURE_BLOCK - 1) // FEATURE_BLOCK
    cdef int t = threads_for(n * d, MIN_PARALLEL_ELEMENTS, n_threads)
    if t == 1:          # no OpenMP region: see common.pxd
        for b in range(n_blocks):
            batchnorm_forward_block(x, gamma, beta, eps, y, x_hat, mean, var, inv_std, n, d,
                                    b * FEATURE_BLOCK,
                                    min(<Py_ssize_t>FEATURE_BLOCK, d - b * FEATURE_BLOCK))
    else:
        for b in prange(n_blocks, schedule="static", num_threads=t):
            batchnorm_forward_block(x, gamma, beta, eps, y, x_hat, mean, var, inv_std, n, d,
                                    b * FEATURE_BLOCK,
                                    min(<Py_ssize_t>FEATURE_BLOCK, d - b * FEATURE_BLOCK))


cdef inline void batchnorm_backward_block(
        const floating* dy, const floating* x_hat, const floating* inv_std,
        const floating* gamma, floating* dx, floating* dgamma, floating* dbeta,
        Py_ssize_t n, Py_ssize_t d, Py_ssize_t j0, Py_ssize_t w) noexcept nogil:
    cdef double sum_dy[FEATURE_BLOCK]
    cdef double sum_dy_xh[FEATURE_BLOCK]
    cdef double scale[FEATURE_BLOCK]
    cdef Py_ssize_t i, j
    dy += j0
    x_hat += j0
    for j in range(w):
        sum_dy[j] = 0
        sum_dy_xh[j] = 0
    for i in range(n):
        for j in range(w):
            sum_dy[j] = sum_dy[j] + dy[i * d + j]
            sum_dy_xh[j] = sum_dy_xh[j] + dy[i * d + j] * x_hat[i * d + j]
    for j in range(w):
        dbeta[j0 + j] = <floating>sum_dy[j]
        dgamma[j0 + j] = <floating>sum_dy_xh[j]
    if dx == NULL:
        return
    dx += j0
    for j in range(w):
        scale[j] = gamma[j0 + j] * inv_std[j0 + j] / n
    for i in range(n):
        for j in range(w):
            dx[i * d + j] = <floating>(scale[j] * (n * dy[i * d + j] - sum_dy[j]
                                                   - x_hat[i * d + j] * sum_dy_xh[j]))


cdef inline void batchnorm_backward_core(
        const floating* dy, const floating* x_hat, const floating* inv_std,
        const floating* gamma,
        floating* dx,        # OUT (n, d), or NULL to skip it; may be dy itself
        floating* dgamma, floating* dbeta,
        Py_ssize_t n, Py_ssize_t d, int n_threads) noexcept nogil:
    """dx = gamma * inv_std / n * (n * dy - sum(dy) - x_hat * sum(dy * x_hat))."""
    cdef Py_ssize_t b, n_blocks = (d + FEATURE_BLOCK - 1) // FEATURE_BLOCK
    cdef int t = threads_for(n * d, MIN_PARALLEL_ELEMENTS, n_threads)
    if t == 1:          # no OpenMP region: see common.pxd
        for b in range(n_blocks):
            batchnorm_backward_block(dy, x_hat, inv_std, gamma, dx, dgamma, dbeta, n, d,
                                     b * FEATURE_BLOCK,
                                     min(<Py_ssize_t>FEATURE_BLOCK, d - b * FEATURE_BLOCK))
    else:
        for b in prange(n_blocks, schedule="static", num_threads=t):
            batchnorm_backward_block(dy, x_hat, inv_std, gamma, dx, dgamma, dbeta, n, d,
                                     b * FEATURE_BLOCK,
                                     min(<Py_ssize_t>FEATURE_BLOCK, d - b * FEATURE_BLOCK))


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
