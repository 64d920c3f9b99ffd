"""Sequential: a stack of layers with one flat parameter buffer, and its training loop.

Flat buffers
------------
All parameters of a model live in one 1-D array ``model._flat_params`` of the model's dtype,
and all gradients in a second one, ``model._flat_grads``; every ``Parameter.data`` /
``Parameter.grad`` is a reshaped view into them. The order is: the weights that the l1/l2
penalties apply to (the weights of Linear layers, in layer order) first, then every other
parameter (biases, batch-norm gamma/beta) in layer order, so that

* ``_flat_params[:_n_penalised]`` is every penalised weight (one vector operation for l1/l2);
* an optimizer given ``model.parameters()`` updates the whole buffer in one pass;
* snapshots (early stopping, divergence recovery) and save/load are single copies.

Non-trainable state (batch-norm running statistics) lives in a third flat array,
``model._flat_buffers``.
"""
import math
import numbers
import operator
import time

import numpy as np

from fastnn._aligned import aligned_zeros
from fastnn._validation import all_finite, as_numeric, positive_count
from fastnn.nn import _compiled, _fused
from fastnn.nn.callbacks import EarlyStopping, History
from fastnn.nn.layers import BatchNorm1d, Module, resolve_kernels
from fastnn.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, get_loss
from fastnn.optim import Optimizer, check_optimizer_name, get_optimizer

__all__ = ["Sequential", "TrainingDivergedError"]

_KERNELS_OF = operator.attrgetter("_kernels")


class TrainingDivergedError(ValueError, FloatingPointError):
    """The training loss became NaN or infinite (the model keeps its last finite weights)."""


def _real(value, name, *, low=0.0, low_inclusive=True, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    ok = math.isfinite(value) and (value >= low if low_inclusive else value > low)
    if high is not None:
        ok = ok and value < high
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low:g}" + (f" and < {high:g}" if high else "")
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


