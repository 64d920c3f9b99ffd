"""The bundled digits data set, a real training run on it, and the demo."""
import numpy as np

from fastnn import demo
from fastnn.datasets import load_digits


def test_bundled_digits():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16 and np.array_equal(X, np.round(X))
    counts = np.bincount(y)
    assert len(counts) == 10 and counts.min() >= 170
    # the first image is a zero: a ring of ink around a blank centre
    img = X[0].reshape(8, 8)
    assert y[0] == 0 and img[3:5, 3:5].sum() < img[1:7, 1:7].sum() / 8


def test_split_is_stratified_and_standardised():
    X_train, X_test, y_train, y_test = demo.prepare_digits(seed=0)
    assert len(X_train) + len(X_test) == 1797 and abs(len(X_test) - 450) <= 5
    assert np.all(np.abs(np.bincount(y_test) - np.bincount(y_train) / 3) < 3)
    std = X_train.std(axis=0)
    assert np.allclose(X_train.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(std[std > 0], 1)
    again = demo.prepare_digits(seed=0)
    assert np.array_equal(again[0], X_train) and np.array_equal(again[3], y_test)


def test_mlp_reaches_97_percent_on_digits():
    data = demo.prepare_digits(seed=0)
    model, history, accuracy, _seconds = demo.train_digits(data, seed=0)
    assert accuracy >= 0.97
    epochs = len(history.epoch)
    assert history.stopped_early and epochs < demo.MAX_EPOCHS     # early stopping ended it
    assert model.training          # fit leaves the mode as it found it


def test_demo_main_prints_progress_accuracy_and_time(capsys):
    status = demo.main(["--epochs", "2", "--no-reference"])
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "val_accuracy" in out
    assert "test accuracy" in out and "training time" in out
    assert "bit-identical" in out
    assert status in (0, 1)
