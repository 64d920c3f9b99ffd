"""Arrays whose data start on a 64-byte boundary: one cache line, one AVX-512 register.

NumPy aligns its allocations to 16 bytes only. OpenBLAS's small-matrix kernel then reads
every row of a weight matrix with loads that straddle two cache lines: a one-row predict
of the 784-256-128-10 network took 19-35 us with its weights 16, 32 or 48 bytes past a
line and 13-22 us on a line (the first product alone, in C: 13-20 us against 7-11 us).
"""
import math

import numpy as np

ALIGNMENT = 64


def aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array of `shape` and `dtype` starting on ALIGNMENT."""
    dtype = np.dtype(dtype)
    shape = tuple(shape) if np.iterable(shape) else (int(shape),)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned_zeros(shape, dtype):
    """aligned_empty, filled with zeros."""
    arr = aligned_empty(shape, dtype)
    arr.fill(0)
    return arr
