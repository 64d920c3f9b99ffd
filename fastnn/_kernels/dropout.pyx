"""Inverted dropout entry point (core in dropout.pxd)."""
from cython cimport floating
from libc.stdint cimport uint64_t


def dropout(const floating[::1] x not None,  # IN
            double p,                        # in [0, 1), checked by the caller
            uint64_t seed,
            floating[::1] y not None,        # OUT y = x * mask
            floating[::1] mask not None,     # OUT 0 for a dropped unit, 1 / (1 - p) for a kept one
            int n_threads):
    if y.shape[0] != x.shape[0] or mask.shape[0] != x.shape[0]:
        raise ValueError(f"dropout: x has {x.shape[0]} elements, y {y.shape[0]} and mask "
                         f"{mask.shape[0]}; all must have the same size")
    if x.shape[0] == 0:
        return
    with nogil:
        dropout_core(&x[0], p, seed, &y[0], &mask[0], x.shape[0], n_threads)
