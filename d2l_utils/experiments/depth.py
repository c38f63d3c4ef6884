"""Deep nets and half batch norms, for notebook 6 ("why batch norm works").

- ``deep_mlp(num_hidden, ...)``: a fully connected net of any depth, with or without batch
  norm and dropout (and the two in either order), to see what BN does as nets get deeper and
  whether it regularizes like dropout;
- ``MeanOnlyBatchNorm`` and ``VarianceOnlyBatchNorm``: "lite" batch norms (d2l-en 8.5,
  exercise 4) that remove only the batch mean or only the batch variance, to see which half
  of batch norm does what.

Both lite layers are ``nn.BatchNorm`` with a different ``gamma`` and ``beta`` handed to MXNet's
own ``BatchNorm`` operator, so they are as fast as it, keep its running statistics (updated the
same way: on the CPU in backward), and work with ``recalibrate_batch_norm``.
"""
import numbers

from mxnet import autograd, nd
from mxnet.gluon import nn

__all__ = ['DROPOUT_POSITIONS', 'MeanOnlyBatchNorm', 'VarianceOnlyBatchNorm', 'deep_mlp']

DROPOUT_POSITIONS = ('after_activation', 'before_bn')


def deep_mlp(num_hidden, width=64, activation='relu', bn=False, dropout=0.0,
             dropout_position='after_activation'):
    """A fully connected net for (N, 1, 28, 28) (or (N, D)) inputs; output (N, 10) scores.

    num_hidden: the number of hidden Dense layers (>= 1), each of ``width`` units.
    activation: 'relu', 'sigmoid' or 'tanh'.
    bn: False, True (``nn.BatchNorm``), or a function returning a BN block (e.g.
        ``MeanOnlyBatchNorm``); it goes between each hidden Dense and its activation.
    dropout: the drop probability of an ``nn.Dropout`` in every hidden block (0: none).
    dropout_position: 'after_activation' (Dense -> BN -> activation -> Dropout, the usual
        order) or 'before_bn' (Dense -> Dropout -> BN -> activation: BN then normalizes
        with the dropped-out statistics in training, not with those it sees at test time).

    Returns an ``nn.HybridSequential`` (hybridize it for speed; ``record_layers`` needs it
    un-hybridized), not initialized.
    """
    if not (isinstance(num_hidden, numbers.Integral) and num_hidden >= 1):
        raise ValueError('deep_mlp: num_hidden must be a positive integer (the number of hidden '
                         'layers), e.g. 8; got %r.' % (num_hidden,))
    if not (isinstance(width, numbers.Integral) and width >= 1):
        raise ValueError('deep_mlp: width must be a positive integer, e.g. 64; got %r.'
                         % (width,))
    if activation not in ('relu', 'sigmoid', 'tanh'):
        raise ValueError("deep_mlp: activation must be 'relu', 'sigmoid' or 'tanh'; got %r."
                         % (activation,))
    if not (isinstance(dropout, numbers.Real) and 0 <= dropout < 1):
        raise ValueError('deep_mlp: dropout must be a probability in [0, 1), e.g. 0.5; got %r.'
                         % (dropout,))
    if dropout_position not in DROPOUT_POSITIONS:
        raise ValueError('deep_mlp: dropout_position must be one of %s; got %r.'
                         % (', '.join(map(repr, DROPOUT_POSITIONS)), dropout_position))
    if bn is True:
        make_bn = nn.BatchNorm
    elif bn is False or bn is None:
        make_bn = None
    elif callable(bn):
        make_bn = bn
    else:
        raise ValueError('deep_mlp: bn must be True, False or a function returning a BN block '
                         '(e.g. MeanOnlyBatchNorm); got %r.' % (bn,))
    net = nn.HybridSequential()
    for _ in range(num_hidden):
        net.add(nn.Dense(width))
        if dropout and dropout_position == 'before_bn':
            net.add(nn.Dropout(dropout))
        if make_bn is not None:
            net.add(make_bn())
        net.add(nn.Activation(activation))
        if dropout and dropout_position == 'after_activation':
            net.add(nn.Dropout(dropout))
    net.add(nn.Dense(10))
    return net


