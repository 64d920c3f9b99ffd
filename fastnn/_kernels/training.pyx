"""The compiled training step: whole epochs of mini-batches without returning to Python.

The kernel knows nothing of models. It runs a *plan*: a list of layer kinds with their
widths, offsets into one flat parameter buffer (and its gradient), offsets into one flat
buffer of running statistics, and offsets into one workspace laid out by
`workspace_layout`. Every operation calls the same cores (*.pxd) as the per-operation
entry points, so an epoch here and the same epoch run layer by layer from Python give
bit-identical weights.
"""
from cython cimport floating
from libc.math cimport isfinite, log, log1p
from libc.string cimport memcpy
from libc.stdint cimport int32_t, int64_t, uint64_t

import numpy as np

from fastnn._aligned import aligned_empty

from fastnn._kernels.activations cimport activation_forward_n, activation_backward_n
from fastnn._kernels.common cimport all_finite_core
from fastnn._kernels.parallel cimport (
    POOL_CHUNK, POOL_TUNING, pool_flag_raise, pool_for, pool_threads, pool_tuning_start,
    pool_tuning_stop)
from fastnn._kernels.batchnorm cimport (
    batchnorm_forward_core, batchnorm_backward_core, batchnorm_running_update_core,
    batchnorm_eval_core)
from fastnn._kernels.dropout cimport dropout_core
from fastnn._kernels.linear cimport (
    linear_act_forward_core, linear_forward_core, linear_backward_core)
from fastnn._kernels.losses cimport mse_core, bce_term, bce_with_logits_core
from fastnn._kernels.parallel cimport blas_threads_enter, blas_threads_exit
from fastnn._kernels.optimizers cimport (
    penalty_step_core, sgd_step_core, adam_step_core, fastnn_adam_hint_size)
from fastnn._kernels.softmax cimport cross_entropy_labels_rows, cross_entropy_probs_rows

cdef enum LayerKind:
    LAYER_LINEAR = 0
    LAYER_RELU = 1        # = ACT_RELU, ACT_SIGMOID, ACT_TANH of activations.pxd
    LAYER_SIGMOID = 2
    LAYER_TANH = 3
    LAYER_DROPOUT = 4
    LAYER_BATCHNORM = 5

cdef enum LossKind:
    LOSS_CROSS_ENTROPY_LABELS = 0
    LOSS_CROSS_ENTROPY_PROBS = 1
    LOSS_MSE = 2
    LOSS_BCE_WITH_LOGITS = 3

cdef enum OptimizerKind:
    OPT_SGD = 0
    OPT_ADAM = 1
    OPT_ADAMW = 2

# optimizer arguments, in this order, in opt_args
cdef enum:
    ARG_LR = 0
    ARG_MOMENTUM = 1
    ARG_DAMPENING = 2
    ARG_NESTEROV = 3
    ARG_WEIGHT_DECAY = 4
    ARG_BETA1 = 5
    ARG_BETA2 = 6
    ARG_EPS = 7
    ARG_EPS_ON_RAW_MOMENT = 8
    N_OPT_ARGS = 9

# workspace offsets per layer: output, mask or x_hat, (mean, var, inv_std)
cdef enum:
    WORK_OUT = 0
    WORK_AUX = 1
    WORK_STATS = 2

LINEAR, RELU, SIGMOID, TANH, DROPOUT, BATCHNORM = range(6)
POOL_TUNING_SIZE = POOL_TUNING
CROSS_ENTROPY_LABELS, CROSS_ENTROPY_PROBS, MSE, BCE_WITH_LOGITS = range(4)
SGD, ADAM, ADAMW = range(3)
OPT_ARGS = ("lr", "momentum", "dampening", "nesterov", "weight_decay", "beta1", "beta2", "eps",
            "eps_on_raw_moment")


cdef inline Py_ssize_t line_up(Py_ssize_t offset) noexcept:
    """offset rounded up to 16 elements: every slot starts on a 64-byte line when the
    workspace does (fastnn._aligned), so BLAS reads its rows without split loads."""
    return (offset + 15) & ~<Py_ssize_t>15


def workspace_layout(kinds, widths, Py_ssize_t max_batch, bint training):
    """Offsets (n_layers, 3) into one workspace, and its size, for batches of up to max_batch
    rows: every layer's output, dropout masks and batch-norm caches (training only), then
    two gradient buffers of the widest layer."""
    cdef Py_ssize_t l, w, grad, size = 0
    offsets = np.full((len(kinds), 3), -1, dtype=np.int64)
    for l, kind in enumerate(kinds):
        w = widths[l + 1]
        offsets[l, WORK_OUT] = size = line_up(size)
        size += max_batch * w
        if training and kind in (DROPOUT, BATCHNORM):
            offsets[l, WORK_AUX] = size = line_up(size)
            size += max_batch * w
        if training and kind == BATCHNORM:
            offsets[l, WORK_STATS] = size = line_up(size)
            size += 3 * w
    grad = line_up(size)
    grad_offsets = np.array([grad, line_up(grad + max_batch * max(widths))], dtype=np.int64)
    if training:
        size = grad_offsets[1] + max_batch * max(widths)
    return offsets, grad_offsets, size


