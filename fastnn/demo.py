"""``python -m fastnn demo``: train an MLP on the bundled handwritten digits, then the same
network on the NumPy reference kernels, and print progress, test accuracy and time.

The network uses every concept of fastnn.nn: Linear layers, BatchNorm1d, ReLU, Dropout,
L2 regularisation, Adam, a validation split with EarlyStopping that restores the best
weights, and save/load.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

import fastnn
from fastnn._validation import int_in_range
from fastnn.datasets import load_digits

__all__ = ["main", "prepare_digits", "build_model", "train_digits"]

LR, BATCH_SIZE, L2, PATIENCE, VALIDATION_SPLIT, MAX_EPOCHS = 1e-3, 16, 1e-5, 20, 0.1, 100
#: the test accuracy the demo must reach (else it exits with status 1)
ACCURACY_BAR = 0.97


def prepare_digits(seed=0, test_fraction=0.25):
    """Bundled digits split into train/test by ``seed`` (stratified by class) and standardised
    with the training set's mean and standard deviation."""
    X, y = load_digits()
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, size=round(len(idx) * test_fraction), replace=False)] = True
    X_train, X_test, y_train, y_test = X[~test], X[test], y[~test], y[test]
    order = rng.permutation(len(y_train))
    X_train, y_train = X_train[order], y_train[order]
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0          # pixels that are always blank in the training set
    return (X_train - mean) / std, (X_test - mean) / std, y_train, y_test


def build_model(seed=0, kernels=None, dtype="float32"):
    return fastnn.Sequential(
        fastnn.Linear(64, 128), fastnn.BatchNorm1d(128), fastnn.ReLU(), fastnn.Dropout(0.1),
        fastnn.Linear(128, 64), fastnn.BatchNorm1d(64), fastnn.ReLU(), fastnn.Dropout(0.1),
        fastnn.Linear(64, 10),
        dtype=dtype, seed=seed, kernels=kernels)


def train_digits(data, *, seed=0, kernels=None, epochs=MAX_EPOCHS, verbose=0,
                 dtype="float32"):
    """Train the demo network; returns (model, history, test accuracy, seconds)."""
    X_train, X_test, y_train, y_test = data
    model = build_model(seed, kernels, dtype)
    stop = fastnn.EarlyStopping(monitor="val_loss", patience=PATIENCE, restore_best_weights=True)
    start = time.perf_counter()
    history = model.fit(X_train, y_train, loss="cross_entropy", optimizer="adam", lr=LR,
                        epochs=epochs, batch_size=BATCH_SIZE, l2=L2,
                        validation_split=VALIDATION_SPLIT, early_stopping=stop, verbose=verbose)
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(model.predict(X_test).argmax(axis=1) == y_test))
    return model, history, accuracy, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m fastnn demo",
        description="Train an MLP (BatchNorm1d, ReLU, Dropout, L2, early stopping) on the "
                    "bundled UCI handwritten digits with fastnn's compiled kernels, then "
                    "with the NumPy reference kernels.")
    parser.add_argument("--seed", type=int_in_range(0), default=0,
                        help="seed of the split and the model")
    parser.add_argument("--epochs", type=int_in_range(1), default=MAX_EPOCHS,
                        help=f"epoch limit (default {MAX_EPOCHS})")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the run with the NumPy reference kernels")
    args = parser.parse_args(argv)

    data = prepare_digits(args.seed)
    X_train, X_test = data[0], data[1]
    print(f"UCI handwritten digits (bundled): {len(X_train)} training images "
          f"({VALIDATION_SPLIT:.0%} of them held out for validation), {len(X_test)} test "
          f"images, 8x8 pixels, 10 classes")
    model = build_model(args.seed)
    print(model)
    print(f"Adam lr {LR:g}, batch {BATCH_SIZE}, L2 {L2:g}, early stopping on val_loss "
          f"(patience {PATIENCE}), {fastnn.get_num_threads()} thread(s)\n")

    print("== fastnn (compiled kernels) ==")
    model, history, accuracy, seconds = train_digits(
        data, seed=args.seed, epochs=args.epochs, verbose=2)
    stop = len(history.epoch)
    best = int(np.argmin(history.history["val_loss"]))
    print(f"{'stopped early' if history.stopped_early else 'ran'} after {stop} epochs; "
          f"restored the weights of epoch {best + 1} (val_loss "
          f"{history.history['val_loss'][best]:.4f})")
    print(f"test accuracy {accuracy:.2%}  training time {seconds:.2f} s "
          f"({seconds / stop * 1000:.1f} ms per epoch)")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "digits-model.npz")
        model.save(path)
        again = fastnn.load(path)
        same = np.array_equal(again.predict(X_test), model.predict(X_test))
        print(f"saved and loaded ({os.path.getsize(path) / 1024:.0f} kB): predictions "
              f"{'bit-identical' if same else 'DIFFER'}")

    if not args.no_reference:
        print("\n== same training with fastnn.reference (NumPy kernels) ==")
        _m, ref_history, ref_accuracy, ref_seconds = train_digits(
            data, seed=args.seed, kernels="reference", epochs=args.epochs)
        ref_stop = len(ref_history.epoch)
        print(f"{ref_stop} epochs; test accuracy {ref_accuracy:.2%}  training time "
              f"{ref_seconds:.2f} s ({ref_seconds / ref_stop * 1000:.1f} ms per epoch)")
        print(f"compiled kernels: {ref_seconds / ref_stop / (seconds / stop):.2f}x the "
              f"reference's speed per epoch")
    if accuracy < ACCURACY_BAR:
        print(f"\ntest accuracy {accuracy:.2%} is under the {ACCURACY_BAR:.0%} this demo "
              "is meant to reach: exit status 1")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
