"""Whole-batch MSE and binary cross-entropy on logits (cores in losses.pxd).

All arrays flat, C-contiguous, of one dtype and one size >= 1, checked by the caller.
"""
from cython cimport floating


def mse(const floating[::1] z not None,  # IN  outputs
        const floating[::1] t not None,  # IN  targets
        floating[::1] dz not None):      # OUT gradient of the mean loss
    cdef double loss
    if t.shape[0] != z.shape[0] or dz.shape[0] != z.shape[0]:
        raise ValueError(f"mse: z has {z.shape[0]} elements, t {t.shape[0]} and dz "
                         f"{dz.shape[0]}; all must have the same size")
    with nogil:
        loss = mse_core(&z[0], &t[0], &dz[0], z.shape[0])
    return loss


def bce_with_logits(const floating[::1] z not None,  # IN  logits
                    const floating[::1] t not None,  # IN  targets in [0, 1]
                    floating[::1] dz not None):      # OUT gradient of the mean loss
    cdef double loss
    if t.shape[0] != z.shape[0] or dz.shape[0] != z.shape[0]:
        raise ValueError(f"bce_with_logits: z has {z.shape[0]} elements, t {t.shape[0]} and "
                         f"dz {dz.shape[0]}; all must have the same size")
    with nogil:
        loss = bce_with_logits_core(&z[0], &t[0], &dz[0], z.shape[0])
    return loss