cdef inline floating* at(floating* base, int64_t offset) noexcept nogil:
    return base + offset if offset >= 0 else NULL


cdef const floating* forward_batch(
        const floating* x, Py_ssize_t n, bint training, Py_ssize_t batch,
        const int32_t[::1] kinds, const int64_t[::1] widths,
        const int64_t[:, ::1] param_off, const int64_t[:, ::1] buffer_off,
        const double[:, ::1] layer_args, const uint64_t[:, ::1] seeds,
        const int64_t[:, ::1] work_off,
        floating* params, floating* buffers, floating* work, int n_threads) noexcept nogil:
    """Run the layers on n rows of x and return where the last layer's output is.

    Layer l's output lands at work + work_off[l, 0], except an eval-mode dropout's, which
    is its input, passed on unwritten: the returned pointer, not the last layer's slot, is
    the output (it is x itself when every layer is such a dropout). In training every
    layer writes its slot."""
    cdef Py_ssize_t l, n_layers = kinds.shape[0]
    cdef Py_ssize_t w_in, w_out
    cdef const floating* inp = x
    cdef floating* out
    cdef floating* stats
    cdef int kind
    l = 0
    while l < n_layers:
        kind = kinds[l]
        w_in = widths[l]
        w_out = widths[l + 1]
        out = work + work_off[l, WORK_OUT]
        if kind == LAYER_LINEAR and l + 1 < n_layers and \
                LAYER_RELU <= kinds[l + 1] <= LAYER_TANH:
            # with the activation after it, in one pass (linear.pxd); the linear slot then
            # holds the bare product, which the backward pass does not read
            linear_act_forward_core(inp, params + param_off[l, 0],
                                    at(params, param_off[l, 1]), out,
                                    work + work_off[l + 1, WORK_OUT], kinds[l + 1],
                                    n, w_in, w_out, n_threads)
            inp = work + work_off[l + 1, WORK_OUT]
            l += 2
            continue
        if kind == LAYER_LINEAR:
            linear_forward_core(inp, params + param_off[l, 0], at(params, param_off[l, 1]),
                                out, n, w_in, w_out, n_threads)
        elif kind == LAYER_DROPOUT:
            if training:
                dropout_core(inp, layer_args[l, 0], seeds[batch, l], out,
                             work + work_off[l, WORK_AUX], n * w_in, n_threads)
            else:
                out = <floating*>inp      # identity: pass the input on
        elif kind == LAYER_BATCHNORM:
            if training:
                stats = work + work_off[l, WORK_STATS]
                batchnorm_forward_core(inp, params + param_off[l, 0], params + param_off[l, 1],
                                       layer_args[l, 0], out, work + work_off[l, WORK_AUX],
                                       stats, stats + w_in, stats + 2 * w_in, n, w_in, n_threads)
                batchnorm_running_update_core(stats, stats + w_in, n, layer_args[l, 1],
                                              buffers + buffer_off[l, 0],
                                              buffers + buffer_off[l, 1], w_in)
            else:
                batchnorm_eval_core(inp, params + param_off[l, 0], params + param_off[l, 1],
                                    buffers + buffer_off[l, 0], buffers + buffer_off[l, 1],
                                    layer_args[l, 0], out, n, w_in)
        else:
            activation_forward_n(kind, inp, out, n * w_in, n_threads)
        inp = out
        l += 1
    return inp


cdef double largest_product(const int32_t[::1] kinds, const int64_t[::1] widths,
                            Py_ssize_t rows):
    """Multiply-adds in the largest matrix product of a batch of `rows` rows."""
    cdef Py_ssize_t l
    cdef double largest = 0
    for l in range(kinds.shape[0]):
        if kinds[l] == LAYER_LINEAR and <double>rows * widths[l] * widths[l + 1] > largest:
            largest = <double>rows * widths[l] * widths[l + 1]
    return largest


cdef Py_ssize_t bounds_max(const int64_t[::1] bounds) noexcept nogil:
    """The largest batch."""
    cdef Py_ssize_t b, m = 0
    for b in range(bounds.shape[0] - 1):
        if bounds[b + 1] - bounds[b] > m:
            m = bounds[b + 1] - bounds[b]
    return m


cdef bint workspace_fits(const int64_t[:, ::1] work_off, const int64_t[::1] widths,
                         Py_ssize_t rows, Py_ssize_t size) noexcept:
    """Whether every slot work_off names (workspace_layout's, for batches of `rows`
    rows) lies inside a workspace of `size` elements."""
    cdef Py_ssize_t l, w
    for l in range(work_off.shape[0]):
        w = widths[l + 1]
        if work_off[l, WORK_OUT] < 0 or work_off[l, WORK_OUT] + rows * w > size:
            return False
        if work_off.shape[1] > WORK_AUX and work_off[l, WORK_AUX] >= 0 and \
                work_off[l, WORK_AUX] + rows * w > size:
            return False
        if work_off.shape[1] > WORK_STATS and work_off[l, WORK_STATS] >= 0 and \
                work_off[l, WORK_STATS] + 3 * w > size:
            return False
    return True


