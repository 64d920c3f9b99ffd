"""Compiled kernels: Cython over typed memoryviews, no knowledge of models."""
import os


def training_module():
    """The compiled training step for this CPU: ``training_avx2`` (training.pyx built
    with AVX2, bit for bit the same results) where the CPU has AVX2, the build made it
    and FASTNN_AVX2 is not "0"; else ``training``. Its elementwise loops, between the
    matrix products, then run on 256-bit vectors. Alternating processes (AMD EPYC, 2
    threads): batch-32 epochs of the bench's MLP took a median of 0.72 against 0.79 s (16
    each), digits epochs of MLPClassifier 0.77-0.90 against 0.83-1.09 ms (15 fits of
    200 epochs each)."""
    from fastnn._kernels.parallel import cpu_has_avx2
    if os.environ.get("FASTNN_AVX2", "1") != "0" and cpu_has_avx2():
        try:
            from fastnn._kernels import training_avx2
            return training_avx2
        except ImportError:        # a build without it (not x86-64, or another compiler)
            pass
    from fastnn._kernels import training
    return training
