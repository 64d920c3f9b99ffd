"""What the build knows about OpenMP."""

cdef extern from "fastnn_omp.h":
    int fastnn_openmp_enabled() nogil


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fastnn_openmp_enabled())