cdef bint rows_in_range(const int64_t[::1] rows, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(rows.shape[0]):
        if rows[i] < 0 or rows[i] >= n:
            return False
    return True


cdef void gather_rows(const floating* src, const int64_t* rows, Py_ssize_t n, Py_ssize_t d,
                      floating* dst) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        memcpy(dst + i * d, src + rows[i] * d, d * sizeof(floating))


ctypedef struct BatchRows:
    const void* src          # the samples (without rows: the batch's own rows, in place)
    const int64_t* rows      # the batch's row indices in src, or NULL
    void* dst                # where row i of the batch goes (with rows)
    Py_ssize_t d             # elements per row
    bint check               # test the rows for NaN and infinity
    int bad                  # raised by a chunk whose rows hold one


cdef inline void batch_rows_range(BatchRows* s, const floating* src, floating* dst,
                                  long lo, long hi) noexcept nogil:
    cdef const floating* rows_lo = src + lo * s.d
    if s.rows != NULL:
        gather_rows(src, s.rows + lo, hi - lo, s.d, dst + lo * s.d)
        rows_lo = dst + lo * s.d        # checked while in this core's cache
    if s.check and not all_finite_core(rows_lo, (hi - lo) * s.d):
        pool_flag_raise(&s.bad)


cdef void batch_rows_float(void* arg, long lo, long hi) noexcept nogil:
    cdef BatchRows* s = <BatchRows*>arg
    batch_rows_range(s, <const float*>s.src, <float*>s.dst, lo, hi)


cdef void batch_rows_double(void* arg, long lo, long hi) noexcept nogil:
    cdef BatchRows* s = <BatchRows*>arg
    batch_rows_range(s, <const double*>s.src, <double*>s.dst, lo, hi)


cdef bint batch_rows(const floating* src, const int64_t* rows, Py_ssize_t n, Py_ssize_t d,
                     floating* dst, bint check, int n_threads) noexcept nogil:
    """Copy row rows[i] of src to row i of dst for i < n (with rows NULL, the rows are
    src's first n, left in place) and, with check, test them for NaN and infinity;
    returns False when one holds either. A large batch is shared with the pool: one
    thread copying rows from memory took 26-33 ms per batch-512 epoch of 60k x 784
    float32, two took 17-25 ms."""
    cdef BatchRows s
    cdef long chunk_rows = max(1, POOL_CHUNK // d)
    if rows == NULL and not check:
        return True
    s.src = src
    s.rows = rows
    s.dst = dst
    s.d = d
    s.check = check
    s.bad = 0
    if floating is float:
        pool_for(batch_rows_float, &s, n, chunk_rows, pool_threads(n * d, n_threads))
    else:
        pool_for(batch_rows_double, &s, n, chunk_rows, pool_threads(n * d, n_threads))
    return s.bad == 0


cdef void scale_in_place(floating* a, double factor, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating f = <floating>factor
    for i in range(size):
        a[i] = a[i] * f


cdef inline double clamp_rows(double* row_loss, Py_ssize_t n, double lo,
                              double hi) noexcept nogil:
    """Clamp each row's loss to [lo, hi] in place; return their mean (a serial sum, as
    cross_entropy_labels_rows)."""
    cdef Py_ssize_t i
    cdef double total = 0
    for i in range(n):
        row_loss[i] = min(max(row_loss[i], lo), hi)
        total += row_loss[i]
    return total / n


cdef inline double clamped_bce(const floating* z, const floating* t, Py_ssize_t size,
                               double lo, double hi) noexcept nogil:
    """Mean of BCE-with-logits' terms, each clamped to [lo, hi]."""
    cdef Py_ssize_t i
    cdef double s = 0
    for i in range(size):
        s += min(max(bce_term(z[i], t[i]), lo), hi)
    return s / size


cdef double weighted_rows(floating* g, const double* row_loss, const floating* w,
                          Py_ssize_t n, Py_ssize_t k, double g_row_scale,
                          double* weight_sum) noexcept nogil:
    """Turn a batch mean into the weighted mean sum_i w_i loss_i / sum_i w_i: returns the
    weighted loss, rescales row i of the gradient g by w_i * n / sum(w) / g_row_scale
    (g_row_scale = n when g holds per-row means, 1 when it holds the batch mean) and
    stores sum(w). A batch of zero weight teaches nothing: zero loss and gradient."""
    cdef Py_ssize_t i, j
    cdef double s = 0, total = 0
    cdef floating f
    for i in range(n):
        s += w[i]
    weight_sum[0] = s
    for i in range(n):
        f = <floating>(w[i] * n / (s * g_row_scale)) if s > 0 else 0
        total += w[i] * row_loss[i]
        for j in range(k):
            g[i * k + j] = g[i * k + j] * f
    return total / s if s > 0 else 0.0


def train_epoch(
        const floating[:, ::1] X not None,     # IN  (n, n_in) the samples
        const int64_t[::1] labels,           # IN  (n,) class indices (cross-entropy on labels) or None
        const floating[:, ::1] targets,      # IN  (n, k) targets (the other losses) or None
        const floating[::1] sample_weight,   # IN  (n,) per-sample weights or None (all equal)
        const int64_t[::1] order,            # IN  (n,) this epoch's row order, or None (0..n-1)
        const int64_t[::1] bounds not None,    # IN  (n_batches + 1,) batch b is order[bounds[b]:bounds[b+1]]
        floating[:, ::1] x_batch not None,     # workspace (max batch, n_in), used with order
        int64_t[::1] label_batch not None,     # workspace (max batch,), used with order and labels
        floating[:, ::1] target_batch not None,   # workspace (max batch, k), used with order and targets
        floating[::1] weight_batch not None,   # workspace (max batch,), used with sample_weight
        const int32_t[::1] kinds not None,     # IN  (n_layers,) LINEAR, RELU, ... per layer
        const int64_t[::1] widths not None,    # IN  (n_layers + 1,) activation widths
        const int64_t[:, ::1] param_off not None,   # IN  (n_layers, 2) weight/gamma and bias/beta offsets, -1 for none
        const int64_t[:, ::1] buffer_off not None,   # IN  (n_layers, 2) running mean/var offsets
        const double[:, ::1] layer_args not None,   # IN  (n_layers, 2) dropout p; batch-norm eps, momentum
        const uint64_t[:, ::1] seeds not None,   # IN  (n_batches, n_layers) dropout seeds
        const int64_t[:, ::1] work_off not None,   # IN  (n_layers, 3) from workspace_layout
        const int64_t[::1] grad_off not None,   # IN  (2,) from workspace_layout
        floating[::1] params not None,         # IN/OUT flat parameters
        floating[::1] grads not None,          # OUT flat gradients (of the last batch run)
        floating[::1] buffers not None,        # IN/OUT flat running statistics
        floating[::1] work not None,           # workspace of workspace_layout's size
        double[::1] row_loss not None,         # workspace (max batch rows,)
        int loss_kind, double label_smoothing,
        double loss_scale, double grad_scale,           # the loss value and its gradient times these
        double loss_clip,                    # > 0: scikit-learn's probability clip (see below)
        Py_ssize_t n_penalised, double l1, double l2,   # penalties on params[:n_penalised]
        double l2_per_weight,                # plus l2_per_weight / (the batch's weight sum) * sum(w^2)
        int opt_kind, const double[::1] opt_args not None,   # OPT_ARGS
        floating[::1] state1, floating[::1] state2,     # IN/OUT optimizer state (momentum; Adam moments)
        unsigned char[::1] adam_hint,          # IN/OUT float32 Adam's hint (adam_hint_size bytes) or None
        int64_t[::1] step_count not None,      # IN/OUT (1,) optimizer steps taken so far
        double[::1] batch_losses not None,     # OUT (n_batches,) loss + penalty of each batch
        bint check_input,                    # test each batch's rows for NaN and infinity
        int n_threads,
        double[::1] pool_tuning=None):       # IN/OUT POOL_TUNING doubles kept between epochs, or None
    """Run every batch: gather its rows, forward, loss, backward, penalties, optimizer step.

    The loss of a batch is the mean over its rows (weighted by sample_weight when given)
    of the per-row loss, times loss_scale; its gradient is scaled by grad_scale (the two
    differ for scikit-learn's squared error, whose gradient is not that of its value).
    loss_clip > 0 (the estimators' eps of the dtype) makes the cross-entropy and
    BCE-with-logits values scikit-learn's, which clips probabilities to [eps, 1 - eps]
    before the log: for 0/1 targets each row's (each output's) -log p is clamped to
    [-log(1 - eps), -log(eps)]. The gradients stay those of the exact loss, as there.
    Returns the number of batches completed. A batch whose loss (with penalties) is not
    finite stops the epoch before its update: the caller reports it. With check_input,
    a batch whose rows of X hold NaN or infinity stops the epoch before any of its work,
    and the return is then -1 - (that batch's index): the rows are tested as they are
    gathered, in cache, where a separate pass over X would read it all from memory
    once more (14-23 ms for 60k x 784 float32).

    With pool_tuning, while BLAS is on one thread and so products are split between
    fastnn's threads, each batch runs with the pool's workers or without them, whichever
    its timing shows faster (csrc/fastnn_pool.h); the results are the same either way.
    """
    cdef Py_ssize_t l, k, completed, widest = 0
    cdef Py_ssize_t n_layers = kinds.shape[0], n_batches = bounds.shape[0] - 1
    cdef Py_ssize_t n_params = params.shape[0], n_in = X.shape[1], first_param_layer = n_layers
    cdef floating* p = &params[0]
    cdef floating* gr = &grads[0]
    cdef floating* buf = &buffers[0] if buffers.shape[0] else NULL
    cdef floating* ws = &work[0]
    cdef floating* s1 = &state1[0] if state1 is not None and state1.shape[0] else NULL
    cdef floating* s2 = &state2[0] if state2 is not None and state2.shape[0] else NULL
    cdef unsigned char* hint = NULL
    cdef const int64_t* lab = &labels[0] if labels is not None else NULL
    cdef const floating* tgt = &targets[0, 0] if targets is not None else NULL
    cdef const floating* sw = &sample_weight[0] if sample_weight is not None else NULL
    cdef const int64_t* perm = &order[0] if order is not None else NULL
    cdef double* tuning = NULL

    # what the caller (fastnn.nn._compiled.EpochRunner) guarantees, checked: a wrong size
    # would read or write out of bounds
    if widths.shape[0] != n_layers + 1 or X.shape[1] != widths[0] or \
            work_off.shape[0] != n_layers or work_off.shape[1] != 3 or \
            param_off.shape[0] != n_layers or buffer_off.shape[0] != n_layers or \
            layer_args.shape[0] != n_layers:
        raise ValueError("X and the plan's arrays do not describe the same layers")
    if grads.shape[0] != n_params or (s1 != NULL and state1.shape[0] != n_params) or \
            (s2 != NULL and state2.shape[0] != n_params) or n_penalised > n_params:
        raise ValueError("grads and the optimizer state must have the parameters' size")
    if adam_hint is not None:
        if floating is double or adam_hint.shape[0] != fastnn_adam_hint_size(n_params):
            raise ValueError("the Adam hint is for float32 parameters, of adam_hint_size bytes")
        elif adam_hint.shape[0]:
            hint = &adam_hint[0]
    k = widths[n_layers]
    if (lab != NULL and labels.shape[0] != X.shape[0]) or \
            (tgt != NULL and (targets.shape[0] != X.shape[0] or targets.shape[1] != k)) or \
            (sw != NULL and sample_weight.shape[0] != X.shape[0]):
        raise ValueError("labels, targets and sample_weight must have one row per sample")
    if lab != NULL and not rows_in_range(labels, k):
        raise ValueError(f"labels must lie in [0, {k})")
    for l in range(n_layers + 1):
        widest = max(widest, widths[l])
    if n_batches >= 0 and (
            grad_off.shape[0] != 2 or grad_off[0] < 0 or grad_off[1] < 0 or
            max(grad_off[0], grad_off[1]) + bounds_max(bounds) * widest > work.shape[0] or
            not workspace_fits(work_off, widths, bounds_max(bounds), work.shape[0])):
        raise ValueError("the workspace is smaller than a batch")
    if n_batches >= 0 and (
            row_loss.shape[0] < bounds_max(bounds) or batch_losses.shape[0] < n_batches or
            seeds.shape[0] < n_batches or seeds.shape[1] < n_layers or
            step_count.shape[0] < 1 or opt_args.shape[0] < N_OPT_ARGS):
        raise ValueError("a per-batch or per-step array is too short")
    if pool_tuning is not None and pool_tuning.shape[0] != POOL_TUNING:
        raise ValueError(f"pool_tuning must hold {POOL_TUNING} doubles")

    for l in range(n_layers):
        if kinds[l] == LAYER_LINEAR or kinds[l] == LAYER_BATCHNORM:
            first_param_layer = l
            break
    if bounds.shape[0] < 1 or bounds[bounds.shape[0] - 1] > X.shape[0] or \
            (perm != NULL and order.shape[0] < bounds[bounds.shape[0] - 1]):
        raise ValueError("the batches reach past the samples")
    if perm != NULL:
        if not rows_in_range(order, X.shape[0]):
            raise ValueError("order holds a row index outside [0, n)")
        if x_batch.shape[0] < bounds_max(bounds) or x_batch.shape[1] != n_in:
            raise ValueError("x_batch is smaller than a batch")
        if (lab != NULL and label_batch.shape[0] < x_batch.shape[0]) or \
                (tgt != NULL and (target_batch.shape[0] < x_batch.shape[0]
                                  or target_batch.shape[1] != k)) or \
                (sw != NULL and weight_batch.shape[0] < x_batch.shape[0]):
            raise ValueError("a batch workspace is smaller than x_batch")

    if blas_threads_enter(n_threads, largest_product(kinds, widths, bounds_max(bounds))) == 1 \
            and n_threads > 1 and pool_tuning is not None:
        tuning = &pool_tuning[0]
    try:
        completed = _run_batches(
            X, perm, lab, tgt, sw, bounds, x_batch, label_batch, target_batch, weight_batch,
            kinds, widths, param_off, buffer_off, layer_args, seeds, work_off, grad_off,
            p, gr, buf, ws, s1, s2, hint, row_loss, loss_kind, label_smoothing, loss_scale,
            grad_scale, loss_clip, n_penalised, l1, l2, l2_per_weight, opt_kind, opt_args,
            step_count, batch_losses, n_params, n_in, first_param_layer, check_input,
            n_threads, tuning)
    finally:
        blas_threads_exit()
    return completed


cdef Py_ssize_t _run_batches(
        const floating[:, ::1] X, const int64_t* perm, const int64_t* lab,
        const floating* tgt, const floating* sw, const int64_t[::1] bounds,
        floating[:, ::1] x_batch, int64_t[::1] label_batch, floating[:, ::1] target_batch,
        floating[::1] weight_batch, const int32_t[::1] kinds, const int64_t[::1] widths,
        const int64_t[:, ::1] param_off, const int64_t[:, ::1] buffer_off,
        const double[:, ::1] layer_args, const uint64_t[:, ::1] seeds,
        const int64_t[:, ::1] work_off, const int64_t[::1] grad_off,
        floating* p, floating* gr, floating* buf, floating* ws, floating* s1, floating* s2,
        unsigned char* adam_hint, double[::1] row_loss, int loss_kind,
        double label_smoothing, double loss_scale, double grad_scale, double loss_clip,
        Py_ssize_t n_penalised, double l1, double l2, double l2_per_weight,
        int opt_kind, const double[::1] opt_args, int64_t[::1] step_count,
        double[::1] batch_losses, Py_ssize_t n_params, Py_ssize_t n_in,
        Py_ssize_t first_param_layer, bint check_input, int n_threads,
        double* tuning) noexcept:
    """train_epoch's batches, with the GIL released."""
    cdef Py_ssize_t b, l, lo, n, k, w_in, w_out, i, completed = 0
    cdef long started = 0
    cdef Py_ssize_t n_layers = kinds.shape[0], n_batches = bounds.shape[0] - 1
    cdef floating* g
    cdef floating* other
    cdef floating* swap
    cdef floating* dx
    cdef floating* inp
    cdef floating* out
    cdef const floating* xb
    cdef const int64_t* lb
    cdef const floating* tb
    cdef const floating* wb
    cdef double loss, weight_sum, l2_batch
    cdef int kind
    cdef double lr = opt_args[ARG_LR], momentum = opt_args[ARG_MOMENTUM]
    cdef double dampening = opt_args[ARG_DAMPENING], weight_decay = opt_args[ARG_WEIGHT_DECAY]
    cdef bint nesterov = opt_args[ARG_NESTEROV] != 0
    cdef double beta1 = opt_args[ARG_BETA1], beta2 = opt_args[ARG_BETA2], eps = opt_args[ARG_EPS]
    cdef bint eps_on_raw_moment = opt_args[ARG_EPS_ON_RAW_MOMENT] != 0
    # scikit-learn's clip of p to [eps, 1 - eps], as bounds on -log p
    cdef double clip_lo = -log1p(-loss_clip) if loss_clip > 0 else 0
    cdef double clip_hi = -log(loss_clip) if loss_clip > 0 else 0
    k = widths[n_layers]
    with nogil:
        for b in range(n_batches):
            lo = bounds[b]
            n = bounds[b + 1] - lo
            if tuning != NULL:
                started = pool_tuning_start(tuning)
            if perm != NULL:
                # this batch's rows, copied once into a buffer that stays in cache
                if not batch_rows(&X[0, 0], perm + lo, n, n_in, &x_batch[0, 0],
                                  check_input, n_threads):
                    completed = -1 - b
                    break
                xb = &x_batch[0, 0]
                lb = NULL
                tb = NULL
                wb = NULL
                if lab != NULL:
                    for i in range(n):
                        label_batch[i] = lab[perm[lo + i]]
                    lb = &label_batch[0]
                if tgt != NULL:
                    gather_rows(tgt, perm + lo, n, k, &target_batch[0, 0])
                    tb = &target_batch[0, 0]
                if sw != NULL:
                    for i in range(n):
                        weight_batch[i] = sw[perm[lo + i]]
                    wb = &weight_batch[0]
            else:
                xb = &X[lo, 0]
                if check_input and not batch_rows(xb, NULL, n, n_in, NULL, True, n_threads):
                    completed = -1 - b
                    break
                lb = lab + lo if lab != NULL else NULL
                tb = tgt + lo * k if tgt != NULL else NULL
                wb = sw + lo if sw != NULL else NULL
            # loss and its gradient with respect to the last layer's output (in training,
            # its own slot)
            out = <floating*>forward_batch(xb, n, True, b, kinds, widths, param_off,
                                           buffer_off, layer_args, seeds, work_off, p, buf,
                                           ws, n_threads)
            g = ws + grad_off[0]
            other = ws + grad_off[1]
            if loss_kind == LOSS_CROSS_ENTROPY_LABELS:
                loss = cross_entropy_labels_rows(out, lb, label_smoothing, g,
                                                 &row_loss[0], n, k, n_threads)
            elif loss_kind == LOSS_CROSS_ENTROPY_PROBS:
                loss = cross_entropy_probs_rows(out, tb, g, &row_loss[0], n, k, n_threads)
            elif wb != NULL:
                # per-row means, which the weights below combine
                for i in range(n):
                    if loss_kind == LOSS_MSE:
                        row_loss[i] = mse_core(out + i * k, tb + i * k, g + i * k, k)
                    else:
                        row_loss[i] = bce_with_logits_core(out + i * k, tb + i * k,
                                                           g + i * k, k)
            elif loss_kind == LOSS_MSE:
                loss = mse_core(out, tb, g, n * k)
            else:
                loss = bce_with_logits_core(out, tb, g, n * k)
            if loss_clip > 0 and loss_kind == LOSS_CROSS_ENTROPY_LABELS:
                loss = clamp_rows(&row_loss[0], n, clip_lo, clip_hi)
            elif loss_clip > 0 and loss_kind == LOSS_BCE_WITH_LOGITS:
                if wb != NULL:
                    for i in range(n):
                        row_loss[i] = clamped_bce(out + i * k, tb + i * k, k, clip_lo, clip_hi)
                else:
                    loss = clamped_bce(out, tb, n * k, clip_lo, clip_hi)
            weight_sum = n
            if wb != NULL:
                loss = weighted_rows(g, &row_loss[0], wb, n, k,
                                     1.0 if loss_kind <= LOSS_CROSS_ENTROPY_PROBS else <double>n,
                                     &weight_sum)
            if loss_scale != 1:
                loss *= loss_scale
            if grad_scale != 1:
                scale_in_place(g, grad_scale, n * k)

            # backward, down to the first layer with parameters (its input gradient is unused)
            l = n_layers - 1
            while l >= first_param_layer:
                kind = kinds[l]
                w_in = widths[l]
                w_out = widths[l + 1]
                inp = <floating*>xb if l == 0 else ws + work_off[l - 1, WORK_OUT]
                out = ws + work_off[l, WORK_OUT]
                if kind == LAYER_LINEAR:
                    dx = other if l > first_param_layer else NULL
                    linear_backward_core(inp, p + param_off[l, 0], g, dx,
                                         gr + param_off[l, 0], at(gr, param_off[l, 1]),
                                         n, w_in, w_out, n_threads)
                    swap = g
                    g = other
                    other = swap
                elif kind == LAYER_DROPOUT:
                    dx = ws + work_off[l, WORK_AUX]       # the mask
                    for i in range(n * w_in):
                        g[i] = g[i] * dx[i]
                elif kind == LAYER_BATCHNORM:
                    # in place: each column's sums are taken before its dx is written
                    dx = g if l > first_param_layer else NULL
                    batchnorm_backward_core(g, ws + work_off[l, WORK_AUX],
                                            ws + work_off[l, WORK_STATS] + 2 * w_in,
                                            p + param_off[l, 0], dx,
                                            gr + param_off[l, 0], gr + param_off[l, 1],
                                            n, w_in, n_threads)
                else:
                    # ReLU's gradient from its output: its input is not kept after a
                    # linear layer (forward_batch)
                    activation_backward_n(kind, out if kind == LAYER_RELU else inp, out, g, g,
                                          n * w_in, n_threads)
                l -= 1

            l2_batch = l2
            if l2_per_weight != 0 and weight_sum > 0:
                l2_batch = l2 + l2_per_weight / weight_sum
            if l1 != 0 or l2_batch != 0:
                loss += penalty_step_core(p, gr, l1, l2_batch, n_penalised, n_threads)
            batch_losses[b] = loss
            if not isfinite(loss):
                break

            if opt_kind == OPT_SGD:
                sgd_step_core(p, gr, s1, lr, momentum, dampening, nesterov, weight_decay,
                              step_count[0] == 0, n_params, n_threads)
            else:
                adam_step_core(p, gr, s1, s2, lr, beta1, beta2, eps, weight_decay,
                               opt_kind == OPT_ADAMW, step_count[0] + 1, n_params, n_threads,
                               adam_hint, eps_on_raw_moment)
            step_count[0] += 1
            completed += 1
            if tuning != NULL:
                pool_tuning_stop(tuning, started, <double>n)
    if tuning != NULL:
        pool_tuning_stop(tuning, started, -1)      # after a batch cut short: no time
    return completed


cdef int predict_chunks(Predictor pr, const floating[:, ::1] X,
                        const int64_t[:, ::1] work_off, floating[::1] work,
                        floating[:, ::1] out, Py_ssize_t chunk, int n_threads) except -1:
    """Predictor.predict's checks and chunks: 1, or 0 at the first chunk holding NaN or
    infinity."""
    cdef Py_ssize_t lo, n, total = X.shape[0], n_layers = pr.kinds.shape[0]
    cdef Py_ssize_t k = pr.widths[n_layers], n_in = X.shape[1]
    cdef bint finite = True
    cdef floating* params
    cdef floating* buf = NULL
    cdef const floating* last
    if floating is float:
        if pr.float64:
            raise TypeError("the model's parameters are float64, X is float32")
        params = &pr.params32[0]
        if pr.buffers32.shape[0]:
            buf = &pr.buffers32[0]
    else:
        if not pr.float64:
            raise TypeError("the model's parameters are float32, X is float64")
        params = &pr.params64[0]
        if pr.buffers64.shape[0]:
            buf = &pr.buffers64[0]
    # what the plan's caller guarantees, checked: a wrong size would write out of bounds
    if n_in != pr.widths[0]:
        raise ValueError(f"X has {n_in} features but the plan expects {pr.widths[0]}")
    if out.shape[0] != total or out.shape[1] != k:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}) but the "
                         f"output is ({total}, {k})")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if work_off.shape[0] != n_layers or work_off.shape[1] < 1:
        raise ValueError("work_off does not have one row per layer")
    if not workspace_fits(work_off, pr.widths, min(chunk, total), work.shape[0]):
        raise ValueError("the workspace is smaller than a chunk")
    if total == 0:
        return 1
    blas_threads_enter(n_threads, largest_product(pr.kinds, pr.widths, min(chunk, total)))
    try:
        with nogil:
            lo = 0
            while lo < total:
                n = chunk if total - lo > chunk else total - lo
                if not all_finite_core(&X[lo, 0], n * n_in):
                    finite = False
                    break
                # not the last layer's slot: an eval-mode dropout leaves its own unwritten
                last = forward_batch(&X[lo, 0], n, False, 0, pr.kinds, pr.widths,
                                     pr.param_off, pr.buffer_off, pr.layer_args,
                                     pr.no_seeds, work_off, params, buf, &work[0],
                                     n_threads)
                memcpy(&out[lo, 0], last, n * k * sizeof(floating))
                lo += n
    finally:
        blas_threads_exit()
    return 1 if finite else 0


