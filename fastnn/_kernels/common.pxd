# Below this many elements our loops stay on one thread. Waking a second thread costs a
# few microseconds on a quiet machine, but the BLAS that scipy ships keeps its own pool
# of threads spinning for a while after every matrix product; an OpenMP team started
# then waits for a core, up to a whole scheduler slice, and on 2 cores that made
# training epochs 7-25x slower (bench threads-b512: 7.4 s with two OpenMP threads
# against 0.98 s with one). Only loops long enough to amortise such a wait go parallel:
# 4M elements, some milliseconds of work.
cdef enum:
    MIN_PARALLEL_ELEMENTS = 4194304


cdef inline int threads_for(Py_ssize_t work, Py_ssize_t threshold, int n_threads) noexcept nogil:
    return n_threads if work >= threshold and n_threads > 1 else 1
