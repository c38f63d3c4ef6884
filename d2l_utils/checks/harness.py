"""What the properties run on: fixed-seed inputs, adapters that run functions and layers alike,
and the helpers their messages use.

A property gets a ``Subject`` (the learner's function or layer class, and the reference it is
compared with), builds instances with ``subject.fresh(case)`` for each ``Case`` of ``cases()``
and runs them with ``subject.run(instance, case, mode)`` in one of the ``MODES``. It raises
``Failure`` with the message a learner reads when the property does not hold.
"""
import contextlib
import inspect

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

from ..layers import BatchNorm, batch_norm, param_shape

__all__ = ['BlockInstance', 'Case', 'EPS', 'Failure', 'FunctionInstance', 'MODES', 'MODE_PHASES',
           'MOMENTUM',
           'RECORDING_MODES', 'SECOND_DEVICE', 'SHAPES', 'Subject', 'cases', 'check_unchanged',
           'close', 'constructor_problem', 'describe', 'exception_cause', 'fmt',
           'looks_like_function',
           'run', 'stat_axes', 'worst']

EPS, MOMENTUM = 1e-5, 0.9
SHAPES = ((8, 5), (4, 3, 5, 5))
SECOND_DEVICE = mx.cpu(1)   # stands in for "another device than the default": any machine has it


class Failure(Exception):
    """A property does not hold; the message is the detail shown to the learner."""


# ----------------------------------------------------------------------------- data

def stat_axes(ndim):
    """The axes batch norm averages over: 0 for (N, D), (0, 2, 3) for (N, C, H, W)."""
    return 0 if ndim == 2 else (0, 2, 3)


def describe(shape):
    """'the 2-D input (8, 5)': how messages name an input."""
    return 'the %d-D input %s' % (len(shape), tuple(shape))


class Case:
    """Fixed-seed float32 inputs for one input shape (numpy arrays, float32 values).

    x (N, D) or (N, C, H, W) has a different mean (-2 to 5) and scale (0.5 to 3) per feature;
    gamma (0.5 to 1.5), beta, moving_mean, moving_var (0.5 to 1.5) have the parameter shape;
    head weights Y in the loss (Y * head).sum() so that no gradient is trivially zero.
    """

    def __init__(self, shape, seed=0, loc=(-2.0, 5.0), scale=(0.5, 3.0)):
        rng = np.random.RandomState(seed)
        pshape = param_shape(shape[1], len(shape))
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
        axes = stat_axes(x.ndim)
        return x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)


def cases(seed=0, **kwargs):
    """One ``Case`` per shape of ``SHAPES`` (a 2-D and a 4-D input), seeds seed, seed + 1."""
    return [Case(shape, seed + i, **kwargs) for i, shape in enumerate(SHAPES)]


# ----------------------------------------------------------------------------- running the subject

# mode name -> the context manager that sets it (None: prediction, no context at all)
MODES = {
    'training': autograd.record,
    'prediction': None,
    'record(train_mode=False)': lambda: autograd.record(train_mode=False),
    'train_mode() without recording': autograd.train_mode,
}
RECORDING_MODES = ('training', 'record(train_mode=False)')


def run(instance, x, mode, head=None, ctx=None):
    """Run instance on x (numpy) in ``mode``; return Y (numpy), or (Y, dX) when head is given.

    head: weights of the loss (Y * head).sum() to differentiate; only in a mode that records
    (``RECORDING_MODES``), since a gradient needs the recorded graph.
    """
    if head is not None and mode not in RECORDING_MODES:
        raise ValueError('run: gradients need a mode that records (%s); got %r'
                         % (', '.join(RECORDING_MODES), mode))
    ctx = ctx or mx.cpu()
    X = nd.array(x, ctx=ctx, dtype=x.dtype)
    if head is not None:
        X.attach_grad()
        instance.attach_grad()
    scope = MODES[mode]
    with scope() if scope is not None else contextlib.nullcontext():
        Y = instance.forward(X)
        if not isinstance(Y, nd.NDArray):
            raise Failure('expected Y to be an NDArray; got %s. Likely cause: the code returns '
                          'something other than the normalized input.' % type(Y).__name__)
        loss = None if head is None else (Y * nd.array(head, ctx=ctx)).sum()
    check_unchanged('X', X, x, 'in %s mode' % mode)
    if loss is None:
        return Y.asnumpy()
    loss.backward()
    return Y.asnumpy(), X.grad.asnumpy()


