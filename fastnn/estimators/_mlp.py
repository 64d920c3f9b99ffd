"""fastnn.MLPClassifier and fastnn.MLPRegressor: scikit-learn's MLPs over fastnn.Sequential.

The estimators are thin: they translate scikit-learn's parameters onto a
``fastnn.Sequential`` (Linear [-> BatchNorm1d] -> activation [-> Dropout] per hidden
layer, then a Linear output layer) and a fastnn optimizer. What scikit-learn specifies per
epoch (its stopping rule on the training loss or the validation score, the sgd
learning-rate schedules, ``loss_curve_``, ``partial_fit``'s single epoch) is driven here,
one epoch at a time with one optimizer object kept across epochs (and across
``partial_fit`` / ``warm_start`` calls). Each epoch runs in fastnn's compiled training
step (one ``fastnn.nn._compiled.EpochRunner`` set up per fit call, see
:class:`_CompiledEpochs`) whenever that can state the objective; otherwise (Poisson loss)
it is one ``Sequential.fit(epochs=1)`` call with the objective as a loss object. Both
paths compute the same numbers (to rounding).

scikit-learn's objective is reproduced exactly, so ``learning_rate_init`` and ``alpha``
mean the same numbers as there:

* per mini-batch, the sample-weighted mean of the loss (log-loss summed over outputs for
  logistic outputs, half the squared error averaged over outputs for regression; the
  log-loss values, not their gradients, from probabilities clipped to [eps, 1 - eps]) plus
  ``0.5 * alpha * sum(W**2) / sum(batch weights)`` (the batch size without weights), with
  gradients ``sum_i w_i (output_i - target_i) / sum(w)`` for the output layer as
  scikit-learn's backprop computes them;
* ``l1`` (fastnn's extra) is Sequential's ``l1 * sum|W|`` term.
"""
import math
import numbers
import warnings

import numpy as np

from .. import ops
from ..nn import (BatchNorm1d, BCEWithLogitsLoss, CrossEntropyLoss, Dropout, Linear, Loss,
                  MSELoss, ReLU, Sequential, Sigmoid, Tanh, TrainingDivergedError)
from ..nn import _compiled
from ..optim import SGD, Adam
from ._base import (ClassifierMixin, FastnnEstimator, NotFittedError, RegressorMixin,
                    available_if, check_random_state_seed, r2_score, warn_convergence)
from ._checks import (
    check_bool_param, check_classification_y, check_feature_names, check_int_param,
    check_n_features, check_random_state_param, check_real_param, check_regression_y,
    check_sample_weight, check_shuffle_split, check_str_option, check_stratified_split,
    check_verbose_param, check_X, compute_class_weight, encode_labels, get_feature_names,
    invalid_parameter, non_finite_error, train_val_split, unique_labels, validate_predict_X,
)
from .._validation import all_finite

#: Train through fastnn's compiled epoch (one ``fastnn.nn._compiled.EpochRunner`` per fit
#: call) whenever it can state the objective; False forces the per-layer path through
#: ``Sequential.fit`` (the tests compare the two).
_USE_COMPILED = True


def _stochastic_solver(estimator):
    """partial_fit's condition: scikit-learn offers it for 'sgd' and 'adam' only, so
    MLPClassifier has no partial_fit under any other solver (an invalid one included).
    MLPRegressor: only 'lbfgs' hides it, and an invalid solver is refused by partial_fit's
    parameter check (scikit-learn's MLPRegressor states the condition without calling it,
    so it never hides partial_fit, and partial_fit under lbfgs runs a whole lbfgs fit;
    fastnn does not copy that slip)."""
    solver = estimator.solver
    if (solver == "lbfgs" if not estimator._classifier
            else not (isinstance(solver, str) and solver in ("sgd", "adam"))):
        raise AttributeError("partial_fit is only available for stochastic optimizers. "
                             f"{solver} is not stochastic.")


