"""What a grader needs on top of the checkers: scores, pass/fail per property, graded checks.

The exercise edition (``exercises/``, an nbgrader course) grades a learner's code with the
checkers of ``d2l_utils.checks`` and this module. Every graded cell calls ``grade``, which runs
the checker once per version of the learner's code (later cells reuse the report), prints
``PASS name: what it means`` or raises ``GradingFailure`` whose message is the checker's
diagnosis (what was expected, what came, the likely cause). In Jupyter the failure is shown as
that message alone, without a traceback; nbgrader still sees an error and gives the cell no
points. Code still holding nbgrader's ``raise NotImplementedError()`` stub is reported once as
"not implemented yet"; the later graded cells of the same code say one line each.

- ``property_results(report)``, ``score(report, points)``, ``raise_for_failures(report)``: a
  ``CheckReport`` as a grader reads it;
- ``check(target)`` / ``grade(target, name)``: the learner's check as they go / one graded
  property;
- ``check_batch_norm_backward(fn)``: a checker for a closed-form backward pass, against autograd
  and float64 numerical gradients;
- ``check_lenet``, ``grade_lenet_training``: a LeNet built
  with the learner's layer, trained in a short fixed budget and graded on its recalibrated
  test accuracy (``LENET_BUDGET``, ``LENET_THRESHOLD``).
"""
import textwrap
from collections import OrderedDict, namedtuple

import numpy as np
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from . import CheckReport, CheckResult, check_batch_norm, check_batch_norm_block
from .runner import TIME_LIMIT, call_with_time_limit, did_not_finish
from ..data import load_data_fashion_mnist
from .gradient_check import numerical_gradient, relative_error
from ..layers import batch_norm
from ..recalibration import recalibrate_batch_norm
from ..nan_guard import NonFiniteLossError
from ..training import evaluate_accuracy, set_seed, train

__all__ = ['GradingFailure', 'NotImplementedYet', 'Score', 'property_results', 'score',
           'raise_for_failures', 'check', 'grade', 'check_batch_norm_backward',
           'BACKWARD_PROPERTIES', 'check_lenet',
           'grade_lenet_training', 'LENET_BUDGET', 'LENET_THRESHOLD', 'expect',
           'require_names']


# ----------------------------------------------------------------------------- failures

class GradingFailure(AssertionError):
    """A graded check failed; the message is the diagnosis shown to the learner.

    An AssertionError, so test runners count it as a failed check; in IPython it is displayed
    as its message only (the traceback would point into this module, not at the mistake).
    """

    def _render_traceback_(self):   # IPython's hook: these lines replace the traceback
        return ['%s: %s' % (type(self).__name__, line) if i == 0 else line
                for i, line in enumerate(str(self).splitlines())]


class NotImplementedYet(GradingFailure):
    """The learner's code still raises nbgrader's ``NotImplementedError`` stub."""


# ----------------------------------------------------------------------------- reading a report

Score = namedtuple('Score', 'earned possible')
Score.__doc__ = 'Points earned and points possible (floats).'


def property_results(report):
    """{property name: True if it passed}, in the report's order."""
    return OrderedDict((r.name, bool(r.passed)) for r in report.results)


def score(report, points=None):
    """The points a report earns: ``Score(earned, possible)``.

    points: {property name: points}; default one point per property. A property missing from
    ``points`` counts 0 (it is checked but not graded); a name in ``points`` that the report
    does not have is a ValueError (a typo in the grading scheme).
    """
    passed = property_results(report)
    points = points if points is not None else {name: 1 for name in passed}
    unknown = sorted(set(points) - set(passed))
    if unknown:
        raise ValueError('score: the report %s has no propert%s %s; its properties are %s.'
                         % (report.title, 'y' if len(unknown) == 1 else 'ies',
                            ', '.join(unknown), ', '.join(passed)))
    earned = sum(float(p) for name, p in points.items() if passed[name])
    return Score(earned, float(sum(points.values())))


def raise_for_failures(report):
    """Return None if every property passed; else raise GradingFailure with the whole table."""
    if report.passed:
        return None
    raise GradingFailure(report.format(failures_only=True))


