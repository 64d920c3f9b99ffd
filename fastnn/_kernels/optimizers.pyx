"""Optimizer entry points over flat, C-contiguous buffers of one dtype (cores in optimizers.pxd)."""
from cython cimport floating


def penalty_step(const floating[::1] w not None,  # IN  weights
                 floating[::1] grad not None,     # IN/OUT gradient of those weights
                 double l1, double l2, int n_threads):
    """Return l1 * sum|w| + l2 * sum(w^2) and add its gradient to grad."""
    cdef double out = 0
    if w.shape[0] != grad.shape[0]:
        raise ValueError(f"w has {w.shape[0]} elements but grad has {grad.shape[0]}")
    if w.shape[0]:
        with nogil:
            out = penalty_step_core(&w[0], &grad[0], l1, l2, w.shape[0], n_threads)
    return out


def sgd_step(floating[::1] param not None,         # IN/OUT
             const floating[::1] grad not None,    # IN
             floating[::1] momentum_buf not None,  # IN/OUT (unused when momentum == 0)
             double lr, double momentum, double dampening, bint nesterov,
             double weight_decay, bint first_step, int n_threads):
    if grad.shape[0] != param.shape[0] or momentum_buf.shape[0] != param.shape[0]:
        raise ValueError(f"sgd_step: param has {param.shape[0]} elements, grad "
                         f"{grad.shape[0]} and momentum_buf {momentum_buf.shape[0]}; "
                         "all must have the same size")
    if param.shape[0]:
        with nogil:
            sgd_step_core(&param[0], &grad[0], &momentum_buf[0], lr, momentum, dampening,
                          nesterov, weight_decay, first_step, param.shape[0], n_threads)


def adam_hint_size(Py_ssize_t n):
    """Bytes of adam_step's hint for n float32 parameters."""
    return fastnn_adam_hint_size(n)


def adam_step(floating[::1] param not None,       # IN/OUT
              const floating[::1] grad not None,  # IN
              floating[::1] exp_avg not None,     # IN/OUT first moment
              floating[::1] exp_avg_sq not None,  # IN/OUT second moment
              double lr, double beta1, double beta2, double eps,
              double weight_decay, bint decoupled, long step, int n_threads,
              unsigned char[::1] hint=None,       # IN/OUT float32 only: adam_hint_size bytes
              bint eps_on_raw_moment=False):
    """One Adam step. hint, kept between the steps of one set of moments, lets float32
    steps go around values that turn subnormal; the results are the same.
    eps_on_raw_moment adds eps where scikit-learn does (see adam_step_core)."""
    cdef unsigned char* hint_ptr = NULL
    if grad.shape[0] != param.shape[0] or exp_avg.shape[0] != param.shape[0] or \
            exp_avg_sq.shape[0] != param.shape[0]:
        raise ValueError(f"adam_step: param has {param.shape[0]} elements, grad "
                         f"{grad.shape[0]}, exp_avg {exp_avg.shape[0]} and exp_avg_sq "
                         f"{exp_avg_sq.shape[0]}; all must have the same size")
    if hint is not None:
        if floating is double:
            raise ValueError("the Adam hint is for float32 parameters")
        elif hint.shape[0] != fastnn_adam_hint_size(param.shape[0]):
            raise ValueError(f"hint has {hint.shape[0]} bytes, expected "
                             f"{fastnn_adam_hint_size(param.shape[0])}")
        elif hint.shape[0]:
            hint_ptr = &hint[0]
    if param.shape[0]:
        with nogil:
            adam_step_core(&param[0], &grad[0], &exp_avg[0], &exp_avg_sq[0], lr, beta1, beta2,
                           eps, weight_decay, decoupled, step, param.shape[0], n_threads,
                           hint_ptr, eps_on_raw_moment)
