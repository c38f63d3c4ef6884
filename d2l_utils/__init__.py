"""Helpers for the batch normalization chapter of 动手学深度学习 (MXNet edition).

Names follow the course's ``d2lzh`` package (``load_data_fashion_mnist``, ``try_gpu``,
``evaluate_accuracy``, ``train_ch5``, ...), so every call maps to the book.
"""
from ._versions import check_environment

check_environment()   # before mxnet is imported: a clear message instead of np.bool's traceback

from .data import ArrayDataIter, get_fashion_mnist_labels, load_data_fashion_mnist  # noqa: E402
from .fashion_mnist_files import (CorruptFileError, DataUnavailableError,  # noqa: E402
                                  ENV_VAR as FASHION_MNIST_ENV_VAR)

__version__ = '0.1.0'
