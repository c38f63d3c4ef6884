"""The properties of a closed-form batch-norm backward pass, run by the same runner as the
forward checkers (``runner.run_checks``: time limit, error locations, blocked modes).

``check_batch_norm_backward(fn)`` takes fn(dY, X, gamma, eps) -> (dX, dgamma, dbeta): the
gradients of a loss in training mode (batch statistics, biased variance) given dY = d loss / dY,
X and dY (N, D) or (N, C, H, W), gamma, dgamma, dbeta (1, D) or (1, C, 1, 1). Each property is
registered with ``check_property(..., registry=BACKWARD_REGISTRY)``; float32 inputs are compared
with autograd through ``d2l_utils.batch_norm``, float64 inputs with central differences.
"""
import numpy as np
from mxnet import autograd, nd

from ..layers import batch_norm
from .gradient_check import numerical_gradient, relative_error
from .harness import EPS, Failure, describe
from .properties import check_property
from .runner import run_checks, target_name

__all__ = ['BACKWARD_PROPERTIES', 'BACKWARD_REGISTRY', 'BACKWARD_SHAPES', 'BackwardSubject',
           'NUMERICAL_SHAPES', 'check_batch_norm_backward']

BACKWARD_SHAPES = ((8, 5), (4, 3, 3, 3))
NUMERICAL_SHAPES = ((6, 3), (2, 2, 3, 3))
BACKWARD_REGISTRY = {}   # name -> Property, in definition order (the printed order)


class BackwardSubject:
    """The learner's backward function, called the way the runner's ``Subject`` calls code:
    ``call`` says where it runs and refuses at once when an earlier call did not finish."""

    def __init__(self, fn):
        self.target = fn
        self.where, self.phase, self.hung = '', None, {}

    def call(self, dy, x, gamma, where):
        """fn(dy, x, gamma, EPS) as float64 numpy (dX, dgamma, dbeta); Failure if the result is
        not three arrays."""
        self.where, self.phase = 'on %s calling %s' % (where, target_name(self.target)), 'training'
        if 'training' in self.hung:
            raise Failure('not checked: the code did not finish (see %s), and would not here '
                          'either.' % self.hung['training'])
        out = self.target(dy, x, gamma, EPS)
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise Failure('expected the function to return (dX, dgamma, dbeta); got %s. Likely '
                          'cause: a missing or incomplete return statement.' % type(out).__name__)
        arrays = []
        for name, value in zip(('dX', 'dgamma', 'dbeta'), out):
            if isinstance(value, nd.NDArray):
                value = value.asnumpy()
            if not isinstance(value, np.ndarray):
                raise Failure('expected %s to be an NDArray; got %s.'
                              % (name, type(value).__name__))
            arrays.append(value.astype(np.float64))
        return arrays


def backward_case(shape, seed, dtype='float32'):
    """(x, gamma, beta, dy) NDArrays: per-feature means -2 to 5, scales 0.5 to 3."""
    rng = np.random.RandomState(seed)
    pshape = (1, shape[1]) if len(shape) == 2 else (1, shape[1], 1, 1)
    x = rng.uniform(-2, 5, pshape) + rng.uniform(0.5, 3, pshape) * rng.randn(*shape)
    gamma = rng.uniform(0.5, 1.5, pshape)
    beta = rng.uniform(-1, 1, pshape)
    dy = rng.randn(*shape)
    return [nd.array(a, dtype=dtype) for a in (x, gamma, beta, dy)]


def autograd_reference(x, gamma, beta, dy):
    """(dX, dgamma, dbeta) of (Y * dy).sum() through d2l_utils.batch_norm in training mode."""
    x, gamma, beta = x.copy(), gamma.copy(), beta.copy()
    for a in (x, gamma, beta):
        a.attach_grad()
    with autograd.record():
        Y, _, _ = batch_norm(x, gamma, beta, nd.zeros_like(gamma), nd.ones_like(gamma), EPS, 0.9)
        loss = (Y * dy).sum()
    loss.backward()
    return x.grad.asnumpy(), gamma.grad.asnumpy(), beta.grad.asnumpy()