_ACTIVATIONS = {"identity": None, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
_LEARNING_RATES = ("constant", "invscaling", "adaptive")


# ----------------------------------------------------------------------------- objective
class _SklearnObjective(Loss):
    """scikit-learn's per-batch MLP objective as a fastnn loss object.

    The targets ``fit`` passes in carry the sample weight as their last column, so the
    weights are shuffled and batched with the rows by ``Sequential.fit`` itself. The
    data term's value and gradient come from fastnn's losses; this class re-weights
    them and adds the L2 value. The L2 *gradient* is added to the weights' ``.grad``
    by :class:`_L2Step` just before the optimizer step (the loss only sees outputs).
    """

    def __init__(self, kind, alpha, weights):
        super().__init__()
        self.kind = kind              # "softmax", "logistic", "identity" or "exp"
        self.alpha = float(alpha)
        self.weights = weights        # the Linear layers' weight Parameters
        self.weight_sum = 0.0         # sum of the last batch's sample weights
        self._ce = CrossEntropyLoss()
        self._bce = BCEWithLogitsLoss()
        self._mse = MSELoss()

    def prepare_targets(self, y, *args, **kwargs):
        return y                      # built and checked by the estimator

    def forward(self, outputs, targets):
        z = outputs
        t, w = targets[:, :-1], targets[:, -1]
        n, k = z.shape
        s = float(w.sum(dtype=np.float64))
        self.weight_sum = s
        if s <= 0.0:                  # a batch of zero-weight rows teaches nothing
            return 0.0, np.zeros_like(z)
        uniform = bool(np.all(w == w[0]))
        # row factor turning a mean over the batch into the weighted mean
        r = (w * (n / s)).astype(z.dtype, copy=False)[:, None]
        if self.kind == "softmax":
            # cross_entropy takes any (n, k) targets and returns the exact gradient of
            # mean_i sum_k t_ik (lse_i - z_ik): scaled rows give the weighted mean
            _, grad = self._ce.forward(z, t if uniform else t * r)
            zz = z.astype(np.float64)
            m = zz.max(axis=1)
            lse = m + np.log(np.exp(zz - m[:, None]).sum(axis=1))
            per = self._clip(lse - (zz * t).sum(axis=1), z.dtype)      # t is one-hot
            loss = float(np.dot(w, per) / s)
        elif self.kind == "logistic":
            # scikit-learn sums the log-loss over outputs; BCEWithLogits averages
            _, grad = self._bce.forward(z, t)
            grad = grad * k if uniform else grad * (k * r)
            zz = z.astype(np.float64)
            with np.errstate(under="ignore"):
                per = np.maximum(zz, 0) - zz * t + np.log1p(np.exp(-np.abs(zz)))
            loss = float(np.dot(w, self._clip(per, z.dtype).sum(axis=1)) / s)
        elif self.kind == "identity":
            # value: half the squared error averaged over rows (weighted) and outputs;
            # gradient: (z - t) per row, as scikit-learn's backprop (not divided by k)
            loss, grad = self._mse.forward(z, t)
            grad = grad * (0.5 * k) if uniform else grad * (0.5 * k * r)
            loss *= 0.5
            if not uniform:
                diff = (z - t).astype(np.float64)
                loss = float(np.dot(w, (diff * diff).mean(axis=1)) / s) * 0.5
        else:  # "exp": half Poisson deviance with a log link, summed over outputs
            zz = z.astype(np.float64)
            p = np.exp(zz)
            tt = t.astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                xlogy = np.where(tt > 0, tt * np.log(np.where(tt > 0, tt, 1.0) / p), 0.0)
            per = (xlogy - tt + p).sum(axis=1)
            loss = float(np.dot(w, per) / s)
            grad = ((p - tt) * (w / s)[:, None]).astype(z.dtype)
        if self.alpha:
            sq = 0.0
            for p in self.weights:    # in float64: a float32 sum of squares overflows early
                w64 = p.data.ravel().astype(np.float64)
                sq += float(np.dot(w64, w64))
            loss += 0.5 * self.alpha * sq / s
        return float(loss), grad

    @staticmethod
    def _clip(neg_log_p, dtype):
        """-log p as scikit-learn's log losses compute it, from p clipped to [eps, 1 - eps]
        (eps of the dtype): for 0/1 targets, -log p clamped to [-log(1 - eps), -log(eps)].
        Only the value: the gradient is the exact loss's, as there."""
        eps = float(np.finfo(dtype).eps)
        return np.clip(neg_log_p, -math.log1p(-eps), -math.log(eps))

    def add_l2_gradient(self):
        """Add the L2 term's gradient, alpha * W / (the last batch's weight sum), to the
        weights' grads (the loss itself only sees the outputs)."""
        s, alpha = self.weight_sum, self.alpha
        if alpha and s > 0.0:
            for p in self.weights:
                p.grad += (alpha / s) * p.data


class _L2Step:
    """The optimizer given to ``Sequential.fit``: adds scikit-learn's L2 gradient
    ``alpha * W / sum(batch weights)`` to each Linear weight's grad, then steps the
    fastnn optimizer (whose state therefore survives across fit calls)."""

    def __init__(self, optimizer, objective):
        self.optimizer = optimizer
        self.objective = objective

    @property
    def lr(self):
        return self.optimizer.lr

    def zero_grad(self):
        self.optimizer.zero_grad()

    def step(self):
        self.objective.add_l2_gradient()
        self.optimizer.step()


def _layer_array(name, i, value, target):
    """value as an array of target's dtype and shape, or a ValueError naming name[i]."""
    value = np.asarray(value, dtype=target.dtype)
    if value.shape != target.shape:
        raise ValueError(f"{name}[{i}] must have shape {target.shape}, got {value.shape}")
    return value


class _LayerArrays(list):
    """coefs_ / intercepts_: a list of views into the network, where ``coefs_[i] = a``
    (as scikit-learn users write) copies a into layer i instead of only replacing the
    list's item."""

    def __init__(self, name, views):
        super().__init__(views)
        self._name = name

    def __setitem__(self, i, value):
        if isinstance(i, slice):
            raise TypeError(f"{self._name}[i] = array sets one layer; assign the whole "
                            f"list to {self._name} to set several")
        target = self[i]
        target[...] = _layer_array(self._name, i, value, target)


class _CompiledEpochs:
    """scikit-learn's objective on fastnn's compiled epoch: the same numbers as
    ``_SklearnObjective`` + ``_L2Step`` through ``Sequential.fit``, with everything set
    up once per fit call and one kernel call per epoch.

    The runner states the objective with its built-in losses: softmax outputs are
    cross-entropy on class indices; logistic outputs BCE-with-logits (a mean over the
    outputs) times ``k`` in value and gradient (scikit-learn sums over outputs); identity
    outputs MSE (a mean over the outputs) times 0.5 in value and ``0.5 * k`` in gradient
    (scikit-learn's gradient is ``z - t`` per row, not divided by ``k``). ``alpha`` is
    the runner's L2 per batch weight ``alpha / 2``, ``l1`` its l1; sample weights make
    each batch's loss the weighted mean. Rows are shuffled with the model's generator,
    exactly as ``Sequential.fit`` draws them.
    """

    def __init__(self, runner, X, y, sample_weight, batches, shuffle, estimator_name):
        self.runner, self.X, self.y, self.sample_weight = runner, X, y, sample_weight
        self.shuffle = shuffle
        self.estimator_name = estimator_name
        # X's rows are tested for NaN and infinity as the first epoch gathers them (the
        # estimator puts its state back when one turns up): no pass over X of its own
        self.unchecked = True
        self.n = X.shape[0]
        self.sizes = [hi - lo for lo, hi in batches]
        self.bounds = np.array([lo for lo, _hi in batches] + [batches[-1][1]], dtype=np.int64)

    @classmethod
    def build(cls, estimator, X, T, sw, batch_size):
        """The compiled epochs for this fit call, or None where the runner cannot state
        the objective (Poisson loss, or a model/optimizer it does not know)."""
        if not _USE_COMPILED:
            return None
        model, opt = estimator._model, estimator._optimizer
        kind, k = estimator._objective_kind(), T.shape[1]
        if kind == "softmax":
            # T is one-hot: its class indices give the same objective, without the targets
            loss_fn, y, scales = CrossEntropyLoss(), T.argmax(axis=1).astype(np.int64), (1.0, 1.0)
        elif kind == "logistic":
            loss_fn, y, scales = BCEWithLogitsLoss(), T, (float(k), float(k))
        elif kind == "identity":
            loss_fn, y, scales = MSELoss(), T, (0.5, 0.5 * k)
        else:
            return None
        plan = _compiled.plan_for(model)
        if plan is None or not _compiled.EpochRunner.supports(model, loss_fn, opt):
            return None
        n = X.shape[0]
        batches = model._batches(n, batch_size)
        runner = _compiled.EpochRunner(
            model, plan, loss_fn, opt, float(estimator.l1), 0.0,
            max(hi - lo for lo, hi in batches), loss_scale=scales[0], grad_scale=scales[1],
            l2_per_weight=0.5 * float(estimator.alpha),
            loss_clip=0.0 if kind == "identity" else float(np.finfo(model.dtype).eps))
        # weights all 1 are the plain mean (and the batch size as the L2 divisor)
        weights = None if np.all(sw == 1) else np.ascontiguousarray(sw, dtype=model.dtype)
        return cls(runner, np.ascontiguousarray(X, dtype=model.dtype),
                   np.ascontiguousarray(y), weights, batches, bool(estimator.shuffle),
                   type(estimator).__name__)

    def run(self, epoch):
        """Train one epoch; returns its loss (the batch losses weighted by batch size,
        as ``Sequential.fit``'s history). A non-finite loss or weight raises
        TrainingDivergedError (the estimator then puts its state back)."""
        model = self.runner.model
        order = model._rng.permutation(self.n) if self.shuffle else None
        try:
            completed, batch_losses = self.runner.run_epoch(
                self.X, self.y, self.bounds, order, self.sample_weight,
                check_input=self.unchecked)
        except _compiled.NonFiniteInput:
            raise non_finite_error(self.X, "X", self.estimator_name) from None
        self.unchecked = False
        what = None
        if completed < len(self.sizes):
            what = (f"the loss became {batch_losses[completed]} at epoch {epoch}, batch "
                    f"{completed + 1}")
        elif not np.isfinite(model._flat_params).all():
            what = f"the weights became NaN or infinite at epoch {epoch}"
        if what is not None:
            raise TrainingDivergedError(
                f"training diverged: {what} (learning rate {self.runner.opt.lr:g}). Try a "
                "smaller learning rate, scaled inputs or gradient-friendly initialisation.")
        total = 0.0
        for size, batch_loss in zip(self.sizes, batch_losses.tolist()):
            total += batch_loss * size
        return total / self.n


# ----------------------------------------------------------------------- the estimators
class _BaseMLP(FastnnEstimator):
    """Shared machinery of MLPClassifier and MLPRegressor (not for direct use)."""

    _classifier = False

    # -- parameters ------------------------------------------------------------------
    def _check_params(self):
        # scikit-learn's _parameter_constraints, in its order (the parameters' names
        # sorted) and with its messages; its InvalidParameterError is a ValueError
        name = type(self).__name__
        real, integer = check_real_param, check_int_param
        check_str_option(self.activation, "activation", name, set(_ACTIVATIONS))
        real(self.alpha, "alpha", name, low=0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            integer(self.batch_size, "batch_size", name, low=1,
                    what="a str among {'auto'} or an int in the range [1, inf)")
        real(self.beta_1, "beta_1", name, low=0.0, high=1.0, high_open=True)
        real(self.beta_2, "beta_2", name, low=0.0, high=1.0, high_open=True)
        check_bool_param(self.early_stopping, "early_stopping", name)
        real(self.epsilon, "epsilon", name, low=0.0, low_open=True)
        hidden = self.hidden_layer_sizes
        if not (_is_array_like(hidden) or (isinstance(hidden, numbers.Integral)
                                           and hidden >= 1)):
            raise invalid_parameter(name, "hidden_layer_sizes", "an array-like or an int in "
                                    "the range [1, inf)", hidden)
        check_str_option(self.learning_rate, "learning_rate", name, set(_LEARNING_RATES))
        real(self.learning_rate_init, "learning_rate_init", name, low=0.0, low_open=True)
        if not self._classifier:
            check_str_option(self.loss, "loss", name, {"squared_error", "poisson"})
        integer(self.max_fun, "max_fun", name, low=1)
        integer(self.max_iter, "max_iter", name, low=1)
        real(self.momentum, "momentum", name, low=0.0, high=1.0)
        n_iter = self.n_iter_no_change
        if not (isinstance(n_iter, numbers.Real) and not isinstance(n_iter, numbers.Integral)
                and n_iter == np.inf):
            integer(n_iter, "n_iter_no_change", name, low=1,
                    what="an int in the range [1, inf) or a float among {inf}")
        check_bool_param(self.nesterovs_momentum, "nesterovs_momentum", name)
        real(self.power_t, "power_t", name, low=0.0)
        check_random_state_param(self.random_state, name)
        check_bool_param(self.shuffle, "shuffle", name)
        check_str_option(self.solver, "solver", name, {"lbfgs", "sgd", "adam"})
        real(self.tol, "tol", name, low=0.0)
        real(self.validation_fraction, "validation_fraction", name, low=0.0, high=1.0,
             high_open=True)
        check_verbose_param(self.verbose, name)
        check_bool_param(self.warm_start, "warm_start", name)
        hidden = _hidden_layer_sizes(hidden)

        # fastnn's own parameters
        if self.solver == "lbfgs" and (self.dropout or self.batch_norm):
            raise ValueError(
                "solver='lbfgs' minimises one full-batch objective, which dropout's random "
                "masks and batch_norm's running statistics would change from call to call; "
                "use solver='adam' or 'sgd' with them.")
        _real(self.dropout, "dropout", 0.0, 1.0, high_open=True)
        _real(self.l1, "l1", 0.0)
        if not isinstance(self.batch_norm, (bool, np.bool_)):
            raise ValueError(f"batch_norm must be a bool, got {self.batch_norm!r}.")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}.") from None
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}.")
        return hidden, dtype

    # -- model -----------------------------------------------------------------------
    def _build_model(self, hidden, n_in, n_out, dtype, rng):
        layers = []
        widths = [n_in] + hidden
        act = _ACTIVATIONS[self.activation]
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers.append(Linear(fan_in, fan_out, bias=True))
            if self.batch_norm:
                layers.append(BatchNorm1d(fan_out))
            if act is not None:
                layers.append(act())
            if self.dropout:
                layers.append(Dropout(self.dropout))
        layers.append(Linear(widths[-1], n_out, bias=True))
        model = Sequential(*layers, dtype=dtype, seed=int(rng.integers(0, 2**62)))
        # scikit-learn's initialisation (Glorot et al.): weights and biases uniform in
        # +-sqrt(factor / (fan_in + fan_out)), factor 2 for logistic units, else 6
        factor = 2.0 if self.activation == "logistic" else 6.0
        for layer in model:
            if isinstance(layer, Linear):
                bound = math.sqrt(factor / (layer.in_features + layer.out_features))
                layer.weight.data[...] = rng.uniform(-bound, bound, layer.weight.shape)
                layer.bias.data[...] = rng.uniform(-bound, bound, layer.bias.shape)
        return model

    def _make_optimizer(self, model):
        params = model.parameters()
        if self.solver == "sgd":
            momentum = float(self.momentum)
            return SGD(params, lr=float(self.learning_rate_init), momentum=momentum,
                       nesterov=bool(self.nesterovs_momentum) and momentum > 0)
        adam = Adam(params, lr=float(self.learning_rate_init),
                    betas=(float(self.beta_1), float(self.beta_2)), eps=float(self.epsilon))
        adam._eps_on_raw_moment = True           # scikit-learn's update, not PyTorch's
        return adam

    @property
    def _linears(self):
        return [layer for layer in self._model if isinstance(layer, Linear)]

    @property
    def coefs_(self):
        """Weight matrices, element i of shape (units in layer i, units in layer i + 1).
        Views into the model: writing into them changes predictions."""
        if "_model" not in self.__dict__:
            raise AttributeError("coefs_ is set by fit")
        return _LayerArrays("coefs_", [layer.weight.data for layer in self._linears])

    @coefs_.setter
    def coefs_(self, arrays):
        self._assign_layer_arrays("coefs_", "weight", arrays)

    @property
    def intercepts_(self):
        """Bias vectors, element i of shape (units in layer i + 1,)."""
        if "_model" not in self.__dict__:
            raise AttributeError("intercepts_ is set by fit")
        return _LayerArrays("intercepts_", [layer.bias.data for layer in self._linears])

    @intercepts_.setter
    def intercepts_(self, arrays):
        self._assign_layer_arrays("intercepts_", "bias", arrays)

    def _assign_layer_arrays(self, name, which, arrays):
        """``est.coefs_ = [...]``, as scikit-learn users set weights: the values are
        copied into the network, in its dtype, once every array has the right shape."""
        if "_model" not in self.__dict__:
            raise AttributeError(f"{name} can be assigned once fit has built the network")
        targets = [getattr(layer, which).data for layer in self._linears]
        arrays = list(arrays)
        if len(arrays) != len(targets):
            raise ValueError(f"{name} needs {len(targets)} arrays, one per layer, got "
                             f"{len(arrays)}")
        values = [_layer_array(name, i, a, t) for i, (a, t) in enumerate(zip(arrays, targets))]
        for v, t in zip(values, targets):
            t[...] = v

    def _mutable_arrays(self):
        if "_model" not in self.__dict__:
            return []
        arrays = [a for p in self._model.parameters() for a in (p.data, p.grad)]
        for layer in self._model:
            arrays.extend(layer.buffers().values())
        return arrays          # the optimizer's state: Optimizer._checkpoint, below

    def _snapshot(self):
        attrs, arrays = super()._snapshot()
        opt = self.__dict__.get("_optimizer")
        opt_attrs = None if opt is None else opt._checkpoint()
        # the model's generator (shuffling, dropout) must not advance either
        rng = getattr(self.__dict__.get("_model"), "_rng", None)
        rng_state = None if rng is None else rng.bit_generator.state
        return attrs, arrays, opt, opt_attrs, rng, rng_state

    def _restore(self, snapshot):
        attrs, arrays, opt, opt_attrs, rng, rng_state = snapshot
        super()._restore((attrs, arrays))
        if opt is not None:
            opt._rollback(opt_attrs)
        if rng is not None:
            rng.bit_generator.state = rng_state

    # -- pickling: the optimizer's array views must be tied to the unpickled model ----
    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        opt = state.pop("_optimizer", None)
        if opt is not None:
            state["_optimizer_state"] = {k: v for k, v in opt.__getstate__().items()
                                         if k not in ("params", "_groups", "is_flat")}
        return state

    def __setstate__(self, state):
        state = dict(state)
        opt_state = state.pop("_optimizer_state", None)
        if hasattr(super(), "__setstate__"):
            super().__setstate__(state)
        else:
            self.__dict__.update(state)
        if opt_state is not None and "_model" in self.__dict__:
            opt = self._make_optimizer(self._model)
            vars(opt).update(opt_state)
            self._optimizer = opt

    # -- fit ---------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental, classes=None):
        hidden, dtype = self._check_params()
        fitted = "_model" in self.__dict__
        first_pass = not fitted or (not self.warm_start and not incremental)
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if incremental and isinstance(getattr(self, "class_weight", None), str):
            raise ValueError(
                "class_weight='balanced' is not supported by partial_fit (each call sees "
                "only part of y): compute the weights once, n_samples / (n_classes * "
                "count), and pass them as a dict.")
        name = type(self).__name__
        if not first_pass:
            check_feature_names(self, X)
        names = get_feature_names(X) if first_pass else None
        X = check_X(X, dtype, estimator_name=name, finite=False)     # see _epoch_runner
        n, d = X.shape
        if not first_pass:
            check_n_features(self, d)
            if dtype != self._model.dtype:
                raise ValueError(
                    f"dtype changed from {self._model.dtype} to {dtype} since the model was "
                    "fitted; refit from scratch (warm_start=False) to change it.")
        T, label_info, row_weight = self._targets(y, n, dtype, first_pass, incremental, classes)
        sw = check_sample_weight(sample_weight, n, np.float64)
        sw = sw * row_weight
        if self.loss_name() == "poisson" and np.any(T < 0):
            raise ValueError("loss='poisson' requires non-negative targets y.")
        n_out = T.shape[1]
        if not first_pass and n_out != self.n_outputs_:
            raise ValueError(
                f"y has {n_out} outputs but the model was fitted with {self.n_outputs_}.")

        # early-stopping split, as scikit-learn: stratified for single-output classifiers
        seed = check_random_state_seed(self.random_state)
        rng = np.random.default_rng(seed)
        X_val = y_val = sw_val = None
        X_tr, T_tr, sw_tr = X, T, sw
        lbfgs = self.solver == "lbfgs"
        if self.early_stopping and not lbfgs:       # scikit-learn's lbfgs ignores it
            # scikit-learn's train_test_split(stratify=y) stratifies on its binarized y
            # when that is one column (n_outputs_ == 1: a classifier with one or two
            # classes), not for several classes or multilabel y, nor for regressors; its
            # labels are then the strings 'False'/'True' of its (n, 1) boolean y
            strat = None
            if self._classifier and n_out == 1:
                strat = T[:, 0] > 0.5
                check_stratified_split(strat[:, None], self.validation_fraction)
            else:
                check_shuffle_split(n, self.validation_fraction)
            tr, val = train_val_split(n, self.validation_fraction, int(rng.integers(2**62)),
                                      stratify=strat)
            if len(val) < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or "
                    "the size of your dataset.")
            X_tr, T_tr, sw_tr = X[tr], T[tr], sw[tr]
            X_val, sw_val = X[val], (None if sample_weight is None else sw[val])
            if not all_finite(X_val):
                raise non_finite_error(X_val, "X", name)
            y_val = label_info["y"][val] if self._classifier else T[val]
        if not np.any(sw_tr > 0):
            raise ValueError("Sample weights must contain at least one non-zero number "
                             "in the training rows.")
        n_train = len(X_tr)
        if self.batch_size == "auto":
            batch_size = min(200, n_train)
        else:
            if self.batch_size > n_train:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It "
                              "is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_train))
        if self.batch_norm and n_train < 2:
            raise ValueError("batch_norm=True cannot train on 1 sample: the batch variance "
                             "of one row is undefined; give at least 2 training rows.")
        if self.batch_norm and batch_size == 1:
            raise ValueError("batch_norm=True cannot train with batch_size=1: the batch "
                             "variance of one row is undefined; use batch_size >= 2.")

        # ---- from here on self changes; a failure puts everything back
        snapshot = self._snapshot()
        try:
            if first_pass:
                self._initialize(hidden, d, n_out, dtype, rng, label_info)
            if lbfgs:
                self._fit_lbfgs(X_tr, T_tr, sw_tr)
            else:
                if not incremental or "_optimizer" not in self.__dict__:
                    self._optimizer = self._make_optimizer(self._model)
                self._epochs(X_tr, T_tr, sw_tr, X_val, y_val, sw_val, batch_size,
                             incremental)
            if not all(np.isfinite(p.data).all() for p in self._model.parameters()):
                raise ValueError(
                    "Solver produced non-finite parameter weights. The input data may "
                    "contain large values and need to be preprocessed.")
        except BaseException:
            self._restore(snapshot)
            raise
        if first_pass:
            self.n_features_in_ = d
            if names is not None:
                self.feature_names_in_ = names
            elif "feature_names_in_" in self.__dict__:
                del self.feature_names_in_
        return self

    def _initialize(self, hidden, d, n_out, dtype, rng, label_info):
        for attr in ("_optimizer", "feature_names_in_"):
            self.__dict__.pop(attr, None)
        self._model = self._build_model(hidden, d, n_out, dtype, rng)
        self._set_label_info(label_info)
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_out
        self.n_layers_ = len(hidden) + 2
        self.out_activation_ = self._out_activation(label_info)
        for attr in ("loss_curve_", "best_loss_", "validation_scores_",
                     "best_validation_score_"):
            self.__dict__.pop(attr, None)
        if self.solver == "lbfgs":
            return            # scikit-learn keeps no curve or stopping state for lbfgs
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _objective_kind(self):
        return {"softmax": "softmax", "logistic": "logistic", "identity": "identity",
                "exp": "exp"}[self.out_activation_]

    def _epoch_runner(self, X, T, sw, batch_size):
        """A function running one epoch (its argument: the epoch number, from 1) and
        returning its loss: the compiled epoch where it can state the objective, else
        ``Sequential.fit(epochs=1)`` with the objective as a loss object."""
        compiled = _CompiledEpochs.build(self, X, T, sw, batch_size)
        if compiled is not None:
            return compiled.run        # tests X's rows in its first epoch
        if not all_finite(X):
            raise non_finite_error(X, "X", type(self).__name__)
        model = self._model
        objective = _SklearnObjective(self._objective_kind(), self.alpha,
                                      [layer.weight for layer in self._linears])
        step = _L2Step(self._optimizer, objective)
        targets = np.empty((len(X), T.shape[1] + 1), dtype=model.dtype)
        targets[:, :-1] = T
        targets[:, -1] = sw
        shuffle, l1 = bool(self.shuffle), float(self.l1)

        def run(epoch):
            history = model.fit(X, targets, loss=objective, optimizer=step, epochs=1,
                                batch_size=batch_size, shuffle=shuffle, l1=l1, verbose=0)
            return float(history.history["loss"][0])
        return run

    def _fit_lbfgs(self, X, T, sw):
        """scikit-learn's lbfgs solver: scipy's L-BFGS-B over all the parameters, from
        the network's current ones, on the full-batch objective (the weighted mean loss
        plus 0.5 * alpha * sum(W**2) / sum(sample_weight)), with max_iter, max_fun and
        tol as the iteration, evaluation and gradient limits. The optimizer works in
        float64; a float32 network computes each evaluation in float32."""
        from scipy.optimize import minimize
        name = type(self).__name__
        if not all_finite(X):
            raise non_finite_error(X, "X", name)
        model = self._model
        objective = _SklearnObjective(self._objective_kind(), self.alpha,
                                      [layer.weight for layer in self._linears])
        targets = np.empty((len(X), T.shape[1] + 1), dtype=model.dtype)
        targets[:, :-1] = T
        targets[:, -1] = sw
        X = np.ascontiguousarray(X, dtype=model.dtype)
        params, grads, l1 = model._flat_params, model._flat_grads, float(self.l1)

        def loss_and_gradient(x):
            params[...] = x
            out = X
            for layer in model.layers:
                out = layer.forward(out)
            loss, dy = objective.forward(out, targets)
            for layer in reversed(model.layers):
                dy = layer.backward(dy)
            objective.add_l2_gradient()
            if l1:
                loss += model._penalty(l1, 0.0)
            return loss, grads.astype(np.float64)

        result = minimize(loss_and_gradient, params.astype(np.float64), method="L-BFGS-B",
                          jac=True, options={"maxfun": int(self.max_fun),
                                             "maxiter": int(self.max_iter),
                                             "gtol": float(self.tol)})
        params[...] = result.x
        self.n_iter_ = min(int(result.nit), int(self.max_iter))
        self.loss_ = float(result.fun)
        if result.status != 0:
            message = result.message
            if isinstance(message, bytes):
                message = message.decode("latin1")
            advice = ""
            if result.nit >= self.max_iter:       # as scikit-learn: only when it applies
                advice = ("\nIncrease the number of iterations to improve the convergence "
                          f"(max_iter={self.max_iter}).")
            warn_convergence(
                f"lbfgs failed to converge after {result.nit} iteration(s) "
                f"(status={result.status}):\n{message}\n{advice}"
                "\nYou might also want to scale the data.")

    def _epochs(self, X, T, sw, X_val, y_val, sw_val, batch_size, incremental):
        """scikit-learn's epoch loop, one epoch at a time through ``_epoch_runner``."""
        run_epoch = self._epoch_runner(X, T, sw, batch_size)
        max_iter = 1 if incremental else self.max_iter
        early = bool(self.early_stopping)
        if early:
            best_state = self._copy_state()
        self.n_iter_ = 0
        for _ in range(max_iter):
            self.loss_ = run_epoch(self.n_iter_ + 1)
            self.n_iter_ += 1
            self.t_ += len(X)
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            if early:
                score = self._validation_score(X_val, y_val, sw_val)
                self.validation_scores_.append(score)
                if self.verbose:
                    print("Validation score: %f" % score)
                if score < self.best_validation_score_ + self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best_state = self._copy_state(best_state)
            else:
                if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if self.loss_curve_[-1] < self.best_loss_:
                    self.best_loss_ = self.loss_curve_[-1]
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                self._set_sgd_lr(float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t)
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if early else "Training loss"
                msg = (f"{what} did not {'improve' if early else 'improve'} more than "
                       f"tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs.")
                if self.solver == "sgd" and self.learning_rate == "adaptive" \
                        and self._optimizer.lr > 1e-6:
                    self._set_sgd_lr(self._optimizer.lr / 5.0)
                    if self.verbose:
                        print(msg + " Setting learning rate to %f" % self._optimizer.lr)
                    self._no_improvement_count = 0
                else:
                    if self.verbose:
                        print(msg + " Stopping.")
                    break
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warn_convergence(
                    "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                    "optimization hasn't converged yet." % self.max_iter)
        if early:
            self._put_state(best_state)

    def _set_sgd_lr(self, lr):
        """Change SGD's learning rate as scikit-learn does. Its velocity holds steps (v =
        momentum * v - lr * g), PyTorch's momentum buffer, which fastnn's SGD keeps, holds
        gradients (b = momentum * b + g, step -lr * b): the same while lr is constant. So
        that the next step carries scikit-learn's velocity -old_lr * b, b is scaled by
        old_lr / lr."""
        opt = self._optimizer
        if opt.momentum and lr != opt.lr:
            for buf in opt.__dict__.get("_momentum_buffer", {}).values():
                buf *= opt.lr / lr
        opt.lr = lr

    def _copy_state(self, into=None):
        """The model's parameters and running statistics (its two flat buffers), copied
        into ``into`` (an earlier copy) when given, else into new arrays."""
        model = self._model
        if into is None:
            return model._flat_params.copy(), model._flat_buffers.copy()
        np.copyto(into[0], model._flat_params)
        np.copyto(into[1], model._flat_buffers)
        return into

    def _put_state(self, state):
        np.copyto(self._model._flat_params, state[0])
        np.copyto(self._model._flat_buffers, state[1])

    # -- predict -----------------------------------------------------------------------
    def _forward(self, X):
        """Output-layer activations for X validated by ``check_X`` (finite, C-contiguous,
        the model's dtype and width), in the model's dtype."""
        z = self._model._predict(X, None)
        act = self.out_activation_
        if act == "softmax":
            return ops.softmax(z)
        if act == "logistic":
            return ops.sigmoid(z)
        if act == "exp":
            with np.errstate(over="ignore"):
                return np.exp(z)
        return z

    def _validated(self, X):
        return validate_predict_X(self, X, self._model.dtype if "_model" in self.__dict__
                                  else np.float32)

    def __sklearn_is_fitted__(self):
        return "_model" in self.__dict__ and hasattr(self, "n_features_in_")

    def _check_is_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator.")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier, a drop-in for ``sklearn.neural_network.MLPClassifier``.

    Same constructor parameters, fitted attributes and methods as scikit-learn's class;
    it trains a ``fastnn.Sequential`` with fastnn's compiled kernels. The log-loss, the
    ``alpha`` L2 term, the Glorot initialisation, ``batch_size='auto'`` (min(200, n)),
    the sgd learning-rate schedules (constant, invscaling, adaptive), momentum and
    Nesterov momentum, early stopping on a validation split (stratified for one or two
    classes, as scikit-learn's, which raises the same errors where it cannot split), ``warm_start``
    and ``partial_fit`` (which keeps the optimizer's state between calls) follow
    scikit-learn. Two classes use one logistic output, several a softmax, a 2-D 0/1
    label matrix (multilabel) one logistic output per label.

    ``solver='lbfgs'`` is scikit-learn's: scipy's L-BFGS-B on the full-batch objective
    (``max_iter`` iterations, ``max_fun`` evaluations, ``tol`` on the gradient), without
    ``partial_fit``, ``loss_curve_`` or early stopping; not with ``dropout`` or
    ``batch_norm``.

    Beyond scikit-learn
    -------------------
    dropout : float in [0, 1), default=0.0
        Dropout probability after each hidden layer's activation (training only).
    batch_norm : bool, default=False
        Batch normalisation after each hidden Linear layer (before the activation).
        ``coefs_``/``intercepts_`` hold the Linear layers only.
    l1 : float >= 0, default=0.0
        Adds ``l1 * sum|W|`` over all weight matrices to each mini-batch's loss
        (``alpha`` stays scikit-learn's L2 term).
    class_weight : None, 'balanced' or dict, default=None
        Per-class weights, multiplied into ``sample_weight`` ('balanced':
        ``n_samples / (n_classes * count)``). Not available for multilabel y.
    dtype : {'float32', 'float64'}, default='float32'
        Dtype of the network; predictions and probabilities come out in it.

    ``sample_weight`` weights each row's loss (a weighted mean per mini-batch, as
    scikit-learn); batch-norm statistics and dropout masks stay per row, so with those
    extras a weight of 3 is not the same as three copies of a row.

    Small differences from scikit-learn: random numbers (initialisation, shuffling,
    the validation split) come from fastnn's seeded generators, so weights are not
    bit-identical to scikit-learn's for the same ``random_state``; sparse X is
    densified.

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_,
    t_, coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_,
    n_outputs_, out_activation_ : as in scikit-learn.
    """

    _classifier = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, batch_norm=False, l1=0.0, class_weight=None, dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.l1 = l1
        self.class_weight = class_weight
        self.dtype = dtype

    @staticmethod
    def loss_name():
        return "log_loss"

    def _targets(self, y, n, dtype, first_pass, incremental, classes):
        """(targets (n, n_outputs), label info, per-row class weights) for y."""
        y, kind = check_classification_y(y, n, allow_multilabel=True)
        if first_pass and incremental and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if kind == "multilabel-indicator":
            k = y.shape[1]
            # scikit-learn's label matrix classes are its column indices
            cls = np.arange(k)
            if first_pass and incremental:
                given = unique_labels(np.asarray(classes))
                if not np.all(np.isin(cls, given)):
                    raise ValueError(f"`y` has classes not in `self.classes_`. "
                                     f"`self.classes_` has {given}. 'y' has {cls}.")
                cls = given
            elif not first_pass:
                cls = self.classes_
                if incremental:
                    _check_same_classes(classes, cls)
            if not first_pass and (self._label_info["kind"] != kind or self.n_outputs_ != k):
                raise ValueError("y is a label-indicator matrix but the model was fitted on "
                                 "labels of another kind or width.")
            if self.class_weight is not None:
                raise ValueError("class_weight is not supported for multilabel y.")
            info = {"kind": kind, "classes": cls, "y": y.astype(np.int64),
                    "y_idx": None}
            return np.ascontiguousarray(y, dtype=dtype), info, np.ones(n)
        # one label per row
        if first_pass:
            if incremental:
                cls = unique_labels(np.asarray(classes))
            else:
                cls = unique_labels(y)
        else:
            cls = self.classes_
            if incremental:
                _check_same_classes(classes, cls)
            seen = unique_labels(y)
            if self.warm_start and not incremental:
                if set(seen.tolist()) != set(cls.tolist()):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {cls}, `y` has {seen}")
        if not first_pass or incremental:
            try:
                y_idx = encode_labels(y, cls)
            except ValueError:
                unseen = np.setdiff1d(unique_labels(y), cls)
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {cls}. "
                    f"'y' has {unique_labels(y)}; unseen: {unseen}.") from None
        else:
            y_idx = encode_labels(y, cls)
        k = len(cls)
        if k <= 2:
            T = (y_idx == 1).astype(dtype)[:, None]
            kind = "binary"
        else:
            T = np.zeros((n, k), dtype=dtype)
            T[np.arange(n), y_idx] = 1
            kind = "multiclass"
        cw = compute_class_weight(self.class_weight, cls, y_idx)
        info = {"kind": kind, "classes": cls, "y": y, "y_idx": y_idx}
        return T, info, cw[y_idx]

    def _set_label_info(self, info):
        self.classes_ = info["classes"]
        self._label_info = {"kind": info["kind"]}

    @staticmethod
    def _out_activation(info):
        return "softmax" if info["kind"] == "multiclass" else "logistic"

    def _decode(self, out):
        kind = self._label_info["kind"]
        if kind == "multilabel-indicator":
            return (out > 0.5).astype(np.int64)
        if kind == "multiclass":
            return self.classes_[np.argmax(out, axis=1)]
        if len(self.classes_) == 1:
            return np.repeat(self.classes_, out.shape[0])
        return self.classes_[(out[:, 0] > 0.5).astype(np.intp)]

    def _validation_score(self, X, y, sample_weight):
        out = self._forward(X)
        if not np.isfinite(out).all():
            return np.nan
        pred = self._decode(out)
        if pred.ndim == 2:
            correct = np.all(pred == y, axis=1)
        else:
            correct = pred == y
        return float(np.average(correct, weights=sample_weight))

    @available_if(_stochastic_solver)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing the current optimizer state.

        ``classes`` (every label that will ever be seen) is required on the first call;
        later calls may only use those labels (ValueError otherwise).
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict(self, X):
        """Predicted labels (from ``classes_``), or a 0/1 matrix for multilabel y."""
        return self._decode(self._forward(self._validated(X)))

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_``
        order; two columns for a binary problem. Rows sum to 1 (except multilabel)."""
        out = self._forward(self._validated(X))
        if self._label_info["kind"] in ("multiclass", "multilabel-indicator"):
            return out
        if len(self.classes_) == 1:
            return np.ones((out.shape[0], 1), dtype=out.dtype)
        p = out[:, 0]
        return np.stack([1 - p, p], axis=1)

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor, a drop-in for ``sklearn.neural_network.MLPRegressor``.

    Same constructor parameters, fitted attributes and methods as scikit-learn's class
    (loss 'squared_error' with an identity output, or 'poisson' with an exponential
    output); trains a ``fastnn.Sequential``. See :class:`MLPClassifier` for the shared
    behaviour, the extras (``dropout``, ``batch_norm``, ``l1``, ``dtype``) and the small
    differences from scikit-learn.
    Predictions come out in ``dtype`` (float32 by default).
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, batch_norm=False, l1=0.0, dtype="float32"):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.l1 = l1
        self.dtype = dtype

    def loss_name(self):
        return self.loss

    def _targets(self, y, n, dtype, first_pass, incremental, classes):
        T = check_regression_y(y, n, dtype)
        if T.ndim == 1:
            T = T[:, None]
        return np.ascontiguousarray(T), {"kind": "continuous"}, np.ones(n)

    def _set_label_info(self, info):
        pass

    def _out_activation(self, info):
        return "exp" if self.loss == "poisson" else "identity"

    def _validation_score(self, X, y, sample_weight):
        out = self._forward(X)
        if not np.isfinite(out).all():
            return np.nan
        return r2_score(y, out, sample_weight=sample_weight)

    @available_if(_stochastic_solver)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing the current optimizer state."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predictions, shape (n_samples,) for one output, else (n_samples, n_outputs)."""
        out = self._forward(self._validated(X))
        return out[:, 0].copy() if out.shape[1] == 1 else out


def _check_same_classes(classes, fitted):
    """partial_fit after the first call: classes=, when given, must be the fitted ones."""
    if classes is not None and not np.array_equal(unique_labels(np.asarray(classes)), fitted):
        raise ValueError(f"`classes={np.asarray(classes)!r}` is not the same as on last call "
                         f"to partial_fit, was: {fitted!r}")


def _real(value, name, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}.")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}.")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}.")


