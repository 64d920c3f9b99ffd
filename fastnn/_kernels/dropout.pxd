# Inverted dropout core with fastnn's counter-based generator (csrc/fastnn_rng.h).
# Element i of a call draws the i-th number of the seed's stream, so the mask is the
# same on every platform, at every thread count, and in fastnn.reference.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint64_t

from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for

cdef extern from "fastnn_rng.h":
    uint64_t fastnn_keep_threshold(double p) nogil
    int fastnn_keep(uint64_t seed, uint64_t index, uint64_t threshold) nogil


cdef inline void dropout_core(const floating* x, double p, uint64_t seed,
                              floating* y,      # OUT x * mask
                              floating* mask,   # OUT 0 (dropped) or 1 / (1 - p) (kept)
                              Py_ssize_t n, int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef floating scale = <floating>(1.0 / (1.0 - p))
    cdef uint64_t threshold = fastnn_keep_threshold(p)     # keep iff uniform >= p
    for i in prange(n, schedule="static", num_threads=t):
        # 1 or 0 times scale rather than a branch, which would mispredict on every
        # dropped element
        mask[i] = <floating>fastnn_keep(seed, <uint64_t>i, threshold) * scale
        y[i] = x[i] * mask[i]   # as x * mask: a dropped NaN or inf stays visible
