"""Checkers that run a learner's batch norm through a battery of properties and name the mistake.

``check_batch_norm(fn)`` takes a function with the book's signature
``fn(X, gamma, beta, moving_mean, moving_var, eps, momentum) -> (Y, moving_mean, moving_var)``;
``check_batch_norm_block(cls)`` takes a layer built as ``cls(num_features, num_dims)``. Each runs
its properties on fixed-seed float32 data, a 2-D input (8, 5) and a 4-D input (4, 3, 5, 5), in
training mode (inside ``autograd.record()``) and in prediction mode, compares with the reference
``d2l_utils.layers.batch_norm`` / ``d2l_utils.layers.BatchNorm`` (which tests/test_layers.py checks against
MXNet's own operator), prints one line per property and returns a ``CheckReport``. A failure says
what was expected, what came out and the likely cause; an exception raised by the learner's code
is caught and reported as a failure of the property that triggered it.

Layers are read and set through the book's attribute names ``gamma``, ``beta`` (Parameters or
NDArrays) and ``moving_mean``, ``moving_var`` (Parameters or NDArrays), with the book's eps=1e-5
and momentum=0.9.
"""
import os
import tempfile
import textwrap
from collections import namedtuple

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

from .layers import BatchNorm, batch_norm

EPS, MOMENTUM = 1e-5, 0.9
SHAPES = ((8, 5), (4, 3, 5, 5))
SECOND_DEVICE = mx.cpu(1)   # stands in for "another device than the default": any machine has it

# (id, what a PASS means); the order is the printed order
FUNCTION_PROPERTIES = (
    ('output_shape', "Y has X's shape and the statistics keep theirs, in both modes"),
    ('train_normalizes', 'training: each feature/channel of Y has mean beta and std gamma'),
    ('finite_large_mean', 'an input with mean ~100 gives finite outputs and moving_var >= 0'),
    ('per_feature_stats', 'statistics are per feature (2-D) / per channel (4-D), over the batch'),
    ('prediction_uses_moving_stats', 'prediction normalizes with the moving statistics and '
                                     'leaves them unchanged'),
    ('mode_from_is_training', 'the mode follows autograd.is_training(), also in '
                              'record(train_mode=False) and train_mode()'),
    ('moving_mean_update', 'moving_mean <- momentum * moving_mean + (1 - momentum) * batch mean'),
    ('moving_var_update', 'moving_var <- momentum * moving_var + (1 - momentum) * batch var'),
    ('gradients', 'gradients w.r.t. X, gamma and beta equal the reference'),
)
BLOCK_PROPERTIES = (
    (('builds', 'cls(num_features, num_dims) builds, initializes and runs on 2-D and 4-D input'),)
    + FUNCTION_PROPERTIES + (
        ('initial_moving_var', 'an untrained layer predicts on the reference\'s scale '
                               '(moving_var does not start at 0)'),
        ('updated_every_step', 'after 3 training steps moving_mean equals the reference\'s'),
        ('follows_device', 'after initialize(ctx=cpu(1)) it trains there and its moving '
                           'statistics live on cpu(1)'),
        ('saved_with_parameters', 'save_parameters/load_parameters keep the moving '
                                  'statistics: a reloaded layer predicts the same'),
    ))


CheckResult = namedtuple('CheckResult', 'name passed detail')


class CheckReport:
    """The outcome of a check: ``.passed``, ``.results`` (CheckResult(name, passed, detail)),
    ``.failed()`` (names of failed properties) and ``report['name']`` for one result.

    ``str(report)`` is the printed table (``report.format(failures_only=True)`` leaves out the PASS
    lines); ``repr`` is a one-line summary, so a notebook cell ending in a check shows the table
    once (printed) and the summary under it.
    """

    def __init__(self, title, results):
        self.title, self.results = title, list(results)

    @property
    def passed(self):
        return all(r.passed for r in self.results)

    def failed(self):
        return [r.name for r in self.results if not r.passed]

    def __getitem__(self, name):
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError('no property %r; the properties are %s'
                       % (name, ', '.join(r.name for r in self.results)))

    def __str__(self):
        return self.format()

    def format(self, failures_only=False):
        """The table: a summary line, then one line per property (a FAIL's detail wrapped under
        it). failures_only: leave out the PASS lines, e.g. to compare several mistakes."""
        width = max(len(r.name) for r in self.results) + 2
        lines = ['%s: %s' % (self.title, self._summary())]
        for r in self.results:
            if failures_only and r.passed:
                continue
            head = '%s  %s' % ('PASS' if r.passed else 'FAIL', r.name.ljust(width))
            lines.append(textwrap.fill(r.detail, width=100, initial_indent=head,
                                       subsequent_indent=' ' * len(head)))
        return '\n'.join(lines)

    def _summary(self):
        failed = self.failed()
        if not failed:
            return 'all %d properties pass' % len(self.results)
        return '%d of %d properties FAIL (%s)' % (len(failed), len(self.results), ', '.join(failed))

    def __repr__(self):
        return '<CheckReport %s: %s>' % (self.title, self._summary())


class _Fail(Exception):
    """A property failed; the message is the detail shown to the learner."""


# ----------------------------------------------------------------------------- data

def _param_shape(x_shape):
    return (1, x_shape[1]) if len(x_shape) == 2 else (1, x_shape[1], 1, 1)


def _axes(ndim):
    return 0 if ndim == 2 else (0, 2, 3)


