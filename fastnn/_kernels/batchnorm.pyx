"""Training-mode batch normalisation over axis 0 and its gradient.

Statistics run per feature in double, two passes (mean, then squared deviations) so a
constant or large-offset feature gives var = 0 exactly rather than a negative value.
Features are independent, so threads split the columns: results do not depend on the
thread count.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for


def batchnorm_forward(const floating[:, ::1] x,       # IN  (n, d), n >= 1
                      const floating[::1] gamma,      # IN  (d,)
                      const floating[::1] beta,       # IN  (d,)
                      double eps,
                      floating[:, ::1] y,             # OUT (n, d)
                      floating[:, ::1] x_hat,         # OUT (n, d)
                      floating[::1] mean,             # OUT (d,) batch mean
                      floating[::1] var,              # OUT (d,) biased batch variance
                      floating[::1] inv_std,          # OUT (d,) 1 / sqrt(var + eps)
                      int n_threads):
    cdef Py_ssize_t i, j, n = x.shape[0], d = x.shape[1]
    cdef int t = threads_for(n * d, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef double m, v, diff, istd, xh
    for j in prange(d, nogil=True, schedule="static", num_threads=t):
        m = 0
        for i in range(n):
            m = m + x[i, j]
        m = m / n
        v = 0
        for i in range(n):
            diff = x[i, j] - m
            v = v + diff * diff
        v = v / n
        istd = 1.0 / sqrt(v + eps)
        mean[j] = <floating>m
        var[j] = <floating>v
        inv_std[j] = <floating>istd
        for i in range(n):
            xh = (x[i, j] - m) * istd
            x_hat[i, j] = <floating>xh
            y[i, j] = <floating>(gamma[j] * xh + beta[j])


def batchnorm_backward(const floating[:, ::1] dy,      # IN  (n, d)
                       const floating[:, ::1] x_hat,   # IN  (n, d)
                       const floating[::1] inv_std,    # IN  (d,)
                       const floating[::1] gamma,      # IN  (d,)
                       floating[:, ::1] dx,            # OUT (n, d)
                       floating[::1] dgamma,           # OUT (d,)
                       floating[::1] dbeta,            # OUT (d,)
                       int n_threads):
    """dx = gamma * inv_std / n * (n * dy - sum(dy) - x_hat * sum(dy * x_hat))."""
    cdef Py_ssize_t i, j, n = dy.shape[0], d = dy.shape[1]
    cdef int t = threads_for(n * d, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef double sum_dy, sum_dy_xh, scale
    for j in prange(d, nogil=True, schedule="static", num_threads=t):
        sum_dy = 0
        sum_dy_xh = 0
        for i in range(n):
            sum_dy = sum_dy + dy[i, j]
            sum_dy_xh = sum_dy_xh + dy[i, j] * x_hat[i, j]
        dbeta[j] = <floating>sum_dy
        dgamma[j] = <floating>sum_dy_xh
        scale = gamma[j] * inv_std[j] / n
        for i in range(n):
            dx[i, j] = <floating>(scale * (n * dy[i, j] - sum_dy - x_hat[i, j] * sum_dy_xh))
