# Row-wise softmax and fused softmax + cross-entropy cores (shared with the training step).
# Sums run in double whatever the dtype, and every row is shifted by its maximum so exp
# never overflows: rows like [1000, 0, -1000] stay finite.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, log
from libc.stdint cimport int64_t

from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for


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


cdef inline void softmax_rows(const floating* z, floating* out, Py_ssize_t n, Py_ssize_t k,
                              bint log_output, int n_threads) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef int t = threads_for(n * k, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef floating m
    cdef double s, log_s
    for i in prange(n, schedule="static", num_threads=t):
        m = row_max(z + i * k, k)
        s = exp_shifted_row(z + i * k, m, out + i * k, k)
        if log_output:
            log_s = log(s)
            for j in range(k):
                out[i * k + j] = <floating>((z[i * k + j] - m) - log_s)
        else:
            for j in range(k):
                out[i * k + j] = <floating>(out[i * k + j] / s)


cdef inline double cross_entropy_labels_rows(
        const floating* z,        # IN  (n, k) logits
        const int64_t* labels,    # IN  (n,) in [0, k)
        double smoothing,         # label smoothing in [0, 1]: target = (1-s) onehot + s/k
        floating* dz,             # OUT (n, k) gradient of the mean loss
        double* row_loss,         # OUT (n,) workspace
        Py_ssize_t n, Py_ssize_t k, int n_threads) noexcept nogil:
    """Mean over rows of -sum_j t_ij log_softmax(z_i)_j with t the (smoothed) one-hot
    labels; dz = (softmax(z) - t) / n."""
    cdef Py_ssize_t i, j
    cdef int t = threads_for(n * k, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef floating m
    cdef double s, log_s, off, on, sum_z, total = 0
    off = smoothing / k
    on = 1.0 - smoothing + off
    for i in prange(n, schedule="static", num_threads=t):
        m = row_max(z + i * k, k)
        s = exp_shifted_row(z + i * k, m, dz + i * k, k)
        log_s = log(s)
        if smoothing == 0:
            row_loss[i] = log_s - (z[i * k + labels[i]] - m)
            for j in range(k):
                dz[i * k + j] = <floating>(dz[i * k + j] / s / n)
            dz[i * k + labels[i]] -= <floating>(1.0 / n)
        else:
            # loss_i = sum_j t_j (log_s - (z_j - m)), with sum_j t_j = 1
            sum_z = 0
            for j in range(k):
                sum_z = sum_z + (z[i * k + j] - m)
            row_loss[i] = log_s - off * sum_z - (on - off) * (z[i * k + labels[i]] - m)
            for j in range(k):
                dz[i * k + j] = <floating>((dz[i * k + j] / s - off) / n)
            dz[i * k + labels[i]] -= <floating>((on - off) / n)
    # A serial sum: the loss must not depend on the thread count.
    for i in range(n):
        total += row_loss[i]
    return total / n


cdef inline double cross_entropy_probs_rows(
        const floating* z,        # IN  (n, k) logits
        const floating* target,   # IN  (n, k) finite
        floating* dz,             # OUT (n, k)
        double* row_loss,         # OUT (n,) workspace
        Py_ssize_t n, Py_ssize_t k, int n_threads) noexcept nogil:
    """Mean over rows of sum_j t_ij (logsumexp(z_i) - z_ij); dz = (softmax * sum(t_i) - t) / n."""
    cdef Py_ssize_t i, j
    cdef int t = threads_for(n * k, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef floating m
    cdef double s, log_s, t_sum, loss_i, total = 0
    for i in prange(n, schedule="static", num_threads=t):
        m = row_max(z + i * k, k)
        s = exp_shifted_row(z + i * k, m, dz + i * k, k)
        log_s = log(s)
        t_sum = 0
        loss_i = 0
        for j in range(k):
            t_sum = t_sum + target[i * k + j]
            # a zero target adds nothing, even where log_softmax is -inf
            if target[i * k + j] != 0:
                loss_i = loss_i + target[i * k + j] * (log_s - (z[i * k + j] - m))
        row_loss[i] = loss_i
        for j in range(k):
            dz[i * k + j] = <floating>((dz[i * k + j] / s * t_sum - target[i * k + j]) / n)
    for i in range(n):
        total += row_loss[i]
    return total / n