def _describe(shape):
    return 'the %d-D input %s' % (len(shape), tuple(shape))


class _Case:
    """Fixed-seed float32 inputs for one input shape (numpy arrays, float32 values).

    x (N, D) or (N, C, H, W) has a different mean (-2 to 5) and scale (0.5 to 3) per feature;
    gamma (0.5 to 1.5), beta, moving_mean, moving_var (0.5 to 1.5) have the parameter shape;
    head weights Y in the loss (Y * head).sum() so that no gradient is trivially zero.
    """

    def __init__(self, shape, seed=0, loc=(-2.0, 5.0), scale=(0.5, 3.0)):
        rng = np.random.RandomState(seed)
        pshape = _param_shape(shape)
        f32 = lambda a: np.asarray(a, dtype=np.float32)   # noqa: E731
        self.shape, self.pshape = tuple(shape), pshape
        self.x = f32(rng.uniform(*loc, size=pshape) + rng.uniform(*scale, size=pshape)
                     * rng.randn(*shape))
        self.gamma = f32(rng.uniform(0.5, 1.5, pshape))
        self.beta = f32(rng.uniform(-1, 1, pshape))
        self.moving_mean = f32(rng.randn(*pshape))
        self.moving_var = f32(rng.uniform(0.5, 1.5, pshape))
        self.head = f32(rng.randn(*shape))

    def batch_stats(self, x=None):
        """Per-feature batch mean and biased variance in float64, with the parameter shape."""
        x = (self.x if x is None else x).astype(np.float64)
        axes = _axes(x.ndim)
        return x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)


def _cases(seed=0, **kwargs):
    return [_Case(shape, seed + i, **kwargs) for i, shape in enumerate(SHAPES)]


# ----------------------------------------------------------------------------- running the subject

_MODES = {
    'training': autograd.record,
    'prediction': None,
    'record(train_mode=False)': lambda: autograd.record(train_mode=False),
    'train_mode() without recording': autograd.train_mode,
}


def _run(instance, x, mode, head=None, ctx=None):
    """Run instance on x (numpy) in ``mode``; return Y (numpy), or (Y, dX) when head is given."""
    ctx = ctx or mx.cpu()
    X = nd.array(x, ctx=ctx, dtype=x.dtype)
    if head is not None:
        X.attach_grad()
        instance.attach_grad()
    scope = _MODES[mode]
    if scope is None:
        Y = instance.forward(X)
    else:
        with scope():
            Y = instance.forward(X)
            if head is not None:
                loss = (Y * nd.array(head, ctx=ctx)).sum()
    if not isinstance(Y, nd.NDArray):
        raise _Fail('expected Y to be an NDArray; got %s. Likely cause: the code returns '
                    'something other than the normalized input.' % type(Y).__name__)
    if head is None:
        return Y.asnumpy()
    loss.backward()
    return Y.asnumpy(), X.grad.asnumpy()


class _FunctionInstance:
    """A function plus the arrays a layer would hold, so functions and layers run alike.

    Each call passes the current moving statistics and keeps the ones the function returns.
    """

    def __init__(self, fn, case):
        self.fn = fn
        self.gamma, self.beta = nd.array(case.gamma), nd.array(case.beta)
        self.moving_mean, self.moving_var = nd.array(case.moving_mean), nd.array(case.moving_var)

    def attach_grad(self):
        self.gamma.attach_grad()
        self.beta.attach_grad()

    def forward(self, X):
        out = self.fn(X, self.gamma, self.beta, self.moving_mean, self.moving_var, EPS, MOMENTUM)
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise _Fail('expected the function to return (Y, moving_mean, moving_var); got %s. '
                        'Likely cause: a missing or incomplete return statement.'
                        % (type(out).__name__ if not isinstance(out, (tuple, list))
                           else 'a %s of %d items' % (type(out).__name__, len(out))))
        Y, self.moving_mean, self.moving_var = out
        return Y

    def stats(self):
        return _numpy(self.moving_mean, 'moving_mean'), _numpy(self.moving_var, 'moving_var')

    def grads(self):
        return self.gamma.grad.asnumpy(), self.beta.grad.asnumpy()


def _numpy(value, name):
    if not isinstance(value, nd.NDArray):
        raise _Fail('expected %s to be an NDArray; got %s.' % (name, type(value).__name__))
    return value.asnumpy()