class Sequential(Module):
    """Layers applied in order, PyTorch-style, plus a Keras-style ``fit``/``predict``.

    ``Sequential(*layers, dtype="float32", seed=None, kernels=None)``: the model owns its
    layers' parameters (moved into its flat buffers, cast to ``dtype``) and initialises
    them from ``numpy.random.default_rng(seed)``, replacing any values set on the layers
    before (set weights, e.g. copied from PyTorch, on the built model); the same
    generator then shuffles the
    mini-batches and seeds dropout, so one seed and one data set give bit-identical
    weights after training. ``kernels`` picks the kernel module the layers call
    (``fastnn.ops`` by default, or ``fastnn.reference`` / "reference").
    """

    #: the cached compiled plan of predict refers to this model's arrays: never copied
    _transient = ("_plan_cache",)

    def __init__(self, *layers, dtype="float32", seed=None, kernels=None):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for layer in layers:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes layers (fastnn.nn.Module), got "
                                f"{type(layer).__name__}")
            if isinstance(layer, Sequential):
                raise TypeError("nesting a Sequential inside a Sequential is not supported; "
                                "pass its layers instead")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("a layer appears more than once in the model")
        params = [p for layer in layers for p in layer.parameters()]
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a Parameter appears in more than one layer (tied weights are "
                             "not supported: each parameter has one place in the flat "
                             "buffer and one gradient)")
        for layer in layers:
            if any(p._flat is not None for p in layer.parameters()):
                raise ValueError(f"{layer!r} already belongs to a model; give each model "
                                 "its own layers")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or seed < 0):
            raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
        self.layers = list(layers)
        self.dtype = dtype
        self.seed = None if seed is None else int(seed)
        self.n_features_in, self.n_outputs = self._widths()
        self._rng = np.random.default_rng(self.seed)
        self.kernels = kernels
        self._bind_flat()
        for layer in self.layers:
            layer.reset_parameters(self._rng)
            if hasattr(layer, "_rng"):
                layer._rng = self._rng
        self.history = None

    # -- structure ------------------------------------------------------------------------
    def _widths(self):
        """(input width, output width) from the layers' in/out_features (None if unknown);
        ValueError where consecutive layers disagree."""
        n_in = width = None
        known = True      # whether `width` describes the current activations
        for i, layer in enumerate(self.layers):
            lin = getattr(layer, "in_features", None)
            if lin is not None:
                if width is not None and lin != width:
                    raise ValueError(f"layer {i} ({layer!r}) expects {lin} features but the "
                                     f"layer before it produces {width}")
                if known and width is None and n_in is None:
                    n_in = lin
            lout = getattr(layer, "out_features", None)
            if lout is not None:
                width = lout
            elif not layer.preserves_width:
                width, known = None, False
        return n_in, width

    def _bind_flat(self):
        """Move every parameter and buffer into fresh flat buffers (values are kept)."""
        penalised, rest = [], []
        for layer in self.layers:
            pen = set(layer.penalty_parameters)
            for name, p in layer.named_parameters():
                (penalised if name in pen else rest).append(p)
        ordered = penalised + rest
        self._flat_params = aligned_zeros(sum(p.size for p in ordered), self.dtype)
        self._flat_grads = aligned_zeros(self._flat_params.size, self.dtype)
        offset = 0
        for p in ordered:
            p._bind(self._flat_params, self._flat_grads, offset)
            offset += p.size
        self._n_penalised = sum(p.size for p in penalised)
        for i, layer in enumerate(self.layers):
            for name, p in layer.named_parameters():
                p.name = f"{i}.{name}"
        buffers = [(layer, name, arr) for layer in self.layers
                   for name, arr in layer.buffers().items()]
        self._flat_buffers = aligned_zeros(sum(a.size for _l, _n, a in buffers), self.dtype)
        offset = 0
        for layer, name, arr in buffers:
            layer._bind_buffer(name, self._flat_buffers[offset:offset + arr.size])
            offset += arr.size
        self._has_batchnorm = any(isinstance(layer, BatchNorm1d) for layer in self.layers)

    def __setstate__(self, state):
        super().__setstate__(state)
        self._bind_flat()      # pickling copied the views apart: tie them together again

    def __copy__(self):
        # A shallow copy shares the layers, hence their views of the flat buffers: it
        # shares those buffers too. Rebinding, as unpickling does, would move the shared
        # layers into buffers that only the copy holds, away from this model.
        new = type(self).__new__(type(self))
        Module.__setstate__(new, self.__getstate__())
        return new

    def named_parameters(self):
        return [(f"{i}.{name}", p) for i, layer in enumerate(self.layers)
                for name, p in layer.named_parameters()]

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self):
        self._flat_grads.fill(0)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n  dtype={self.dtype.name}, seed={self.seed})"

    @property
    def kernels(self):
        return super().kernels

    @kernels.setter
    def kernels(self, value):
        self._kernels = None if value is None else resolve_kernels(value)
        for layer in self.layers:
            layer._kernels = self._kernels

    def train(self, mode=True):
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    # -- forward / backward -----------------------------------------------------------------
    def _as_input(self, x):
        x = as_numeric(x, "x")
        if x.ndim != 2:
            raise ValueError(f"input must be a 2-D array (n_samples, n_features), "
                             f"got shape {x.shape}")
        if self.n_features_in is not None and x.shape[1] != self.n_features_in:
            raise ValueError(f"input has {x.shape[1]} features but the model expects "
                             f"{self.n_features_in}")
        return np.ascontiguousarray(x, dtype=self.dtype)

    def forward(self, x):
        """The network's output for x (n, n_features) in the current mode; stores what
        backward needs."""
        x = self._as_input(x)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_output):
        """Propagate d loss / d output back through every layer; overwrites each
        parameter's .grad and returns d loss / d input."""
        dy = np.ascontiguousarray(as_numeric(grad_output, "grad_output"), dtype=self.dtype)
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def infer(self, x):
        """Eval-mode output without touching any state: safe from several threads at once."""
        x = self._as_input(x)
        for layer in self.layers:
            x = layer.infer(x)
        return x

    # -- predict ----------------------------------------------------------------------------
    def _check_X(self, X, name="X", finite=True):
        """X as the model's dtype, C-contiguous, of the right width; finite=False leaves
        NaN and infinity to _predict, whose compiled plan checks each chunk in cache."""
        X = as_numeric(X, name)
        if X.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), "
                             f"got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{name} is empty (0 samples)")
        if self.n_features_in is not None and X.shape[1] != self.n_features_in:
            raise ValueError(f"{name} has {X.shape[1]} features but the model expects "
                             f"{self.n_features_in}")
        if X.dtype != self.dtype or not X.flags.c_contiguous:
            with np.errstate(over="ignore", invalid="ignore"):     # overflow is reported below
                X = np.ascontiguousarray(X, dtype=self.dtype)
        if finite and not all_finite(X):
            raise self._not_finite(name)
        return X

    def _not_finite(self, name):
        return ValueError(f"{name} contains NaN or infinity"
                          f" (values beyond the {self.dtype.name} range count as infinity)")

    def _predict_plan(self):
        """The compiled eval-mode plan, cached while the layers, their kernels, the
        batch-norm eps and the flat arrays stay (in eval mode dropout is the identity,
        whatever its p). Built with C-level calls: a one-row predict is a few microseconds."""
        layers = self.layers
        key = (self._kernels, *layers, *map(_KERNELS_OF, layers),
               *[layer.eps for layer in layers if type(layer) is BatchNorm1d])
        cached = self.__dict__.get("_plan_cache")
        if cached is None or cached[0] != key or cached[1] is not None and (
                cached[2] is not self._flat_params or cached[3] is not self._flat_buffers):
            plan = _compiled.plan_for(self)
            cached = self._plan_cache = (key, plan, self._flat_params, self._flat_buffers)
        return cached[1]

    def _predict(self, X, batch_size):
        plan = self._predict_plan()
        if plan is not None:
            out = plan.predict(X)
            if out is None:
                raise self._not_finite("X")
            return out
        if not all_finite(X):
            raise self._not_finite("X")
        if batch_size is None or batch_size >= X.shape[0]:
            out = X
            for layer in self.layers:
                out = layer.infer(out)
            return out.copy() if out is X else out
        parts = []
        for lo in range(0, X.shape[0], batch_size):
            out = X[lo:lo + batch_size]
            for layer in self.layers:
                out = layer.infer(out)
            parts.append(out)
        return np.concatenate(parts)

    def predict(self, X, batch_size=None):
        """The network's output for X in eval mode (dropout off, batch norm on running
        statistics), computed ``batch_size`` rows at a time (default: all at once).

        Stateless: the model's mode is not changed, and threads may share the model.
        """
        X = self._check_X(X, finite=False)
        if batch_size is not None:
            batch_size = positive_count(batch_size, "batch_size")
        return self._predict(X, batch_size)

    # -- fit ---------------------------------------------------------------------------------
    def _check_y(self, y, loss_fn, n, name="y"):
        if hasattr(loss_fn, "prepare_targets"):
            y = loss_fn.prepare_targets(y, self.n_outputs, self.dtype, name)
        else:
            y = as_numeric(y, name)
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"X has {n} samples but {name} has "
                             f"{'no length' if y.ndim == 0 else y.shape[0]}")
        return y

    def _batches(self, n, batch_size):
        bounds = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
        if self._has_batchnorm and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
            # batch norm cannot train on one row: the last row joins the batch before it
            bounds[-2:] = [(bounds[-2][0], n)]
        return bounds

    def _snapshot(self):
        return self._flat_params.copy(), self._flat_buffers.copy()

    def _restore(self, state):
        np.copyto(self._flat_params, state[0])
        np.copyto(self._flat_buffers, state[1])

    def _penalty(self, l1, l2):
        """Add the l1/l2 terms' gradients to the penalised weights' grads; return their value."""
        n = self._n_penalised
        return _fused.penalty(self.kernels, self._flat_params[:n], self._flat_grads[:n], l1, l2)

    def fit(self, X, y, *, loss="cross_entropy", optimizer="adam", lr=1e-3, epochs=10,
            batch_size=32, shuffle=True, l1=0.0, l2=0.0, validation_data=None,
            validation_split=0.0, early_stopping=None, verbose=0, compiled=None):
        """Train with mini-batches; returns a :class:`History` (also kept as ``self.history``).

        loss: "cross_entropy" (y: int labels or one-hot/probabilities), "mse",
            "binary_cross_entropy" (on logits), or a loss object.
        optimizer: "sgd", "momentum" (SGD, 0.9), "nesterov", "adam", "adamw" with learning
            rate ``lr``, or an optimizer object (which keeps its own lr).
        l1, l2: add ``l1 * sum|w| + l2 * sum(w**2)`` over the weights of Linear layers to the
            loss and their gradients to those weights.
        validation_data=(X_val, y_val), or validation_split=f to hold out the *last*
            fraction f of X (before shuffling), as Keras does.
        early_stopping: an :class:`EarlyStopping`.
        verbose: 0 silent; 1 a progress bar per epoch (tqdm if installed, else a line per
            epoch); 2 a line per epoch.
        compiled: None (default) runs whole epochs in the compiled training step whenever
            the layers, loss and optimizer are built-in ones on fastnn.ops, else layer by
            layer from Python; False always goes layer by layer; True requires the compiled
            step. Both give bit-identical weights.

        Everything is checked before the model is touched, except NaN and infinity in X,
        which the compiled step finds as it gathers the first epoch's rows (one pass over
        X fewer), and what a loss object of your own checks as it runs. An exception
        during training (from those checks, or from a custom layer) puts back the model,
        a fastnn optimizer given, the generator and the early-stopping callback, so bad
        input raises ValueError (TypeError for a wrong kind of object) and leaves the
        model as it was; a KeyboardInterrupt keeps the training done so far. A loss
        that becomes NaN or infinite raises :class:`TrainingDivergedError` (a ValueError)
        naming the epoch and learning rate, and leaves the model as it was after the last
        update that kept its weights finite: weights, running statistics, generator and
        a fastnn optimizer's state, the same on both paths (with an optimizer object of
        your own, which fit cannot put back, as it was at the start of that epoch).
        """
        # ---- check everything first ----------------------------------------------------
        loss_fn = get_loss(loss)
        lr = _real(lr, "lr", low_inclusive=False)
        epochs = positive_count(epochs, "epochs")
        batch_size = positive_count(batch_size, "batch_size")
        l1 = _real(l1, "l1")
        l2 = _real(l2, "l2")
        validation_split = _real(validation_split, "validation_split", high=1.0)
        if isinstance(optimizer, str):
            check_optimizer_name(optimizer)
        elif isinstance(optimizer, type) or not callable(getattr(optimizer, "step", None)):
            raise TypeError(f"optimizer must be a name or an object with step(), got "
                            f"{optimizer!r}" + (" (a class: pass an instance built on "
                                                "model.parameters())"
                                                if isinstance(optimizer, type) else ""))
        elif isinstance(optimizer, Optimizer) and not \
                {id(p) for p in optimizer.params} & {id(p) for p in self.parameters()}:
            raise ValueError("the optimizer updates none of this model's parameters; build "
                             "it on model.parameters()")
        if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
            raise TypeError(f"early_stopping must be an EarlyStopping, got {early_stopping!r}")
        if verbose not in (0, 1, 2, False, True):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        if not self._flat_params.size:
            raise ValueError("the model has no parameters to train")
        X = self._check_X(X, "X", finite=False)     # NaN and infinity: see check_input
        y = self._check_y(y, loss_fn, X.shape[0], "y")
        if validation_data is not None:
            if validation_split:
                raise ValueError("give validation_data or validation_split, not both")
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            X_val = self._check_X(validation_data[0], "X_val")
            y_val = self._check_y(validation_data[1], loss_fn, X_val.shape[0], "y_val")
        elif validation_split:
            # Keras's split: training keeps floor(n * (1 - split)) rows
            n_val = X.shape[0] - math.floor(X.shape[0] * (1.0 - validation_split))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves {n_val} of "
                                 f"{X.shape[0]} samples for validation; need at least one "
                                 "for each side")
            X, X_val = X[:-n_val], X[-n_val:]
            y, y_val = y[:-n_val], y[-n_val:]
            if not all_finite(X_val):
                raise self._not_finite("X")
        else:
            X_val = y_val = None
        if early_stopping is not None and early_stopping.monitor.startswith("val_") \
                and X_val is None:
            raise ValueError(f"EarlyStopping monitors {early_stopping.monitor!r} but there is "
                             "no validation data (give validation_data or validation_split)")
        if early_stopping is not None and early_stopping.monitor == "val_accuracy" \
                and not isinstance(loss_fn, (CrossEntropyLoss, BCEWithLogitsLoss)):
            raise ValueError("val_accuracy is only recorded for classification losses")
        if self._has_batchnorm and X.shape[0] < 2:
            raise ValueError("a model with BatchNorm1d needs at least 2 training samples")
        if self._has_batchnorm and batch_size == 1:
            raise ValueError("a model with BatchNorm1d cannot train with batch_size=1: the "
                             "batch variance of one row is undefined; use batch_size >= 2")
        if isinstance(loss, str):
            loss_fn.kernels = self._kernels
        opt = get_optimizer(optimizer, self.parameters(), lr)
        lr_used = getattr(opt, "lr", lr)
        # what a fit that fails puts back (taken before the runner adds optimizer state)
        undo = (self._snapshot(), _checkpoint(opt), self._rng.bit_generator.state,
                None if early_stopping is None else dict(vars(early_stopping)))
        runner = None
        if compiled is None or compiled:
            plan = _compiled.plan_for(self)
            if plan is not None and _compiled.EpochRunner.supports(self, loss_fn, opt):
                runner = _compiled.EpochRunner(self, plan, loss_fn, opt, l1, l2,
                                               min(batch_size + 1, X.shape[0]))
            elif compiled:
                raise ValueError("compiled=True needs built-in layers, loss and optimizer "
                                 "computing with fastnn.ops; this model takes the "
                                 "layer-by-layer path (compiled=None chooses by itself)")
        # The compiled step tests X's rows for NaN and infinity as it gathers the first
        # epoch's batches, and a bad row puts back everything the fit changed: undo.
        # The layer-by-layer path tests X first.
        check_input = runner is not None
        if not check_input and not all_finite(X):
            raise self._not_finite("X")

        # ---- train ---------------------------------------------------------------------
        was_training = self.training
        self.train()
        n = X.shape[0]
        batches = self._batches(n, batch_size)
        if shuffle and runner is None:
            X_epoch, y_epoch = np.empty_like(X), np.empty_like(y)
        epoch_start = self._snapshot()      # for a divergence: see _keep_last_finite
        history = History()
        if early_stopping is not None:
            early_stopping._reset()
        progress = _Progress(verbose, epochs, len(batches))
        try:
            for epoch in range(epochs):
                start = time.perf_counter()
                np.copyto(epoch_start[0], self._flat_params)
                np.copyto(epoch_start[1], self._flat_buffers)
                opt_start = _checkpoint(opt)
                order = self._rng.permutation(n) if shuffle else None
                rng_start = self._rng.bit_generator.state
                if runner is None and shuffle:
                    np.take(X, order, axis=0, out=X_epoch)
                    np.take(y, order, axis=0, out=y_epoch)
                elif runner is None:
                    X_epoch, y_epoch = X, y

                def run(batches_run, progress):
                    if runner is not None:     # the kernel gathers each batch's rows itself
                        return self._compiled_epoch(runner, X, y, order, batches_run, epoch,
                                                    progress, check_input and epoch == 0)
                    return self._python_epoch(X_epoch, y_epoch, batches_run, loss_fn, opt,
                                              l1, l2, epoch, progress)

                progress.start_epoch(epoch)
                try:
                    total = run(batches, progress)
                    if not np.isfinite(self._flat_params).all():
                        raise _Diverged(f"the weights became NaN or infinite at epoch "
                                        f"{epoch + 1}", len(batches))
                except _compiled.NonFiniteInput:
                    raise self._not_finite("X") from None
                except _Diverged as diverged:
                    self._keep_last_finite(diverged, (epoch_start, opt_start, rng_start), opt,
                                           batches, run)
                    raise TrainingDivergedError(
                        f"training diverged: {diverged.what} (learning rate {lr_used:g}). "
                        "The model keeps its last finite weights; try a smaller learning "
                        "rate, scaled inputs or gradient-friendly initialisation.") from None
                logs = {"loss": total / n}
                if X_val is not None:
                    out_val = self._predict(X_val, None)
                    logs["val_loss"] = float(loss_fn(out_val, y_val))
                    accuracy = _accuracy(loss_fn, out_val, y_val)
                    if accuracy is not None:
                        logs["val_accuracy"] = accuracy
                seconds = time.perf_counter() - start
                history._record(epoch, logs, seconds)
                progress.end_epoch(epoch, logs, seconds)
                if early_stopping is not None and early_stopping._on_epoch_end(
                        epoch, logs, self._snapshot):
                    history.stopped_early = True
                    break
            if early_stopping is not None and early_stopping._best_state is not None:
                self._restore(early_stopping._best_state)
                early_stopping._best_state = None
        except TrainingDivergedError:
            raise                   # the last finite state is kept: see _keep_last_finite
        except Exception:
            # bad input found on the way (NaN rows, a loss object's own checks) or a
            # custom layer's error: the model is as it was before fit
            self._undo_fit(undo, opt, early_stopping)
            raise
        finally:
            progress.close()
            self.train(was_training)
        self.history = history
        return history

    def _python_epoch(self, X, y, batches, loss_fn, opt, l1, l2, epoch, progress):
        """One epoch layer by layer; returns the sum of batch loss times batch size.
        A non-finite loss raises _Diverged before that batch's update."""
        total = 0.0
        for b, (lo, hi) in enumerate(batches):
            out = X[lo:hi]
            for layer in self.layers:
                out = layer.forward(out)
            batch_loss = loss_fn(out, y[lo:hi])
            dy = loss_fn.backward()
            for layer in reversed(self.layers):
                dy = layer.backward(dy)
            if l1 or l2:
                batch_loss += self._penalty(l1, l2)
            if not math.isfinite(batch_loss):
                raise _Diverged(f"the loss became {batch_loss} at epoch {epoch + 1}, "
                                f"batch {b + 1}", b)
            opt.step()
            total += batch_loss * (hi - lo)
            progress.batch_done()
        return total

    def _undo_fit(self, undo, opt, early_stopping):
        """Put back the weights, running statistics, optimizer, generator and callback
        as they were before fit."""
        model_state, opt_state, rng_state, stopping_state = undo
        self._restore(model_state)
        if opt_state is not None:
            opt._rollback(opt_state)
        self._rng.bit_generator.state = rng_state
        if early_stopping is not None:
            vars(early_stopping).clear()
            vars(early_stopping).update(stopping_state)

    def _compiled_epoch(self, runner, X, y, order, batches, epoch, progress, check_input):
        """One epoch in the compiled training step; the same sum as _python_epoch.
        check_input: test X's rows as they are gathered (raises NonFiniteInput)."""
        bounds = [lo for lo, _hi in batches] + [batches[-1][1]]
        completed, batch_losses = runner.run_epoch(X, y, bounds, order,
                                                   check_input=check_input)
        if completed < len(batches):
            raise _Diverged(f"the loss became {batch_losses[completed]} at epoch "
                            f"{epoch + 1}, batch {completed + 1}", completed)
        progress.batch_done(len(batches))
        total = 0.0
        for (lo, hi), batch_loss in zip(batches, batch_losses.tolist()):
            total += batch_loss * (hi - lo)
        return total

    def _keep_last_finite(self, diverged, start, opt, batches, run):
        """Leave the model as after the epoch's last update that kept the weights finite.

        Neither path keeps a copy per batch: the epoch's start (weights, running
        statistics, optimizer, generator after the shuffle) is put back and its first
        updates are run again, which gives the same state on both paths. An optimizer
        object of the user's own cannot be put back: then the epoch's start is kept."""
        updates = diverged.updates
        if not np.isfinite(self._flat_params).all():
            updates -= 1                # the last update made them non-finite
        model_state, opt_state, rng_state = start
        self._restore(model_state)
        self._rng.bit_generator.state = rng_state
        if opt_state is None:
            return
        opt._rollback(opt_state)
        if updates > 0:
            run(batches[:updates], _Progress(0, 1, updates))

    # -- save --------------------------------------------------------------------------------
    def save(self, path):
        """Write the model to one .npz file (atomically); read it back with fastnn.load."""
        from fastnn.nn.serialization import save
        save(self, path)


