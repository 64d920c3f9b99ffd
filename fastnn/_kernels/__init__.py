"""Compiled kernels: Cython over typed memoryviews, no knowledge of models."""