class _BlockInstance:
    """A freshly built and initialized layer, its gamma/beta (and moving statistics) set."""

    def __init__(self, cls, case, ctx=None, set_stats=True, set_affine=True):
        self.ctx = ctx or mx.cpu()
        holder = gluon.Block(prefix='check_')   # an explicit prefix takes no global counter
        with holder.name_scope():
            self.block = cls(case.shape[1], len(case.shape))
        self.block.initialize(ctx=self.ctx)
        if set_affine:
            self.set('gamma', case.gamma)
            self.set('beta', case.beta)
        if set_stats:
            self.set('moving_mean', case.moving_mean)
            self.set('moving_var', case.moving_var)

    def attr(self, name):
        if not hasattr(self.block, name):
            raise _Fail("the layer has no attribute %r; expected the book's names gamma, beta, "
                        "moving_mean, moving_var. Likely cause: a different or misspelt name "
                        "(the checker reads the statistics through these names)." % name)
        return getattr(self.block, name)

    def array(self, name):
        value = self.attr(name)
        if isinstance(value, gluon.Parameter):
            return value.data(self.ctx)
        if isinstance(value, nd.NDArray):
            return value
        raise _Fail('expected layer.%s to be a Parameter or an NDArray; got %s.'
                    % (name, type(value).__name__))

    def set(self, name, value):
        current = self.attr(name)
        if isinstance(current, gluon.Parameter):
            current.set_data(nd.array(value))
        elif isinstance(current, nd.NDArray):
            setattr(self.block, name, nd.array(value, ctx=current.context))
        else:
            raise _Fail('expected layer.%s to be a Parameter or an NDArray; got %s.'
                        % (name, type(current).__name__))

    def attach_grad(self):
        pass   # Parameters have gradients already

    def attribute_holding(self, value, exclude):
        """The name of another NDArray attribute of the layer equal to value, or None."""
        for name, held in vars(self.block).items():
            if (name != exclude and isinstance(held, nd.NDArray) and held.shape == value.shape
                    and np.allclose(held.asnumpy(), value, rtol=1e-4, atol=1e-5)):
                return name
        return None

    def forward(self, X):
        return self.block(X)

    def stats(self):
        return self.array('moving_mean').asnumpy(), self.array('moving_var').asnumpy()

    def grads(self):
        out = []
        for name in ('gamma', 'beta'):
            param = self.attr(name)
            if not isinstance(param, gluon.Parameter):
                raise _Fail('layer.%s is not a Parameter, so it gets no gradient and the '
                            'Trainer never updates it. Likely cause: create it with '
                            'self.params.get(%r, shape=shape).' % (name, name))
            out.append(param.grad(self.ctx).asnumpy())
        return tuple(out)


class _Subject:
    """What is checked (a function or a layer class) and its reference."""

    def __init__(self, target, is_block):
        self.target, self.is_block = target, is_block
        self.where = ''   # the input and mode being run, for messages about exceptions

    def instance(self, case, **kwargs):
        if self.is_block:
            return _BlockInstance(self.target, case, **kwargs)
        return _FunctionInstance(self.target, case)

    def reference(self, case, **kwargs):
        if self.is_block:
            return _BlockInstance(BatchNorm, case, **kwargs)
        return _FunctionInstance(batch_norm, case)

    def run(self, instance, case_or_x, mode, head=None, ctx=None):
        x = case_or_x.x if isinstance(case_or_x, _Case) else case_or_x
        self.where = 'on %s in %s mode' % (_describe(x.shape), mode)
        return _run(instance, x, mode, head, ctx)

    def fresh(self, case, **kwargs):
        self.where = 'building the layer for %s' % _describe(case.shape) if self.is_block else ''
        return self.instance(case, **kwargs)


# ----------------------------------------------------------------------------- helpers for details

def _fmt(value):
    return '%.4g' % value


def _close(a, b, rtol=1e-4, atol=1e-5):
    return a.shape == b.shape and np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


def _worst(a, b):
    """Index of the largest difference between two same-shape arrays (NaN counts as largest)."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    diff[np.isnan(diff)] = np.inf
    return np.unravel_index(np.argmax(diff), diff.shape)


def _first_line(exc):
    """A short one-line message: MXNet's errors carry a C++ traceback and a timestamp."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else ''
    if text.startswith('MXNetError:'):
        text = text[len('MXNetError:'):].strip()
    if text.startswith('[') and '] ' in text:
        text = text.split('] ', 1)[1]
    text = text.rstrip('.')   # the caller ends the sentence
    return text if len(text) <= 200 else text[:197] + '...'


def _exception_cause(exc):
    text = str(exc)
    if 'GPU' in text or 'gpu' in text:
        return ('arrays are created on a GPU (ctx=mx.gpu()) and this machine has none: create '
                'the moving statistics as Parameters (self.params.get(..., grad_req=\'null\')) '
                'so initialize(ctx=...) puts them on the network\'s device.')
    if 'broadcast' in text or 'Incompatible' in text or 'shape' in text.lower():
        return ('the shapes do not fit: gamma, beta and the statistics have shape (1, D) for a '
                '2-D input and (1, C, 1, 1) for a 4-D one (mean(..., keepdims=True)).')
    if 'computational graph' in text or 'differentiate' in text:
        return ('Y is not connected to autograd\'s graph: do not leave NDArrays (asnumpy, '
                'nd.array) or compute Y under autograd.pause().')
    if 'Inplace' in text or 'inplace' in text:
        return ('an in-place write (x[:] = ..., +=) to an array the recorded graph uses: '
                'return new arrays, or write the moving statistics under autograd.pause().')
    if isinstance(exc, AttributeError):
        return 'the code uses an attribute the object does not have (a typo?).'
    return 'an error in the code on this input; the message says where.'


# ----------------------------------------------------------------------------- the properties

def _prop_output_shape(subject):
    for case in _cases():
        for mode in ('training', 'prediction'):
            inst = subject.fresh(case)
            Y = subject.run(inst, case, mode)
            if Y.shape != case.shape:
                cause = ('it returns a statistic instead of the normalized X' if Y.shape ==
                         case.pshape else 'a reduction without keepdims=True, or a wrong axis')
                raise _Fail('on %s in %s mode: expected Y of shape %s, got %s. Likely cause: '
                            '%s.' % (_describe(case.shape), mode, case.shape, Y.shape, cause))
            for name, stat in zip(('moving_mean', 'moving_var'), inst.stats()):
                if stat.shape != case.pshape:
                    raise _Fail(
                        'on %s in %s mode: expected %s of shape %s, got %s. Likely cause: the '
                        'batch statistic lost its shape; compute it with keepdims=True (axis=%s).'
                        % (_describe(case.shape), mode, name, case.pshape, stat.shape,
                           _axes(len(case.shape))))


