"""LeNet and its batch-normalized variants, built in one place so notebooks and tests agree.

``lenet()`` is the book's LeNet (chapter 卷积神经网络（LeNet）); ``lenet(bn='scratch')``
and ``lenet(bn='gluon')`` are the two nets of chapter 批量归一化; other arguments build the
variants its exercises ask about (where the BN layer goes, which layers get one).
``count_parameters(net)`` counts a net's learned and not learned values.
``is_batch_norm(block)`` and ``batch_norm_layers(net)`` are the package's one idea of "a
batch-norm layer", used by recalibration, folding, the probes and the PyTorch appendix.
"""
from mxnet import gluon, nd
from mxnet.gluon import nn

from .layers import BatchNorm

__all__ = ['batch_norm_layers', 'count_parameters', 'is_batch_norm', 'lenet',
           'statistic_names']

BN_CHOICES = (None, 'scratch', 'gluon')
BN_POSITIONS = ('before_activation', 'after_activation')
BN_PARTS = ('conv', 'dense')
# the names nn.Activation (MXNet's Activation operator) accepts
ACTIVATIONS = ('relu', 'sigmoid', 'softrelu', 'softsign', 'tanh')

# (kind, units or channels) of LeNet's hidden layers; the output Dense(10) never gets BN.
_HIDDEN = (('conv', 6), ('conv', 16), ('dense', 120), ('dense', 84))


def _affine(kind, size, **kwargs):
    """LeNet's Conv2D (5x5 kernels) or Dense layer with ``size`` channels or units."""
    if kind == 'conv':
        return nn.Conv2D(size, kernel_size=5, **kwargs)
    return nn.Dense(size, **kwargs)


def _bn_factory(bn):
    """Return a function (num_features, num_dims) -> block, or None for no batch norm."""
    if bn is None:
        return None
    if bn == 'scratch':
        return BatchNorm
    if bn == 'gluon':
        return lambda num_features, num_dims: nn.BatchNorm()   # infers its size, like the book's
    if callable(bn):
        return bn
    raise ValueError('lenet: bn must be one of %s or a callable bn(num_features, num_dims) '
                     'returning a block; got %r.' % (', '.join(map(repr, BN_CHOICES)), bn))


def lenet(bn=None, activation='sigmoid', use_bias=True, bn_position='before_activation',
          bn_in=('conv', 'dense')):
    """Build LeNet for (N, 1, 28, 28) images; the output is (N, 10) class scores.

    bn: None (the book's plain LeNet), 'scratch' (d2l_utils.BatchNorm, as the book builds it
        from scratch), 'gluon' (nn.BatchNorm()), or a callable ``bn(num_features, num_dims)``
        returning a block, with num_dims 4 after a Conv2D and 2 after a Dense layer.
    activation: the hidden layers' activation, any name nn.Activation accepts ('sigmoid' as
        in the book, 'relu', ...).
    use_bias: False drops the bias of every Conv2D/Dense layer that gets a BN layer: BN's mean
        subtraction cancels that bias exactly when BN comes before the activation, and beta
        plays its role. Layers without BN (and the output layer) keep their bias.
    bn_position: 'before_activation' (the book and the paper: affine -> BN -> activation) or
        'after_activation' (affine -> activation -> BN), for the exercise comparing the two.
    bn_in: which hidden layers get BN: any of 'conv' (the two Conv2D layers) and 'dense' (the
        two hidden Dense layers).

    Returns an nn.Sequential, not initialized. With bn=None the other BN arguments do nothing.
    """
    make_bn = _bn_factory(bn)
    if activation not in ACTIVATIONS:
        # nn.Activation accepts any string and fails only at the first forward pass, inside
        # MXNet's deferred initialization
        raise ValueError('lenet: activation must be one of %s; got %r.'
                         % (', '.join(map(repr, ACTIVATIONS)), activation))
    if bn_position not in BN_POSITIONS:
        raise ValueError('lenet: bn_position must be one of %s; got %r.'
                         % (', '.join(map(repr, BN_POSITIONS)), bn_position))
    if isinstance(bn_in, str):      # bn_in='conv' means ('conv',), not the letters c, o, n, v
        bn_in = (bn_in,)
    unknown = [part for part in bn_in if part not in BN_PARTS]
    if unknown:
        raise ValueError('lenet: bn_in may contain only %s; got %r.'
                         % (', '.join(map(repr, BN_PARTS)), tuple(bn_in)))

    net = nn.Sequential()
    for kind, size in _HIDDEN:
        if make_bn is None or kind not in bn_in:
            # The book's plain LeNet puts the activation inside the layer; same computation.
            net.add(_affine(kind, size, activation=activation))
        else:
            layer = _affine(kind, size, use_bias=use_bias)
            norm = make_bn(size, 4 if kind == 'conv' else 2)
            if bn_position == 'before_activation':
                net.add(layer, norm, nn.Activation(activation))
            else:
                net.add(layer, nn.Activation(activation), norm)
        if kind == 'conv':
            net.add(nn.MaxPool2D(pool_size=2, strides=2))
    net.add(nn.Dense(10))
    return net


def count_parameters(net):
    """(learned, not learned): the number of values in the initialized net's parameters with a
    gradient (grad_req 'write' or 'add') and without one ('null': moving statistics, frozen)."""
    learned = fixed = 0
    for param in net.collect_params().values():
        if param.grad_req == 'null':
            fixed += param.data().size
        else:
            learned += param.data().size
    return learned, fixed


def is_batch_norm(block):
    """True for a batch-norm layer: ``nn.BatchNorm`` and the layers built on it (such as
    ``SyncBatchNorm``), or any block holding the book's ``moving_mean`` and ``moving_var`` as
    Parameters or NDArrays: ``BatchNorm``, ``FastBatchNorm``, ``CrossDeviceBatchNorm``, the
    book's ``BookBatchNorm`` and a learner's own layer written the book's way."""
    if isinstance(block, nn.BatchNorm):
        return True
    return all(isinstance(getattr(block, name, None), (gluon.Parameter, nd.NDArray))
               for name in ('moving_mean', 'moving_var'))


def statistic_names(layer):
    """The attribute names of a BN layer's statistics: ``('running_mean', 'running_var')`` for
    ``nn.BatchNorm``, ``('moving_mean', 'moving_var')`` for a layer written the book's way."""
    if isinstance(layer, nn.BatchNorm):
        return 'running_mean', 'running_var'
    return 'moving_mean', 'moving_var'


def batch_norm_layers(net):
    """The BN layers in ``net`` (``is_batch_norm``), in the order ``net.apply`` visits them.

    Returns a list of (layer, mean, variance), the statistics the layer predicts with:
    ``nn.BatchNorm`` holds Parameters ``running_mean``, ``running_var`` of shape (C,); the
    scratch layers hold Parameters ``moving_mean``, ``moving_var`` of shape (1, C) or
    (1, C, 1, 1), the book's layer plain NDArrays of those shapes.
    """
    found = []

    def visit(block):
        if is_batch_norm(block):
            mean, var = statistic_names(block)
            found.append((block, getattr(block, mean), getattr(block, var)))

    net.apply(visit)
    return found
