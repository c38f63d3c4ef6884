"""The checker for a learner's batch norm written in PyTorch, in the book's PyTorch layout.

``check_torch_batch_norm(fn)`` takes a function with the book's PyTorch signature
``fn(X, gamma, beta, moving_mean, moving_var, eps, momentum) -> (Y, moving_mean, moving_var)``
(a keyword argument ``training``, as ``d2l_utils.pytorch.batch_norm`` has, is passed when the
function takes one); ``check_torch_batch_norm_module(cls)`` takes a module built as
``cls(num_features, num_dims)`` with the attributes ``gamma``, ``beta``, ``moving_mean`` and
``moving_var`` (d2l-zh v2, section 7.5). Each runs its properties on the MXNet checker's
fixed-seed inputs (2-D (8, 5) and 4-D (4, 3, 5, 5), float32) and returns a ``CheckReport``, one
line per property; every property runs under the same time limit as the MXNet checker
(``runner.call_with_time_limit``), and whatever the learner's code raises is a FAIL of that
property.

Conventions are the book's PyTorch edition's: new = 0.9 * old + 0.1 * batch statistic (momentum
0.9 weights the old value) and the biased batch variance, for normalizing and for the running
variance. ``nn.BatchNorm2d`` differs in both (its momentum 0.1 weights the new value: the same
average; its running variance uses the unbiased batch variance): the PASS lines say so, and a FAIL
caused by taking ``nn.BatchNorm2d``'s convention names it. The oracle for outputs and gradients is
``torch.nn.functional.batch_norm``; the running statistics are computed in float64 numpy.

Modes: a function is run in training mode with gradients on (``training=True`` if it takes the
argument) and in prediction mode under ``torch.no_grad()`` (``training=False``), the two cases in
which the book's grad-mode test and a mode argument agree; a module is put in ``train()`` or
``eval()``, and the property ``mode_from_self_training`` also runs ``eval()`` with gradients on and
``train()`` under ``no_grad()``, where reading ``torch.is_grad_enabled()`` goes wrong.

Needs PyTorch (``pip install -r requirements-torch.txt``); ``d2l_utils.checks`` does not import
this module, ``d2l_utils.pytorch`` re-exports its two checkers.

It shares the MXNet checker's inputs, report, failure type and time limit; its subject and its
properties (``builds``, the ``gamma``/``beta`` lookup, the public wrappers) follow the shape of
``harness.py`` and ``properties.py`` on purpose, written against torch's types: the same checks in
the other framework, not a copy that one implementation could serve.
"""
try:
    import torch
except ImportError as err:
    raise ImportError('d2l_utils.checks.torch_layer checks PyTorch code and needs PyTorch, which '
                      'is optional in this repository. Install the pinned CPU build from the '
                      'repository folder:\n    pip install -r requirements-torch.txt') from err

import inspect
import os
import traceback
from collections import namedtuple

import numpy as np
import torch.nn.functional as F
from torch import nn

from ..support.errors import short_message
from .harness import EPS, MOMENTUM, Case, Failure, cases, close, describe, fmt, worst
from .report import CheckReport, CheckResult
from .runner import TIME_LIMIT, call_with_time_limit, did_not_finish, target_name

__all__ = ['MODES', 'MODULE_PROPERTIES', 'FUNCTION_PROPERTIES', 'TORCH_PROPERTIES',
           'TorchSubject', 'check_torch_batch_norm', 'check_torch_batch_norm_module',
           'torch_exception_cause']

# mode name -> (the training flag: module.train(flag) or training=flag; gradients enabled)
MODES = {
    'training': (True, True),
    'prediction': (False, False),
    'eval() with gradients on': (False, True),
    'train() under no_grad()': (True, False),
}
STATS = ('moving_mean', 'moving_var')
NO_GPU = ("no GPU here: the 'meta' device (shapes without data, on every machine) stands in "
          "for one, moving a module by the same .to() a GPU would")
TORCH_BN2D_MOMENTUM = ("nn.BatchNorm2d writes the same average as momentum=0.1, its momentum "
                       "weighting the new value")
TORCH_BN2D_VARIANCE = ("nn.BatchNorm2d differs here: its running_var averages the unbiased batch "
                       "variance (divided by m - 1)")


# ----------------------------------------------------------------------------- running code

def takes_training(fn):
    """True if ``fn`` has a parameter named ``training`` (the package's batch_norm has one)."""
    try:
        return 'training' in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def as_numpy(value, name):
    """A tensor's values as float64 numpy; Failure if ``value`` is not a tensor."""
    if not isinstance(value, torch.Tensor):
        raise Failure('expected %s to be a torch tensor; got %s. Likely cause: the code returns '
                      'or stores something else (a number, a numpy array, a tuple).'
                      % (name, type(value).__name__))
    return value.detach().cpu().double().numpy()