def _prop_train_normalizes(subject):
    for case in _cases():
        Y = subject.run(subject.fresh(case), case, 'training').astype(np.float64)
        where = _describe(case.shape)
        axes = _axes(Y.ndim)
        if not np.isfinite(Y).all():
            raise _Fail('on %s in training mode: expected finite outputs with mean beta and std '
                        'gamma; got %d non-finite values of %d. Likely cause: a negative batch '
                        'variance under the square root, e.g. (X - mean ** 2) instead of '
                        '(X - mean) ** 2.' % (where, (~np.isfinite(Y)).sum(), Y.size))
        mean, std = Y.mean(axis=axes, keepdims=True), Y.std(axis=axes, keepdims=True)
        mean_ok = np.abs(mean - case.beta) <= 2e-3 * np.maximum(1.0, np.abs(case.beta))
        std_ok = np.abs(std - case.gamma) <= 2e-3 * case.gamma
        if mean_ok.all() and std_ok.all():
            continue
        badness = np.abs(mean - case.beta) / np.maximum(1.0, np.abs(case.beta)) + \
            np.abs(std - case.gamma) / case.gamma
        j = np.unravel_index(np.argmax(badness), badness.shape)
        f = j[1]
        _, bvar = case.batch_stats()
        m = Y.size // Y.shape[1]
        ratio = std / case.gamma
        if np.allclose(mean, 0, atol=2e-3) and np.allclose(std, 1, rtol=2e-3):
            cause = 'gamma and beta are not applied: Y = gamma * X_hat + beta.'
        elif mean_ok.all() and np.allclose(ratio, np.sqrt((m - 1) / m), rtol=2e-3):
            cause = ('the unbiased variance (divided by m - 1) normalizes X; batch norm uses the '
                     'biased one, ((X - mean) ** 2).mean().')
        elif mean_ok.all() and np.allclose(ratio, 1 / np.sqrt(bvar), rtol=5e-3):
            cause = 'X is divided by the variance, not by its square root nd.sqrt(var + eps).'
        elif mean_ok.all():
            cause = 'X is not divided by the standard deviation of its own feature/channel.'
        else:
            cause = ('the mean subtracted is not each feature\'s batch mean (see '
                     'per_feature_stats).')
        raise _Fail('on %s in training mode, feature/channel %d: expected mean %s (beta) and std '
                    '%s (gamma); got mean %s, std %s. Likely cause: %s'
                    % (where, f, _fmt(case.beta[j]), _fmt(case.gamma[j]), _fmt(mean[j]),
                       _fmt(std[j]), cause))


def _prop_finite_large_mean(subject):
    for case in _cases(seed=10, loc=(100.0, 110.0), scale=(0.5, 2.0)):
        inst = subject.fresh(case)
        v0 = inst.stats()[1].astype(np.float64)
        Y = subject.run(inst, case, 'training')
        v1 = inst.stats()[1].astype(np.float64)
        Y_pred = subject.run(inst, case, 'prediction')
        bad_y = int((~np.isfinite(Y)).sum() + (~np.isfinite(Y_pred)).sum())
        bad_v = not np.isfinite(v1).all() or (v1 < 0).any()
        if not bad_y and not bad_v:
            continue
        bmean, bvar = case.batch_stats()
        wrong = bmean - bmean ** 2   # what (X - mean ** 2).mean() computes
        j = tuple(int(i) for i in np.unravel_index(np.argmin(np.nan_to_num(v1, nan=-np.inf)),
                                                   v1.shape))
        got = 'moving_var[%d] = %s' % (j[1], _fmt(v1[j]))
        expected_v = MOMENTUM * v0 + (1 - MOMENTUM) * bvar
        if _close(v1, MOMENTUM * v0 + (1 - MOMENTUM) * wrong, rtol=1e-3, atol=1e-3):
            cause = ('the variance is computed as (X - mean ** 2).mean(), which is E[X] - mean**2 '
                     '(here about %s): write ((X - mean) ** 2).mean().' % _fmt(wrong[j]))
        elif (v1 < 0).any():
            cause = 'the batch variance came out negative; compute it as ((X - mean) ** 2).mean().'
        else:
            cause = ('a square root of a negative number or a division by zero; with a large mean '
                     'E[X**2] - E[X]**2 loses all precision in float32: use ((X - mean) ** 2).')
        raise _Fail('on %s with feature means 100 to 110: expected finite outputs and '
                    'moving_var >= 0 (moving_var[%d] -> %s); got %d non-finite outputs of %d '
                    '(training and prediction) and %s. Likely cause: %s'
                    % (_describe(case.shape), j[1], _fmt(expected_v[j]), bad_y, 2 * Y.size, got,
                       cause))


