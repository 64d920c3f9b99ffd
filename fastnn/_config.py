"""Process-wide settings: the number of threads the kernels may use."""
import os
import threading

_lock = threading.Lock()


def _default_threads():
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1


_num_threads = _default_threads()


def set_num_threads(n):
    """Set how many threads fastnn's kernels use.

    This also bounds the BLAS library behind scipy while a fastnn kernel calls it (its
    own setting is put back afterwards); small products run on one BLAS thread."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int,)) and not hasattr(n, "__index__"):
        raise TypeError(f"number of threads must be an integer, got {type(n).__name__}")
    n = int(n)
    if n < 1:
        raise ValueError(f"number of threads must be at least 1, got {n}")
    with _lock:
        _num_threads = n


def get_num_threads():
    """The number of threads fastnn's kernels use (default: OMP_NUM_THREADS, else all cores)."""
    return _num_threads