def check_unchanged(name, array, original, when):
    """Raise Failure if ``array`` (an NDArray passed to the learner's code) no longer holds
    ``original`` (numpy): the code wrote into its input."""
    if not np.array_equal(array.asnumpy(), original, equal_nan=True):
        raise Failure('%s the code changed its input %s in place (e.g. %s[:] = ..., or '
                      '%s -= mean); its values after the call differ from those passed in. Batch '
                      'norm must leave %s as it was: the caller still uses it. Likely cause: an '
                      'in-place write; compute a new array instead (X_centered = X - mean).'
                      % (when, name, name, name, name))


class FunctionInstance:
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
        gamma, beta = self.gamma.asnumpy(), self.beta.asnumpy()
        out = self.fn(X, self.gamma, self.beta, self.moving_mean, self.moving_var, EPS, MOMENTUM)
        check_unchanged('gamma', self.gamma, gamma, 'when called')
        check_unchanged('beta', self.beta, beta, 'when called')
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise Failure('expected the function to return (Y, moving_mean, moving_var); got %s. '
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
        raise Failure('expected %s to be an NDArray; got %s.' % (name, type(value).__name__))
    return value.asnumpy()


class BlockInstance:
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
            raise Failure("the layer has no attribute %r; expected the book's names gamma, beta, "
                          "moving_mean, moving_var. Likely cause: a different or misspelt name "
                          "(the checker reads the statistics through these names)." % name)
        return getattr(self.block, name)

    def array(self, name):
        value = self.attr(name)
        if isinstance(value, gluon.Parameter):
            return value.data(self.ctx)
        if isinstance(value, nd.NDArray):
            return value
        raise Failure('expected layer.%s to be a Parameter or an NDArray; got %s.'
                      % (name, type(value).__name__))

    def set(self, name, value):
        current = self.attr(name)
        if isinstance(current, gluon.Parameter):
            shape = tuple(current.shape)
            if 0 not in shape and shape != value.shape:
                raise Failure('layer.%s has shape %s; the checker expects %s for an input with '
                              '%d features/channels: (1, D) after Dense, (1, C, 1, 1) after '
                              'Conv2D, '
                              'as the course\'s BatchNorm has. Likely cause: a layer built on '
                              'Gluon\'s nn.BatchNorm (its parameters have shape (C,)); the '
                              'checker checks a batch norm written from scratch.'
                              % (name, shape, value.shape, value.shape[1]))
            current.set_data(nd.array(value))
        elif isinstance(current, nd.NDArray):
            setattr(self.block, name, nd.array(value, ctx=current.context))
        else:
            raise Failure('expected layer.%s to be a Parameter or an NDArray; got %s.'
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
                raise Failure('layer.%s is not a Parameter, so it gets no gradient and the '
                              'Trainer never updates it. Likely cause: create it with '
                              'self.params.get(%r, shape=shape).' % (name, name))
            out.append(param.grad(self.ctx).asnumpy())
        return tuple(out)


# mode -> what the learner's code sees: autograd.is_training() true ('training') or false
MODE_PHASES = {'training': 'training', 'train_mode() without recording': 'training',
               'prediction': 'prediction', 'record(train_mode=False)': 'prediction'}


class Subject:
    """What is checked (a function or a layer class) and its reference.

    ``where`` (the input and mode being run) and ``phase`` ('building', 'training',
    'prediction') say what the learner's code was doing, for messages; ``hung`` maps a phase in
    which the code did not finish to the property that found it (set by the runner), so later
    runs in that phase are reported as not checked instead of waiting out the limit again.
    """

    def __init__(self, target, is_block):
        self.target, self.is_block = target, is_block
        self.where = ''
        self.phase = None
        self.hung = {}

    def enter(self, phase, where):
        """Say what runs next; raise Failure 'not checked' if that phase hung before."""
        self.where, self.phase = where, phase
        if phase in self.hung:
            raise Failure('not checked: the code did not finish in %s %s (see %s), and would '
                          'not here either.' % (phase, 'mode' if phase != 'building' else
                                                'the layer', self.hung[phase]))

    def instance(self, case, **kwargs):
        if self.is_block:
            return BlockInstance(self.target, case, **kwargs)
        return FunctionInstance(self.target, case)

    def reference(self, case, **kwargs):
        if self.is_block:
            return BlockInstance(BatchNorm, case, **kwargs)
        return FunctionInstance(batch_norm, case)

    def run(self, instance, case_or_x, mode, head=None, ctx=None):
        x = case_or_x.x if isinstance(case_or_x, Case) else case_or_x
        self.enter(MODE_PHASES[mode], 'on %s in %s mode' % (describe(x.shape), mode))
        return run(instance, x, mode, head, ctx)

    def fresh(self, case, **kwargs):
        if self.is_block:
            self.enter('building', 'building the layer for %s' % describe(case.shape))
        else:
            self.where, self.phase = '', None
        return self.instance(case, **kwargs)


# ----------------------------------------------------------------------------- for messages

def fmt(value):
    """A number as messages print it (4 significant digits)."""
    return '%.4g' % value


def close(a, b, rtol=1e-4, atol=1e-5):
    """Same shape and allclose (NaN equal to NaN)."""
    return a.shape == b.shape and np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


def worst(a, b):
    """Index of the largest difference between two same-shape arrays (NaN counts as largest)."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    diff[np.isnan(diff)] = np.inf
    return np.unravel_index(np.argmax(diff), diff.shape)


def constructor_problem(cls):
    """Why ``cls(num_features, num_dims)`` cannot build the layer meant, or None.

    Gluon's ``nn.BatchNorm(5, 2)`` is accepted by Python but means axis=5, momentum=2, so every
    property would fail blaming shapes; a constructor that cannot take two positional
    arguments fails with Python's message, which does not say what the checker calls.
    """
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):   # no signature to read (a builtin): just try it
        return None
    name = getattr(cls, '__name__', repr(cls))
    positional = [p.name for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if {'axis', 'momentum', 'in_channels'} & set(positional[:2]):
        first = positional[:2]
        return ('%s(%s, ...) takes %s first, so the checker\'s cls(5, 2) would mean %s. The '
                'checker builds layers as cls(num_features, num_dims), like the course\'s '
                'BatchNorm. Likely cause: this is (or wraps) Gluon\'s nn.BatchNorm, the reference '
                'the course compares with, not a layer to check; a wrapper needs the constructor '
                '(num_features, num_dims).'
                % (name, ', '.join(first), ' and '.join(first),
                   ', '.join('%s=%d' % (n, v) for n, v in zip(first, (5, 2)))))
    try:
        signature.bind(5, 2)
    except TypeError as error:
        return ('%s%s cannot be called as cls(num_features, num_dims), e.g. cls(5, 2): %s. The '
                'checker builds every layer that way.' % (name, signature, error))
    return None


def looks_like_function(target):
    """True if ``target`` is a function (not a class) taking batch_norm's 7 arguments."""
    if isinstance(target, type):
        return False
    try:
        inspect.signature(target).bind(*range(7))
    except (TypeError, ValueError):
        return False
    return True


def exception_cause(exc):
    """The likely cause of an exception raised by the learner's code, one sentence."""
    text = str(exc)
    if isinstance(exc, SystemExit):
        return ('the code calls sys.exit() or exit(), which would end the program (or stop the '
                'notebook cell); return the results instead.')
    if 'Assigning to NDArrays that are already in a computational graph' in text:
        return ('an in-place write (X -= mean, x[:] = ...) to an array the recorded graph uses: '
                'compute a new array (X_centered = X - mean), and write the moving statistics '
                'under autograd.pause().')
    if 'float64' in text or 'float16' in text or 'dtype' in text:
        return ('the dtypes do not match: Y (and the statistics) must have X\'s dtype (float32 '
                'here); an array created with dtype=\'float64\' or from numpy float64 values '
                'changes it (nd.array(..., dtype=X.dtype), or .astype(X.dtype)).')
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