def _prop_per_feature_stats(subject):
    # Values in [0.1, 0.9] like pixels: every plausible variance formula stays positive here, so
    # this property sees only which outputs depend on which inputs.
    for case in _cases(seed=20):
        x = np.random.RandomState(3).uniform(0.1, 0.9, case.shape).astype(np.float32)
        f = 1
        index = (0, f) if x.ndim == 2 else (0, f, 0, 0)
        x2 = x.copy()
        x2[index] += 0.5
        Y1 = subject.run(subject.fresh(case), x, 'training')
        Y2 = subject.run(subject.fresh(case), x2, 'training')
        changed = ~np.isclose(Y1, Y2, rtol=1e-5, atol=1e-6, equal_nan=True)
        unit = 'feature' if x.ndim == 2 else 'channel'
        where = 'on %s in training mode, changing X%s' % (_describe(case.shape), list(index))
        per_unit = changed.any(axis=tuple(a for a in range(x.ndim) if a != 1))
        others = int(np.delete(per_unit, f).sum())
        other_examples = changed[1:].any()
        if others and not other_examples:
            raise _Fail('%s: expected only %s %d of Y to change, in every example; %d other %ss '
                        'of example 0 changed and no other example did. Likely cause: statistics '
                        'computed per example across its %ss (axis=%s, layer normalization); '
                        'batch norm averages over the batch, axis=%s.'
                        % (where, unit, f, others, unit, unit, 1 if x.ndim == 2 else (1, 2, 3),
                           _axes(x.ndim)))
        if others:
            raise _Fail('%s: expected only %s %d of Y to change; %d other %ss changed too. Likely '
                        'cause: statistics shared across %ss (computed over the whole tensor or '
                        'over the wrong axis); average over axis=%s.'
                        % (where, unit, f, others, unit, unit, _axes(x.ndim)))
        if not changed[1:, f].any():
            raise _Fail('%s: expected the other examples of %s %d to change (they share its '
                        'batch statistics); none did. Likely cause: statistics computed per '
                        'example (over axis %s) instead of over the batch (axis=%s).'
                        % (where, unit, f, 1 if x.ndim == 2 else '(2, 3)', _axes(x.ndim)))
        if x.ndim == 4 and not changed[:, f, 1:, :].any():
            raise _Fail('%s: expected all positions of channel %d to change; only position '
                        '(0, 0) did. Likely cause: statistics per position over axis 0 only; a '
                        '4-D input averages over axes (0, 2, 3).' % (where, f))


def _prop_prediction_uses_moving_stats(subject):
    for case in _cases(seed=30):
        inst = subject.fresh(case)
        Y = subject.run(inst, case, 'prediction').astype(np.float64)
        mm, mv = inst.stats()
        x = case.x.astype(np.float64)
        expected = case.gamma * (x - case.moving_mean) / np.sqrt(case.moving_var + EPS) + case.beta
        where = _describe(case.shape)
        if not _close(Y, expected, rtol=1e-4, atol=1e-4):
            bmean, bvar = case.batch_stats()
            batch = case.gamma * (x - bmean) / np.sqrt(bvar + EPS) + case.beta
            no_sqrt = case.gamma * (x - case.moving_mean) / (case.moving_var + EPS) + case.beta
            if _close(Y, batch, rtol=1e-4, atol=1e-4):
                cause = ('prediction normalizes with the batch\'s own statistics: the mode test '
                         'is wrong (e.g. a self.training flag that nothing switches off); use '
                         'autograd.is_training().')
            elif _close(Y, no_sqrt, rtol=1e-4, atol=1e-4):
                cause = 'X is divided by moving_var, not by nd.sqrt(moving_var + eps).'
            else:
                cause = 'prediction does not compute gamma * (X - moving_mean) / ' \
                        'sqrt(moving_var + eps) + beta.'
            i = _worst(Y, expected)
            raise _Fail('on %s in prediction mode (moving_mean %s, moving_var %s for feature %d):'
                        ' expected Y%s = %s; got %s. Likely cause: %s'
                        % (where, _fmt(case.moving_mean.flat[i[1]]),
                           _fmt(case.moving_var.flat[i[1]]), i[1], list(i), _fmt(expected[i]),
                           _fmt(Y[i]), cause))
        for name, before, after in (('moving_mean', case.moving_mean, mm),
                                    ('moving_var', case.moving_var, mv)):
            if not _close(after, before, rtol=1e-6, atol=1e-7):
                raise _Fail('on %s in prediction mode: expected %s unchanged (%s); got %s. Likely '
                            'cause: the moving statistics are updated outside training mode; '
                            'update them only when autograd.is_training().'
                            % (where, name, _fmt(before.flat[0]), _fmt(after.flat[0])))


def _prop_mode_from_is_training(subject):
    for case in _cases(seed=40):
        # Each run gets a fresh instance, so a run that wrongly updates state cannot affect another
        pairs = (('record(train_mode=False)', 'prediction',
                  'normalizes with the batch statistics while recording in prediction mode'),
                 ('train_mode() without recording', 'training',
                  'uses the moving statistics in training mode when nothing is recorded'))
        for mode, same_as, symptom in pairs:
            Y = subject.run(subject.fresh(case), case, mode)
            Y_ref = subject.run(subject.fresh(case), case, same_as)
            if not _close(Y, Y_ref, rtol=1e-5, atol=1e-6):
                i = _worst(Y, Y_ref)
                raise _Fail('on %s inside autograd.%s: expected the %s-mode output (Y%s = %s); '
                            'got %s: it %s. Likely cause: the mode is taken from '
                            'autograd.is_recording() (or a flag) instead of autograd.is_training().'
                            % (_describe(case.shape), mode.split(' ')[0], same_as, list(i),
                               _fmt(Y_ref[i]), _fmt(Y[i]), symptom))


