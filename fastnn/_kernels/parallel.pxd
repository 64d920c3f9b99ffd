# Thread policy shared by the kernels: how many threads scipy's BLAS may use while a
# kernel runs (see parallel.pyx).
cdef int blas_threads_enter(int n_threads, double largest_product) noexcept
cdef void blas_threads_exit() noexcept
