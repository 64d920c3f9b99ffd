/* Whether the kernels were compiled with OpenMP: Cython's prange runs serially
 * without it, so the build succeeds either way. */
#ifndef FASTNN_OMP_H
#define FASTNN_OMP_H

#ifdef _OPENMP
static inline int fastnn_openmp_enabled(void) { return 1; }
#else
static inline int fastnn_openmp_enabled(void) { return 0; }
#endif

#endif