class FunctionInstance:
    """A function plus the tensors a layer would hold, so functions and modules run alike."""

    def __init__(self, fn, case):
        self.fn, self.takes_training = fn, takes_training(fn)
        self.gamma = torch.tensor(case.gamma, requires_grad=True)
        self.beta = torch.tensor(case.beta, requires_grad=True)
        self.moving_mean = torch.tensor(case.moving_mean)
        self.moving_var = torch.tensor(case.moving_var)

    def forward(self, X, training):
        kwargs = {'training': training} if self.takes_training else {}
        gamma, beta = self.gamma.detach().clone(), self.beta.detach().clone()
        out = self.fn(X, self.gamma, self.beta, self.moving_mean, self.moving_var, EPS, MOMENTUM,
                      **kwargs)
        for name, before in (('gamma', gamma), ('beta', beta)):
            if not torch.equal(getattr(self, name).detach(), before):
                raise Failure('the function changed its input %s in place; batch norm must leave '
                              'it as it was. Likely cause: an in-place write (%s.mul_(...), %s[:] '
                              '= ...); compute a new tensor instead.' % (name, name, name))
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise Failure('expected the function to return (Y, moving_mean, moving_var); got %s. '
                          'Likely cause: a missing or incomplete return statement.'
                          % (type(out).__name__ if not isinstance(out, (tuple, list))
                             else 'a %s of %d items' % (type(out).__name__, len(out))))
        Y, self.moving_mean, self.moving_var = out
        return Y

    def stat(self, name):
        return getattr(self, name)

    def affine(self):
        return self.gamma, self.beta


class ModuleInstance:
    """A freshly built module, its gamma/beta (and running statistics) set from the case."""

    def __init__(self, cls, case, set_stats=True, set_affine=True):
        self.module = cls(case.shape[1], len(case.shape))
        if not isinstance(self.module, nn.Module):
            raise Failure('cls(num_features, num_dims) returned %s, not a torch.nn.Module. Likely '
                          'cause: the class does not derive from nn.Module.'
                          % type(self.module).__name__)
        names = (('gamma', 'beta') if set_affine else ()) + (STATS if set_stats else ())
        values = dict(gamma=case.gamma, beta=case.beta, moving_mean=case.moving_mean,
                      moving_var=case.moving_var)
        for name in names:
            self.set(name, values[name])

    def stat(self, name):
        if not hasattr(self.module, name):
            bn2d = dict(gamma='weight', beta='bias', moving_mean='running_mean',
                        moving_var='running_var')
            raise Failure("the module has no attribute %r; expected the book's names gamma, beta, "
                          "moving_mean, moving_var (nn.BatchNorm2d's are weight, bias, "
                          "running_mean, running_var: %s here). Likely cause: another or misspelt "
                          "name." % (name, bn2d[name]))
        value = getattr(self.module, name)
        if not isinstance(value, torch.Tensor):
            raise Failure('expected module.%s to be a tensor (an nn.Parameter or a buffer); got '
                          '%s.' % (name, type(value).__name__))
        return value

    def set(self, name, value):
        current = self.stat(name)
        if tuple(current.shape) != value.shape:
            raise Failure('module.%s has shape %s; the checker expects %s for %d features/'
                          'channels: (1, D) after nn.Linear, (1, C, 1, 1) after nn.Conv2d, as in '
                          "the book's layer. Likely cause: shape (C,) as nn.BatchNorm2d has, or "
                          'the wrong num_dims branch.' % (name, tuple(current.shape), value.shape,
                                                          value.shape[1]))
        with torch.no_grad():
            current.copy_(torch.from_numpy(value))

    def forward(self, X, training):
        self.module.train(training)
        return self.module(X)

    def affine(self):
        out = []
        for name in ('gamma', 'beta'):
            value = self.stat(name)
            if not isinstance(value, nn.Parameter):
                raise Failure('module.%s is not an nn.Parameter, so the optimizer never sees it '
                              '(net.parameters() leaves it out). Likely cause: create it with '
                              'self.%s = nn.Parameter(torch.ones(shape)).' % (name, name))
            out.append(value)
        return tuple(out)


