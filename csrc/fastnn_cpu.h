/* What the CPU can run: whether the training step built for AVX2
 * (fastnn/_kernels/training_avx2.pyx) may be loaded. GCC's and clang's check reads
 * CPUID and whether the OS saves the AVX registers (XGETBV); elsewhere, no. */
#ifndef FASTNN_CPU_H
#define FASTNN_CPU_H

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
static int fastnn_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
}
#else
static int fastnn_cpu_has_avx2(void) { return 0; }
#endif

#endif
