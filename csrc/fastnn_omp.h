/* OpenMP where the compiler has it, single-threaded stand-ins where it does not,
 * so the kernels build either way. */
#ifndef FASTNN_OMP_H
#define FASTNN_OMP_H

#ifdef _OPENMP
#include <omp.h>
static inline int fastnn_openmp_enabled(void) { return 1; }
static inline int fastnn_omp_max_threads(void) { return omp_get_max_threads(); }
#else
static inline int fastnn_openmp_enabled(void) { return 0; }
static inline int fastnn_omp_max_threads(void) { return 1; }
#endif

#endif