class TorchSubject:
    """What is checked (a function or a module class) and how to run it."""

    def __init__(self, target, is_module):
        self.target, self.is_module = target, is_module
        self.where = ''   # the input and mode being run, for messages about exceptions

    def fresh(self, case, **kwargs):
        self.where = 'building the module for %s' % describe(case.shape) if self.is_module else ''
        if self.is_module:
            return ModuleInstance(self.target, case, **kwargs)
        return FunctionInstance(self.target, case)

    def run(self, inst, case_or_x, mode, head=None, dtype=torch.float32):
        """Run ``inst`` on x (numpy) in ``mode`` (a key of MODES); return Y as float64 numpy, or
        (Y, dX, dgamma, dbeta) when ``head`` (the weights of the loss (Y * head).sum()) is given."""
        x = case_or_x.x if isinstance(case_or_x, Case) else case_or_x
        training, grad = MODES[mode]
        self.where = 'on %s in %s mode' % (describe(x.shape), mode)
        X = torch.tensor(x, dtype=dtype)
        if head is not None:
            X.requires_grad_()
        with torch.set_grad_enabled(grad):
            Y = inst.forward(X, training)
        if not isinstance(Y, torch.Tensor):
            raise Failure('%s: expected Y to be a tensor; got %s. Likely cause: the code returns '
                          'something other than the normalized input.'
                          % (self.where, type(Y).__name__))
        if not np.array_equal(X.detach().double().numpy(), x.astype(np.float64), equal_nan=True):
            raise Failure('%s: the code changed its input X in place (X -= mean, X[:] = ...). '
                          'Batch norm must leave X as it was: the caller still uses it. Likely '
                          'cause: an in-place write; compute a new tensor (X_centered = X - mean).'
                          % self.where)
        if head is None:
            return as_numpy(Y, 'Y')
        gamma, beta = inst.affine()
        (Y * torch.tensor(head, dtype=Y.dtype)).sum().backward()
        grads = [g.grad for g in (X, gamma, beta)]
        return (as_numpy(Y, 'Y'),) + tuple(None if g is None else g.double().numpy()
                                           for g in grads)

    def stats(self, inst):
        return tuple(as_numpy(inst.stat(name), name) for name in STATS)


def learner_location(exc):
    """' (at cell.py, line 3, in forward: var = ...)' for the innermost traceback frame outside
    torch and this package (the learner's line), or ''."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = os.path.abspath(frame.filename)
        if path.startswith(package) or '%storch%s' % (os.sep, os.sep) in path:
            continue
        code = ': %s' % frame.line if frame.line else ''
        return ' (at %s, line %d, in %s%s)' % (os.path.basename(frame.filename), frame.lineno,
                                               frame.name, code)
    return ''


def torch_exception_cause(exc):
    """The likely cause of an exception raised by the learner's PyTorch code, one sentence."""
    text = str(exc)
    if isinstance(exc, SystemExit):
        return ('the code calls sys.exit() or exit(), which would end the program (or stop the '
                'notebook cell); return the results instead.')
    if 'backward through the graph a second time' in text:
        return ('the running statistics carry autograd history from an earlier step (see '
                'no_history): compute their update under torch.no_grad() or return .detach().')
    if 'in-place' in text or 'inplace' in text:
        return ('an in-place write (X -= mean, X[:] = ...) to a tensor autograd needs: compute a '
                'new tensor (X_centered = X - mean).')
    if 'same device' in text or 'meta' in text:
        return ('tensors on different devices: register the running statistics as buffers '
                '(self.register_buffer) so module.to(device) moves them.')
    if 'dtype' in text or 'Double' in text or 'scalar type' in text:
        return ('the dtypes do not match: keep Y and the statistics in X\'s dtype, and register '
                'the statistics as buffers so module.to(dtype) converts them.')
    if 'size of tensor' in text or 'shape' in text.lower() or 'dimension' in text:
        return ('the shapes do not fit: gamma, beta and the statistics have shape (1, D) for a '
                '2-D input and (1, C, 1, 1) for a 4-D one (mean(dim=..., keepdim=True)).')
    if isinstance(exc, AttributeError):
        return 'the code uses an attribute the object does not have (a typo?).'
    return 'an error in the code on this input; the message says where.'


# ----------------------------------------------------------------------------- properties

Property = namedtuple('Property', 'name meaning check module_only')
TORCH_PROPERTIES = {}   # name -> Property, in the printed order


def torch_property(meaning, module_only=False):
    """Register check(subject) -> None or a note for the PASS line, under its own name."""
    def register(check):
        TORCH_PROPERTIES[check.__name__] = Property(check.__name__, meaning, check, module_only)
        return check
    return register


def formula(case, x, mean, var):
    """gamma * (x - mean) / sqrt(var + eps) + beta in float64."""
    return case.gamma * (x - mean) / np.sqrt(var + EPS) + case.beta


