# Below this many elements work stays on one thread: waking a team of threads costs a
# few microseconds on a quiet machine, and a whole scheduler slice when another process
# holds a core, far more than a small loop takes.
cdef enum:
    MIN_PARALLEL_ELEMENTS = 32768


cdef inline int threads_for(Py_ssize_t work, Py_ssize_t threshold, int n_threads) noexcept nogil:
    return n_threads if work >= threshold and n_threads > 1 else 1
