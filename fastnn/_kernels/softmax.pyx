"""Row-wise softmax, log-softmax, fused softmax + cross-entropy, one-hot.

Sums run in double whatever the dtype, and every row is shifted by its maximum so
exp never overflows: rows like [1000, 0, -1000] stay finite.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, log
from libc.stdint cimport int64_t

from fastnn._kernels.common cimport MIN_PARALLEL_ROWS, threads_for


cdef inline floating exp_scalar(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating row_max(const floating* z, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating m = z[0]
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
    return m


cdef inline double exp_shifted_row(const floating* z, floating m, floating* e,
                                   Py_ssize_t k) noexcept nogil:
    """e = exp(z - m); returns sum(e) accumulated in double."""
    cdef Py_ssize_t j
    cdef double s = 0
    for j in range(k):
        e[j] = exp_scalar(z[j] - m)
        s += e[j]
    return s


def softmax(const floating[:, ::1] z,   # IN  (n, k), k >= 1
            floating[:, ::1] out,       # OUT (n, k)
            int n_threads):
    cdef Py_ssize_t i, j, n = z.shape[0], k = z.shape[1]
    cdef int t = threads_for(n, MIN_PARALLEL_ROWS, n_threads)
    cdef floating m
    cdef double s
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        m = row_max(&z[i, 0], k)
        s = exp_shifted_row(&z[i, 0], m, &out[i, 0], k)
        for j in range(k):
            out[i, j] = <floating>(out[i, j] / s)


def log_softmax(const floating[:, ::1] z,   # IN  (n, k), k >= 1
                floating[:, ::1] out,       # OUT (n, k)
                int n_threads):
    cdef Py_ssize_t i, j, n = z.shape[0], k = z.shape[1]
    cdef int t = threads_for(n, MIN_PARALLEL_ROWS, n_threads)
    cdef floating m
    cdef double log_s
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        m = row_max(&z[i, 0], k)
        log_s = log(exp_shifted_row(&z[i, 0], m, &out[i, 0], k))
        for j in range(k):
            out[i, j] = <floating>((z[i, j] - m) - log_s)


def cross_entropy_labels(const floating[:, ::1] z,      # IN  (n, k) logits
                         const int64_t[::1] labels,     # IN  (n,) in [0, k), checked by the caller
                         floating[:, ::1] dz,           # OUT (n, k) gradient of the mean loss
                         double[::1] row_loss,          # OUT (n,) workspace
                         int n_threads):
    """Mean over rows of logsumexp(z_i) - z_i[y_i]; dz = (softmax(z) - onehot(y)) / n."""
    cdef Py_ssize_t i, j, n = z.shape[0], k = z.shape[1]
    cdef int t = threads_for(n, MIN_PARALLEL_ROWS, n_threads)
    cdef floating m
    cdef double s, scale, total = 0
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        m = row_max(&z[i, 0], k)
        s = exp_shifted_row(&z[i, 0], m, &dz[i, 0], k)
        row_loss[i] = log(s) - (z[i, labels[i]] - m)
        scale = 1.0 / (s * n)
        for j in range(k):
            dz[i, j] = <floating>(dz[i, j] * scale)
        dz[i, labels[i]] -= <floating>(1.0 / n)
    # A serial sum: the loss must not depend on the thread count.
    for i in range(n):
        total += row_loss[i]
    return total / n


def cross_entropy_probs(const floating[:, ::1] z,      # IN  (n, k) logits
                        const floating[:, ::1] target, # IN  (n, k) finite, checked by the caller
                        floating[:, ::1] dz,           # OUT (n, k) gradient of the mean loss
                        double[::1] row_loss,          # OUT (n,) workspace
                        int n_threads):
    """Mean over rows of sum_k t_ik (logsumexp(z_i) - z_ik); dz = (softmax * sum(t_i) - t) / n."""
    cdef Py_ssize_t i, j, n = z.shape[0], k = z.shape[1]
    cdef int t = threads_for(n, MIN_PARALLEL_ROWS, n_threads)
    cdef floating m
    cdef double s, log_s, t_sum, loss_i, total = 0
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        m = row_max(&z[i, 0], k)
        s = exp_shifted_row(&z[i, 0], m, &dz[i, 0], k)
        log_s = log(s)
        t_sum = 0
        loss_i = 0
        for j in range(k):
            t_sum = t_sum + target[i, j]
            # a zero target adds nothing, even where log_softmax is -inf
            if target[i, j] != 0:
                loss_i = loss_i + target[i, j] * (log_s - (z[i, j] - m))
        row_loss[i] = loss_i
        for j in range(k):
            dz[i, j] = <floating>((dz[i, j] / s * t_sum - target[i, j]) / n)
    for i in range(n):
        total += row_loss[i]
    return total / n


def one_hot(const int64_t[::1] labels,   # IN  (n,) in [0, k), checked by the caller
            floating[:, ::1] out):       # OUT (n, k)
    cdef Py_ssize_t i, j, n = out.shape[0], k = out.shape[1]
    with nogil:
        for i in range(n):
            for j in range(k):
                out[i, j] = 0
            out[i, labels[i]] = 1
