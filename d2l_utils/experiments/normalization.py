"""Layer, group and instance normalization from scratch, written like the book's ``batch_norm``.

Batch normalization computes its statistics over the examples of a batch, so an example's
output depends on the others in its batch, and prediction needs moving averages. The three
normalizations here compute their statistics inside each example:

- ``layer_norm`` (Ba et al., 2016): over all features of the example (2-D: axis 1; 4-D: the
  channels and all positions, axes 1, 2, 3);
- ``group_norm`` (Wu and He, 2018): over each group of ``C // num_groups`` channels and all
  their positions (``num_groups=1`` is layer norm, ``num_groups=C`` is instance norm);
- ``instance_norm`` (Ulyanov et al., 2016): over the positions of each channel (4-D only).

Each learns ``gamma`` and ``beta`` per feature or channel, with ``batch_norm``'s shapes (1, D) /
(1, C, 1, 1). None has moving statistics: training and prediction compute the same function,
and an example gets the same output in a batch of one as in a batch of 256.
"""
import numpy as np
from mxnet import init, nd
from mxnet.gluon import nn

from ..layers import (param_shape, validate_batch_norm_shapes, validate_dtypes, validate_eps,
                      validate_num_features)
from ..support.validation import is_integer, require_positive_int

__all__ = ['layer_norm', 'group_norm', 'instance_norm', 'LayerNorm', 'GroupNorm',
           'InstanceNorm']


def _validate_normalization_inputs(name, X, gamma, beta, eps, ndims=(2, 4)):
    """Raise ValueError, saying what to change, if ``name`` cannot use these inputs.

    name: the function's name, for the message. ndims: the input ranks it accepts.
    Shape, dtype and eps checks only: they read metadata, so they cost no computation.
    """
    shape = X.shape   # each NDArray attribute read is a call into MXNet
    if len(shape) not in ndims:
        expected = ' or '.join({2: '2-D (N, D)', 4: '4-D (N, C, H, W)'}[d] for d in ndims)
        hint = ''
        if len(shape) == 3:
            hint = ' For a 1-D sequence (N, C, L), reshape to (N, C, L, 1).'
        elif len(shape) == 2 and name == 'instance_norm':
            hint = (' A 2-D input has one value per feature and example: its mean is the value '
                    'itself, so every output would be beta. After a Dense layer use layer_norm '
                    'or group_norm instead.')
        raise ValueError('%s expects a %s input; got shape %s.%s' % (name, expected, shape, hint))
    validate_eps(eps, caller=name)
    layer = {'layer_norm': 'LayerNorm', 'group_norm': 'GroupNorm'}.get(name, 'InstanceNorm')
    validate_batch_norm_shapes(shape, caller=name, layer=layer, gamma=gamma.shape, beta=beta.shape)
    validate_dtypes(X, caller=name, gamma=gamma, beta=beta)


def _validate_values_per_statistic(name, shape, count, what):
    """A mean and variance over one value are that value and 0: the output would be beta."""
    if count < 2:
        raise ValueError('%s: each mean and variance would be computed over %d value (%s, for '
                         'X of shape %s), so every output would be beta and no gradient would '
                         'reach the layer below. Normalize over more values.'
                         % (name, count, what, shape))


def _in_float32(X):
    """X, or X in float32 when it is float16: the statistics below are computed in float32,
    as MXNet's own normalization operators do. In float16 a mean over a few thousand values
    of size 300 overflows (the sum passes 65504) and a variance of size 300**2 = 90000 is
    infinite, so the output would be NaN or exactly beta without an error."""
    return X.astype('float32') if X.dtype == np.float16 else X


def _in_dtype(X_hat, dtype):
    """X_hat cast back to the input's dtype (unchanged when it already has it)."""
    return X_hat if X_hat.dtype == dtype else X_hat.astype(dtype)


