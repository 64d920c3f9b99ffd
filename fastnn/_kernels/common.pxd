# Thresholds below which work stays on one thread: starting a parallel region
# costs a few microseconds, more than small loops take.
cdef enum:
    MIN_PARALLEL_ELEMENTS = 32768   # elementwise kernels
    MIN_PARALLEL_ROWS = 64          # row-wise kernels (softmax, cross-entropy)


cdef inline int threads_for(Py_ssize_t work, Py_ssize_t threshold, int n_threads) noexcept nogil:
    return n_threads if work >= threshold and n_threads > 1 else 1
