"""fastnn: small, exact and fast neural networks for the CPU."""
from fastnn import ops
from fastnn._config import get_num_threads, set_num_threads
from fastnn.ops import one_hot

__version__ = "0.1.0"
