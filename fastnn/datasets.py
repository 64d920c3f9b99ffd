"""Data sets that ship inside the package (see fastnn/data/README.md for sources and licences)."""
import gzip
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"

__all__ = ["load_digits"]


def load_digits():
    """The UCI optical-recognition-of-handwritten-digits set, 1,797 8x8 images.

    Returns ``(X, y)``: ``X`` float64 of shape (1797, 64) with pixel values 0-16 in row-major
    image order, ``y`` int64 of shape (1797,) with the digit 0-9. The rows are in the file's
    order (not shuffled). Source: E. Alpaydin, C. Kaynak, UCI Machine Learning Repository,
    CC BY 4.0.
    """
    with gzip.open(DATA_DIR / "digits.csv.gz", "rt", encoding="ascii") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    if table.shape != (1797, 65):
        raise ValueError(f"bundled digits file has shape {table.shape}, expected (1797, 65)")
    X = np.ascontiguousarray(table[:, :64])
    y = table[:, 64].astype(np.int64)
    return X, y