# ----------------------------------------------------------------------------- graded checks

def _probe_function(fn):
    x = nd.array(np.arange(12, dtype=np.float32).reshape(4, 3))
    ones, zeros = nd.ones((1, 3)), nd.zeros((1, 3))
    with autograd.record():
        fn(x, ones, zeros, zeros, ones, 1e-5, 0.9)


def _probe_block(cls):
    layer = cls(3, 2)
    layer.initialize()
    with autograd.record():
        layer(nd.array(np.arange(12, dtype=np.float32).reshape(4, 3)))


def _probe_backward(fn):
    x = nd.array(np.arange(12, dtype=np.float32).reshape(4, 3))
    fn(nd.ones_like(x), x, nd.ones((1, 3)), 1e-5)


def _checker_for(target, checker):
    if checker is not None:
        return checker
    return check_batch_norm_block if isinstance(target, type) else check_batch_norm


def _probe_for(checker):
    return {check_batch_norm: _probe_function, check_batch_norm_block: _probe_block,
            check_batch_norm_backward: _probe_backward}.get(checker)


def _not_implemented(target, checker):
    """True if running the target the simplest way raises NotImplementedError."""
    probe = _probe_for(checker)
    if probe is None:
        return False
    try:
        probe(target)
    except NotImplementedError:
        return True
    except Exception:   # any other error is the checker's to diagnose
        return False
    return False


def _target_name(target):
    return getattr(target, '__name__', repr(target))


class _Cache:
    """The last report per checker, the target it belongs to, and whether 'not implemented
    yet' was already said in full for that target."""

    def __init__(self):
        self.reports = {}
        self.announced = set()

    def report(self, target, checker):
        """The CheckReport for target, or None if target is not implemented yet."""
        cached = self.reports.get(checker)
        if cached is not None and cached[0] is target:
            return cached[1]
        report = None if _not_implemented(target, checker) else checker(target, verbose=False)
        self.reports[checker] = (target, report)
        return report


_cache = _Cache()


def _not_implemented_message(target, checker):
    name = _target_name(target)
    key = (checker, id(target))
    if key in _cache.announced:
        return '%s is not implemented yet (see the first check of it above).' % name
    _cache.announced.add(key)
    return ('%s is not implemented yet: calling it raises NotImplementedError, the placeholder '
            '`raise NotImplementedError()` still in the cell that defines it. Replace that line '
            'with your code, run the cell, then run the checks again. Until then every graded '
            'check of %s says only "not implemented yet".' % (name, name))


def check(target, checker=None):
    """Check the learner's code as they go: print the checker's whole table (or "not
    implemented yet") and return the CheckReport (None if not implemented).

    target: a function with the book's batch_norm signature (checked by check_batch_norm), a
    layer class (check_batch_norm_block), or anything ``checker`` takes (e.g.
    check_batch_norm_backward). The report is kept, so the graded cells after this one do not
    run the checker again until the target is redefined.
    """
    checker = _checker_for(target, checker)
    report = _cache.report(target, checker)
    if report is None:
        print(_not_implemented_message(target, checker))
    else:
        print(report)
    return report


def grade(target, name, checker=None):
    """One graded property: print ``PASS name: ...`` or raise GradingFailure with the diagnosis.

    target, checker: as in ``check``. name: a property of that checker (e.g.
    'moving_mean_update'). A target still raising NotImplementedError raises NotImplementedYet.
    """
    checker = _checker_for(target, checker)
    report = _cache.report(target, checker)
    if report is None:
        raise NotImplementedYet(_not_implemented_message(target, checker))
    result = report[name]
    if result.passed:
        print('PASS %s: %s' % (name, result.detail))
        return None
    others = [n for n in report.failed() if n != name]
    tail = ('\nOther properties failing: %s; run check(%s) for the whole table.'
            % (', '.join(others), _target_name(target)) if others else '')
    raise GradingFailure('FAIL %s\n%s%s' % (
        name, textwrap.fill(result.detail, width=100), tail))


