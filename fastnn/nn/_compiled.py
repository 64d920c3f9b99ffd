"""The fast path of Sequential: a model of built-in layers, loss and optimizer described
as a *plan* for the compiled training step (fastnn._kernels.training_module()).

`fit` hands whole epochs to the kernel and returns to Python once per epoch; `predict`
runs the eval-mode forward pass in one call. The kernel calls the very cores that the
layers reach through fastnn.ops, so both paths give bit-identical weights; any model,
loss or optimizer that the plan cannot describe (a custom layer, another kernel module,
an optimizer subclass) simply takes the layer-by-layer path.
"""
import math
import numbers

import numpy as np

from fastnn._aligned import aligned_empty
from fastnn._config import get_num_threads
from fastnn._validation import batchnorm_eps, batchnorm_momentum, dropout_probability
from fastnn._kernels import training_module
from fastnn.nn.layers import BatchNorm1d, Dropout, Linear, ReLU, Sigmoid, Tanh
from fastnn.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from fastnn.optim import SGD, Adam, AdamW

_kernel = training_module()

_LAYER_KINDS = {Linear: _kernel.LINEAR, ReLU: _kernel.RELU, Sigmoid: _kernel.SIGMOID,
                Tanh: _kernel.TANH, Dropout: _kernel.DROPOUT, BatchNorm1d: _kernel.BATCHNORM}

#: rows per chunk of the compiled predict: bounds its workspace, keeps it in cache
PREDICT_CHUNK = 256


def _as_arg(value):
    """A layer attribute as the plan's float; NaN for one that is no real number (only a
    training plan reads these, and check_training refuses such a value first)."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    return math.nan


def _offset_in(flat, view):
    """Offset of a 1-D view inside the flat array it was sliced from."""
    start = view.__array_interface__["data"][0] - flat.__array_interface__["data"][0]
    return start // flat.itemsize


class Plan:
    """The model's layers as arrays the kernel reads: kinds, widths, offsets, arguments."""

    def __init__(self, model, layers):
        kinds, widths, param_off, buffer_off, args = [], [model.n_features_in], [], [], []
        for layer in layers:
            kind = _LAYER_KINDS[type(layer)]
            params, buffers, arg = [-1, -1], [-1, -1], [0.0, 0.0]
            width = widths[-1]
            if kind == _kernel.LINEAR:
                params = [layer.weight._flat[2],
                          -1 if layer.bias is None else layer.bias._flat[2]]
                width = layer.out_features
            elif kind == _kernel.BATCHNORM:
                params = [layer.weight._flat[2], layer.bias._flat[2]]
                buffers = [_offset_in(model._flat_buffers, layer.running_mean),
                           _offset_in(model._flat_buffers, layer.running_var)]
                arg = [_as_arg(layer.eps), _as_arg(layer.momentum)]
            elif kind == _kernel.DROPOUT:
                arg = [_as_arg(layer.p), 0.0]
            kinds.append(kind)
            widths.append(width)
            param_off.append(params)
            buffer_off.append(buffers)
            args.append(arg)
        self.kinds = np.array(kinds, dtype=np.int32)
        self.widths = np.array(widths, dtype=np.int64)
        self.param_off = np.array(param_off, dtype=np.int64).reshape(-1, 2)
        self.buffer_off = np.array(buffer_off, dtype=np.int64).reshape(-1, 2)
        self.layer_args = np.array(args, dtype=np.float64).reshape(-1, 2)
        self.layers = list(layers)
        self._layouts = {}
        # predict's workspaces, each sized for PREDICT_CHUNK rows, kept between calls by
        # the predictor (which takes one per call)
        self._spare_workspaces = []
        self.predictor = _kernel.Predictor(self.kinds, self.widths, self.param_off,
                                           self.buffer_off, self.layer_args,
                                           model._flat_params, model._flat_buffers,
                                           PREDICT_CHUNK, self._spare_workspaces)

    def check_training(self):
        """Raise what the layer-by-layer training path raises for a layer attribute it
        refuses (set after the layer was made: Dropout.p, BatchNorm1d.eps and momentum),
        before the kernel copies it: TypeError or ValueError, as fastnn.ops and
        bn_running_update do. Eval mode reads none of them (predict does not call this)."""
        for layer in self.layers:
            if type(layer) is Dropout:
                dropout_probability(layer.p)
            elif type(layer) is BatchNorm1d:
                batchnorm_eps(layer.eps)
                batchnorm_momentum(layer.momentum)

    def layout(self, max_batch, training):
        """(offsets, gradient offsets, size) of the workspace for max_batch rows."""
        key = (max_batch, training)
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layouts[key] = _kernel.workspace_layout(
                list(self.kinds), list(self.widths), max_batch, training)
        return layout

    def workspace(self, max_batch, training, dtype):
        """(offsets, gradient offsets, a fresh workspace)."""
        work_off, grad_off, size = self.layout(max_batch, training)
        return work_off, grad_off, aligned_empty(size, dtype)

    def predict(self, X):
        """Eval-mode output for C-contiguous X of the model's dtype, or None when X holds
        NaN or infinity."""
        return self.predictor.run(X, get_num_threads())


