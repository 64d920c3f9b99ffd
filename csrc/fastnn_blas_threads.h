/* The thread count of the BLAS that scipy.linalg.cython_blas calls.
 *
 * fastnn's kernels call BLAS through scipy, whose library (OpenBLAS in scipy's wheels,
 * or MKL, BLIS...) keeps its own thread pool. To make fastnn.set_num_threads bound the
 * BLAS calls of a kernel too, and to keep small products on one thread, the kernels need
 * that library's own setter. It is looked up, by name, among the symbols visible from
 * scipy's cython_blas module (the module itself and the libraries it links), so it is
 * always the BLAS the kernels actually call, never another copy in the process (NumPy
 * ships its own OpenBLAS). Where none is found, the functions below do nothing. */
#ifndef FASTNN_BLAS_THREADS_H
#define FASTNN_BLAS_THREADS_H

#ifdef _WIN32

static int fastnn_blas_bind(const char *module_path) { (void)module_path; return 0; }
static int fastnn_blas_get_threads(void) { return 0; }
static void fastnn_blas_set_threads(int n) { (void)n; }

#else

#include <dlfcn.h>
#include <stddef.h>

typedef void (*fastnn_blas_set_fn)(int);
typedef int (*fastnn_blas_get_fn)(void);
static fastnn_blas_set_fn fastnn_blas_setter = NULL;
static fastnn_blas_get_fn fastnn_blas_getter = NULL;

/* setter and getter names, in pairs: scipy's OpenBLAS (32-bit and 64-bit integer
 * builds), a plain OpenBLAS, MKL, BLIS */
static const char *fastnn_blas_names[][2] = {
    {"scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"},
    {"scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"},
    {"openblas_set_num_threads", "openblas_get_num_threads"},
    {"openblas_set_num_threads64_", "openblas_get_num_threads64_"},
    {"MKL_Set_Num_Threads", "MKL_Get_Max_Threads"},
    {"bli_thread_set_num_threads", "bli_thread_get_num_threads"},
};

/* Find the setter and getter from the already loaded module at module_path; 1 if found. */
static int fastnn_blas_bind(const char *module_path) {
    size_t i;
    void *handle = dlopen(module_path, RTLD_LAZY | RTLD_NOLOAD);
    if (handle == NULL)
        return 0;
    for (i = 0; i < sizeof(fastnn_blas_names) / sizeof(fastnn_blas_names[0]); i++) {
        void *set = dlsym(handle, fastnn_blas_names[i][0]);
        void *get = dlsym(handle, fastnn_blas_names[i][1]);
        if (set != NULL && get != NULL) {
            fastnn_blas_setter = (fastnn_blas_set_fn)set;
            fastnn_blas_getter = (fastnn_blas_get_fn)get;
            break;
        }
    }
    dlclose(handle);   /* scipy's module stays loaded: it is imported */
    return fastnn_blas_setter != NULL;
}

static int fastnn_blas_get_threads(void) {
    return fastnn_blas_getter != NULL ? fastnn_blas_getter() : 0;
}

static void fastnn_blas_set_threads(int n) {
    if (fastnn_blas_setter != NULL)
        fastnn_blas_setter(n);
}

#endif
#endif
