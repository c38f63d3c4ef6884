"""Fail fast, with a way out, on a Python or numpy that MXNet 1.9.1 cannot import under.

MXNet 1.9.1 is the last MXNet release. It uses ``np.bool``, removed in numpy 1.24, and it
publishes no wheels for Python 3.12+. Without this check a learner sees a deep
``AttributeError: module 'numpy' has no attribute 'bool'`` traceback from inside MXNet.
This module must not import mxnet (that import is what fails).
"""
import os
import sys
import warnings
from importlib import metadata

__all__ = ['UnsupportedEnvironmentError', 'check_environment', 'import_mxnet']

SUPPORTED_PYTHON = (3, 11)     # newest Python with an mxnet==1.9.1 wheel on PyPI
MAX_NUMPY = (1, 24)            # exclusive: numpy 1.24 removed np.bool

FIX = ("A working set: Python 3.11 with numpy==1.23.5 and mxnet==1.9.1, for example\n"
       "    python3.11 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt\n"
       "(see README.md, 'Install').")


class UnsupportedEnvironmentError(ImportError):
    """Raised at import time when Python or numpy is too new for MXNet 1.9.1."""


def _version_tuple(text):
    parts = []
    for piece in text.split('.')[:2]:
        digits = ''.join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_environment(python_version=None, numpy_version=None):
    """Raise UnsupportedEnvironmentError if MXNet 1.9.1 cannot work here.

    python_version: a (major, minor) tuple, default the running interpreter.
    numpy_version: a version string, default the installed numpy's ('' if none).
    """
    py = tuple(python_version or sys.version_info[:2])
    if numpy_version is None:
        try:
            numpy_version = metadata.version('numpy')
        except metadata.PackageNotFoundError:
            numpy_version = ''
    problems = []
    if py > SUPPORTED_PYTHON:
        problems.append('Python %d.%d is too new: mxnet 1.9.1 has wheels up to Python 3.11.' % py)
    if numpy_version and _version_tuple(numpy_version) >= MAX_NUMPY:
        problems.append('numpy %s is too new: mxnet 1.9.1 needs numpy<1.24 (it uses np.bool, '
                        'which numpy 1.24 removed).' % numpy_version)
    variables = variable_problems(os.environ)
    if variables and not problems:
        raise UnsupportedEnvironmentError(
            'd2l_utils cannot start with these environment variables:\n  - '
            + '\n  - '.join(variables))
    problems.extend(variables)
    if problems:
        raise UnsupportedEnvironmentError(
            f'd2l_utils cannot run in this environment ({sys.executable}):\n  - '
            + '\n  - '.join(problems) + '\n' + FIX)


def variable_problems(environ):
    """Environment variables that would make ``import mxnet`` or ``import d2l_utils`` fail
    with an unhelpful message; one line each, with the fix."""
    problems = []
    threads = environ.get('OMP_NUM_THREADS')
    if threads is not None and not (threads.strip().isdigit() and int(threads) > 0):
        # MXNet parses it as an integer in C++ and aborts the whole process (SIGABRT) otherwise
        problems.append('OMP_NUM_THREADS=%r is not a positive whole number: MXNet would abort '
                        'the process while importing. Set it to one, e.g. OMP_NUM_THREADS=2, '
                        'or unset it.' % threads)
    backend = environ.get('MPLBACKEND')
    if backend:
        try:
            from matplotlib import rcsetup   # does not import pyplot or select the backend
            rcsetup.validate_backend(backend)
        except ImportError:
            pass   # no matplotlib: the plotting helpers say so when used
        except ValueError:
            problems.append('MPLBACKEND=%r is not a matplotlib backend: every plot (and '
                            'importing d2l_utils) would fail. Unset it, or use e.g. '
                            'MPLBACKEND=Agg (no window) or module://matplotlib_inline.'
                            'backend_inline (Jupyter).' % backend)
    return problems


def import_mxnet():
    """Import mxnet with its own DeprecationWarnings (np.bool, LooseVersion) silenced.

    They are mxnet 1.9.1's, not the learner's, and under ``PYTHONWARNINGS=error`` (or
    ``-W error``) they would make the import itself fail.
    """
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        import mxnet
    return mxnet