def _update_candidates(old, batch, name, is_block, extra=()):
    """(value, cause) pairs a wrong moving-average update produces, for naming the mistake."""
    m = MOMENTUM
    unchanged = ('%s did not change: the new value is computed from %s itself (momentum * %s + '
                 '(1 - momentum) * %s)' % (name, name, name, name))
    if is_block:
        unchanged += ', or it is never stored back in self.%s' % name
    return (
        (old, unchanged + '.'),
        (m * old + (1 - m) + old, "'+' where '*' belongs: momentum * %s + (1 - momentum) + %s; "
                                  'write (1 - momentum) * %s.' % (name, name, name.split('_')[1])),
        ((1 - m) * old + m * batch, 'momentum and 1 - momentum are swapped.'),
        (batch, '%s is replaced by the batch statistic instead of averaged with it.' % name),
    ) + tuple(extra)


def _check_update(subject, index, name, seed):
    for case in _cases(seed=seed):
        inst = subject.fresh(case)
        old = inst.stats()[index].astype(np.float64)
        subject.run(inst, case, 'training')
        new = inst.stats()[index].astype(np.float64)
        bmean, bvar = case.batch_stats()
        batch = bvar if index else bmean
        expected = MOMENTUM * old + (1 - MOMENTUM) * batch
        if _close(new, expected, rtol=1e-4, atol=1e-5):
            continue
        extra = ()
        if index:
            m = case.x.size // case.shape[1]
            extra = ((MOMENTUM * old + (1 - MOMENTUM) * bvar * m / (m - 1),
                      'the unbiased variance (divided by m - 1); batch norm and MXNet\'s '
                      'nn.BatchNorm use the biased one, ((X - mean) ** 2).mean().'),
                     (MOMENTUM * old + (1 - MOMENTUM) * (bmean - bmean ** 2),
                      'the batch variance is computed as (X - mean ** 2).mean() = E[X] - mean**2; '
                      'write ((X - mean) ** 2).mean().'),
                     (MOMENTUM * old + (1 - MOMENTUM) * np.sqrt(bvar),
                      'it moves toward the standard deviation instead of the variance.'))
        cause = 'the update is not momentum * %s + (1 - momentum) * batch %s.' % (
            name, 'variance' if index else 'mean')
        for value, text in _update_candidates(old, batch, name, subject.is_block, extra):
            if new.shape == value.shape and np.allclose(new, value, rtol=1e-3, atol=1e-5):
                cause = text
                break
        if subject.is_block:
            elsewhere = inst.attribute_holding(expected, exclude=name)
            if elsewhere:
                cause = ('the new value is stored in self.%s, not in self.%s (a misspelt '
                         'attribute name), so %s keeps its old value.' % (elsewhere, name, name))
        j = _worst(new, expected) if new.shape == expected.shape else (0,) * len(case.pshape)
        raise _Fail('on %s, one training step: expected %s[%d] %s -> %s (%s x %s + %s x batch '
                    '%s %s); got %s. Likely cause: %s'
                    % (_describe(case.shape), name, j[1], _fmt(old[j]), _fmt(expected[j]),
                       MOMENTUM, _fmt(old[j]), round(1 - MOMENTUM, 6),
                       'variance' if index else 'mean', _fmt(batch[j]), _fmt(new.flat[0] if
                       new.shape != expected.shape else new[j]), cause))


def _prop_moving_mean_update(subject):
    _check_update(subject, 0, 'moving_mean', seed=50)


def _prop_moving_var_update(subject):
    _check_update(subject, 1, 'moving_var', seed=60)


def _prop_gradients(subject):
    for case in _cases(seed=70):
        inst, ref = subject.fresh(case), subject.reference(case)
        Y, dX = subject.run(inst, case, 'training', head=case.head)
        grads = inst.grads()
        Y_ref, dX_ref = _run(ref, case.x, 'training', head=case.head)
        grads_ref = ref.grads()
        wrong = []
        for name, g, g_ref in (('X', dX, dX_ref), ('gamma', grads[0], grads_ref[0]),
                               ('beta', grads[1], grads_ref[1])):
            if not _close(g, g_ref, rtol=1e-3, atol=1e-4):
                if g.shape != g_ref.shape:
                    wrong.append('d%s has shape %s, expected %s' % (name, g.shape, g_ref.shape))
                elif not np.isfinite(g).all():
                    wrong.append('d%s has %d non-finite values of %d'
                                 % (name, (~np.isfinite(g)).sum(), g.size))
                else:
                    wrong.append('d%s differs by up to %s (reference max |d%s| %s)'
                                 % (name, _fmt(np.abs(g - g_ref).max()), name,
                                    _fmt(np.abs(g_ref).max())))
        if not wrong:
            continue
        if not _close(Y, Y_ref, rtol=1e-4, atol=1e-4):
            cause = ('the training-mode output already differs from the reference, so its '
                     'gradients do too: fix the forward pass first (see train_normalizes).')
        elif all(np.abs(g).max() == 0 for g in (dX,) + tuple(grads)):
            cause = ('all gradients are zero: the output is not connected to the inputs in '
                     'autograd\'s graph (computed under autograd.pause(), detached, or via numpy).')
        else:
            cause = ('the output matches but the gradients do not: part of the computation is '
                     'hidden from autograd (autograd.pause(), .detach(), or numpy values).')
        raise _Fail('on %s in training mode, loss (Y * fixed weights).sum(): expected the '
                    'reference\'s gradients; %s. Likely cause: %s'
                    % (_describe(case.shape), '; '.join(wrong), cause))