def constructor_problem(cls):
    """Why ``cls(num_features, num_dims)`` cannot build the module meant, or None."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    name = getattr(cls, '__name__', repr(cls))
    positional = [p.name for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional[1:2] and positional[1] in ('eps', 'momentum', 'affine'):
        return ("%s(5, 2) would mean num_features=5, %s=2: the checker builds modules as "
                "cls(num_features, num_dims), like the book's BatchNorm. Likely cause: this is "
                "(or wraps) PyTorch's own layer, not a batch norm written from scratch."
                % (name, positional[1]))
    try:
        signature.bind(5, 2)
    except TypeError as error:
        return ('%s%s cannot be called as cls(num_features, num_dims), e.g. cls(5, 2): %s. The '
                'checker builds every module that way.' % (name, signature, error))
    return None


@torch_property('cls(num_features, num_dims) builds a module that runs in train() and eval() '
                'on 2-D and 4-D input', module_only=True)
def builds(subject):
    problem = constructor_problem(subject.target)
    if problem:
        raise Failure(problem)
    for case in cases():
        inst = subject.fresh(case, set_stats=False, set_affine=False)
        for name in ('gamma', 'beta') + STATS:
            inst.stat(name)
        try:
            subject.run(inst, case, 'training')
        except RuntimeError as exc:
            if len(case.shape) == 4 and 'shape' in str(exc):   # the 2-D case ran
                raise Failure('%s: raised RuntimeError: %s%s, after running on the 2-D input. '
                              'Likely cause: statistics of the wrong shape for a conv layer: '
                              'over dim 0 only they are (1, C, H, W); per channel, over dims '
                              '(0, 2, 3) with keepdim=True, they are (1, C, 1, 1).'
                              % (subject.where, short_message(exc, 200), learner_location(exc)))
            raise
        subject.run(inst, case, 'prediction')


def output_shapes(subject, inst, case, Y, mode, stats=True):
    """Failure unless Y has X's shape and (if ``stats``) the statistics the parameter shape."""
    if Y.shape != case.shape:
        raise Failure('on %s in %s mode: expected Y of shape %s, got %s. Likely cause: a '
                      'reduction without keepdim=True, or a statistic returned instead of Y.'
                      % (describe(case.shape), mode, case.shape, Y.shape))
    for name, stat in zip(STATS, subject.stats(inst) if stats else ()):
        if stat.shape != case.pshape:
            cause = ('the batch statistic lost its shape; compute it with keepdim=True.'
                     if stat.size < np.prod(case.pshape) else
                     'statistics per position: on a 4-D input they are taken over dim 0 only; '
                     'a conv layer\'s batch norm averages over dims (0, 2, 3).')
            raise Failure('on %s in %s mode: expected %s of shape %s, got %s. Likely cause: %s'
                          % (describe(case.shape), mode, name, case.pshape, stat.shape, cause))


@torch_property('training: Y = gamma * (X - batch mean) / sqrt(biased batch var + eps) + beta, '
                'per feature (2-D) or channel (4-D)')
def train_output(subject):
    for case in cases():
        inst = subject.fresh(case)
        Y = subject.run(inst, case, 'training')
        output_shapes(subject, inst, case, Y, 'training', stats=False)
        x = case.x.astype(np.float64)
        bmean, bvar = case.batch_stats()
        expected = formula(case, x, bmean, bvar)
        if close(Y, expected, rtol=1e-4, atol=1e-4):
            output_shapes(subject, inst, case, Y, 'training')
            continue
        m = x.size // x.shape[1]
        candidates = (
            (formula(case, x, bmean, bvar * m / (m - 1)),
             'the unbiased batch variance (divided by m - 1: torch.var\'s default, X.var(dim)); '
             'batch norm normalizes with the biased one, X.var(dim, unbiased=False) or '
             '((X - mean) ** 2).mean(dim).'),
            ((x - bmean) / np.sqrt(bvar + EPS), 'gamma and beta are not applied: '
                                                'Y = gamma * X_hat + beta.'),
            (formula(case, x, x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True)),
             'statistics per position: on a 4-D input the mean and variance are taken over '
             'dim 0 only; a conv layer\'s batch norm averages over dims (0, 2, 3).'),
            (formula(case, x, x.mean(), x.var()), 'one mean and variance for the whole tensor; '
             'batch norm takes them per feature (dim 0) or per channel (dims (0, 2, 3)).'),
            (case.gamma * (x - bmean) / (bvar + EPS) + case.beta,
             'X is divided by the variance, not by its square root torch.sqrt(var + eps).'),
            (formula(case, x, case.moving_mean, case.moving_var),
             'training mode normalizes with the running statistics: the mode test is wrong.'),
        )
        cause = 'Y is not gamma * (X - mean) / sqrt(var + eps) + beta with the batch statistics.'
        for value, text in candidates:
            if close(Y, value, rtol=1e-4, atol=1e-4):
                cause = text
                break
        i = worst(Y, expected)
        raise Failure('on %s in training mode: expected Y%s = %s; got %s. Likely cause: %s'
                      % (describe(case.shape), list(i), fmt(expected[i]), fmt(Y[i]), cause))


@torch_property('prediction (under no_grad, or eval() for a module): Y uses the running '
                'statistics, which stay unchanged')
