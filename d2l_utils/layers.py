"""Batch normalization from scratch, as the chapter 批量归一化 teaches it.

``batch_norm`` is the book's function (its signature, formulas and modes); ``BatchNorm`` is the
book's layer with one change that matters: the moving statistics are Gluon Parameters (not plain
NDArray attributes), so they follow the net to another device and are saved by
``save_parameters``. The notebooks show this exact text, so it is written to be read.
"""
import numbers

import numpy as np
from mxnet import autograd, init, nd
from mxnet.gluon import nn

from .support.validation import require_positive_int

__all__ = ['BatchNorm', 'BatchNormCalling', 'batch_norm', 'moving_average', 'param_shape',
           'validate_batch_norm_inputs', 'validate_batch_norm_settings',
           'validate_batch_norm_shapes', 'validate_dtypes', 'validate_eps',
           'validate_num_features']


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """Normalize X per feature (2-D: N x D) or per channel (4-D: N x C x H x W).

    gamma, beta, moving_mean, moving_var: shape (1, D) or (1, C, 1, 1).
    Returns (Y, moving_mean, moving_var); Y has X's shape. In training mode (inside
    ``autograd.record()``) X is normalized with the batch mean and biased batch variance and the
    returned moving statistics are updated; in prediction mode the moving statistics are used
    and returned unchanged. A float16 X is refused in training mode (its statistics overflow).
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var, eps, momentum)
    # autograd tells us the mode: record() means training, otherwise we are predicting
    if not autograd.is_training():
        # Prediction: use the moving averages, so an example's output does not depend on its batch
        X_hat = (X - moving_mean) / nd.sqrt(moving_var + eps)
    else:
        # Fully connected (N, D): statistics per feature, over the batch (axis 0).
        # Convolutional (N, C, H, W): per channel, over the batch and all positions (axes 0, 2, 3).
        # keepdims=True gives shape (1, D) or (1, C, 1, 1), which broadcasts against X.
        axes = 0 if X.ndim == 2 else (0, 2, 3)
        mean = X.mean(axis=axes, keepdims=True)
        # Biased variance (divide by m, not m - 1), as the paper and nn.BatchNorm do in training
        var = nd.square(X - mean).mean(axis=axes, keepdims=True)
        # Standardize with the batch's own statistics
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # Exponential moving averages, the estimate of the whole data's statistics used to predict
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta  # scale and shift: the layer can learn back any mean and variance
    return Y, moving_mean, moving_var


class BatchNorm(nn.Block):
    """Batch normalization layer built on ``batch_norm``.

    num_features: the number of outputs of the layer before (Dense units or Conv2D channels).
    num_dims: 2 after a Dense layer (input (N, D)), 4 after a Conv2D layer (input (N, C, H, W)).
    Parameters gamma, beta (learned) and moving_mean, moving_var (not learned) all have shape
    (1, num_features) or (1, num_features, 1, 1). eps=1e-5 and momentum=0.9, as in the book
    and as nn.BatchNorm's defaults.
    """

    def __init__(self, num_features, num_dims, **kwargs):
        super().__init__(**kwargs)
        if num_dims == 2:
            shape = (1, num_features)
        elif num_dims == 4:
            shape = (1, num_features, 1, 1)
        else:
            raise ValueError('BatchNorm num_dims must be 2 (after Dense: input (N, D)) or 4 '
                             '(after Conv2D: input (N, C, H, W)); got %r. For a 1-D sequence '
                             '(N, C, L), use num_dims=4 and reshape the input to (N, C, L, 1).'
                             % (num_dims,))
        validate_num_features(num_features, 'BatchNorm')
        self.eps, self.momentum = 1e-5, 0.9
        # Scale and shift are learned; start as the identity (gamma 1, beta 0). Each Parameter
        # has its own init, which takes precedence over the one given to net.initialize.
        self.gamma = self.params.get('gamma', shape=shape, init=init.One())
        self.beta = self.params.get('beta', shape=shape, init=init.Zero())
        # The moving statistics are Parameters that get no gradient (grad_req='null') and are
        # never differentiated, so the Trainer skips them; as Parameters they move with
        # reset_ctx/initialize(ctx=...) and are saved by save_parameters.
        # moving_var starts at ones, like nn.BatchNorm. The book starts it at zeros, so predicting
        # before any training divides by sqrt(eps) ~ 0.003: outputs hundreds of times too large.
        self.moving_mean = self.params.get('moving_mean', shape=shape, init=init.Zero(),
                                           grad_req='null', differentiable=False)
        self.moving_var = self.params.get('moving_var', shape=shape, init=init.One(),
                                          grad_req='null', differentiable=False)

    def forward(self, X):
        ctx = X.context   # use the copies on X's device (one copy per device in data parallelism)
        Y, moving_mean, moving_var = batch_norm(
            X, self.gamma.data(ctx), self.beta.data(ctx), self.moving_mean.data(ctx),
            self.moving_var.data(ctx), eps=self.eps, momentum=self.momentum)
        if autograd.is_training():
            # Write the new statistics into this device's copy, in place. They are state, not
            # part of what the gradient flows through; and inside record() MXNet refuses in-place
            # writes to arrays the recorded graph uses, so pause recording.
            with autograd.pause():
                self.moving_mean.data(ctx)[:] = moving_mean
                self.moving_var.data(ctx)[:] = moving_var
        return Y


class BatchNormCalling(BatchNorm):
    """``BatchNorm`` whose forward calls ``self.batch_norm_fn`` instead of ``batch_norm``.

    A subclass sets ``batch_norm_fn`` (a function with ``batch_norm``'s signature and results,
    or a property choosing one per call) and keeps everything else: the Parameters, the
    per-device copies and the in-place update of the moving statistics. ``FastBatchNorm`` and
    the layers of ``bn_mistakes`` are built this way; tests/test_layers.py checks that this
    forward is ``BatchNorm.forward`` with that one name changed.
    """

    batch_norm_fn = staticmethod(batch_norm)

    def forward(self, X):
        ctx = X.context   # use the copies on X's device (one copy per device in data parallelism)
        Y, moving_mean, moving_var = self.batch_norm_fn(
            X, self.gamma.data(ctx), self.beta.data(ctx), self.moving_mean.data(ctx),
            self.moving_var.data(ctx), eps=self.eps, momentum=self.momentum)
        if autograd.is_training():
            # Write the new statistics into this device's copy, in place. They are state, not
            # part of what the gradient flows through; and inside record() MXNet refuses in-place
            # writes to arrays the recorded graph uses, so pause recording.
            with autograd.pause():
                self.moving_mean.data(ctx)[:] = moving_mean
                self.moving_var.data(ctx)[:] = moving_var
        return Y


# --- What the taught code calls: the parameters' shape, the moving average, the input checks

def param_shape(num_features, num_dims):
    """The shape of gamma, beta and the moving statistics: (1, D) for num_dims 2 (input (N, D)),
    (1, C, 1, 1) for num_dims 4 (input (N, C, H, W)), so they broadcast against the input."""
    return (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)


def moving_average(moving, batch_value, momentum):
    """One step of the exponential moving average: momentum * moving + (1 - momentum) * batch_value.

    The update ``batch_norm`` writes out for its moving mean and variance; the other layers
    (``FastBatchNorm``, ``CrossDeviceBatchNorm``) call this. Works on NDArrays and numbers.
    """
    return momentum * moving + (1.0 - momentum) * batch_value


def validate_batch_norm_shapes(x_shape, caller='batch_norm', layer='BatchNorm', **param_shapes):
    """Raise ValueError, saying what to change, unless X of shape ``x_shape`` is (N, D) or
    (N, C, H, W) and every named shape (gamma=..., beta=..., moving_mean=..., moving_var=...)
    is ``param_shape(D or C, len(x_shape))``. Shapes are tuples; any framework's arrays.
    caller, layer: the function and its layer, named in the message (the other normalizations
    share these shapes)."""
    shape = tuple(x_shape)
    if len(shape) not in (2, 4):
        hint = ''
        if len(shape) == 3:
            hint = ' For a 1-D sequence (N, C, L), reshape to (N, C, L, 1).'
        raise ValueError(f'{caller} expects a 2-D (N, D) or 4-D (N, C, H, W) input; '
                         f'got shape {shape}.{hint}')
    num_features = shape[1]
    expected = param_shape(num_features, len(shape))
    kind = 'features' if len(shape) == 2 else 'channels'
    for name, got in param_shapes.items():
        if tuple(got) != expected:
            raise ValueError(
                f'{caller}: {name} must have shape {expected} to match X of shape {shape} '
                f'({num_features} {kind}); got {tuple(got)}. Create the parameters with that '
                f'shape, e.g. {layer}({num_features}, num_dims={len(shape)}).')


def validate_dtypes(X, caller='batch_norm', **params):
    """Raise ValueError unless X has a float dtype and every named array (gamma=..., ...) has
    X's dtype. Reads metadata only."""
    dtype = X.dtype
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f'{caller} expects a float input (float16, float32 or float64); got X '
                         f'of dtype {np.dtype(dtype).name}. Convert it first, e.g. '
                         "X.astype('float32').")
    for name, param in params.items():
        if param.dtype != dtype:
            raise ValueError(f'{caller}: {name} has dtype {np.dtype(param.dtype).name} but X has '
                             f'dtype {np.dtype(dtype).name}; they must match. Cast the input or '
                             f"the net, e.g. net.cast('{np.dtype(dtype).name}').")


