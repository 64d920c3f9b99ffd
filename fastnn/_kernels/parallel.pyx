"""What the build knows about OpenMP."""

cdef extern from "fastnn_omp.h":
    int fastnn_openmp_enabled() nogil
    int fastnn_omp_max_threads() nogil


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fastnn_openmp_enabled())


def omp_max_threads():
    """OpenMP's own default thread count (1 without OpenMP)."""
    return fastnn_omp_max_threads()
