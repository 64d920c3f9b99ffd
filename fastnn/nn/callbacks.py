"""Training records and early stopping used by ``Sequential.fit``."""
import math
import operator

__all__ = ["History", "EarlyStopping"]


class History:
    """What ``fit`` recorded, one entry per finished epoch.

    ``history`` is a dict of lists: ``"loss"`` (the training objective: mean data loss over
    the epoch's mini-batches in training mode, plus the l1/l2 penalty), and with validation
    ``"val_loss"`` (data loss of the eval-mode model on the validation set, no penalty) and,
    for classification losses, ``"val_accuracy"``. ``epoch`` lists the epoch numbers
    (0-based) and ``times`` the seconds each epoch took, validation included.
    """

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.times = []
        self.stopped_early = False

    def _record(self, epoch, logs, seconds):
        self.epoch.append(epoch)
        self.times.append(seconds)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class EarlyStopping:
    """Stop training when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs in a row ("stop when the error can no longer be reduced").

    ``monitor`` is "val_loss" (default), "loss" or "val_accuracy" (higher is better for an
    accuracy, lower for a loss). With ``restore_best_weights`` the model gets back the
    parameters and batch-norm statistics of its best epoch when training ends, whether it
    stopped early or ran out of epochs. After ``fit``: ``best`` (the best value),
    ``best_epoch``, ``stopped_epoch`` (None when all epochs ran).
    """

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0, restore_best_weights=True):
        if monitor not in ("val_loss", "loss", "val_accuracy"):
            raise ValueError(f'monitor must be "val_loss", "loss" or "val_accuracy", '
                             f"got {monitor!r}")
        try:
            patience = operator.index(patience)     # NumPy integers too, as fit's epochs
        except TypeError:
            raise TypeError(f"patience must be an integer >= 0, got {patience!r}") from None
        if isinstance(patience, bool) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        min_delta = float(min_delta)
        if not (math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.restore_best_weights = bool(restore_best_weights)
        self._reset()

    @property
    def mode(self):
        return "max" if self.monitor.endswith("accuracy") else "min"

    def _reset(self):
        self.best = None
        self.best_epoch = None
        self.stopped_epoch = None
        self.wait = 0
        self._best_state = None

    def _improved(self, value):
        if math.isnan(value):       # as Keras, whose best starts at +-inf: never better
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _on_epoch_end(self, epoch, logs, snapshot):
        """Record the epoch; ``snapshot()`` copies the model state. Returns True to stop."""
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self._best_state = snapshot()
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def __repr__(self):
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, restore_best_weights={self.restore_best_weights})")