def wrong_dx_candidates(x, gamma, dy):
    """(dX value, cause) for the usual mistakes in dX, float64 numpy."""
    axes = 0 if x.ndim == 2 else (0, 2, 3)
    m = x.size // x.shape[1]
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    std = np.sqrt(var + EPS)
    xhat = (x - mean) / std
    g = gamma * dy
    mean_g = g.mean(axis=axes, keepdims=True)
    mean_gx = (g * xhat).mean(axis=axes, keepdims=True)
    ustd = np.sqrt(var * m / (m - 1) + EPS)
    uxhat = (x - mean) / ustd
    cands = [
        (g / std, 'dX = gamma * dY / std treats the batch mean and variance as constants; they '
                  'depend on X too: dX = gamma / std * (dY - mean(dY) - x_hat * mean(dY * '
                  'x_hat)).'),
        ((g - mean_g) / std, 'the variance\'s term is missing: subtract x_hat * mean(dY * x_hat) '
                             'as well.'),
        ((g - xhat * mean_gx) / std, 'the mean\'s term is missing: subtract mean(dY) as well.'),
        ((dy - dy.mean(axis=axes, keepdims=True) - xhat * (dy * xhat).mean(
            axis=axes, keepdims=True)) / std, 'the factor gamma is missing: dX_hat = gamma * dY.'),
        ((g - mean_g - uxhat * (g * uxhat).mean(axis=axes, keepdims=True)) / ustd,
         'the unbiased variance (divided by m - 1) is used; the forward pass uses the biased one.'),
    ]
    if x.ndim == 4:
        m0 = x.mean(axis=0, keepdims=True)
        s0 = np.sqrt(x.var(axis=0, keepdims=True) + EPS)
        xh0 = (x - m0) / s0
        cands.append(((g - g.mean(axis=0, keepdims=True) - xh0 * (g * xh0).mean(
            axis=0, keepdims=True)) / s0, 'the means are taken over axis 0 only (the 2-D '
                                          'formula); a 4-D input averages over axes (0, 2, 3).'))
    return cands


def named_cause(value, candidates, default):
    """The cause of the first candidate value equals, else ``default``."""
    for candidate, text in candidates:
        if candidate.shape == value.shape and np.allclose(value, candidate, rtol=1e-3, atol=1e-4):
            return text
    return default


def compare(name, got, expected, where, candidates, default_cause):
    """Raise Failure unless got (numpy) equals expected; name the likely mistake."""
    if got.shape != expected.shape:
        raise Failure('on %s: expected %s of shape %s; got %s. Likely cause: a sum without '
                      'keepdims=True or over the wrong axes (2-D: axis 0; 4-D: axes (0, 2, 3)).'
                      % (where, name, expected.shape, got.shape))
    if np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        return
    i = np.unravel_index(np.argmax(np.abs(got - expected)), got.shape)
    raise Failure('on %s: expected %s%s = %.4g (autograd through d2l_utils.batch_norm); got %.4g '
                  '(relative error %.2g). Likely cause: %s'
                  % (where, name, list(i), expected[i], got[i], relative_error(got, expected),
                     named_cause(got, candidates, default_cause)))


def float32_cases(shapes=BACKWARD_SHAPES):
    """For each shape: (where, the learner's call's arguments, autograd's gradients, float64
    x, gamma, dy)."""
    for k, shape in enumerate(shapes):
        x, gamma, beta, dy = backward_case(shape, seed=BACKWARD_SHAPES.index(shape))
        ref = autograd_reference(x, gamma, beta, dy)
        yield describe(shape), (dy, x, gamma), ref, [a.asnumpy().astype(np.float64)
                                                     for a in (x, gamma, dy)]


def x_hat(x64):
    axes = 0 if x64.ndim == 2 else (0, 2, 3)
    return (x64 - x64.mean(axis=axes, keepdims=True)) / np.sqrt(
        x64.var(axis=axes, keepdims=True) + EPS), axes


@check_property("dX has X's shape and dgamma, dbeta have gamma's, for 2-D and 4-D inputs",
                registry=BACKWARD_REGISTRY)
def shapes(subject):
    for where, args, ref, _ in float32_cases():
        got = subject.call(*args, where=where)
        for label, g, r in zip(('dX', 'dgamma', 'dbeta'), got, ref):
            if g.shape != r.shape:
                raise Failure('on %s: expected %s of shape %s; got %s. Likely cause: a sum '
                              'without keepdims=True or over the wrong axes (2-D: axis 0; '
                              '4-D: axes (0, 2, 3)).' % (where, label, r.shape, g.shape))


@check_property("dbeta equals autograd's (2-D and 4-D)", registry=BACKWARD_REGISTRY)
def dbeta(subject):
    for where, args, ref, (x64, g64, dy64) in float32_cases():
        got = subject.call(*args, where=where)
        axes = x_hat(x64)[1]
        compare('dbeta', got[2], ref[2], where,
                [(dy64.mean(axis=axes, keepdims=True), 'the mean of dY; dbeta is its sum.')],
                'dbeta is the sum of dY over the batch (and positions).')


