"""Checkers that run a learner's batch norm through a battery of properties and name the mistake.

``check_batch_norm(fn)`` takes a function with the book's signature
``fn(X, gamma, beta, moving_mean, moving_var, eps, momentum) -> (Y, moving_mean, moving_var)``;
``check_batch_norm_block(cls)`` takes a layer built as ``cls(num_features, num_dims)``. Each runs
its properties on fixed-seed float32 data, a 2-D input (8, 5) and a 4-D input (4, 3, 5, 5), in
training mode (inside ``autograd.record()``) and in prediction mode, compares with the reference
``d2l_utils.batch_norm`` / ``d2l_utils.BatchNorm`` (which tests/test_layers.py checks against
MXNet's own operator), prints one line per property and returns a ``CheckReport``. A failure says
what was expected, what came out and the likely cause; an exception raised by the learner's code
is caught and reported as a failure of the property that triggered it.

The package: ``report`` (CheckResult, CheckReport), ``harness`` (the inputs and the adapters that
run functions and layers alike), ``properties`` (one function per property), ``runner`` (the one
place learner code runs: time limit, exit guard, error locations), ``backward`` (the properties of
a closed-form backward pass, run by the same runner), ``grading`` and ``exercises`` (the
exercise edition's graded checks), ``integrity`` (whose code is graded), ``mistakes``.

Layers are read and set through the book's attribute names ``gamma``, ``beta`` (Parameters or
NDArrays) and ``moving_mean``, ``moving_var`` (Parameters or NDArrays), with the book's eps=1e-5
and momentum=0.9.
"""
from mxnet import gluon

from .harness import EPS, MOMENTUM, SECOND_DEVICE, SHAPES, Subject, looks_like_function
from .properties import BLOCK_PROPERTIES, FUNCTION_PROPERTIES
from .report import CheckReport, CheckResult
from .runner import TIME_LIMIT, run_checks, target_name

# the public names of the former checks.py, unchanged
__all__ = ['BLOCK_PROPERTIES', 'CheckReport', 'CheckResult', 'EPS', 'FUNCTION_PROPERTIES',
           'MOMENTUM', 'SECOND_DEVICE', 'SHAPES', 'TIME_LIMIT', 'check_batch_norm',
           'check_batch_norm_block']


def check_batch_norm(fn, verbose=True, time_limit=None):
    """Check a batch-norm function with the book's signature against ``d2l_utils.batch_norm``.

    fn(X, gamma, beta, moving_mean, moving_var, eps, momentum) -> (Y, moving_mean, moving_var),
    X (N, D) or (N, C, H, W), the others (1, D) or (1, C, 1, 1). Runs the properties of
    ``FUNCTION_PROPERTIES`` on 2-D (8, 5) and 4-D (4, 3, 5, 5) float32 inputs with eps=1e-5 and
    momentum=0.9; prints one line per property if verbose; returns a ``CheckReport``.
    Each property runs for at most ``time_limit`` seconds (default: see ``runner``); whatever fn
    raises, ``SystemExit`` too, is a FAIL of that property, and so is writing into X, gamma or
    beta.
    """
    if not callable(fn):
        raise TypeError('check_batch_norm expects a function fn(X, gamma, beta, moving_mean, '
                        'moving_var, eps, momentum); got %r. To check a layer class, use '
                        'check_batch_norm_block.' % (fn,))
    if isinstance(fn, type):
        raise TypeError('check_batch_norm expects a function; got the class %s. To check a '
                        'layer, use check_batch_norm_block(%s).' % (fn.__name__, fn.__name__))
    if isinstance(fn, gluon.Block):
        name = type(fn).__name__
        raise TypeError('check_batch_norm expects a function; got a layer built from %s. To '
                        'check a layer, pass its class to the other checker: '
                        'check_batch_norm_block(%s).' % (name, name))
    return run_checks(Subject(fn, is_block=False), FUNCTION_PROPERTIES,
                      'check_batch_norm(%s)' % target_name(fn), verbose, time_limit)


def check_batch_norm_block(cls, verbose=True, time_limit=None):
    """Check a batch-norm layer, built as ``cls(num_features, num_dims)``, against
    ``d2l_utils.BatchNorm``.

    Runs the properties of ``BLOCK_PROPERTIES``: those of ``check_batch_norm`` on the layer plus
    building, the initial moving variance, an update on every step, following the network to
    another device (cpu(1)) and surviving save_parameters/load_parameters. The layer must expose
    the book's attributes gamma, beta, moving_mean and moving_var. Prints one line per property
    if verbose; returns a ``CheckReport``. Each property runs for at most ``time_limit`` seconds.
    """
    if not callable(cls):
        raise TypeError('check_batch_norm_block expects a layer class cls(num_features, '
                        'num_dims); got %r.' % (cls,))
    if isinstance(cls, gluon.Block):
        raise TypeError('check_batch_norm_block expects the class (e.g. BatchNorm), not a layer '
                        'built from it (BatchNorm(3, num_dims=4)): it builds fresh layers of '
                        'each shape itself.')
    if looks_like_function(cls):
        name = target_name(cls)
        raise TypeError('check_batch_norm_block expects a layer class cls(num_features, '
                        'num_dims); got %s, a function with batch_norm\'s arguments. To check a '
                        'function, use the other checker: check_batch_norm(%s).' % (name, name))
    return run_checks(Subject(cls, is_block=True), BLOCK_PROPERTIES,
                      'check_batch_norm_block(%s)' % target_name(cls), verbose, time_limit)