def expect(condition, message):
    """A graded cell's own test: raise GradingFailure(message) unless condition is true."""
    if not condition:
        raise GradingFailure(message)


def require_names(namespace, *names):
    """Raise NotImplementedYet unless every name is defined in namespace (e.g. globals()).

    For graded cells that read what a learner's cell computes: a cell still holding the
    ``raise NotImplementedError()`` stub defines nothing, and this says so in one line instead
    of a NameError traceback.
    """
    missing = [name for name in names if name not in namespace]
    if missing:
        raise NotImplementedYet('%s %s not defined yet: complete the experiment cell above (it '
                                'still raises NotImplementedError) and run it.'
                                % (', '.join(missing), 'is' if len(missing) == 1 else 'are'))


# ----------------------------------------------------------------------------- backward pass

BACKWARD_PROPERTIES = (
    ('shapes', 'dX has X\'s shape and dgamma, dbeta have gamma\'s, for 2-D and 4-D inputs'),
    ('dbeta', 'dbeta equals autograd\'s (2-D and 4-D)'),
    ('dgamma', 'dgamma equals autograd\'s (2-D and 4-D)'),
    ('dX_2d', 'dX equals autograd\'s on a 2-D (N, D) input'),
    ('dX_4d', 'dX equals autograd\'s on a 4-D (N, C, H, W) input'),
    ('float64_numerical', 'in float64, dX, dgamma and dbeta match central-difference gradients '
                          '(relative error < 1e-6)'),
)
BACKWARD_SHAPES = ((8, 5), (4, 3, 3, 3))
NUMERICAL_SHAPES = ((6, 3), (2, 2, 3, 3))
EPS = 1e-5


class _Fail(Exception):
    pass


def _backward_case(shape, seed, dtype='float32'):
    rng = np.random.RandomState(seed)
    pshape = (1, shape[1]) if len(shape) == 2 else (1, shape[1], 1, 1)
    x = rng.uniform(-2, 5, pshape) + rng.uniform(0.5, 3, pshape) * rng.randn(*shape)
    gamma = rng.uniform(0.5, 1.5, pshape)
    beta = rng.uniform(-1, 1, pshape)
    dy = rng.randn(*shape)
    return [nd.array(a, dtype=dtype) for a in (x, gamma, beta, dy)]


def _autograd_reference(x, gamma, beta, dy):
    """(dX, dgamma, dbeta) of (Y * dy).sum() through d2l_utils.batch_norm in training mode."""
    x, gamma, beta = x.copy(), gamma.copy(), beta.copy()
    for a in (x, gamma, beta):
        a.attach_grad()
    stats = nd.zeros_like(gamma), nd.ones_like(gamma)
    with autograd.record():
        Y, _, _ = batch_norm(x, gamma, beta, stats[0], stats[1], EPS, 0.9)
        loss = (Y * dy).sum()
    loss.backward()
    return x.grad.asnumpy(), gamma.grad.asnumpy(), beta.grad.asnumpy()


def _call_backward(fn, dy, x, gamma):
    out = fn(dy, x, gamma, EPS)
    if not (isinstance(out, (tuple, list)) and len(out) == 3):
        raise _Fail('expected the function to return (dX, dgamma, dbeta); got %s. Likely cause: '
                    'a missing or incomplete return statement.' % type(out).__name__)
    arrays = []
    for name, value in zip(('dX', 'dgamma', 'dbeta'), out):
        if isinstance(value, nd.NDArray):
            value = value.asnumpy()
        if not isinstance(value, np.ndarray):
            raise _Fail('expected %s to be an NDArray; got %s.' % (name, type(value).__name__))
        arrays.append(value.astype(np.float64))
    return arrays


def _wrong_dx_candidates(x, gamma, dy):
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


def _cause(value, candidates, default):
    for candidate, text in candidates:
        if candidate.shape == value.shape and np.allclose(value, candidate, rtol=1e-3, atol=1e-4):
            return text
    return default


