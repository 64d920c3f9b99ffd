"""scikit-learn compatible estimators built on fastnn (scikit-learn optional).

``MLPClassifier``, ``MLPRegressor`` and ``Perceptron`` take the constructor parameters and
expose the attributes and methods of scikit-learn's classes of the same names, so that
changing the import is all a user has to do. With scikit-learn installed they are real
scikit-learn estimators (clone, tags, pipelines, grid searches); without it they work
the same through small stand-ins (see ``_base.py``).
"""
from ._mlp import MLPClassifier, MLPRegressor
from ._perceptron import Perceptron

__all__ = ["MLPClassifier", "MLPRegressor", "Perceptron"]
