"""fastnn: small, exact and fast neural networks for the CPU."""
from fastnn import ops
from fastnn._config import get_num_threads, set_num_threads
from fastnn.ops import one_hot

__version__ = "0.1.0"
from fastnn import nn, optim, datasets
from fastnn.nn import (Parameter, Linear, ReLU, Sigmoid, Tanh, Dropout, BatchNorm1d, Sequential,
                       EarlyStopping, History, CrossEntropyLoss, MSELoss, BCEWithLogitsLoss, load)
from fastnn.estimators import MLPClassifier, MLPRegressor, Perceptron