def _compare(name, got, expected, where, candidates, default_cause):
    if got.shape != expected.shape:
        raise _Fail('on %s: expected %s of shape %s; got %s. Likely cause: a sum without '
                    'keepdims=True or over the wrong axes (2-D: axis 0; 4-D: axes (0, 2, 3)).'
                    % (where, name, expected.shape, got.shape))
    if np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        return
    i = np.unravel_index(np.argmax(np.abs(got - expected)), got.shape)
    raise _Fail('on %s: expected %s%s = %.4g (autograd through d2l_utils.batch_norm); got %.4g '
                '(relative error %.2g). Likely cause: %s'
                % (where, name, list(i), expected[i], got[i], relative_error(got, expected),
                   _cause(got, candidates, default_cause)))


def _describe(shape):
    return 'the %d-D input %s' % (len(shape), tuple(shape))


def _backward_prop(fn, name):
    if name == 'float64_numerical':
        return _backward_numerical(fn)
    shapes = {'dX_2d': BACKWARD_SHAPES[:1], 'dX_4d': BACKWARD_SHAPES[1:]}.get(name,
                                                                               BACKWARD_SHAPES)
    for k, shape in enumerate(shapes):
        x, gamma, beta, dy = _backward_case(shape, seed=k)
        got = _call_backward(fn, dy, x, gamma)
        ref = _autograd_reference(x, gamma, beta, dy)
        where = _describe(shape)
        if name == 'shapes':
            for label, g, r in zip(('dX', 'dgamma', 'dbeta'), got, ref):
                if g.shape != r.shape:
                    raise _Fail('on %s: expected %s of shape %s; got %s. Likely cause: a sum '
                                'without keepdims=True or over the wrong axes (2-D: axis 0; '
                                '4-D: axes (0, 2, 3)).' % (where, label, r.shape, g.shape))
            continue
        x64, g64, dy64 = (a.asnumpy().astype(np.float64) for a in (x, gamma, dy))
        axes = 0 if x64.ndim == 2 else (0, 2, 3)
        xhat = (x64 - x64.mean(axis=axes, keepdims=True)) / np.sqrt(
            x64.var(axis=axes, keepdims=True) + EPS)
        if name == 'dbeta':
            _compare('dbeta', got[2], ref[2], where,
                     [(dy64.mean(axis=axes, keepdims=True), 'the mean of dY; dbeta is its sum.')],
                     'dbeta is the sum of dY over the batch (and positions).')
        elif name == 'dgamma':
            _compare('dgamma', got[1], ref[1], where,
                     [(dy64.sum(axis=axes, keepdims=True), 'dgamma is the sum of dY * x_hat, '
                                                           'not of dY.'),
                      ((dy64 * x64).sum(axis=axes, keepdims=True), 'dgamma uses X instead of '
                                                                  'the normalized x_hat.'),
                      ((dy64 * xhat).mean(axis=axes, keepdims=True), 'the mean of dY * x_hat; '
                                                                    'dgamma is its sum.')],
                     'dgamma is the sum of dY * x_hat over the batch (and positions).')
        else:
            _compare('dX', got[0], ref[0], where, _wrong_dx_candidates(x64, g64, dy64),
                     'dX is not gamma / std * (dY - mean(dY) - x_hat * mean(dY * x_hat)).')


def _backward_numerical(fn):
    for k, shape in enumerate(NUMERICAL_SHAPES):
        x, gamma, beta, dy = _backward_case(shape, seed=10 + k, dtype='float64')
        got = _call_backward(fn, dy, x, gamma)
        stats = nd.zeros_like(gamma), nd.ones_like(gamma)

        def loss():
            with autograd.train_mode():
                Y, _, _ = batch_norm(x, gamma, beta, stats[0], stats[1], EPS, 0.9)
            return (Y * dy).sum().asscalar()

        numeric = [numerical_gradient(loss, a) for a in (x, gamma, beta)]
        for label, g, n in zip(('dX', 'dgamma', 'dbeta'), got, numeric):
            if g.shape != n.shape:
                raise _Fail('on %s in float64: expected %s of shape %s; got %s (see shapes).'
                            % (_describe(shape), label, n.shape, g.shape))
            error = relative_error(g, n)
            if not error < 1e-6:
                raise _Fail('on %s in float64: expected %s to match central differences '
                            '(relative error < 1e-6); the relative error is %.2g. Likely '
                            'cause: %s' % (_describe(shape), label, error,
                                           'a formula error (see the autograd properties).'
                                           if error > 1e-3 else
                                           'part of the computation runs in float32 (e.g. '
                                           'nd.array(...) without dtype, or a float32 '
                                           'constant array): keep X\'s dtype throughout.'))