def layer_norm(X, gamma, beta, eps):
    """Normalize each example of X over all its features (2-D: N x D; 4-D: N x C x H x W).

    The mean and biased variance are per example: over axis 1 for a 2-D input, over axes 1, 2, 3
    (every channel and position) for a 4-D one, shape (N, 1) or (N, 1, 1, 1).
    gamma, beta: shape (1, D) or (1, C, 1, 1), per feature or channel, as in batch_norm.
    Returns Y, with X's shape and dtype. Training and prediction compute the same thing. A
    float16 X is normalized in float32 and cast back (``_in_float32`` says why).
    """
    _validate_normalization_inputs('layer_norm', X, gamma, beta, eps)
    axes = 1 if X.ndim == 2 else (1, 2, 3)
    _validate_values_per_statistic('layer_norm', X.shape, int(np.prod(X.shape[1:])),
                                'the features of one example')
    # keepdims=True gives shape (N, 1) or (N, 1, 1, 1): one statistic per example
    X32 = _in_float32(X)
    mean = X32.mean(axis=axes, keepdims=True)
    X_centered = X32 - mean
    var = nd.square(X_centered).mean(axis=axes, keepdims=True)   # biased, like batch_norm
    X_hat = _in_dtype(X_centered / nd.sqrt(var + eps), X.dtype)
    return gamma * X_hat + beta   # scale and shift per feature or channel


def group_norm(X, gamma, beta, num_groups, eps):
    """Normalize each example of X over groups of channels (4-D: N x C x H x W) or features (2-D).

    The C channels (or D features) are split in order into ``num_groups`` groups of
    C // num_groups; the mean and biased variance are per example and group, over the group's
    channels and all positions. num_groups must divide C. num_groups=1 is layer_norm;
    num_groups=C (4-D) is instance_norm.
    gamma, beta: shape (1, D) or (1, C, 1, 1), per channel (as in batch_norm and the paper).
    Returns Y, with X's shape and dtype. Training and prediction compute the same thing. A
    float16 X is normalized in float32 and cast back, as in layer_norm.
    """
    _validate_normalization_inputs('group_norm', X, gamma, beta, eps)
    num_channels = X.shape[1]
    require_positive_int(num_groups, 'num_groups', 'group_norm',
                         f'it must divide the {num_channels} channels of X')
    if num_channels % num_groups:
        divisors = [g for g in range(1, num_channels + 1) if num_channels % g == 0]
        raise ValueError('group_norm: num_groups=%d does not divide the %d channels of X (shape '
                         '%s), so the groups would have unequal sizes. Choose one of %s.'
                         % (num_groups, num_channels, X.shape, divisors))
    N = X.shape[0]
    per_group = int(np.prod(X.shape[1:])) // num_groups
    _validate_values_per_statistic('group_norm', X.shape, per_group,
                                'the channels and positions of one group of one example')
    # (N, G, C // G * H * W): each row of the last axis is one group of one example
    X_grouped = _in_float32(X).reshape((N, num_groups, per_group))
    mean = X_grouped.mean(axis=2, keepdims=True)   # (N, G, 1)
    X_centered = X_grouped - mean
    var = nd.square(X_centered).mean(axis=2, keepdims=True)
    X_hat = _in_dtype(X_centered / nd.sqrt(var + eps), X.dtype).reshape(X.shape)
    return gamma * X_hat + beta   # scale and shift per channel, not per group


def instance_norm(X, gamma, beta, eps):
    """Normalize each channel of each example of X (4-D: N x C x H x W) over its positions.

    The mean and biased variance are over axes 2, 3, shape (N, C, 1, 1). A 2-D input is refused:
    each feature of an example is one value, whose normalized output would always be beta.
    gamma, beta: shape (1, C, 1, 1), per channel.
    Returns Y, with X's shape and dtype. Training and prediction compute the same thing. A
    float16 X is normalized in float32 and cast back, as in layer_norm.
    """
    _validate_normalization_inputs('instance_norm', X, gamma, beta, eps, ndims=(4,))
    _validate_values_per_statistic('instance_norm', X.shape, X.shape[2] * X.shape[3],
                                'the H x W positions of one channel')
    X32 = _in_float32(X)
    mean = X32.mean(axis=(2, 3), keepdims=True)   # (N, C, 1, 1): per example and channel
    X_centered = X32 - mean
    var = nd.square(X_centered).mean(axis=(2, 3), keepdims=True)
    X_hat = _in_dtype(X_centered / nd.sqrt(var + eps), X.dtype)
    return gamma * X_hat + beta


