"""Folding batch normalization into the layer before it, for prediction.

In prediction mode a BN layer is a fixed affine map per channel c:
``y = gamma_c * (x - mean_c) / sqrt(var_c + eps) + beta_c``, with the statistics it predicts
with (the scratch layers' ``moving_mean``/``moving_var``, ``nn.BatchNorm``'s
``running_mean``/``running_var``). When x is the output ``W x_in + b`` of a Conv2D or Dense
layer, the two maps compose into one layer with

    W'_c = W_c * s_c,   b'_c = (b_c - mean_c) * s_c + beta_c,   s_c = gamma_c / sqrt(var_c + eps)

(W_c: the weights of output channel or unit c). ``fold_batch_norm(net)`` builds that net: the
same predictions, one layer fewer per BN layer, and no per-channel arithmetic at prediction.

It uses whatever the layer predicts with, so it is right on every device: MXNet's CPU
``nn.BatchNorm`` stores the biased running variance, a cuDNN GPU the unbiased one, and either
way the folded net predicts as the original does.
"""
import copy

import numpy as np
from mxnet import gluon, init, nd
from mxnet.base import MXNetError
from mxnet.ndarray import CachedOp
from mxnet.gluon import nn

from ..models import is_batch_norm, statistic_names
from ..support.errors import short_message

__all__ = ['ChannelShift', 'fold_batch_norm']


def _detached_copy(block):
    """``copy.deepcopy(block)`` without MXNet's run-time state, which holds C pointers that
    cannot be copied: a hybridized block's compiled graph (a CachedOp, once it has run) and the
    Trainer its Parameters are attached to (with its KVStore, e.g. after training on several
    devices). The copy shares no arrays with ``block``, has no Trainer and is not hybridized
    (call ``hybridize()`` on the folded net to compile it again).
    """
    memo, seen, todo = {}, set(), [block]
    # what deepcopy would reach (a layer's name scope leads to its parent blocks too)
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (CachedOp, gluon.Trainer)):
            memo[id(obj)] = None   # deepcopy takes memo's entry instead of copying
        elif isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            todo.extend(obj)
        elif hasattr(obj, '__dict__') and not isinstance(obj, (nd.NDArray, type)):
            todo.extend(vars(obj).values())
    new = copy.deepcopy(block, memo)
    new.hybridize(active=False)   # forget the original's compiled graph
    return new


def _prediction_affine(bn, num_dims):
    """(scale, shift), float64 arrays of shape (C,): the map y = scale * x + shift that the BN
    layer ``bn`` applies per channel in prediction mode, after a layer with ``num_dims``-D
    outputs (4 after Conv2D, 2 after Dense).

    Measured rather than recomputed from the layer's fields: a float64 copy of the layer predicts
    on x = 0 (giving the shift) and x = 1 (shift + scale). So it holds for every BN kind and
    option (eps, nn.BatchNorm's scale=False, a cuDNN GPU's unbiased variance) without reading
    any private attribute, and loses no precision to float32.
    """
    probe = _detached_copy(bn)
    probe.cast('float64')   # casts Parameters; statistics kept as NDArrays (the book's) follow
    mean = getattr(bn, statistic_names(bn)[0])
    if isinstance(mean, nd.NDArray):
        ctx = mean.context
        for name in statistic_names(bn):
            setattr(probe, name, getattr(bn, name).astype('float64'))
    else:
        ctx = mean.list_ctx()[0]
    C = int(np.prod(mean.shape))   # (C,) or (1, C[, 1, 1])
    shape = (1, C) if num_dims == 2 else (1, C, 1, 1)
    try:
        y0, y1 = (probe(nd.full(shape, value, ctx=ctx, dtype='float64')).asnumpy().reshape(-1)
                  for value in (0.0, 1.0))
    except MXNetError as error:
        raise ValueError('fold_batch_norm: %s cannot be applied per channel to (N, %d%s) '
                         'outputs; only BN over channel axis 1 (NCHW images, (N, D) features) '
                         'can be folded into the layer before it. MXNet said: %s'
                         % (bn.name, C, ', H, W' if num_dims == 4 else '',
                            short_message(error))) from None
    if y0.size != C:
        raise ValueError('fold_batch_norm: %s does not normalize channel axis 1 (its output '
                         'for a (1, %d) input has %d values); only BN over channel axis 1 can '
                         'be folded.' % (bn.name, C, y0.size))
    return y1 - y0, y0