class _HiddenLayerSizesError(ValueError, TypeError):
    """hidden_layer_sizes holding something other than ints: scikit-learn fails there
    with a TypeError (from NumPy), fastnn's parameter errors are ValueErrors; both."""


def _is_array_like(value):
    """scikit-learn's "array-like" constraint: has a length, a shape or __array__, is
    not a NumPy scalar or str, and is not a sparse matrix."""
    if hasattr(value, "tocsr") and hasattr(value, "nnz"):      # scipy.sparse
        return False
    return ((hasattr(value, "__len__") or hasattr(value, "shape")
             or hasattr(value, "__array__")) and not np.isscalar(value))


def _hidden_layer_sizes(value):
    """hidden_layer_sizes as a list of ints, as scikit-learn's _fit reads it: an int is
    one layer; sizes <= 0 are a ValueError; sizes that are not ints (floats, bools,
    strings, None, nested lists) cannot build a layer there (a TypeError)."""
    hidden = value if hasattr(value, "__iter__") else [value]
    try:
        hidden = list(hidden)
        nonpositive = np.any(np.array(hidden) <= 0)
    except TypeError as exc:
        raise _HiddenLayerSizesError(
            f"hidden_layer_sizes must hold ints, got {value!r} ({exc}).") from None
    if nonpositive:
        raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
    for h in hidden:
        if isinstance(h, (bool, np.bool_)) or not isinstance(h, numbers.Integral):
            raise _HiddenLayerSizesError(f"hidden_layer_sizes must hold ints, got {hidden!r}.")
    return [int(h) for h in hidden]