def prediction_output(subject):
    for case in cases(seed=30):
        inst = subject.fresh(case)
        Y = subject.run(inst, case, 'prediction')
        output_shapes(subject, inst, case, Y, 'prediction')
        x = case.x.astype(np.float64)
        expected = formula(case, x, case.moving_mean, case.moving_var)
        where = describe(case.shape)
        if not close(Y, expected, rtol=1e-4, atol=1e-4):
            bmean, bvar = case.batch_stats()
            if close(Y, formula(case, x, bmean, bvar), rtol=1e-4, atol=1e-4):
                cause = ('prediction normalizes with the batch\'s own statistics: the mode test '
                         'is wrong.')
            elif close(Y, case.gamma * (x - case.moving_mean) / (case.moving_var + EPS)
                       + case.beta, rtol=1e-4, atol=1e-4):
                cause = 'X is divided by moving_var, not by torch.sqrt(moving_var + eps).'
            else:
                cause = ('prediction does not compute gamma * (X - moving_mean) / '
                         'sqrt(moving_var + eps) + beta.')
            i = worst(Y, expected)
            raise Failure('on %s in prediction mode: expected Y%s = %s; got %s. Likely cause: %s'
                          % (where, list(i), fmt(expected[i]), fmt(Y[i]), cause))
        for name, before, after in zip(STATS, (case.moving_mean, case.moving_var),
                                       subject.stats(inst)):
            if not close(after, before, rtol=1e-6, atol=1e-7):
                raise Failure('on %s in prediction mode: expected %s unchanged (%s); got %s. '
                              'Likely cause: the update runs outside the training branch; update '
                              'the running statistics only in training mode.'
                              % (where, name, fmt(before.flat[0]), fmt(after.flat[0])))
        if not subject.is_module and takes_training(subject.target):
            inst = subject.fresh(case)
            Y_grad = subject.run(inst, case, 'eval() with gradients on')
            if not close(Y_grad, expected, rtol=1e-4, atol=1e-4):
                raise Failure('on %s with training=False and gradients on: expected the '
                              'prediction output; got another. Likely cause: the mode is read '
                              'from torch.is_grad_enabled() instead of the training argument.'
                              % where)


def check_update(subject, index, seed):
    name = STATS[index]
    for case in cases(seed=seed):
        inst = subject.fresh(case)
        old = subject.stats(inst)[index]
        subject.run(inst, case, 'training')
        new = subject.stats(inst)[index]
        bmean, bvar = case.batch_stats()
        batch = bvar if index else bmean
        expected = MOMENTUM * old + (1 - MOMENTUM) * batch
        if close(new, expected, rtol=1e-4, atol=1e-5):
            continue
        if new.shape != expected.shape:
            raise Failure('on %s, one training step: expected %s of shape %s; got %s. Likely '
                          'cause: the batch statistics have the wrong shape (see train_output); '
                          'the update formula may be right.'
                          % (describe(case.shape), name, expected.shape, new.shape))
        m = case.x.size // case.shape[1]
        candidates = [
            (old, '%s did not change: computed from itself, or never stored back (a misspelt '
                  'attribute)' % name),
            ((1 - MOMENTUM) * old + MOMENTUM * batch,
             "momentum and 1 - momentum are swapped: new = 0.1 * old + 0.9 * batch. That is "
             "nn.BatchNorm2d's convention with the book's value: nn.BatchNorm2d's momentum "
             "weights the new value (default 0.1), the book's weights the old value (0.9)."),
            (batch, '%s is replaced by the batch statistic instead of averaged with it.' % name)]
        if index:
            candidates.append((MOMENTUM * old + (1 - MOMENTUM) * bvar * m / (m - 1),
                               "the unbiased batch variance (divided by m - 1), nn.BatchNorm2d's "
                               "running_var convention; the book's layer averages the biased "
                               'one, the variance it normalizes with.'))
        cause = 'the update is not momentum * %s + (1 - momentum) * batch %s.' % (
            name, 'variance' if index else 'mean')
        for value, text in candidates:
            if new.shape == value.shape and np.allclose(new, value, rtol=1e-3, atol=1e-5):
                cause = text
                break
        j = worst(new, expected) if new.shape == expected.shape else (0,) * len(case.pshape)
        raise Failure('on %s, one training step: expected %s[%d] %s -> %s (%s x %s + %s x batch '
                      '%s %s); got %s. Likely cause: %s'
                      % (describe(case.shape), name, j[1], fmt(old[j]), fmt(expected[j]),
                         MOMENTUM, fmt(old[j]), round(1 - MOMENTUM, 6),
                         'variance' if index else 'mean', fmt(batch[j]),
                         fmt(new[j] if new.shape == expected.shape else new.flat[0]), cause))


@torch_property('moving_mean <- 0.9 * moving_mean + 0.1 * batch mean (momentum 0.9 weights the '
                'old value)')
def moving_mean_update(subject):
    check_update(subject, 0, seed=50)
    return TORCH_BN2D_MOMENTUM


@torch_property('moving_var <- 0.9 * moving_var + 0.1 * biased batch variance')
def moving_var_update(subject):
    check_update(subject, 1, seed=60)
    return TORCH_BN2D_VARIANCE


