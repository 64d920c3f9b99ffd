"""Batch normalisation entry points (cores in batchnorm.pxd)."""
from cython cimport floating


def batchnorm_forward(const floating[:, ::1] x not None,   # IN  (n, d), n >= 1
                      const floating[::1] gamma not None,  # IN  (d,)
                      const floating[::1] beta not None,   # IN  (d,)
                      double eps,
                      floating[:, ::1] y not None,         # OUT (n, d)
                      floating[:, ::1] x_hat not None,     # OUT (n, d)
                      floating[::1] mean not None,         # OUT (d,) batch mean
                      floating[::1] var not None,          # OUT (d,) biased batch variance
                      floating[::1] inv_std not None,      # OUT (d,) 1 / sqrt(var + eps)
                      int n_threads):
    cdef Py_ssize_t n = x.shape[0], d = x.shape[1]
    if gamma.shape[0] != d or beta.shape[0] != d or mean.shape[0] != d or \
            var.shape[0] != d or inv_std.shape[0] != d:
        raise ValueError(f"batchnorm_forward: x has {d} columns but gamma, beta, mean, var "
                         f"and inv_std have {gamma.shape[0]}, {beta.shape[0]}, "
                         f"{mean.shape[0]}, {var.shape[0]} and {inv_std.shape[0]} elements")
    if y.shape[0] != n or y.shape[1] != d or x_hat.shape[0] != n or x_hat.shape[1] != d:
        raise ValueError(f"batchnorm_forward: x is ({n}, {d}) but y is ({y.shape[0]}, "
                         f"{y.shape[1]}) and x_hat ({x_hat.shape[0]}, {x_hat.shape[1]})")
    if n == 0 and d > 0:
        raise ValueError("batchnorm_forward: x has no rows")
    if d == 0:
        return
    with nogil:
        batchnorm_forward_core(&x[0, 0], &gamma[0], &beta[0], eps, &y[0, 0], &x_hat[0, 0],
                               &mean[0], &var[0], &inv_std[0], x.shape[0], x.shape[1],
                               n_threads)


def batchnorm_backward(const floating[:, ::1] dy not None,     # IN  (n, d)
                       const floating[:, ::1] x_hat not None,  # IN  (n, d)
                       const floating[::1] inv_std not None,   # IN  (d,)
                       const floating[::1] gamma not None,     # IN  (d,)
                       floating[:, ::1] dx not None,           # OUT (n, d)
                       floating[::1] dgamma not None,          # OUT (d,)
                       floating[::1] dbeta not None,           # OUT (d,)
                       int n_threads):
    cdef Py_ssize_t n = dy.shape[0], d = dy.shape[1]
    if x_hat.shape[0] != n or x_hat.shape[1] != d or dx.shape[0] != n or dx.shape[1] != d:
        raise ValueError(f"batchnorm_backward: dy is ({n}, {d}) but x_hat is "
                         f"({x_hat.shape[0]}, {x_hat.shape[1]}) and dx ({dx.shape[0]}, "
                         f"{dx.shape[1]})")
    if inv_std.shape[0] != d or gamma.shape[0] != d or dgamma.shape[0] != d or \
            dbeta.shape[0] != d:
        raise ValueError(f"batchnorm_backward: dy has {d} columns but inv_std, gamma, dgamma "
                         f"and dbeta have {inv_std.shape[0]}, {gamma.shape[0]}, "
                         f"{dgamma.shape[0]} and {dbeta.shape[0]} elements")
    if d == 0:
        return
    with nogil:
        batchnorm_backward_core(&dy[0, 0], &x_hat[0, 0], &inv_std[0], &gamma[0], &dx[0, 0],
                                &dgamma[0], &dbeta[0], dy.shape[0], dy.shape[1], n_threads)


def batchnorm_eval(const floating[:, ::1] x not None,          # IN  (n, d)
                   const floating[::1] gamma not None,         # IN  (d,)
                   const floating[::1] beta not None,          # IN  (d,)
                   const floating[::1] running_mean not None,  # IN  (d,)
                   const floating[::1] running_var not None,   # IN  (d,)
                   double eps,
                   floating[:, ::1] y not None):               # OUT (n, d)
    cdef Py_ssize_t d = x.shape[1]
    if gamma.shape[0] != d or beta.shape[0] != d or running_mean.shape[0] != d or \
            running_var.shape[0] != d:
        raise ValueError(f"batchnorm_eval: x has {d} columns but gamma, beta, running_mean "
                         f"and running_var have {gamma.shape[0]}, {beta.shape[0]}, "
                         f"{running_mean.shape[0]} and {running_var.shape[0]} elements")
    if y.shape[0] != x.shape[0] or y.shape[1] != d:
        raise ValueError(f"batchnorm_eval: x is ({x.shape[0]}, {d}) but y is "
                         f"({y.shape[0]}, {y.shape[1]})")
    if x.shape[0] == 0 or x.shape[1] == 0:
        return
    with nogil:
        batchnorm_eval_core(&x[0, 0], &gamma[0], &beta[0], &running_mean[0],
                            &running_var[0], eps, &y[0, 0], x.shape[0], x.shape[1])


def batchnorm_running_update(const floating[::1] mean not None,    # IN  (d,) biased batch mean
                             const floating[::1] var not None,     # IN  (d,) biased batch variance
                             Py_ssize_t n, double momentum,        # n >= 2 rows in the batch
                             floating[::1] running_mean not None,  # IN/OUT (d,)
                             floating[::1] running_var not None):  # IN/OUT (d,)
    cdef Py_ssize_t d = mean.shape[0]
    if var.shape[0] != d or running_mean.shape[0] != d or running_var.shape[0] != d:
        raise ValueError(f"batchnorm_running_update: mean has {d} elements, var "
                         f"{var.shape[0]}, running_mean {running_mean.shape[0]} and "
                         f"running_var {running_var.shape[0]}; all must have the same size")
    if mean.shape[0] == 0:
        return
    with nogil:
        batchnorm_running_update_core(&mean[0], &var[0], n, momentum, &running_mean[0],
                                      &running_var[0], mean.shape[0])