def plan_for(model):
    """A Plan when every layer is a built-in one computing with fastnn.ops, else None."""
    from fastnn import ops
    if model._kernels not in (None, ops) or model.n_features_in is None or not model.layers:
        return None
    layers = []
    for layer in model.layers:
        if type(layer) not in _LAYER_KINDS or layer._kernels not in (None, ops):
            return None
        if type(layer) is Dropout and layer.p == 0.0:
            continue            # the identity, in training as in eval
        layers.append(layer)
    if not layers:
        return None
    return Plan(model, layers)


class NonFiniteInput(ValueError):
    """X holds NaN or infinity, found by an epoch run with check_input (the caller puts
    back what the batches before it changed, and reports it in its own words)."""


class EpochRunner:
    """Runs fit's epochs in the kernel for one (model, loss, optimizer) combination."""

    def __init__(self, model, plan, loss_fn, opt, l1, l2, max_batch, *, loss_scale=1.0,
                 grad_scale=1.0, l2_per_weight=0.0, loss_clip=0.0):
        # loss_scale, grad_scale, l2_per_weight (an L2 term divided by each batch's
        # weight sum) and loss_clip (scikit-learn's clip of probabilities to [eps, 1 - eps]
        # in the cross-entropy values) let the estimators state scikit-learn's objective;
        # Sequential.fit leaves them at their neutral values.
        plan.check_training()        # before anything here changes the optimizer
        self.model, self.plan, self.opt = model, plan, opt
        self.l1, self.l2 = l1, l2
        self.loss_scale, self.grad_scale, self.l2_per_weight = loss_scale, grad_scale, \
            l2_per_weight
        self.loss_clip = loss_clip
        self.loss_fn = loss_fn
        self.work_off, self.grad_off, self.work = plan.workspace(max_batch, True, model.dtype)
        self.row_loss = np.empty(max_batch, dtype=np.float64)
        # the rows of one shuffled batch, gathered by the kernel
        self.x_batch = aligned_empty((max_batch, int(plan.widths[0])), model.dtype)
        self.label_batch = np.empty(max_batch, dtype=np.int64)
        self.target_batch = aligned_empty((max_batch, int(plan.widths[-1])), model.dtype)
        self.weight_batch = np.empty(max_batch, dtype=model.dtype)
        self.step_count = np.zeros(1, dtype=np.int64)
        # the kernel's timing of its batches with and without fastnn's second thread
        self.pool_tuning = np.zeros(_kernel.POOL_TUNING_SIZE, dtype=np.float64)
        if isinstance(opt, SGD):
            self.opt_kind = _kernel.SGD
            self.state = (opt._state("momentum_buffer", 0, model._flat_params),
                          np.empty(0, model.dtype))
            self.adam_hint = None
            momentum, nesterov, decay = opt.momentum, opt.nesterov, opt.weight_decay
            betas, eps, eps_on_raw_moment = (0.0, 0.0), 0.0, False
        else:
            self.opt_kind = _kernel.ADAMW if isinstance(opt, AdamW) else _kernel.ADAM
            self.state = (opt._state("exp_avg", 0, model._flat_params),
                          opt._state("exp_avg_sq", 0, model._flat_params))
            self.adam_hint = opt._hint(0, model._flat_params)
            momentum, nesterov, decay = 0.0, False, opt.weight_decay
            betas, eps, eps_on_raw_moment = opt.betas, opt.eps, opt._eps_on_raw_moment
        self.opt_args = np.array([opt.lr, momentum, 0.0, float(nesterov), decay,
                                  betas[0], betas[1], eps, float(eps_on_raw_moment)],
                                 dtype=np.float64)

    @staticmethod
    def supports(model, loss_fn, opt):
        """Whether the loss and optimizer are built-in ones the kernel implements, and the
        optimizer updates the model's whole flat buffer as one group."""
        from fastnn import ops
        if type(loss_fn) not in (CrossEntropyLoss, MSELoss, BCEWithLogitsLoss) \
                or loss_fn._kernels not in (None, ops):
            return False
        if type(opt) not in (SGD, Adam, AdamW) or not opt.is_flat:
            return False
        data = opt._groups[0][0]
        return data.size == model._flat_params.size and \
            _offset_in(model._flat_params, data) == 0

    def _targets(self, y):
        """(labels, targets, loss kind, label smoothing) for the kernel, computed as the
        loss object's forward computes them."""
        loss_fn, dtype, k = self.loss_fn, self.model.dtype, int(self.plan.widths[-1])
        if isinstance(loss_fn, CrossEntropyLoss):
            eps = loss_fn.label_smoothing
            if y.ndim == 1:
                return (np.ascontiguousarray(y, dtype=np.int64), None,
                        _kernel.CROSS_ENTROPY_LABELS, eps)
            t = np.ascontiguousarray(y, dtype=dtype)
            if eps:
                t = t * (1.0 - eps) + eps / k
            return None, t, _kernel.CROSS_ENTROPY_PROBS, 0.0
        t = y[:, None] if y.ndim == 1 else y
        kind = _kernel.MSE if isinstance(loss_fn, MSELoss) else _kernel.BCE_WITH_LOGITS
        return None, np.ascontiguousarray(t, dtype=dtype), kind, 0.0

    def run_epoch(self, X, y, bounds, order=None, sample_weight=None, check_input=False):
        """Train on the batches X[order[lo:hi]] of one epoch (X[lo:hi] without an order).
        Returns (batches completed, the loss of every batch run); a non-finite loss stops
        before that batch's update. check_input=True tests each batch's rows as the kernel
        gathers them and raises NonFiniteInput at the first that holds NaN or infinity,
        after the updates of the batches before it: one pass over X fewer than testing
        X first, for callers that can put the model back (fit's first epoch)."""
        model, opt = self.model, self.opt
        n_batches = len(bounds) - 1
        # the same draws, in the same order, as Dropout.forward makes batch by batch
        seeds = np.zeros((n_batches, len(self.plan.kinds)), dtype=np.uint64)
        dropout = self.plan.kinds == _kernel.DROPOUT
        if dropout.any():
            seeds[:, dropout] = model._rng.integers(0, 2**64, size=(n_batches, dropout.sum()),
                                                    dtype=np.uint64)
        labels, targets, loss_kind, smoothing = self._targets(y)
        self.opt_args[0] = opt.lr
        self.step_count[0] = opt.step_count
        batch_losses = np.zeros(n_batches, dtype=np.float64)
        if order is not None:
            order = np.ascontiguousarray(order, dtype=np.int64)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=self.model.dtype)
        completed = _kernel.train_epoch(
            X, labels, targets, sample_weight, order, np.asarray(bounds, dtype=np.int64),
            self.x_batch, self.label_batch, self.target_batch, self.weight_batch,
            self.plan.kinds, self.plan.widths, self.plan.param_off, self.plan.buffer_off,
            self.plan.layer_args, seeds, self.work_off, self.grad_off, model._flat_params,
            model._flat_grads, model._flat_buffers, self.work, self.row_loss, loss_kind, smoothing,
            self.loss_scale, self.grad_scale, self.loss_clip, model._n_penalised, self.l1,
            self.l2, self.l2_per_weight, self.opt_kind, self.opt_args,
            self.state[0], self.state[1], self.adam_hint, self.step_count, batch_losses,
            check_input, get_num_threads(), self.pool_tuning)
        opt.step_count = int(self.step_count[0])
        if completed < 0:
            raise NonFiniteInput(f"X contains NaN or infinity (batch {-completed})")
        return completed, batch_losses