@torch_property('gradients w.r.t. X, gamma and beta equal F.batch_norm\'s')
def gradients(subject):
    for case in cases(seed=70):
        inst = subject.fresh(case)
        Y, dX, dgamma, dbeta = subject.run(inst, case, 'training', head=case.head)
        X = torch.tensor(case.x, requires_grad=True)
        C = case.shape[1]
        gamma = torch.tensor(case.gamma.reshape(C), requires_grad=True)
        beta = torch.tensor(case.beta.reshape(C), requires_grad=True)
        Y_ref = F.batch_norm(X, None, None, gamma, beta, training=True, eps=EPS)
        (Y_ref * torch.tensor(case.head)).sum().backward()
        refs = (X.grad.double().numpy(), gamma.grad.double().numpy().reshape(case.pshape),
                beta.grad.double().numpy().reshape(case.pshape))
        wrong = []
        for name, g, g_ref in zip(('X', 'gamma', 'beta'), (dX, dgamma, dbeta), refs):
            if g is None:
                wrong.append('d%s is None (no gradient reached it)' % name)
            elif g.shape != g_ref.shape:
                wrong.append('d%s has shape %s, expected %s' % (name, g.shape, g_ref.shape))
            elif not close(g, g_ref, rtol=1e-3, atol=1e-4):
                wrong.append('d%s differs by up to %s (reference max |d%s| %s)'
                             % (name, fmt(np.abs(g - g_ref).max()), name,
                                fmt(np.abs(g_ref).max())))
        if not wrong:
            continue
        if not close(Y, Y_ref.detach().double().numpy(), rtol=1e-4, atol=1e-4):
            cause = ('the training output already differs (see train_output): fix the forward '
                     'pass first.')
        else:
            cause = ('the output matches but the gradients do not: part of the computation is '
                     'hidden from autograd (.detach(), .data, torch.no_grad() or numpy around the '
                     'batch mean or variance).')
        raise Failure('on %s in training mode, loss (Y * fixed weights).sum(): expected '
                      'F.batch_norm\'s gradients; %s. Likely cause: %s'
                      % (describe(case.shape), '; '.join(wrong), cause))


@torch_property('after a training step the running statistics carry no autograd history '
                '(requires_grad False, no grad_fn)')
def no_history(subject):
    for case in cases(seed=75):
        inst = subject.fresh(case)
        subject.run(inst, case, 'training', head=case.head)
        for name in STATS:
            stat = inst.stat(name)
            if isinstance(stat, torch.Tensor) and (stat.requires_grad or
                                                   stat.grad_fn is not None):
                raise Failure('on %s after one training step: expected %s without autograd '
                              'history; it has requires_grad=%s, grad_fn=%s. Likely cause: the '
                              'update momentum * %s + (1 - momentum) * mean is computed from the '
                              'graph of the batch statistics; each step chains onto the last, '
                              'keeping every batch\'s graph in memory. Compute it under '
                              'torch.no_grad() (or return %s.detach(); the book returns .data).'
                              % (describe(case.shape), name, stat.requires_grad,
                                 type(stat.grad_fn).__name__ if stat.grad_fn else None, name,
                                 name))


@torch_property('a new module starts with moving_mean 0 and moving_var 1, so it predicts on '
                'the input\'s scale', module_only=True)
def initial_statistics(subject):
    for case in cases(seed=80):
        inst = subject.fresh(case, set_stats=False, set_affine=False)
        mean, var = subject.stats(inst)
        if np.allclose(mean, 0) and np.allclose(var, 1):
            continue
        if np.allclose(var, 0):
            cause = ('moving_var starts at 0, so before training prediction divides by '
                     'sqrt(0 + eps) ~ 0.0032, i.e. multiplies by ~316 (the MXNet book\'s layer '
                     'started at 0; its PyTorch edition and nn.BatchNorm2d start at 1); use '
                     'torch.ones(shape).')
        else:
            cause = 'start moving_mean at torch.zeros(shape) and moving_var at torch.ones(shape).'
        raise Failure('on %s, a new module: expected moving_mean 0 and moving_var 1; got '
                      'moving_mean %s, moving_var %s. Likely cause: %s'
                      % (describe(case.shape), fmt(mean.flat[0]), fmt(var.flat[0]), cause))


GRAD_MODE_CAUSE = ('the mode is read from torch.is_grad_enabled() (the book\'s PyTorch test) '
                   'instead of the module\'s self.training; pass training=self.training. '
                   'net.eval() sets the mode, torch.no_grad() only turns gradients off.')


@torch_property('the mode is self.training: eval() predicts even with gradients on, train() '
                'normalizes with the batch even under no_grad()', module_only=True)
def mode_from_self_training(subject):
    for case in cases(seed=40):
        outputs = {mode: subject.run(subject.fresh(case), case, mode) for mode in MODES}
        for mode, same_as, other in (
                ('eval() with gradients on', 'prediction', 'training'),
                ('train() under no_grad()', 'training', 'prediction')):
            Y, Y_same = outputs[mode], outputs[same_as]
            if close(Y, Y_same, rtol=1e-5, atol=1e-6):
                continue
            i = worst(Y, Y_same)
            got = ('the %s-mode output' % other
                   if close(Y, outputs[other], rtol=1e-5, atol=1e-6) else 'another output')
            raise Failure('on %s after %s: expected the %s-mode output (Y%s = %s); got %s (%s). '
                          'Likely cause: %s'
                          % (describe(case.shape), mode, same_as, list(i), fmt(Y_same[i]), got,
                             fmt(Y[i]), GRAD_MODE_CAUSE))


@torch_property('eval() never updates the running statistics, with or without no_grad()',
                module_only=True)