def check_batch_norm_backward(fn, verbose=True, time_limit=TIME_LIMIT):
    """Check a closed-form batch-norm backward pass against autograd and numerical gradients.

    fn(dY, X, gamma, eps) -> (dX, dgamma, dbeta): the gradients of a loss in training mode
    (batch statistics, biased variance) given dY = d loss / dY. X and dY (N, D) or
    (N, C, H, W); gamma, dgamma, dbeta (1, D) or (1, C, 1, 1). Runs ``BACKWARD_PROPERTIES``:
    float32 inputs (8, 5) and (4, 3, 3, 3) against autograd through ``d2l_utils.batch_norm``,
    and float64 inputs (6, 3) and (2, 2, 3, 3) against central differences. Each property runs
    for at most ``time_limit`` seconds; after one that does not finish, the others are reported
    as not checked (they would hang too). Prints the table if verbose; returns a CheckReport.
    """
    if not callable(fn) or isinstance(fn, type):
        raise TypeError('check_batch_norm_backward expects a function fn(dY, X, gamma, eps) '
                        'returning (dX, dgamma, dbeta); got %r.' % (fn,))
    results = []
    blocked = None   # the property that did not finish
    for name, meaning in BACKWARD_PROPERTIES:
        if blocked:
            results.append(CheckResult(name, False, 'not checked: %s did not finish, and this '
                                                    'code would not either.' % blocked))
            continue
        finished, exc = call_with_time_limit(lambda: _backward_prop(fn, name), time_limit,
                                             name)
        if not finished:
            blocked = name
            results.append(CheckResult(name, False, did_not_finish(
                time_limit, 'calling %s' % _target_name(fn))))
        elif isinstance(exc, _Fail):
            results.append(CheckResult(name, False, str(exc)))
        elif exc is not None:   # the learner's code raised: report it, never crash
            text = str(exc).strip().splitlines()
            results.append(CheckResult(name, False, 'raised %s: %s. Likely cause: an error '
                                          'in the code on this input; the message says where.'
                                          % (type(exc).__name__, text[-1] if text else '')))
        else:
            results.append(CheckResult(name, True, meaning))
    report = CheckReport('check_batch_norm_backward(%s)' % _target_name(fn), results)
    if verbose:
        print(report)
    return report


# ----------------------------------------------------------------------------- LeNet training

LENET_BUDGET = dict(train_subset=2000, test_subset=1000, batch_size=100, num_epochs=2, lr=1.0,
                    recalibrate_batches=20, seed=0)
"""The fixed budget of assignment 3: 40 updates on 2,000 real training images (chosen with
``seed``), the book's learning rate, then moving statistics recalibrated over 20 batches and the
test accuracy measured on 1,000 test images."""

LENET_THRESHOLD = 0.5
"""The recalibrated test accuracy a correct layer must reach in ``LENET_BUDGET``. The reference
``d2l_utils.BatchNorm`` reached 0.646 to 0.782 (mean 0.695, standard deviation about 0.05) over
six seeds 0-5 of the subset and the initialization, so the threshold sits 0.15 below the worst
seed; LeNet without normalization stays at chance (0.088 and 0.099 for seeds 0, 1)."""


def _build(build_lenet, bn_class):
    """build_lenet(), or NotImplementedYet if it or bn_class still raises the stub's error."""
    if _not_implemented(bn_class, check_batch_norm_block):
        raise NotImplementedYet(_not_implemented_message(bn_class, check_batch_norm_block))
    try:
        return build_lenet()
    except NotImplementedError:
        raise NotImplementedYet(_not_implemented_message(build_lenet, None)) from None


