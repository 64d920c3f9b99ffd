"""Inverted dropout with fastnn's counter-based generator (csrc/fastnn_rng.h).

Element i of a call draws the i-th number of the seed's stream, so the mask is the
same on every platform, at every thread count, and in fastnn.reference.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint64_t

from fastnn._kernels.common cimport MIN_PARALLEL_ELEMENTS, threads_for

cdef extern from "fastnn_rng.h":
    double fastnn_uniform(uint64_t seed, uint64_t index) nogil


def dropout(const floating[::1] x,   # IN
            double p,                # in [0, 1), checked by the caller
            uint64_t seed,
            floating[::1] y,         # OUT y = x * mask
            floating[::1] mask,      # OUT 0 for a dropped unit, 1 / (1 - p) for a kept one
            int n_threads):
    cdef Py_ssize_t i, n = x.shape[0]
    cdef int t = threads_for(n, MIN_PARALLEL_ELEMENTS, n_threads)
    cdef floating scale = <floating>(1.0 / (1.0 - p))
    for i in prange(n, nogil=True, schedule="static", num_threads=t):
        if fastnn_uniform(seed, <uint64_t>i) >= p:
            mask[i] = scale
            y[i] = x[i] * scale
        else:
            mask[i] = 0
            y[i] = x[i] * 0   # as x * mask: NaN and inf stay visible