class _Diverged(Exception):
    """A non-finite loss or weights, after ``updates`` of the epoch's updates."""

    def __init__(self, what, updates):
        super().__init__(what)
        self.what, self.updates = what, updates


def _checkpoint(opt):
    """A fastnn optimizer's state, to put back; None for an object of the user's own."""
    return opt._checkpoint() if isinstance(opt, Optimizer) else None


def _accuracy(loss_fn, outputs, targets):
    if isinstance(loss_fn, CrossEntropyLoss):
        labels = targets if targets.ndim == 1 else targets.argmax(axis=1)
        return float(np.mean(outputs.argmax(axis=1) == labels))
    if isinstance(loss_fn, BCEWithLogitsLoss):
        return float(np.mean((outputs > 0) == (targets > 0.5)))
    return None


def _format_logs(logs, seconds):
    parts = [f"{k} {v:.4f}" for k, v in logs.items()]
    return " - ".join(parts + [f"{seconds:.2f} s"])


class _Progress:
    """verbose=1: a tqdm bar per epoch where tqdm is installed; else (and verbose=2) a line."""

    def __init__(self, verbose, epochs, n_batches):
        self.verbose, self.epochs, self.n_batches = int(verbose), epochs, n_batches
        self.tqdm = self.bar = None
        if self.verbose == 1:
            try:
                from tqdm.auto import tqdm
                self.tqdm = tqdm
            except ImportError:
                pass

    def start_epoch(self, epoch):
        if self.tqdm is not None:
            self.bar = self.tqdm(total=self.n_batches, desc=f"epoch {epoch + 1}/{self.epochs}",
                                 unit="batch", leave=True, mininterval=0.2)

    def batch_done(self, count=1):
        if self.bar is not None:
            self.bar.update(count)

    def end_epoch(self, epoch, logs, seconds):
        if self.bar is not None:
            self.bar.set_postfix_str(_format_logs(logs, seconds), refresh=False)
            self.close()
        elif self.verbose:
            width = len(str(self.epochs))
            print(f"epoch {epoch + 1:>{width}}/{self.epochs} - {_format_logs(logs, seconds)}",
                  flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