def check_lenet(build_lenet, bn_class):
    """Print what build_lenet() builds, or raise GradingFailure saying what is wrong.

    Expected: a net that maps (N, 1, 28, 28) to (N, 10) with four ``bn_class`` layers, each
    directly after a Conv2D or Dense layer (the book's LeNet with batch normalization).
    """
    net = _build(build_lenet, bn_class)
    if not isinstance(net, gluon.Block):
        raise GradingFailure('build_lenet() should return a Gluon Block (an nn.Sequential); got '
                             '%s. Likely cause: a missing return net.' % type(net).__name__)
    children = list(net) if isinstance(net, nn.Sequential) else []
    bn_positions = [i for i, b in enumerate(children) if isinstance(b, bn_class)]
    if len(bn_positions) != 4:
        raise GradingFailure('expected 4 %s layers in the net (after the 2 Conv2D and the 2 '
                             'hidden Dense layers); found %d in its %d layers. Likely cause: '
                             'a BN layer missing, or nn.BatchNorm used instead of your class.'
                             % (bn_class.__name__, len(bn_positions), len(children)))
    misplaced = [i for i in bn_positions
                 if not isinstance(children[i - 1], (nn.Conv2D, nn.Dense))]
    if misplaced:
        raise GradingFailure('expected every %s layer directly after a Conv2D or Dense layer '
                             '(before its activation); layer %d comes after a %s.'
                             % (bn_class.__name__, misplaced[0],
                                type(children[misplaced[0] - 1]).__name__))
    net.initialize(init.Xavier())
    out = net(nd.zeros((2, 1, 28, 28)))
    if out.shape != (2, 10):
        raise GradingFailure('expected the net to map (2, 1, 28, 28) to (2, 10) class scores; '
                             'got %s. Likely cause: the last layer is not Dense(10).'
                             % (out.shape,))
    print('PASS lenet: %d layers, %s after layers %s, output (N, 10)'
          % (len(children), bn_class.__name__, ', '.join(str(i - 1) for i in bn_positions)))


def grade_lenet_training(build_lenet, bn_class, threshold=LENET_THRESHOLD, budget=None):
    """Train build_lenet() in the fixed budget and grade its recalibrated test accuracy.

    Prints each epoch and the accuracy; returns None if it reaches ``threshold``, else raises
    GradingFailure with the accuracy and the failures of check_batch_norm_block(bn_class),
    the likely cause.
    """
    budget = dict(LENET_BUDGET, **(budget or {}))
    _build(build_lenet, bn_class)   # says "not implemented yet" before loading any data
    train_iter, test_iter = load_data_fashion_mnist(
        budget['batch_size'], train_subset=budget['train_subset'],
        test_subset=budget['test_subset'], seed=budget['seed'])
    set_seed(budget['seed'])
    net = _build(build_lenet, bn_class)
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': budget['lr']})
    diagnosis = None
    try:
        train(net, train_iter, test_iter, trainer, num_epochs=budget['num_epochs'],
              progress=False)
    except NonFiniteLossError as error:
        diagnosis = str(error).split('\n')[0]   # 'Training stopped: the loss is nan at ...'
    if diagnosis is None:
        recalibrate_batch_norm(net, train_iter.in_order(), budget['recalibrate_batches'])
        accuracy = evaluate_accuracy(test_iter, net)
        print('recalibrated test accuracy %.3f (threshold %.2f)' % (accuracy, threshold))
        if accuracy >= threshold:
            return None   # no value: nbgrader would read a number as the cell's partial score
        diagnosis = ('expected a recalibrated test accuracy of at least %.2f (a correct layer '
                     'reaches 0.65 to 0.78 in this budget); got %.3f.' % (threshold, accuracy))
    report = check_batch_norm_block(bn_class, verbose=False)
    cause = ('\nLikely cause, from check_batch_norm_block(%s):\n%s'
             % (bn_class.__name__, report.format(failures_only=True)) if not report.passed
             else '\ncheck_batch_norm_block(%s) passes: look at how the net is built '
                  '(check_lenet) and trained.' % bn_class.__name__)
    raise GradingFailure(diagnosis + cause)