def _layer_device_and_weight(layer):
    try:
        weight = layer.weight.data()
    except RuntimeError:
        raise ValueError('fold_batch_norm: %s has no weights yet (deferred initialization). '
                         'Initialize and train the net (or run one batch through it) before '
                         'folding.' % layer.name) from None
    return weight.context, weight


class ChannelShift(nn.HybridBlock):
    """Adds a constant per channel: y = x + shift, shift of shape (1, C) or (1, C, 1, 1).

    What a folded layer built with use_bias=False needs in place of the bias it lacks (Gluon
    cannot give an existing Conv2D/Dense a bias afterwards). Not learned.
    """

    def __init__(self, shift, **kwargs):  # shift: numpy array, (1, C) or (1, C, 1, 1)
        super().__init__(**kwargs)
        self.shift = self.params.get('shift', shape=shift.shape, init=init.Zero(),
                                     grad_req='null', differentiable=False)

    def hybrid_forward(self, F, x, shift):
        return F.broadcast_add(x, shift)


def _folded_copy(layer, bn):
    """Blocks computing ``bn(layer(x))`` in prediction mode: a copy of the Conv2D/Dense layer
    with scaled weights and shifted bias (plus a ``ChannelShift`` if it has no bias)."""
    ctx, weight = _layer_device_and_weight(layer)
    scale, shift = _prediction_affine(bn, 4 if isinstance(layer, nn.Conv2D) else 2)
    W = weight.asnumpy().astype(np.float64)
    if scale.size != W.shape[0]:
        raise ValueError('fold_batch_norm: %s has %d channels but the layer before it, %s, has '
                         '%d outputs.' % (bn.name, scale.size, layer.name, W.shape[0]))
    new = _detached_copy(layer)   # same kernel, strides, padding, flatten...; its own arrays
    dtype = weight.dtype
    new.weight.set_data(nd.array(W * scale.reshape((-1,) + (1,) * (W.ndim - 1)), dtype=dtype))
    if layer.bias is not None:
        b = layer.bias.data().asnumpy().astype(np.float64)
        new.bias.set_data(nd.array(b * scale + shift, dtype=dtype))
        return [new]
    shift_shape = (1, shift.size, 1, 1) if isinstance(layer, nn.Conv2D) else (1, shift.size)
    add = ChannelShift(shift.reshape(shift_shape))
    add.initialize(ctx=ctx)
    add.shift.set_data(nd.array(shift.reshape(shift_shape), dtype=dtype))
    return [new, add]


def _copied(block):
    """An independent copy of a block that is not folded: a Conv2D/Dense layer with its weights,
    or a block without parameters (activation, pooling, flatten, dropout, ...)."""
    if isinstance(block, (nn.Conv2D, nn.Dense)):
        _layer_device_and_weight(block)
        # deepcopy copies the NDArrays too, so the copy shares no memory with the original
        return _detached_copy(block)
    if list(block.collect_params().values()):
        raise ValueError('fold_batch_norm: cannot copy %s (a %s): it has parameters and is '
                         'neither a Conv2D, a Dense nor a BN layer. fold_batch_norm handles '
                         'nets of Conv2D, Dense, BN and parameter-free layers, such as the '
                         'package\'s lenet().' % (block.name, type(block).__name__))
    return _detached_copy(block)


