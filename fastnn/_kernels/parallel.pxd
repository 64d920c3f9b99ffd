# Thread policy shared by the kernels: how many threads scipy's BLAS may use while a
# kernel runs (see parallel.pyx).
cdef int blas_threads_enter(int n_threads, double largest_product) noexcept
cdef void blas_threads_exit() noexcept

# The optimizer step and the penalty run between matrix products, while BLAS's threads
# idle; from this many elements they share their chunks of POOL_CHUNK with the pool's
# sleeping workers (csrc/fastnn_pool.h), which cost a wake-up per step, not a scheduler
# slice.
cdef enum:
    MIN_POOL_ELEMENTS = 65536
    POOL_CHUNK = 8192


cdef inline int pool_threads(Py_ssize_t n, int n_threads) noexcept nogil:
    """The threads a pooled loop over n elements may use: 1 below MIN_POOL_ELEMENTS."""
    return n_threads if n >= MIN_POOL_ELEMENTS else 1

ctypedef void (*chunk_fn)(void* arg, long lo, long hi) noexcept nogil

# fn(arg, lo, hi) for every chunk [lo, hi) of [0, n), on up to n_threads threads; one
# pool for the process, so it is defined once, in parallel.pyx
cdef void pool_for(chunk_fn fn, void* arg, long n, long chunk, int n_threads) noexcept nogil
# the same, the workers then polling for the next loop a while before they sleep (for
# loops of a few tens of microseconds that come one after another)
cdef void pool_for_linger(chunk_fn fn, void* arg, long n, long chunk,
                          int n_threads) noexcept nogil
# the same for a loop of a few microseconds: on the caller alone unless the last such
# loop was moments ago (csrc/fastnn_pool.h)
cdef void pool_for_brief(chunk_fn fn, void* arg, long n, long chunk,
                         int n_threads) noexcept nogil

# the thread count of scipy's BLAS now (0 when fastnn cannot tell)
cdef int blas_threads_now() noexcept nogil
# multiply-adds in a kernel's largest product from which BLAS may use several threads
cdef double blas_parallel_product_now() noexcept nogil
# multiply-adds per part from which a product is split between the pool's threads
# (blas.pxd); 0 for never
cdef double gemm_split_part() noexcept nogil

# sets *flag to 1; chunks running at once may call it (read the flag after pool_for)
cdef void pool_flag_raise(int* flag) noexcept nogil

# A repeated step (the training step's batches) timed with and without the pool's workers
# in its lingering loops, to run the faster way (csrc/fastnn_pool.h); tuning is the
# caller's POOL_TUNING doubles, zeros at first. Results do not depend on the way.
cdef enum:
    POOL_TUNING = 4
cdef long pool_tuning_start(double* tuning) noexcept nogil
cdef void pool_tuning_stop(double* tuning, long start, double units) noexcept nogil
