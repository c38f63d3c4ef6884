"""Code as a learner writes it in a solution cell, for the grading tests.

``batch_norm``, ``BatchNorm`` and ``batch_norm_backward`` are correct answers written
independently of the package (the shapes of the exercise edition's own solutions), so
``d2l_utils.checks.integrity`` must accept them. ``as_learner_code(obj)`` re-creates a package
function or layer class (and its package base classes) as if its source had been pasted into a
notebook: same code objects, defined outside ``d2l_utils``, the package's helpers still imported.
"""
import types

from mxnet import autograd, init, nd
from mxnet.gluon import nn

from d2l_utils.checks.integrity import from_package


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if autograd.is_training():
        axes = 0 if X.ndim == 2 else (0, 2, 3)
        mu = X.mean(axis=axes, keepdims=True)
        var = ((X - mu) ** 2).mean(axis=axes, keepdims=True)
        moving_mean = momentum * moving_mean + (1 - momentum) * mu
        moving_var = momentum * moving_var + (1 - momentum) * var
    else:
        mu, var = moving_mean, moving_var
    return gamma * (X - mu) / nd.sqrt(var + eps) + beta, moving_mean, moving_var


class BatchNorm(nn.Block):
    def __init__(self, num_features, num_dims, **kwargs):
        super().__init__(**kwargs)
        shape = (1, num_features) + (1, 1) * (num_dims == 4)
        self.gamma = self.params.get('gamma', shape=shape, init=init.One())
        self.beta = self.params.get('beta', shape=shape, init=init.Zero())
        self.moving_mean = self.params.get('moving_mean', shape=shape, init=init.Zero(),
                                           grad_req='null', differentiable=False)
        self.moving_var = self.params.get('moving_var', shape=shape, init=init.One(),
                                          grad_req='null', differentiable=False)

    def forward(self, X):
        ctx = X.context
        Y, mean, var = batch_norm(X, self.gamma.data(ctx), self.beta.data(ctx),
                                  self.moving_mean.data(ctx), self.moving_var.data(ctx),
                                  1e-5, 0.9)
        if autograd.is_training():
            with autograd.pause():
                self.moving_mean.data(ctx)[:] = mean
                self.moving_var.data(ctx)[:] = var
        return Y


def batch_norm_backward(dY, X, gamma, eps):
    axes = 0 if X.ndim == 2 else (0, 2, 3)
    mean = X.mean(axis=axes, keepdims=True)
    std = nd.sqrt(nd.square(X - mean).mean(axis=axes, keepdims=True) + eps)
    X_hat = (X - mean) / std
    g = gamma * dY
    dX = (g - g.mean(axis=axes, keepdims=True)
          - X_hat * (g * X_hat).mean(axis=axes, keepdims=True)) / std
    return dX, (dY * X_hat).sum(axis=axes, keepdims=True), dY.sum(axis=axes, keepdims=True)


def as_learner_code(obj, namespace=None):
    """A copy of a package function or class, defined in a learner's namespace.

    Functions keep their code objects; their globals are one shared namespace (the package
    module's names, then the copies under their own names), so a copied class's
    ``super(Name, self)`` and a copied method's calls reach the copies, as in a notebook where
    the pasted cells define them.
    """
    namespace = {} if namespace is None else namespace
    copies = namespace.setdefault('__copies__', {})
    if id(obj) in copies:
        return copies[id(obj)]
    if isinstance(obj, types.FunctionType):
        module_globals = obj.__globals__
        for key, value in module_globals.items():
            namespace.setdefault(key, value)
        namespace['__name__'] = 'learner'
        copy = types.FunctionType(obj.__code__, namespace, obj.__name__, obj.__defaults__,
                                  obj.__closure__)
        copy.__kwdefaults__, copy.__doc__ = obj.__kwdefaults__, obj.__doc__
        copies[id(obj)] = copy
        if obj.__qualname__ == obj.__name__:   # a module-level function, not a method
            namespace[obj.__name__] = copy
        return copy
    bases = tuple(as_learner_code(b, namespace) if from_package(b) else b for b in obj.__bases__)
    body = {}
    for key, value in vars(obj).items():
        if key in ('__dict__', '__weakref__'):
            continue
        if isinstance(value, staticmethod) and from_package(value.__func__):
            value = staticmethod(as_learner_code(value.__func__, namespace))
        elif isinstance(value, types.FunctionType) and from_package(value):
            value = as_learner_code(value, namespace)
        body[key] = value
    body['__module__'] = 'learner'
    copy = type(obj.__name__, bases, body)
    copies[id(obj)] = copy
    namespace[obj.__name__] = copy
    for key, value in body.items():   # zero-argument super(): its __class__ cell is the copy
        if isinstance(value, types.FunctionType) and '__class__' in value.__code__.co_freevars:
            cells = tuple(types.CellType(copy) if name == '__class__' else cell for name, cell
                          in zip(value.__code__.co_freevars, value.__closure__))
            setattr(copy, key, types.FunctionType(value.__code__, namespace, value.__name__,
                                                  value.__defaults__, cells))
    return copy