def _describe(block):
    if block is None:
        return 'nothing (it is the first layer of its Sequential)'
    return '%s (a %s)' % (block.name, type(block).__name__)


def _fold_children(seq):
    """A new Sequential of seq's class holding folded copies of seq's children."""
    folded = type(seq)()
    children = [seq[k] for k in range(len(seq))]
    previous, i = None, 0
    while i < len(children):
        block = children[i]
        following = children[i + 1] if i + 1 < len(children) else None
        if is_batch_norm(block):
            # the Conv2D/Dense before it was handled when it was seen (it looks ahead), so a BN
            # reached here does not follow one
            if isinstance(previous, (nn.Conv2D, nn.Dense)) and previous.act is not None:
                raise ValueError(
                    'fold_batch_norm: %s follows %s, whose activation (%s) is fused into the '
                    'layer, so the BN normalizes activations, not the layer\'s affine output, '
                    'and cannot be folded into it. Build the layer without activation= and put '
                    'the activation after the BN layer (as lenet() does).'
                    % (block.name, _describe(previous), previous.act.name))
            hint = ''
            if isinstance(previous, nn.Activation):
                hint = (' This is the layout of lenet(bn_position=\'after_activation\'): there '
                        'the BN comes after the activation, which is not an affine map, so '
                        'nothing can absorb it; predict with the original net.')
            raise ValueError('fold_batch_norm: %s (a %s) follows %s; a BN layer can be folded '
                             'only into a Conv2D or Dense layer (without a fused activation) '
                             'directly before it.%s'
                             % (block.name, type(block).__name__, _describe(previous), hint))
        if (isinstance(block, (nn.Conv2D, nn.Dense)) and is_batch_norm(following)
                and block.act is None):
            folded.add(*_folded_copy(block, following))
            previous, i = following, i + 2
            continue
        if isinstance(block, (nn.Sequential, nn.HybridSequential)):
            folded.add(_fold_children(block))
        else:
            folded.add(_copied(block))
        previous, i = block, i + 1
    return folded


def fold_batch_norm(net):
    """Return a new net that predicts as ``net`` does, with every BN layer folded into the
    Conv2D or Dense layer directly before it.

    net: an initialized ``nn.Sequential`` or ``nn.HybridSequential`` (nested ones are folded
    too) of Conv2D/Dense layers, BN layers (``d2l_utils.models.is_batch_norm``: ``BatchNorm``,
    ``FastBatchNorm``, ``CrossDeviceBatchNorm``, ``BookBatchNorm``, ``nn.BatchNorm`` with axis
    1) and parameter-free layers, e.g. ``lenet(bn=...)``; input (N, 1, 28, 28) for LeNet,
    output (N, 10).

    Each BN layer must come directly after a Conv2D or Dense layer built without
    ``activation=`` (the order affine -> BN -> activation of the book and of
    ``lenet(bn_position='before_activation')``); otherwise ValueError says which layer and why.
    The folded layer's bias holds (b - mean) * s + beta; a layer built with use_bias=False
    cannot get a bias in Gluon, so it is followed by a ``ChannelShift`` holding beta - mean * s.
    Every other layer is copied. ``net`` itself is not changed, and the returned net shares no
    parameters with it (train ``net`` further and fold again). ``net`` may be hybridized and
    trained (on several devices too); the returned net is not hybridized and is attached to no
    Trainer (call ``hybridize()`` on it to compile it).

    The result is for prediction only: it has no BN layer, so training it is training a net
    without batch normalization. Compare it with the original in prediction mode
    (``net(X)`` outside ``autograd.record()``).
    """
    if not isinstance(net, (nn.Sequential, nn.HybridSequential)):
        raise ValueError('fold_batch_norm expects an nn.Sequential or nn.HybridSequential (such '
                         'as lenet(bn=...)); got a %s. Put the layers in a Sequential.'
                         % type(net).__name__)
    return _fold_children(net)