# --- properties of layers only

def _prop_builds(subject):
    for case in _cases():
        inst = subject.fresh(case, set_stats=False, set_affine=False)
        subject.run(inst, case, 'training')
        subject.run(inst, case, 'prediction')


def _prop_initial_moving_var(subject):
    for case in _cases(seed=80):
        inst = subject.fresh(case, set_stats=False, set_affine=False)
        ref = subject.reference(case, set_stats=False, set_affine=False)
        Y = subject.run(inst, case, 'prediction').astype(np.float64)
        Y_ref = _run(ref, case.x, 'prediction').astype(np.float64)
        rms, rms_ref = np.sqrt(np.mean(Y ** 2)), np.sqrt(np.mean(Y_ref ** 2))
        ratio = rms / rms_ref
        if np.isfinite(ratio) and ratio < 10:
            continue
        var0 = inst.array('moving_var').asnumpy()
        if np.allclose(var0, 0):
            cause = ('moving_var starts at 0, so prediction divides by sqrt(0 + eps) = '
                     'sqrt(1e-5) ~ 0.0032, i.e. multiplies by ~316; start moving_var at ones, as '
                     'nn.BatchNorm does (init=init.One()).')
        else:
            cause = ('the initial moving statistics (moving_var starts at %s) make prediction '
                     'far from normalizing; start moving_mean at 0 and moving_var at 1.'
                     % _fmt(var0.flat[0]))
        raise _Fail('on %s, prediction before any training step: expected outputs on the '
                    'reference\'s scale (RMS %s); got RMS %s (%sx). Likely cause: %s'
                    % (_describe(case.shape), _fmt(rms_ref), _fmt(rms), _fmt(ratio), cause))


def _prop_updated_every_step(subject):
    for case in _cases(seed=90):
        inst, ref = subject.fresh(case), subject.reference(case)
        changed_at = []
        previous = inst.stats()[0]
        for step in range(3):
            x = _Case(case.shape, seed=91 + step).x
            subject.run(inst, x, 'training')
            _run(ref, x, 'training')
            current = inst.stats()[0]
            # not array_equal: 0.9 * m + 0.1 * m differs from m in the last float32 bit
            if not np.allclose(current, previous, rtol=1e-6, atol=1e-7):
                changed_at.append(step + 1)
            previous = current
        expected = ref.stats()[0]
        if _close(previous, expected, rtol=1e-4, atol=1e-5):
            continue
        if not changed_at:
            cause = 'moving_mean is never updated (see moving_mean_update).'
        elif changed_at != [1, 2, 3]:
            cause = ('moving_mean is updated only on some steps (e.g. only when it is copied to '
                     'a new device): store the new value on every training step.')
        else:
            cause = 'each update differs from the reference\'s (see moving_mean_update).'
        j = _worst(previous, expected)
        changes = ('it never changed' if not changed_at else 'it changed only at step%s %s'
                   % ('s' if len(changed_at) > 1 else '', ', '.join(map(str, changed_at))))
        if changed_at == [1, 2, 3]:
            changes = 'it changed at every step'
        raise _Fail('on %s, 3 training steps: expected moving_mean[%d] = %s (the reference\'s); '
                    'got %s, and %s. Likely cause: %s'
                    % (_describe(case.shape), j[1], _fmt(expected[j]), _fmt(previous[j]),
                       changes, cause))


def _device_of(inst, name):
    value = inst.attr(name)
    if isinstance(value, gluon.Parameter):
        return value.list_ctx()
    return [value.context]


def _prop_follows_device(subject):
    device = SECOND_DEVICE
    for case in _cases(seed=100):
        subject.where = ('building the layer for %s and initializing it on %s'
                         % (_describe(case.shape), device))
        try:
            inst = subject.instance(case, ctx=device, set_stats=False)
            subject.run(inst, case, 'training', head=case.head, ctx=device)
            subject.run(inst, case, 'prediction', ctx=device)
            devices = {name: _device_of(inst, name) for name in ('moving_mean', 'moving_var')}
        except _Fail:
            raise
        except Exception as exc:
            raise _Fail('%s: expected it to train and predict there; raised %s: %s. Likely '
                        'cause: arrays made on a fixed device in the constructor; create the '
                        'moving statistics as Parameters (self.params.get(..., grad_req=\'null\'))'
                        ' so initialize(ctx=...) places them.'
                        % (subject.where, type(exc).__name__, _first_line(exc)))
        for name, where in devices.items():
            if where != [device]:
                raise _Fail('on %s, after initialize(ctx=%s) and a training step there: expected '
                            '%s on %s; it is on %s. Likely cause: the constructor fixes its device '
                            '(ctx=...); create it as a Parameter (self.params.get(..., '
                            'grad_req=\'null\')) so initialize(ctx=...) places it, or copy it to '
                            'X.context in forward as the book does.'
                            % (_describe(case.shape), device, name, device,
                               ', '.join(map(str, where))))