def validate_batch_norm_settings(eps, momentum, caller='batch_norm'):
    """Raise ValueError (TypeError for a non-number), saying what to change, unless eps is a
    number > 0 and momentum a number in [0, 1].

    eps = 0 divides 0 by 0 on a constant feature (NaN); a momentum outside [0, 1] extrapolates
    the moving averages instead of averaging, so moving_var can turn negative (NaN predictions).
    """
    for name, value in (('eps', eps), ('momentum', momentum)):
        validate_number(value, name, caller)
    validate_eps(eps, caller)
    if not 0 <= momentum <= 1:
        raise ValueError(f'{caller}: momentum must be in [0, 1] (the weight of the old moving '
                         f'average); got {momentum!r}. The book uses momentum=0.9.')


def validate_eps(eps, caller='batch_norm'):
    """Raise TypeError or ValueError unless eps is a number > 0 (every normalization adds it to
    a variance before the square root)."""
    validate_number(eps, 'eps', caller)
    if not eps > 0:
        raise ValueError(f"{caller}: eps must be > 0 (it keeps the division finite when a "
                         f"feature's variance is 0); got {eps!r}. The book uses eps=1e-5.")


def validate_number(value, name, caller):
    """Raise TypeError unless value is a real number (not a bool)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f'{caller}: {name} must be a number; got {value!r} (a '
                        f'{type(value).__name__}). The book uses eps=1e-5, momentum=0.9.')


def validate_num_features(num_features, caller='BatchNorm'):
    """Raise ValueError unless num_features is a positive integer (a layer cannot infer it)."""
    require_positive_int(num_features, 'num_features', caller,
                         'the number of outputs of the layer before (Dense units or Conv2D '
                         'channels), e.g. BatchNorm(6, num_dims=4); for a computed number, use '
                         'int(...)')


def validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var, eps=None, momentum=None):
    """Raise ValueError, saying what to change, if batch_norm cannot use these inputs.

    X: (N, D) or (N, C, H, W), float (float16 only in prediction mode: in training mode its
    batch statistics would overflow); gamma, beta, moving_mean, moving_var: shape (1, D) or
    (1, C, 1, 1), X's dtype. Shape and dtype checks only: they read metadata, so they cost no
    computation and no sync.
    eps, momentum: when given (``batch_norm`` passes them), also checks them
    (``validate_batch_norm_settings``) and, when training (inside ``autograd.record()``), that X
    holds more than one value per feature/channel: the statistics of one value give Y = beta
    exactly and no gradient (PyTorch refuses this too). A training-mode forward that records
    nothing (``autograd.train_mode()``, to look at what batch statistics do) is allowed. A layer
    whose statistics span several arrays (``CrossDeviceBatchNorm``, one part per device) checks
    each part without them.
    """
    for name, array in (('X', X), ('gamma', gamma), ('beta', beta), ('moving_mean', moving_mean),
                        ('moving_var', moving_var)):
        if not isinstance(array, nd.NDArray):
            raise TypeError('batch_norm expects MXNet NDArrays; got %s as a %s. Convert it with '
                            'nd.array(...) (a Gluon Parameter: param.data()).'
                            % (name, type(array).__name__))
    shape = X.shape   # each NDArray attribute read is a call into MXNet
    params = {'gamma': gamma, 'beta': beta, 'moving_mean': moving_mean, 'moving_var': moving_var}
    validate_batch_norm_shapes(shape, **{name: param.shape for name, param in params.items()})
    validate_dtypes(X, **params)
    if X.dtype == np.float16 and autograd.is_training():
        raise ValueError(
            'batch_norm refuses a float16 X in training mode: it computes the batch statistics '
            'in X\'s dtype, and in float16 the mean of a batch such as (256, 6, 24, 24) overflows '
            '(the sum passes 65504), so Y and the moving statistics would be NaN. Train in '
            'float32 (net.cast(\'float32\'), X.astype(\'float32\')), or use nn.BatchNorm, whose '
            'operator computes float16 statistics in float32. Prediction in float16 is allowed.')
    if eps is None and momentum is None:
        return
    validate_batch_norm_settings(eps, momentum)
    if autograd.is_recording() and autograd.is_training() and int(np.prod(shape)) == shape[1]:
        raise ValueError(
            'batch_norm in training mode needs more than one value per %s to compute batch '
            'statistics; got X of shape %s, so Y would be exactly beta and no gradient would '
            'flow. Train with batches of at least 2 examples (a last partial batch of 1: choose '
            'another batch size or drop it), or predict outside autograd.record().'
            % ('feature' if len(shape) == 2 else 'channel', shape))