@check_property("dgamma equals autograd's (2-D and 4-D)", registry=BACKWARD_REGISTRY)
def dgamma(subject):
    for where, args, ref, (x64, g64, dy64) in float32_cases():
        got = subject.call(*args, where=where)
        xhat, axes = x_hat(x64)
        compare('dgamma', got[1], ref[1], where,
                [(dy64.sum(axis=axes, keepdims=True), 'dgamma is the sum of dY * x_hat, not of '
                                                      'dY.'),
                 ((dy64 * x64).sum(axis=axes, keepdims=True), 'dgamma uses X instead of the '
                                                             'normalized x_hat.'),
                 ((dy64 * xhat).mean(axis=axes, keepdims=True), 'the mean of dY * x_hat; '
                                                               'dgamma is its sum.')],
                'dgamma is the sum of dY * x_hat over the batch (and positions).')


def check_dx(subject, shapes):
    for where, args, ref, (x64, g64, dy64) in float32_cases(shapes):
        got = subject.call(*args, where=where)
        compare('dX', got[0], ref[0], where, wrong_dx_candidates(x64, g64, dy64),
                'dX is not gamma / std * (dY - mean(dY) - x_hat * mean(dY * x_hat)).')


@check_property("dX equals autograd's on a 2-D (N, D) input", registry=BACKWARD_REGISTRY)
def dX_2d(subject):
    check_dx(subject, BACKWARD_SHAPES[:1])


@check_property("dX equals autograd's on a 4-D (N, C, H, W) input", registry=BACKWARD_REGISTRY)
def dX_4d(subject):
    check_dx(subject, BACKWARD_SHAPES[1:])


@check_property('in float64, dX, dgamma and dbeta match central-difference gradients (relative '
                'error < 1e-6)', registry=BACKWARD_REGISTRY)
def float64_numerical(subject):
    for k, shape in enumerate(NUMERICAL_SHAPES):
        x, gamma, beta, dy = backward_case(shape, seed=10 + k, dtype='float64')
        where = '%s in float64' % describe(shape)
        got = subject.call(dy, x, gamma, where=where)
        stats = nd.zeros_like(gamma), nd.ones_like(gamma)

        def loss():
            with autograd.train_mode():
                Y, _, _ = batch_norm(x, gamma, beta, stats[0], stats[1], EPS, 0.9)
            return (Y * dy).sum().asscalar()

        numeric = [numerical_gradient(loss, a) for a in (x, gamma, beta)]
        for label, g, n in zip(('dX', 'dgamma', 'dbeta'), got, numeric):
            if g.shape != n.shape:
                raise Failure('on %s: expected %s of shape %s; got %s (see shapes).'
                              % (where, label, n.shape, g.shape))
            error = relative_error(g, n)
            if not error < 1e-6:
                raise Failure('on %s: expected %s to match central differences (relative error '
                              '< 1e-6); the relative error is %.2g. Likely cause: %s'
                              % (where, label, error,
                                 'a formula error (see the autograd properties).'
                                 if error > 1e-3 else
                                 'part of the computation runs in float32 (e.g. nd.array(...) '
                                 'without dtype, or a float32 constant array): keep X\'s dtype '
                                 'throughout.'))


# (name, what a PASS means), the printed order
BACKWARD_PROPERTIES = tuple((p.name, p.meaning) for p in BACKWARD_REGISTRY.values())


def check_batch_norm_backward(fn, verbose=True, time_limit=None):
    """Check a closed-form batch-norm backward pass against autograd and numerical gradients.

    fn(dY, X, gamma, eps) -> (dX, dgamma, dbeta) (see the module docstring). Runs
    ``BACKWARD_PROPERTIES``: float32 inputs (8, 5) and (4, 3, 3, 3) against autograd through
    ``d2l_utils.batch_norm``, and float64 inputs (6, 3) and (2, 2, 3, 3) against central
    differences. Each property runs for at most ``time_limit`` seconds (default: ``runner``'s);
    after one that does not finish, the others are reported as not checked (they would hang
    too). Prints the table if verbose; returns a CheckReport.
    """
    if not callable(fn) or isinstance(fn, type):
        raise TypeError('check_batch_norm_backward expects a function fn(dY, X, gamma, eps) '
                        'returning (dX, dgamma, dbeta); got %r.' % (fn,))
    return run_checks(BackwardSubject(fn), BACKWARD_PROPERTIES,
                      'check_batch_norm_backward(%s)' % target_name(fn), verbose, time_limit,
                      registry=BACKWARD_REGISTRY)
