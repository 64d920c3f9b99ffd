"""Process-wide settings: the number of threads the kernels may use."""
import os
import threading

_lock = threading.Lock()

#: far above any machine's cores; the kernels take the count as a C int
MAX_THREADS = 1024


def usable_cores():
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _default_threads():
    """OMP_NUM_THREADS (its first entry) when it is a usable count, else the usable cores."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_THREADS:
        return int(value)
    return min(usable_cores(), MAX_THREADS)


_num_threads = _default_threads()


def set_num_threads(n):
    """Set how many threads fastnn's kernels use.

    This also bounds the BLAS library behind scipy while a fastnn kernel calls it (its
    own setting is put back afterwards); small products run on one BLAS thread."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int,)) and not hasattr(n, "__index__"):
        raise TypeError(f"number of threads must be an integer, got {type(n).__name__}")
    n = int(n)
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"number of threads must be between 1 and {MAX_THREADS}, got {n}")
    with _lock:
        _num_threads = n


def get_num_threads():
    """The number of threads fastnn's kernels use (default: OMP_NUM_THREADS, else the cores
    this process may run on)."""
    return _num_threads
