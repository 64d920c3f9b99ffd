# Elementwise losses over a whole batch (mean over every element, as PyTorch's defaults).
# Shared by losses.pyx and the training step so both give the very same numbers.
from cython cimport floating
from libc.math cimport exp, log1p, fabs

from fastnn._kernels.activations cimport sigmoid_scalar


cdef inline double mse_core(const floating* z, const floating* t, floating* dz,
                            Py_ssize_t size) noexcept nogil:
    """mean((z - t)^2), summed in double; dz = (z - t) * (2 / size)."""
    cdef Py_ssize_t i
    cdef double s = 0
    cdef floating d, scale = <floating>(2.0 / size)
    for i in range(size):
        d = z[i] - t[i]
        s += <double>d * d
        dz[i] = d * scale
    return s / size


cdef inline double bce_term(double z, double t) noexcept nogil:
    """max(z, 0) - z t + log(1 + exp(-|z|)): one element of BCE with logits, without
    overflow."""
    return (z if z > 0 else 0) - z * t + log1p(exp(-fabs(z)))


cdef inline double bce_with_logits_core(const floating* z, const floating* t, floating* dz,
                                        Py_ssize_t size) noexcept nogil:
    """mean(max(z, 0) - z t + log(1 + exp(-|z|))), which never overflows;
    dz = (sigmoid(z) - t) / size."""
    cdef Py_ssize_t i
    cdef double s = 0
    cdef floating scale = <floating>(1.0 / size)
    for i in range(size):
        s += bce_term(z[i], t[i])
        dz[i] = (sigmoid_scalar(z[i]) - t[i]) * scale
    return s / size
