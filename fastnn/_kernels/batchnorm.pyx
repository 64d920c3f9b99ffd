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
    if x.shape[1] == 0:
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
    if dy.shape[1] == 0:
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
    if mean.shape[0] == 0:
        return
    with nogil:
        batchnorm_running_update_core(&mean[0], &var[0], n, momentum, &running_mean[0],
                                      &running_var[0], mean.shape[0])