def _channel_moments(F, x):
    """Per-channel mean and mean square of x, (N, C) or (N, C, H, W): two arrays (C,).

    For 4-D inputs the mean runs over each example's positions first, as a 2-D mean over the
    last axis of (N * C, H * W): on the CPU MXNet's kernel for that is many times faster than
    a mean over axes (0, 2, 3) or global average pooling (whose backward is slower still)."""
    if x.ndim == 2:
        return x.mean(axis=0), F.square(x).mean(axis=0)
    if x.ndim != 4:
        raise ValueError('lite batch norm expects a 2-D (N, D) or 4-D (N, C, H, W) input; got '
                         'shape %s.' % (x.shape,))
    n, c = x.shape[:2]

    def per_channel(z):
        return z.reshape((n * c, -1)).mean(axis=1).reshape((n, c)).mean(axis=0)
    return per_channel(x), per_channel(F.square(x))


class _LiteBatchNorm(nn.BatchNorm):
    """nn.BatchNorm computing gamma' and beta' from the statistics before the operator runs.

    The operator returns gamma' * (x - mean) / sqrt(var + eps) + beta' with the batch's mean
    and var in training and the running ones in prediction; a subclass picks gamma', beta'
    (``lite_affine``) so that one half of the normalization is undone exactly.
    """

    def lite_affine(self, F, gamma, beta, mean, std):
        raise NotImplementedError

    def hybridize(self, active=True, **kwargs):
        if active:
            # the mode (batch or running statistics) is chosen in Python, which a graph
            # would freeze at the mode of its first call
            raise ValueError('%s cannot be hybridized: it picks the batch or the running '
                             'statistics in Python. Call hybridize() on nets without it, or '
                             'hybridize(active=False).' % type(self).__name__)
        super().hybridize(active, **kwargs)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        if F is not nd:   # the symbolic pass that infers the shapes (hybridize() refuses)
            return F.BatchNorm(x, gamma, beta, running_mean, running_var, name='fwd',
                               **self._kwargs)
        eps = self._kwargs['eps']
        if autograd.is_training():   # normalize with the batch's statistics, as the operator
            first, second = _channel_moments(F, x)
            mean, var = first, F.relu(second - F.square(first))   # relu: rounding below 0
        else:
            mean, var = running_mean, running_var
        gamma_, beta_ = self.lite_affine(F, gamma, beta, mean, F.sqrt(var + eps))
        return F.BatchNorm(x, gamma_, beta_, running_mean, running_var, name='fwd',
                           **self._kwargs)


class MeanOnlyBatchNorm(_LiteBatchNorm):
    """Batch norm that only subtracts the mean: Y = gamma * (X - mean) + beta.

    mean: the batch mean per channel in training, the running mean in prediction; the
    variance is left as it came. Input (N, C) or (N, C, H, W) (channel axis 1), output the
    same shape. Arguments as ``nn.BatchNorm`` (it keeps its running statistics too). Not
    hybridizable.
    """

    def lite_affine(self, F, gamma, beta, mean, std):
        return gamma * std, beta   # the operator divides by std: multiply it back


class VarianceOnlyBatchNorm(_LiteBatchNorm):
    """Batch norm that only divides by the standard deviation, keeping the mean:
    Y = gamma * ((X - mean) / sqrt(var + eps) + mean) + beta.

    Each channel's spread becomes 1 but its mean stays where it was (the batch statistics in
    training, the running ones in prediction). Input (N, C) or (N, C, H, W), output the same
    shape. Arguments as ``nn.BatchNorm``. Not hybridizable.
    """

    def lite_affine(self, F, gamma, beta, mean, std):
        return gamma, beta + gamma * mean   # add the mean back after the operator removed it
