"""Recalibrated batch-norm statistics (PreciseBN): the population mean and variance, measured.

A BN layer predicts with exponential moving averages of its batch statistics. With momentum
0.9 an average remembers about the last 10 batches, computed while the weights were still
moving; at the book's learning rate 1.0 the weights move faster than that, so the averages
lag and prediction-mode accuracy jumps from epoch to epoch. Wu & Johnson (2021, "Rethinking
'Batch' in BatchNorm", section 3) call the remedy PreciseBN: freeze the weights and measure
the statistics of every BN layer's inputs over many training batches.

``recalibrate_batch_norm`` does that by watching each BN layer's *input*. It never relies on
how a layer updates its own statistics (MXNet's CPU ``nn.BatchNorm`` updates them in backward
and stores the biased variance; a cuDNN GPU updates them in forward and stores the unbiased
one), so it gives the same result for every kind of BN layer on every device.
"""
from contextlib import contextmanager

import numpy as np
from mxnet import autograd, gluon, nd

from .data_parallel import split_parts
from .models import batch_norm_layers, statistic_names
from .support.validation import require_positive_int

__all__ = ['recalibrate_batch_norm', 'restoring_state']


def store_statistic(layer, name, value):
    """Write ``value`` (numpy, C values) into ``layer``'s statistic ``name``, shaped as it is
    stored: a Parameter gets it on every device; a plain NDArray attribute (the book's layer,
    which replaces its arrays in every training step) is replaced by a new array."""
    current = getattr(layer, name)
    if isinstance(current, gluon.Parameter):
        current.set_data(nd.array(value.reshape(current.shape), dtype=current.dtype))
    else:
        setattr(layer, name, nd.array(value.reshape(current.shape), ctx=current.context,
                                      dtype=current.dtype))


class PopulationStatistics:
    """Per-channel mean and population variance of everything one layer was given, in float64.

    ``add(X)`` takes one input X, (N, C) or (N, C, H, W) (channel axis 1); the statistics are
    over the N examples and every position. Batches are combined with Chan et al.'s pairwise
    update of (count, mean, sum of squared deviations), so a hundred batches of 256 large
    activations lose no precision to a running sum of squares.
    """

    def __init__(self, num_channels):
        self.count = 0
        self.mean = np.zeros(num_channels)
        self.sum_sq_dev = np.zeros(num_channels)   # sum of (x - mean)^2

    def add(self, X, layer_name='', batch=0):
        """Add one input X; raise FloatingPointError, naming the layer and the batch, if X holds
        a NaN or infinite value (the statistics would be NaN for every later layer too)."""
        x = X.asnumpy().astype(np.float64)
        if not np.isfinite(x).all():   # finite data, but a layer before this one overflowed
            raise FloatingPointError(
                f'recalibrate_batch_norm: the input of layer {layer_name} in batch {batch} has '
                f'{int(np.size(x) - np.isfinite(x).sum())} NaN or infinite values although the '
                'batch is finite, so its statistics would be NaN. No statistics were changed. '
                'A layer before it overflows or holds non-finite weights: check the net.')
        x = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)   # (C, N*H*W)
        n = x.shape[1]
        mean = x.mean(axis=1)
        sum_sq_dev = np.square(x - mean[:, None]).sum(axis=1)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.sum_sq_dev = self.sum_sq_dev + sum_sq_dev + np.square(delta) * (self.count * n / total)
        self.count = total

    @property
    def var(self):
        """Population variance (divided by the count), shape (C,)."""
        return self.sum_sq_dev / self.count


