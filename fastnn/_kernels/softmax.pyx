"""Row-wise softmax, log-softmax, fused softmax + cross-entropy, one-hot (cores in softmax.pxd).

All arrays C-contiguous with at least one row and one column, checked by the caller.
"""
from cython cimport floating
from libc.stdint cimport int64_t


def softmax(const floating[:, ::1] z not None,  # IN  (n, k)
            floating[:, ::1] out not None,      # OUT (n, k)
            bint log_output,                    # log_softmax instead of softmax
            int n_threads):
    if out.shape[0] != z.shape[0] or out.shape[1] != z.shape[1]:
        raise ValueError(f"softmax: z is ({z.shape[0]}, {z.shape[1]}) but out is "
                         f"({out.shape[0]}, {out.shape[1]})")
    with nogil:
        softmax_rows(&z[0, 0], &out[0, 0], z.shape[0], z.shape[1], log_output, n_threads)


def cross_entropy_labels(const floating[:, ::1] z not None,   # IN  (n, k) logits
                         const int64_t[::1] labels not None,  # IN  (n,) in [0, k)
                         double smoothing,                    # label smoothing in [0, 1]
                         floating[:, ::1] dz not None,        # OUT (n, k)
                         double[::1] row_loss not None,       # OUT (n,) workspace
                         int n_threads):
    cdef double loss
    cdef Py_ssize_t i, n = z.shape[0], k = z.shape[1]
    if labels.shape[0] != n or dz.shape[0] != n or dz.shape[1] != k or row_loss.shape[0] < n:
        raise ValueError(f"cross_entropy_labels: z is ({n}, {k}) but labels has "
                         f"{labels.shape[0]} elements, dz is ({dz.shape[0]}, {dz.shape[1]}) "
                         f"and row_loss has {row_loss.shape[0]}")
    for i in range(n):
        if labels[i] < 0 or labels[i] >= k:
            raise ValueError(f"cross_entropy_labels: labels must lie in [0, {k}), got "
                             f"{labels[i]}")
    with nogil:
        loss = cross_entropy_labels_rows(&z[0, 0], &labels[0], smoothing, &dz[0, 0],
                                         &row_loss[0], z.shape[0], z.shape[1], n_threads)
    return loss


def cross_entropy_probs(const floating[:, ::1] z not None,       # IN  (n, k) logits
                        const floating[:, ::1] target not None,  # IN  (n, k) finite
                        floating[:, ::1] dz not None,            # OUT (n, k)
                        double[::1] row_loss not None,           # OUT (n,) workspace
                        int n_threads):
    cdef double loss
    cdef Py_ssize_t n = z.shape[0], k = z.shape[1]
    if target.shape[0] != n or target.shape[1] != k or dz.shape[0] != n or \
            dz.shape[1] != k or row_loss.shape[0] < n:
        raise ValueError(f"cross_entropy_probs: z is ({n}, {k}) but target is "
                         f"({target.shape[0]}, {target.shape[1]}), dz ({dz.shape[0]}, "
                         f"{dz.shape[1]}) and row_loss has {row_loss.shape[0]} elements")
    with nogil:
        loss = cross_entropy_probs_rows(&z[0, 0], &target[0, 0], &dz[0, 0], &row_loss[0],
                                        z.shape[0], z.shape[1], n_threads)
    return loss


def exp(const floating[::1] x not None, floating[::1] out not None):
    """out = exp(x) with the vectorised exp of the softmax cores (for the tests)."""
    cdef Py_ssize_t i
    if out.shape[0] != x.shape[0]:
        raise ValueError(f"exp: x has {x.shape[0]} elements but out has {out.shape[0]}.")
    with nogil:
        for i in range(x.shape[0]):
            out[i] = exp_vector(x[i])


def one_hot(const int64_t[::1] labels not None,  # IN  (n,) in [0, k)
            floating[:, ::1] out not None):      # OUT (n, k)
    cdef Py_ssize_t i, j, n = out.shape[0], k = out.shape[1]
    if labels.shape[0] != n:
        raise ValueError(f"one_hot: labels has {labels.shape[0]} elements but out has {n} rows")
    for i in range(n):
        if labels[i] < 0 or labels[i] >= k:
            raise ValueError(f"one_hot: labels must lie in [0, {k}), got {labels[i]}")
    with nogil:
        for i in range(n):
            for j in range(k):
                out[i, j] = 0
            out[i, labels[i]] = 1