cdef class Predictor:
    """The eval-mode forward pass of a plan over one model's flat parameters and running
    statistics. The plan's arrays are taken once, here: `predict` then only takes its
    input, workspace and output, where twelve arguments took longer to check than the
    products of a one-row prediction, and `run` (what Sequential.predict calls) only its
    input."""
    cdef const int32_t[::1] kinds
    cdef const int64_t[::1] widths
    cdef const int64_t[:, ::1] param_off
    cdef const int64_t[:, ::1] buffer_off
    cdef const double[:, ::1] layer_args
    cdef const uint64_t[:, ::1] no_seeds
    cdef float[::1] params32
    cdef float[::1] buffers32
    cdef double[::1] params64
    cdef double[::1] buffers64
    cdef bint float64                  # which pair of the two above holds the model
    # run's chunking: workspaces of max_chunk rows (work_size elements) kept between
    # calls in `spare`, and each chunk size's slots in that workspace
    cdef Py_ssize_t max_chunk, work_size
    cdef list spare
    cdef dict chunk_slots
    cdef object dtype

    def __init__(self, const int32_t[::1] kinds not None, const int64_t[::1] widths not None,
                 const int64_t[:, ::1] param_off not None,
                 const int64_t[:, ::1] buffer_off not None,
                 const double[:, ::1] layer_args not None, params, buffers,
                 Py_ssize_t max_chunk=256, list spare=None):
        self.kinds = kinds
        self.widths = widths
        self.param_off = param_off
        self.buffer_off = buffer_off
        self.layer_args = layer_args
        self.no_seeds = np.zeros((1, kinds.shape[0]), dtype=np.uint64)
        self.float64 = params.dtype == np.float64
        if self.float64:
            self.params64 = params
            self.buffers64 = buffers
        else:
            self.params32 = params
            self.buffers32 = buffers
        if max_chunk < 1:
            raise ValueError(f"max_chunk must be at least 1, got {max_chunk}")
        self.max_chunk = max_chunk
        self.spare = [] if spare is None else spare
        self.chunk_slots = {}
        self.dtype = params.dtype
        self.work_size = self._slots(max_chunk)[1]

    cdef tuple _slots(self, Py_ssize_t chunk):
        """(workspace offsets, workspace size) for chunks of `chunk` rows."""
        slots = self.chunk_slots.get(chunk)
        if slots is None:
            offsets, _, size = workspace_layout(list(self.kinds), list(self.widths), chunk,
                                                False)
            slots = self.chunk_slots[chunk] = (offsets, size)
        return slots

    def run(self, X not None, int n_threads):
        """The eval-mode output for X, C-contiguous and of the model's dtype, as a new
        array, max_chunk rows at a time; None when X holds NaN or infinity.

        A call takes a kept workspace for itself (list.pop and append are atomic), so
        threads predicting with one model never share one; a fresh one page-faulted on
        every call (256 rows: 0.25 ms more than the kernel, 0.10 ms with kept ones).
        Doing this here rather than in Python, with one call into predict_chunks instead
        of the fused predict's dispatch, saved about 1 us of a one-row prediction's 13
        (the 784-256-128-10 MLP, alternating in one process: 12.2-12.5 against 13.4)."""
        cdef Py_ssize_t n = X.shape[0]
        cdef Py_ssize_t chunk = max(1, min(self.max_chunk, n))
        cdef int finite
        if X.dtype != self.dtype:
            raise TypeError(f"the model's parameters are {self.dtype}, X is {X.dtype}")
        work_off = self._slots(chunk)[0]
        try:
            work = self.spare.pop()
        except IndexError:
            work = aligned_empty(self.work_size, self.dtype)
        out = np.empty((n, self.widths[self.kinds.shape[0]]), dtype=self.dtype)
        try:
            if self.float64:
                finite = predict_chunks[double](self, X, work_off, work, out, chunk, n_threads)
            else:
                finite = predict_chunks[float](self, X, work_off, work, out, chunk, n_threads)
        finally:
            self.spare.append(work)
        return out if finite else None

    def predict(self, const floating[:, ::1] X not None,     # IN  (n, n_in)
                const int64_t[:, ::1] work_off not None,      # workspace_layout(chunk, False)
                floating[::1] work not None,
                floating[:, ::1] out not None,                # OUT (n, widths[-1])
                Py_ssize_t chunk, int n_threads):
        """Eval-mode forward pass, chunk rows at a time through a workspace sized for chunk.

        Returns True, or False at the first chunk holding NaN or infinity (out is then
        written only before it). Each chunk is checked while in cache, just before its
        products: about 0.2 us for one 784-wide row and 18 us for 256, where NumPy's
        check over X took 1.8 and 25 us."""
        return predict_chunks(self, X, work_off, work, out, chunk, n_threads) == 1