def batch_input(batch, number):
    """X of one (X, y) batch: TypeError naming the batch if it is not such a pair,
    FloatingPointError if X holds a NaN or infinite value."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        X = batch[0]
        bad = int((~np.isfinite(X.asnumpy())).sum()) if isinstance(X, nd.NDArray) else 0
        if bad:
            raise FloatingPointError(
                f'recalibrate_batch_norm: X of batch {number} (shape {X.shape}) has {bad} NaN or '
                'infinite values, so every BN layer\'s statistics would be NaN. No statistics '
                'were changed. Pass batches without non-finite values (check a batch with '
                'np.isfinite(X.asnumpy()).all()).')
        return X
    got = (f'an NDArray of shape {batch.shape}' if isinstance(batch, nd.NDArray)
           else f'a {type(batch).__name__}')
    raise TypeError(f'recalibrate_batch_norm: batches must yield (X, y) pairs, as a data '
                    f'iterator does (only X is used); batch {number} is {got}. For a list of '
                    'inputs xs, pass [(X, None) for X in xs].')


def net_devices(net):
    """The devices ``net``'s Parameters live on (deferred ones: where they will be created).

    Raises ValueError, saying what to call, if a Parameter was never initialized.
    """
    devices = None
    for name, param in net.collect_params().items():
        try:
            ctx = param.list_ctx()
        except RuntimeError:
            raise ValueError('recalibrate_batch_norm: the net is not initialized (parameter %s '
                             'has no value). Call net.initialize(...) and train it first; '
                             'recalibrating an untrained net measures nothing useful.'
                             % name) from None
        devices = devices or list(ctx)
    return devices


def recalibrate_batch_norm(net, batches, num_batches=100, ctx=None):
    """Set every BN layer's moving mean and variance to its inputs' population statistics.

    net: an initialized net containing ``BatchNorm``, ``FastBatchNorm``,
        ``CrossDeviceBatchNorm`` or ``nn.BatchNorm`` layers, or any layer with the book's
        ``moving_mean``/``moving_var`` (see ``d2l_utils.models.is_batch_norm``); not inside a
        hybridized block: a hybridized graph hides its layers' inputs.
    batches: any iterable of (X, y) training batches, e.g. a data iterator or a list; X
        (batch, ...) as the net takes it. Only X is used. The first ``num_batches`` are used.
    num_batches: how many batches to measure (a positive integer; 100 batches of 256 are
        25,600 examples, plenty for per-channel statistics).
    ctx: the device(s) to run on; default the devices the net lives on. With several devices
        each batch is split across them, as training does.

    The forward passes run in training mode (each layer normalizes with its batch's
    statistics, as in training) with every learned parameter frozen: no gradient is recorded,
    so weights, gamma/beta, their gradients and the trainer are untouched. Each layer's
    statistics are the mean and the population variance (divided by the count) of its input
    over all examples (and positions) seen, accumulated in float64. They are written into every
    device's copy, shaped as the layer stores them. Returns the number of batches used.
    """
    require_positive_int(num_batches, 'num_batches', 'recalibrate_batch_norm',
                         'how many training batches to measure, e.g. 100')
    layers = batch_norm_layers(net)
    if not layers:
        raise ValueError('recalibrate_batch_norm: %s (a %s) contains no batch normalization '
                         'layer (BatchNorm, FastBatchNorm, CrossDeviceBatchNorm or '
                         'nn.BatchNorm), so there are no statistics to recalibrate.'
                         % (net.name, type(net).__name__))
    if ctx is None:
        devices = net_devices(net)
    else:
        devices = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    stats, handles = {}, []

    def watch(layer, inputs):
        X = inputs[0]
        if not isinstance(X, nd.NDArray):
            raise ValueError('recalibrate_batch_norm: layer %s sees a %s, not an NDArray: it '
                             'runs inside a hybridized block, whose graph hides its inputs. '
                             'Call net.hybridize(active=False) first (and net.hybridize() '
                             'afterwards).' % (layer.name, type(X).__name__))
        if layer not in stats:
            stats[layer] = PopulationStatistics(X.shape[1])
        stats[layer].add(X, layer.name, used + 1)

    for layer, _, _ in layers:
        handles.append(layer.register_forward_pre_hook(watch))
    # the book's layer keeps its statistics as plain NDArrays, which it replaces in training mode
    plain = [(layer, name, getattr(layer, name)) for layer, _, _ in layers
             for name in statistic_names(layer)
             if not isinstance(getattr(layer, name), gluon.Parameter)]
    used = 0
    try:
        # restoring_state: a scratch layer's own training-mode update, or a half-finished
        # measurement, leaves nothing behind; the measured statistics are written afterwards
        with restoring_state(net), autograd.train_mode():   # batch statistics, nothing recorded
            for batch in batches:
                if used == num_batches:
                    break
                X = batch_input(batch, used + 1)
                # split as evaluation splits a batch (d2l_utils.data_parallel's policy: a batch
                # smaller than the number of devices uses the first devices)
                for part in split_parts(X, devices, 'recalibrate_batch_norm', training=False):
                    net(part)
                used += 1
    finally:
        for handle in handles:
            handle.detach()
        for layer, name, value in plain:
            setattr(layer, name, value)
    if used == 0:
        raise ValueError('recalibrate_batch_norm: batches yielded no batch. Pass training '
                         'batches, e.g. train_iter (an iterator that was already exhausted, '
                         'such as a used generator, yields nothing).')
    for layer, mean, var in layers:
        if layer not in stats:
            raise ValueError('recalibrate_batch_norm: layer %s never ran in a forward pass of '
                             'the net, so its statistics cannot be measured. If the net (or a '
                             'block holding the layer) is hybridized and has run, its cached '
                             'graph runs without calling the layer: call '
                             'net.hybridize(active=False) first (and net.hybridize() afterwards).'
                             % layer.name)
        names = statistic_names(layer)
        measured = stats[layer]
        for name, stored, value in zip(names, (mean, var), (measured.mean, measured.var)):
            if value.size != int(np.prod(stored.shape)):
                raise ValueError('recalibrate_batch_norm: layer %s stores %s with shape %s, '
                                 'but its input has %d channels on axis 1. Only channel axis 1 '
                                 '(N, C) / (N, C, H, W) is supported.'
                                 % (layer.name, name, stored.shape, value.size))
            store_statistic(layer, name, value)
    return used


@contextmanager
def restoring_state(net):
    """Inside the ``with`` block anything goes; on exit every Parameter of ``net`` that is not
    learned (grad_req 'null': BN moving/running statistics) gets back its value from the entry.

    A training-mode forward of the scratch ``BatchNorm`` (or a backward of ``nn.BatchNorm``)
    updates those statistics; measurements wrapped in this block leave the net as they found
    it. The learned Parameters' gradient buffers are not restored (the next backward overwrites
    them anyway). A Parameter whose initialization is still deferred on entry (the net has not
    seen a batch yet) gets its initial value back (its own init, e.g. ones for moving_var).
    """
    saved, deferred = [], []
    for param in net.collect_params().values():
        if param.grad_req != 'null':
            continue
        try:
            saved.append((param, [d.copy() for d in param.list_data()]))
        except gluon.parameter.DeferredInitializationError:
            deferred.append(param)
    try:
        yield net
    finally:
        for param, copies in saved:
            for data, copy in zip(param.list_data(), copies):
                data[:] = copy
        for param in deferred:
            try:
                param.initialize(ctx=param.list_ctx(), force_reinit=True)
            except gluon.parameter.DeferredInitializationError:
                pass   # still deferred: nothing ran inside the block, nothing to restore