def eval_never_updates(subject):
    for case in cases(seed=45):
        changed = []
        for mode in ('prediction', 'eval() with gradients on'):
            inst = subject.fresh(case)
            subject.run(inst, case, mode)
            for name, before, after in zip(STATS, (case.moving_mean, case.moving_var),
                                           subject.stats(inst)):
                if not close(after, before, rtol=1e-6, atol=1e-7):
                    changed.append((mode, name, before, after))
        if not changed:
            continue
        modes = sorted({mode for mode, _, _, _ in changed})
        if modes == ['eval() with gradients on']:
            cause = ('eval() without torch.no_grad() still trains the statistics: %s'
                     % GRAD_MODE_CAUSE)
        else:
            cause = ('the update runs whatever the mode: move it into the training branch '
                     '(if self.training).')
        mode, name, before, after = changed[0]
        raise Failure('on %s after %s: expected %s unchanged (%s); got %s (changed %s). Likely '
                      'cause: %s'
                      % (describe(case.shape), mode, name, fmt(before.flat[0]),
                         fmt(after.flat[0]), 'also under no_grad()' if len(modes) > 1 else
                         'only with gradients on' if modes[0] != 'prediction' else
                         'under no_grad()', cause))


def plain_attributes(module):
    """The running statistics that are neither buffers nor parameters of ``module``."""
    known = set(dict(module.named_buffers(recurse=False))) | set(
        dict(module.named_parameters(recurse=False)))
    return [name for name in STATS if name not in known]


PLAIN_CAUSE = ('%s %s plain tensor attribute%s (the book\'s PyTorch layer keeps them so), which '
               'state_dict(), load_state_dict() and .to() do not know; register them: '
               'self.register_buffer(\'moving_mean\', torch.zeros(shape)).')


@torch_property('state_dict() saves the running statistics: a module loaded from it predicts '
                'the same', module_only=True)
def saved_in_state_dict(subject):
    for case in cases(seed=110):
        inst = subject.fresh(case, set_stats=False)
        for step in range(3):
            subject.run(inst, Case(case.shape, seed=111 + step).x, 'training')
        x_test = Case(case.shape, seed=120).x
        subject.where = 'saving and loading the module for %s' % describe(case.shape)
        state = {key: value.clone() for key, value in inst.module.state_dict().items()}
        Y = subject.run(inst, x_test, 'prediction')
        loaded = subject.fresh(case, set_stats=False, set_affine=False)
        loaded.module.load_state_dict(state)
        Y2 = subject.run(loaded, x_test, 'prediction')
        missing = [name for name in STATS if name not in state]
        if not missing and close(Y2, Y, rtol=1e-5, atol=1e-6):
            continue
        plain = plain_attributes(inst.module)
        if plain:
            cause = PLAIN_CAUSE % (' and '.join(plain), 'are' if len(plain) > 1 else 'is a',
                                   's' if len(plain) > 1 else '')
        elif missing:
            cause = ('%s %s registered with persistent=False, which keeps a buffer out of '
                     'state_dict(); drop that argument.'
                     % (' and '.join(missing), 'are' if len(missing) > 1 else 'is'))
        else:
            cause = 'part of the state the module predicts with is not a buffer or parameter.'
        i = worst(Y2, Y)
        raise Failure('on %s after 3 training steps: state_dict() holds %s; a new module loaded '
                      'from it predicts Y%s = %s instead of %s (load_state_dict raised no error). '
                      'Likely cause: %s'
                      % (describe(case.shape), list(state), list(i), fmt(Y2[i]), fmt(Y[i]),
                         cause))


@torch_property('.to() reaches the running statistics: .to(torch.float64) converts them, '
                ".to('meta') moves them (%s)" % NO_GPU, module_only=True)
def moved_by_to(subject):
    for case in cases(seed=100):
        inst = subject.fresh(case, set_stats=False)
        subject.where = 'calling .to(torch.float64) on the module for %s' % describe(case.shape)
        inst.module.to(torch.float64)
        wrong = ['%s is %s' % (name, inst.stat(name).dtype) for name in STATS
                 if inst.stat(name).dtype != torch.float64]
        if not wrong:
            subject.run(inst, case, 'training', dtype=torch.float64)
            wrong = ['%s is %s after a float64 training step' % (name, inst.stat(name).dtype)
                     for name in STATS if inst.stat(name).dtype != torch.float64]
        target = 'float64'
        if not wrong:
            subject.where = "calling .to('meta') on the module for %s" % describe(case.shape)
            inst.module.to('meta')
            target = "the 'meta' device"
            wrong = ['%s is on %s' % (name, inst.stat(name).device) for name in STATS
                     if inst.stat(name).device.type != 'meta']
        if not wrong:
            continue
        plain = plain_attributes(inst.module)
        if plain:
            cause = PLAIN_CAUSE % (' and '.join(plain), 'are' if len(plain) > 1 else 'is a',
                                   's' if len(plain) > 1 else '')
            cause += (' The book\'s forward copies them to X\'s device on the first call, which '
                      'hides this on one GPU, but not to X\'s dtype.')
        else:
            cause = ('the statistics are replaced by new tensors that keep the old dtype or '
                     'device; write them in place (self.moving_mean.copy_(new)).')
        raise Failure('on %s: expected the running statistics converted to %s like gamma; %s. '
                      'Likely cause: %s' % (describe(case.shape), target, ', '.join(wrong), cause))


