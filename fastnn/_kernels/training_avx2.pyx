# training.pyx compiled with AVX2 (setup.py adds -mavx2 for this module only), chosen at
# import where the CPU has it (fastnn._kernels.training_module). The code is the same, so
# are its results: without FMA contraction (-ffp-contract=off) and without reassociation,
# a wider vector does each element's IEEE operations as the SSE2 build does, 8 floats at a
# time instead of 4.
include "training.pyx"