def _prop_saved_with_parameters(subject):
    for case in _cases(seed=110):
        inst = subject.fresh(case, set_stats=False)
        for step in range(3):
            subject.run(inst, _Case(case.shape, seed=111 + step).x, 'training')
        x_test = _Case(case.shape, seed=120).x
        Y = subject.run(inst, x_test, 'prediction')
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, 'layer.params')
            subject.where = 'saving and reloading the layer for %s' % _describe(case.shape)
            inst.block.save_parameters(path)
            reloaded = subject.instance(case, set_stats=False, set_affine=False)
            reloaded.block.load_parameters(path, ctx=mx.cpu())
        Y2 = subject.run(reloaded, x_test, 'prediction')
        if _close(Y2, Y, rtol=1e-5, atol=1e-6):
            continue
        plain = [name for name in ('moving_mean', 'moving_var')
                 if not isinstance(inst.attr(name), gluon.Parameter)]
        if plain:
            cause = ('%s %s plain NDArray attribute%s, which save_parameters does not save, so '
                     'the reloaded layer predicts with the initial values; make them Parameters: '
                     'self.params.get(\'moving_mean\', shape=shape, init=init.Zero(), '
                     'grad_req=\'null\').' % (' and '.join(plain), 'are' if len(plain) > 1
                                              else 'is a', 's' if len(plain) > 1 else ''))
        else:
            cause = 'part of the state the layer predicts with is not a Parameter.'
        i = _worst(Y2, Y)
        raise _Fail('on %s, after 3 training steps, save_parameters and load_parameters into a '
                    'new layer: expected the same predictions (Y%s = %s); the reloaded layer '
                    'gives %s. Likely cause: %s'
                    % (_describe(case.shape), list(i), _fmt(Y[i]), _fmt(Y2[i]), cause))


_FUNCTIONS = {name: globals()['_prop_' + name] for name, _ in BLOCK_PROPERTIES}


# ----------------------------------------------------------------------------- the checkers

def _check(subject, properties, title, verbose):
    results = []
    blocked = None   # set when the layer cannot be built: the other properties cannot run
    for name, meaning in properties:
        if blocked:
            results.append(CheckResult(name, False, 'not checked: %s (see builds).' % blocked))
            continue
        subject.where = ''
        try:
            _FUNCTIONS[name](subject)
        except _Fail as failure:
            results.append(CheckResult(name, False, str(failure)))
        except Exception as exc:   # the learner's code raised: report it, never crash
            where = subject.where or 'running this property'
            results.append(CheckResult(name, False, '%s: raised %s: %s. Likely cause: %s'
                                       % (where, type(exc).__name__, _first_line(exc),
                                          _exception_cause(exc))))
        else:
            results.append(CheckResult(name, True, meaning))
        if name == 'builds' and not results[-1].passed:
            blocked = 'the layer could not be built and run'
    report = CheckReport(title, results)
    if verbose:
        print(report)
    return report


def _name(target):
    name = getattr(target, '__name__', None)
    if name is None and hasattr(target, 'func'):   # functools.partial
        name = getattr(target.func, '__name__', repr(target.func))
    return name or repr(target)


def check_batch_norm(fn, verbose=True):
    """Check a batch-norm function with the book's signature against ``d2l_utils.batch_norm``.

    fn(X, gamma, beta, moving_mean, moving_var, eps, momentum) -> (Y, moving_mean, moving_var),
    X (N, D) or (N, C, H, W), the others (1, D) or (1, C, 1, 1). Runs the properties of
    ``FUNCTION_PROPERTIES`` on 2-D (8, 5) and 4-D (4, 3, 5, 5) float32 inputs with eps=1e-5 and
    momentum=0.9; prints one line per property if verbose; returns a ``CheckReport``.
    """
    if not callable(fn):
        raise TypeError('check_batch_norm expects a function fn(X, gamma, beta, moving_mean, '
                        'moving_var, eps, momentum); got %r. To check a layer class, use '
                        'check_batch_norm_block.' % (fn,))
    if isinstance(fn, type):
        raise TypeError('check_batch_norm expects a function; got the class %s. To check a '
                        'layer, use check_batch_norm_block(%s).' % (fn.__name__, fn.__name__))
    return _check(_Subject(fn, is_block=False), FUNCTION_PROPERTIES,
                  'check_batch_norm(%s)' % _name(fn), verbose)


def check_batch_norm_block(cls, verbose=True):
    """Check a batch-norm layer, built as ``cls(num_features, num_dims)``, against
    ``d2l_utils.BatchNorm``.

    Runs the properties of ``BLOCK_PROPERTIES``: those of ``check_batch_norm`` on the layer plus
    building, the initial moving variance, an update on every step, following the network to
    another device (cpu(1)) and surviving save_parameters/load_parameters. The layer must expose
    the book's attributes gamma, beta, moving_mean and moving_var. Prints one line per property
    if verbose; returns a ``CheckReport``.
    """
    if not callable(cls):
        raise TypeError('check_batch_norm_block expects a layer class cls(num_features, '
                        'num_dims); got %r.' % (cls,))
    if isinstance(cls, gluon.Block):
        raise TypeError('check_batch_norm_block expects the class (e.g. BatchNorm), not a layer '
                        'built from it (BatchNorm(3, num_dims=4)): it builds fresh layers of '
                        'each shape itself.')
    return _check(_Subject(cls, is_block=True), BLOCK_PROPERTIES,
                  'check_batch_norm_block(%s)' % _name(cls), verbose)
