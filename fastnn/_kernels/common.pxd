from cython cimport floating

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

# When threads_for gives 1, the loops run outside any OpenMP region: once a process has
# run a team of two, libgomp makes a futex call on every later region, even of one
# thread (4 per one-row predict, about 1 us of its 13-17).


cdef inline Py_ssize_t part_start(Py_ssize_t n, int parts, Py_ssize_t c) noexcept nogil:
    """Where part c of n items split into `parts` nearly equal parts starts."""
    return n * c // parts


cdef enum:
    FINITE_LANES = 16


cdef inline bint all_finite_core(const floating* x, Py_ssize_t n) noexcept nogil:
    """Whether x[:n] holds no NaN or infinity. x - x is 0 for a finite x and NaN
    otherwise; summing the differences in independent lanes lets the loop vectorise
    without reordering any one sum, and without NumPy's boolean temporary."""
    cdef floating lanes[FINITE_LANES]
    cdef floating total = 0
    cdef Py_ssize_t i, j, b, n_blocks = n // FINITE_LANES
    for j in range(FINITE_LANES):
        lanes[j] = 0
    for b in range(n_blocks):
        for j in range(FINITE_LANES):
            i = b * FINITE_LANES + j
            lanes[j] += x[i] - x[i]
    for i in range(n_blocks * FINITE_LANES, n):
        total += x[i] - x[i]
    for j in range(FINITE_LANES):
        total += lanes[j]
    return total == 0
