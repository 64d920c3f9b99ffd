"""fastnn.nn: layers, Sequential models, losses, callbacks and save/load (PyTorch-like).

Layers call the kernel module of their model (``fastnn.ops`` unless told otherwise); the
model layer itself has no numerical loops. See ``fastnn.nn.sequential`` for the flat
parameter buffer every model keeps.
"""
from fastnn.nn.callbacks import EarlyStopping, History
from fastnn.nn.layers import BatchNorm1d, Dropout, Linear, Module, ReLU, Sigmoid, Tanh
from fastnn.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from fastnn.nn.parameter import Parameter
from fastnn.nn.sequential import Sequential, TrainingDivergedError
from fastnn.nn.serialization import load

__all__ = [
    "Parameter", "Module", "Linear", "ReLU", "Sigmoid", "Tanh", "Dropout", "BatchNorm1d",
    "Sequential", "EarlyStopping", "History", "Loss", "CrossEntropyLoss", "MSELoss",
    "BCEWithLogitsLoss", "load", "TrainingDivergedError",
]