def _param_shape(block, num_features, num_dims, allowed=(2, 4)):
    validate_num_features(num_features, block)
    if num_dims not in allowed:
        if allowed == (4,):
            raise ValueError('%s normalizes each channel over its H x W positions, so it needs '
                             'num_dims=4 (after Conv2D: input (N, C, H, W)); got %r. After a '
                             'Dense layer each feature is one value per example; use LayerNorm '
                             'there, or build LeNet with bn_in=\'conv\'.' % (block, num_dims))
        raise ValueError('%s num_dims must be 2 (after Dense: input (N, D)) or 4 (after Conv2D: '
                         'input (N, C, H, W)); got %r. For a 1-D sequence (N, C, L), use '
                         'num_dims=4 and reshape the input to (N, C, L, 1).' % (block, num_dims))
    return param_shape(num_features, num_dims)


class _ExampleNorm(nn.Block):
    """gamma (ones) and beta (zeros) of shape (1, num_features) or (1, num_features, 1, 1)."""

    def __init__(self, num_features, num_dims, allowed=(2, 4), **kwargs):
        super().__init__(**kwargs)
        shape = _param_shape(type(self).__name__, num_features, num_dims, allowed)
        self.eps = 1e-5
        # Start as the identity on the normalized values (gamma 1, beta 0), as BatchNorm does.
        # No moving statistics: there is nothing to estimate for prediction.
        self.gamma = self.params.get('gamma', shape=shape, init=init.One())
        self.beta = self.params.get('beta', shape=shape, init=init.Zero())


class LayerNorm(_ExampleNorm):
    """Layer normalization layer built on ``layer_norm``; a drop-in for ``BatchNorm``.

    num_features: the number of outputs of the layer before (Dense units or Conv2D channels).
    num_dims: 2 after a Dense layer (input (N, D)), 4 after a Conv2D layer (input (N, C, H, W)).
    gamma, beta: shape (1, num_features) or (1, num_features, 1, 1). eps=1e-5.
    ``lenet(bn=LayerNorm)`` puts one after every hidden layer.
    """

    def __init__(self, num_features, num_dims, **kwargs):
        super().__init__(num_features, num_dims, **kwargs)

    def forward(self, X):
        ctx = X.context
        return layer_norm(X, self.gamma.data(ctx), self.beta.data(ctx), eps=self.eps)


class GroupNorm(_ExampleNorm):
    """Group normalization layer built on ``group_norm``.

    num_features: channels (or Dense units) of the layer before; num_groups must divide it.
    num_dims: 4 after a Conv2D layer (the default), 2 after a Dense layer (groups of features).
    gamma, beta: per channel, shape (1, num_features, 1, 1) or (1, num_features). eps=1e-5.
    As a ``lenet`` factory: ``lenet(bn=lambda n, d: GroupNorm(n, 2, d))``.
    """

    def __init__(self, num_features, num_groups, num_dims=4, **kwargs):
        super().__init__(num_features, num_dims, **kwargs)
        if not (is_integer(num_groups) and num_groups >= 1 and num_features % num_groups == 0):
            divisors = [g for g in range(1, num_features + 1) if num_features % g == 0]
            raise ValueError('GroupNorm: num_groups must be a positive integer that divides the '
                             '%d channels, so that the groups have equal sizes; got %r. Choose '
                             'one of %s.' % (num_features, num_groups, divisors))
        self.num_groups = num_groups

    def forward(self, X):
        ctx = X.context
        return group_norm(X, self.gamma.data(ctx), self.beta.data(ctx), self.num_groups,
                          eps=self.eps)


class InstanceNorm(_ExampleNorm):
    """Instance normalization layer built on ``instance_norm``, for Conv2D outputs only.

    num_features: channels of the Conv2D layer before. num_dims must be 4 (it is accepted so
    that the class is a ``lenet(bn=...)`` factory; use ``lenet(bn=InstanceNorm, bn_in='conv')``:
    a Dense output has one value per feature and example, nothing to normalize over).
    gamma, beta: shape (1, num_features, 1, 1), both learned (nn.InstanceNorm learns only beta
    by default, scale=False). eps=1e-5.
    """

    def __init__(self, num_features, num_dims=4, **kwargs):
        super().__init__(num_features, num_dims, allowed=(4,), **kwargs)

    def forward(self, X):
        ctx = X.context
        return instance_norm(X, self.gamma.data(ctx), self.beta.data(ctx), eps=self.eps)
