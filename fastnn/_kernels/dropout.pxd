# Inverted dropout core with fastnn's counter-based generator (csrc/fastnn_rng.h).
# Element i of a call draws the i-th number of the seed's stream, so the mask is the
# same on every platform, at every thread count, and in fastnn.reference.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint64_t

from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, part_start, threads_for

cdef extern from "fastnn_rng.h":
    uint64_t fastnn_keep_threshold(double p) nogil
    int fastnn_keep(uint64_t seed, uint64_t index, uint64_t threshold) nogil


cdef inline void dropout_range(const floating* x, floating scale, uint64_t threshold,
                               uint64_t seed, floating* y, floating* mask,
                               Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        # 1 or 0 times scale rather than a branch, which would mispredict on every
        # dropped element
        mask[i] = <floating>fastnn_keep(seed, <uint64_t>i, threshold) * scale
        y[i] = x[i] * mask[i]   # as x * mask: a dropped NaN or inf stays visible


cdef inline void dropout_core(const floating* x, double p, uint64_t seed,
                              floating* y,      # OUT x * mask
                              floating* mask,   # OUT 0 (dropped) or 1 / (1 - p) (kept)
                              Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t c
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef floating scale = <floating>(1.0 / (1.0 - p))
    cdef uint64_t threshold = fastnn_keep_threshold(p)     # keep iff uniform >= p
    if t == 1:          # no OpenMP region: see common.pxd
        dropout_range(x, scale, threshold, seed, y, mask, 0, n)
        return
    for c in prange(t, schedule="static", num_threads=t):
        dropout_range(x, scale, threshold, seed, y, mask, part_start(n, t, c),
                      part_start(n, t, c + 1))
