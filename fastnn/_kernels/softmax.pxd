# Row-wise softmax and fused softmax + cross-entropy cores (shared with the training step).
# Sums run in double whatever the dtype, and every row is shifted by its maximum so exp
# never overflows: rows like [1000, 0, -1000] stay finite.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport log
from libc.stdint cimport int64_t

from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for


cdef extern from "fastnn_exp.h" nogil:
    float fastnn_expf(float x)
    double fastnn_exp(double x)


cdef enum:
    # Rows whose exponentials are taken in one loop: with 10 classes a row alone is too
    # short a loop for vector code.
    ROW_BLOCK = 64


cdef inline floating exp_vector(floating x) noexcept nogil:
    """exp, inline and branch-free so that loops over it vectorise (csrc/fastnn_exp.h)."""
    if floating is float:
        return fastnn_expf(x)
    else:
        return fastnn_exp(x)


cdef inline floating row_max(const floating* z, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating m = z[0]
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
    return m


cdef inline void exp_shifted_rows(const floating* z, floating* e, floating* row_m,
                                  Py_ssize_t rows, Py_ssize_t k) noexcept nogil:
    """e = exp(z - row_m) for `rows` rows, row_m[i] the maximum of row i."""
    cdef Py_ssize_t i, j
    cdef floating m
    for i in range(rows):
        m = row_max(z + i * k, k)
        row_m[i] = m
        for j in range(k):
            e[i * k + j] = z[i * k + j] - m
    for j in range(rows * k):
        e[j] = exp_vector(e[j])


cdef inline double row_sum(const floating* e, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t j
    cdef double s = 0
    for j in range(k):
        s += e[j]
    return s


cdef inline void softmax_block(const floating* z, floating* out, Py_ssize_t rows, Py_ssize_t k,
                               bint log_output) noexcept nogil:
    cdef floating row_m[ROW_BLOCK]
    cdef Py_ssize_t i, j
    cdef double s, log_s, inv_s
    exp_shifted_rows(z, out, row_m, rows, k)
    for i in range(rows):
        s = row_sum(out + i * k, k)
        if log_output:
            log_s = log(s)
            for j in range(k):
                out[i * k + j] = <floating>((z[i * k + j] - row_m[i]) - log_s)
        else:
            inv_s = 1.0 / s
            for j in range(k):
                out[i * k + j] = <floating>(out[i * k + j] * inv_s)


cdef inline void softmax_rows(const floating* z, floating* out, Py_ssize_t n, Py_ssize_t k,
                              bint log_output, int n_threads) noexcept nogil:
    cdef Py_ssize_t b, n_blocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    cdef int t = threads_for(n * k, MIN_PARALLEL_ELEMENTS, n_threads)
    if t == 1:          # no OpenMP region: see common.pxd
        for b in range(n_blocks):
            softmax_block(z + b * ROW_BLOCK * k, out + b * ROW_BLOCK * k,
                          min(<Py_ssize_t>ROW_BLOCK, n - b * ROW_BLOCK), k, log_output)
    else:
        for b in prange(n_blocks, schedule="static", num_threads=t):
            softmax_block(z + b * ROW_BLOCK * k, out + b * ROW_BLOCK * k,
                          min(<Py_ssize_t>ROW_BLOCK, n - b * ROW_BLOCK), k, log_output)


cdef inline void cross_entropy_labels_block(
        const floating* z, const int64_t* labels, double smoothing, floating* dz,
        double* row_loss, Py_ssize_t rows, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    cdef floating row_m[ROW_BLOCK]
    cdef Py_ssize_t i, j
    cdef double s, log_s, scale, sum_z
    cdef double off = smoothing / k
    cdef double on = 1.0 - smoothing + off
    exp_shifted_rows(z, dz, row_m, rows, k)
    for i in range(rows):
        s = row_sum(dz + i * k, k)
        log_s = log(s)
        scale = 1.0 / (s * n)
        if smoothing == 0:
            row_loss[i] = log_s - (z[i * k + labels[i]] - row_m[i])
            for j in range(k):
                dz[i * k + j] = <floating>(dz[i * k + j] * scale)
            dz[i * k + labels[i]] -= <floating>(1.0 / n)
        else:
            # loss_i = sum_j t_j (log_s - (z_j - m)), with sum_j t_j = 1
            sum_z = 0
            for j in range(k):
                sum_z = sum_z + (z[i * k + j] - row_m[i])
            row_loss[i] = log_s - off * sum_z - (on - off) * (z[i * k + labels[i]] - row_m[i])
            for j in range(k):
                dz[i * k + j] = <floating>(dz[i * k + j] * scale - off / n)
            dz[i * k + labels[i]] -= <floating>((on - off) / n)


cdef inline double cross_entropy_labels_rows(
        const floating* z,        # IN  (n, k) logits
        const int64_t* labels,    # IN  (n,) in [0, k)
        double smoothing,         # label smoothing in [0, 1]: target = (1-s) onehot + s/k
        floating* dz,             # OUT (n, k) gradient of the mean loss
        double* row_loss,         # OUT (n,) workspace
        Py_ssize_t n, Py_ssize_t k, int n_threads) noexcept nogil:
    """Mean over rows of -sum_j t_ij log_softmax(z_i)_j with t the (smoothed) one-hot
    labels; dz = (softmax(z) - t) / n."""
    cdef Py_ssize_t b, i, n_blocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    cdef int t = threads_for(n * k, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef double total = 0
    if t == 1:          # no OpenMP region: see common.pxd
        for b in range(n_blocks):
            cross_entropy_labels_block(z + b * ROW_BLOCK * k, labels + b * ROW_BLOCK, smoothing,
                                       dz + b * ROW_BLOCK * k, row_loss + b * ROW_BLOCK,
                                       min(<Py_ssize_t>ROW_BLOCK, n - b * ROW_BLOCK), k, n)
    else:
        for b in prange(n_blocks, schedule="static", num_threads=t):
            cross_entropy_labels_block(z + b * ROW_BLOCK * k, labels + b * ROW_BLOCK, smoothing,
                                       dz + b * ROW_BLOCK * k, row_loss + b * ROW_BLOCK,
                                       min(<Py_ssize_t>ROW_BLOCK, n - b * ROW_BLOCK), k, n)
    # A serial sum: the loss must not depend on the thread count.
    for i in range(n):
        total += row_loss[i]
    return total / n


cdef inline void cross_entropy_probs_block(
        const floating* z, const floating* target, floating* dz, double* row_loss,
        Py_ssize_t rows, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    cdef floating row_m[ROW_BLOCK]
    cdef Py_ssize_t i, j
    cdef double s, log_s, t_sum, loss_i, scale
    exp_shifted_rows(z, dz, row_m, rows, k)
    for i in range(rows):
        s = row_sum(dz + i * k, k)
        log_s = log(s)
        t_sum = 0
        loss_i = 0
        for j in range(k):
            t_sum = t_sum + target[i * k + j]
            # a zero target adds nothing, even where log_softmax is -inf
            if target[i * k + j] != 0:
                loss_i = loss_i + target[i * k + j] * (log_s - (z[i * k + j] - row_m[i]))
        row_loss[i] = loss_i
        scale = t_sum / (s * n)
        for j in range(k):
            dz[i * k + j] = <floating>(dz[i * k + j] * scale - target[i * k + j] / <double>n)


cdef inline double cross_entropy_probs_rows(
        const floating* z,        # IN  (n, k) logits
        const floating* target,   # IN  (n, k) finite
        floating* dz,             # OUT (n, k)
        double* row_loss,         # OUT (n,) workspace
        Py_ssize_t n, Py_ssize_t k, int n_threads) noexcept nogil:
    """Mean over rows of sum_j t_ij (logsumexp(z_i) - z_ij); dz = (softmax * sum(t_i) - t) / n."""
    cdef Py_ssize_t b, i, n_blocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    cdef int t = threads_for(n * k, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef double total = 0
    if t == 1:          # no OpenMP region: see common.pxd
        for b in range(n_blocks):
            cross_entropy_probs_block(z + b * ROW_BLOCK * k, target + b * ROW_BLOCK * k,
                                      dz + b * ROW_BLOCK * k, row_loss + b * ROW_BLOCK,
                                      min(<Py_ssize_t>ROW_BLOCK, n - b * ROW_BLOCK), k, n)
    else:
        for b in prange(n_blocks, schedule="static", num_threads=t):
            cross_entropy_probs_block(z + b * ROW_BLOCK * k, target + b * ROW_BLOCK * k,
                                      dz + b * ROW_BLOCK * k, row_loss + b * ROW_BLOCK,
                                      min(<Py_ssize_t>ROW_BLOCK, n - b * ROW_BLOCK), k, n)
    for i in range(n):
        total += row_loss[i]
    return total / n