FUNCTION_PROPERTIES = tuple((p.name, p.meaning) for p in TORCH_PROPERTIES.values()
                            if not p.module_only)
MODULE_PROPERTIES = tuple((p.name, p.meaning) for p in TORCH_PROPERTIES.values())


# ----------------------------------------------------------------------------- the runner

def run_torch_property(name, subject, time_limit):
    """Run the property ``name`` on ``subject`` under ``time_limit``; its ``CheckResult``."""
    prop = TORCH_PROPERTIES[name]
    subject.where = ''
    note = []
    finished, exc = call_with_time_limit(lambda: note.append(prop.check(subject)), time_limit,
                                         name)
    if not finished:
        return CheckResult(name, False, did_not_finish(time_limit,
                                                       subject.where or 'running this property'))
    if exc is None:
        return CheckResult(name, True, prop.meaning + ('; %s' % note[0] if note[0] else ''))
    if isinstance(exc, Failure):
        return CheckResult(name, False, str(exc))
    return CheckResult(name, False, '%s: raised %s: %s%s. Likely cause: %s'
                       % (subject.where or 'running this property', type(exc).__name__,
                          short_message(exc, 200) or '(no message)', learner_location(exc),
                          torch_exception_cause(exc)))


def run_torch_checks(subject, properties, title, verbose, time_limit):
    """Run ``properties`` in order; a module that cannot be built, or a property that does not
    finish, leaves the rest reported as not checked. Returns the CheckReport (printed first if
    verbose)."""
    results, blocked = [], None
    for name, _ in properties:
        if blocked:
            results.append(CheckResult(name, False, 'not checked: %s.' % blocked))
            continue
        results.append(run_torch_property(name, subject, time_limit))
        if name == 'builds' and not results[-1].passed:
            blocked = 'the module could not be built and run (see builds)'
        elif results[-1].detail.startswith('did not finish'):
            blocked = '%s did not finish, and this code would not either' % name
    report = CheckReport(title, results)
    if verbose:
        print(report)
    return report


def check_torch_batch_norm(fn, verbose=True, time_limit=TIME_LIMIT):
    """Check a PyTorch batch-norm function with the book's signature.

    fn(X, gamma, beta, moving_mean, moving_var, eps, momentum) -> (Y, moving_mean, moving_var),
    X (N, D) or (N, C, H, W) float32 tensors, the others (1, D) or (1, C, 1, 1); a keyword
    ``training`` is passed when fn takes one. Training runs with gradients on, prediction under
    torch.no_grad(). Runs ``FUNCTION_PROPERTIES`` on 2-D (8, 5) and 4-D (4, 3, 5, 5) inputs with
    eps=1e-5, momentum=0.9, each for at most ``time_limit`` seconds; prints one line per property
    if verbose; returns a ``CheckReport``.
    """
    if isinstance(fn, type) or isinstance(fn, nn.Module) or not callable(fn):
        name = fn.__name__ if isinstance(fn, type) else type(fn).__name__
        raise TypeError('check_torch_batch_norm expects a function fn(X, gamma, beta, '
                        'moving_mean, moving_var, eps, momentum); got %s. To check a module '
                        'class, use check_torch_batch_norm_module(%s).' % (name, name))
    return run_torch_checks(TorchSubject(fn, is_module=False), FUNCTION_PROPERTIES,
                            'check_torch_batch_norm(%s)' % target_name(fn), verbose, time_limit)


def check_torch_batch_norm_module(cls, verbose=True, time_limit=TIME_LIMIT):
    """Check a PyTorch batch-norm module class, built as ``cls(num_features, num_dims)``.

    The module must expose the book's attributes gamma, beta (nn.Parameter) and moving_mean,
    moving_var, of shape (1, D) or (1, C, 1, 1). Runs ``MODULE_PROPERTIES``: the function's, plus
    building, the mode taken from self.training, eval() never updating, the initial statistics,
    state_dict() and .to(); prints one line per property if verbose; returns a ``CheckReport``.
    """
    if isinstance(cls, nn.Module):
        raise TypeError('check_torch_batch_norm_module expects the class (e.g. BatchNorm), not a '
                        'module built from it (BatchNorm(3, 4)): it builds fresh modules of each '
                        'shape itself.')
    if not isinstance(cls, type):
        raise TypeError('check_torch_batch_norm_module expects a module class cls(num_features, '
                        'num_dims); got %r. To check a function, use check_torch_batch_norm.'
                        % (cls,))
    return run_torch_checks(TorchSubject(cls, is_module=True), MODULE_PROPERTIES,
                            'check_torch_batch_norm_module(%s)' % target_name(cls), verbose,
                            time_limit)
