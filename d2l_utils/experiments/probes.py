"""Measuring tools for the exercises beyond the book: what each layer sees, what flows back,
how noisy a mini-batch's statistics are, and how far the devices' copies of BN statistics drift.

- ``record_layers(net, X, select)``: the input and output of chosen blocks in one forward pass
  (e.g. every ``nn.Activation``: the pre-activations and activations);
- ``saturated_fraction(activations)``: how many sigmoid outputs sit where the slope is tiny;
- ``weight_gradient_norms(net, X, y)``: the gradient norm of each Conv2D/Dense weight on a batch;
- ``batch_statistics_spread(features, batch_sizes)``: how far a batch's per-channel mean and
  variance fall from the whole data's, for each batch size;
- ``running_stats_by_device(net)``, ``device_copy_spread(net)``: every BN layer's running
  statistics on each device, and how far apart the copies are (data parallelism, notebook B).

Every measurement leaves the net as it found it (``d2l_utils.restoring_state``).
"""
from collections import namedtuple

import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from ..models import batch_norm_layers
from ..recalibration import restoring_state
from ..support.validation import is_integer

__all__ = ['LayerRecord', 'batch_statistics_spread', 'device_copy_spread', 'record_layers',
           'running_stats_by_device', 'weight_gradient_norms']

LayerRecord = namedtuple('LayerRecord', 'name kind input output')
LayerRecord.__doc__ = """One block's input and output in a forward pass, as numpy arrays.

name: the block's name (e.g. 'sigmoid0'); kind: its class name (e.g. 'Activation');
input: the block's first input; output: its output (same shape for Activation and BN layers).
"""


def _is_activation(block):
    return isinstance(block, nn.Activation)


def record_layers(net, X, select=_is_activation, training=True):
    """Run ``net`` on X once and return the input and output of every selected block.

    net: a Block (not hybridized: a hybridized net runs as one graph and has no per-block
    calls to watch). X: a batch, e.g. (N, 1, 28, 28). select: block -> bool; default: every
    ``nn.Activation`` (also the one inside a Conv2D/Dense built with ``activation=``), whose
    input is the pre-activation and output the activation. training: True normalizes BN
    layers with the batch statistics (``autograd.train_mode()``), False with the moving ones.

    Returns a list of ``LayerRecord(name, kind, input, output)`` in forward order, with numpy
    arrays; the net's moving statistics are restored afterwards.
    """
    records, handles = [], []

    def hook(block, inputs, output):
        if isinstance(output, nd.NDArray):   # not the symbolic pass of deferred initialization
            records.append(LayerRecord(block.name, type(block).__name__,
                                       inputs[0].asnumpy(), output.asnumpy()))

    def attach(block):
        if select(block):
            handles.append(block.register_forward_hook(hook))

    net.apply(attach)
    if not handles:
        raise ValueError('record_layers: no block of %s matched select; check the selection '
                         '(default: nn.Activation blocks)' % (net.name,))
    scope = autograd.train_mode() if training else autograd.predict_mode()
    try:
        with restoring_state(net), scope:
            net(X)
    finally:
        for handle in handles:
            handle.detach()
    if not records:
        raise ValueError('record_layers: the selected blocks of %s were not called one by one; '
                         'a hybridized net runs as one graph: call net.hybridize(active=False) '
                         'first' % (net.name,))
    return records


def saturated_fraction(activations, low=0.01, high=0.99):
    """Fraction of sigmoid outputs below ``low`` or above ``high`` (numpy array, any shape).

    With the defaults a unit counts as saturated when its pre-activation |z| > 4.6: there the
    sigmoid's slope s(1 - s) is below 0.0099, under 1/25 of its largest value 0.25.
    """
    if not 0 <= low < high <= 1:
        raise ValueError('saturated_fraction: need 0 <= low < high <= 1 (sigmoid outputs); got '
                         'low=%r, high=%r' % (low, high))
    activations = np.asarray(activations)
    return float(np.mean((activations < low) | (activations > high)))


def weight_gradient_norms(net, X, y, loss=None):
    """L2 norms of the gradient of the mean loss on (X, y) w.r.t. each Conv2D/Dense weight.

    X: a batch (N, 1, 28, 28); y: (N,) class indices; loss: default softmax cross-entropy.
    One training-mode forward and backward, as in a training step but without an update; the
    moving statistics are restored afterwards. Returns a list of (layer name, gradient norm,
    weight norm) in the order the layers were added to the net.
    """
    loss = loss or gluon.loss.SoftmaxCrossEntropyLoss()
    layers = []
    net.apply(lambda block: layers.append(block)
              if isinstance(block, (nn.Conv2D, nn.Dense)) else None)
    if not layers:
        raise ValueError('weight_gradient_norms: %s has no Conv2D or Dense layer' % (net.name,))
    with restoring_state(net):
        with autograd.record():
            value = loss(net(X), y).mean()
        value.backward()
    return [(layer.name, layer.weight.grad().norm().asscalar(),
             layer.weight.data().norm().asscalar()) for layer in layers]


def batch_statistics_spread(features, batch_sizes, num_batches=200, seed=0, eps=1e-5):
    """How far the per-channel mean and variance of a random batch fall from the whole data's.

    features: numpy array (N, D) (statistics per feature, as after a Dense layer) or
    (N, C, H, W) (per channel over the batch and H*W positions, as after a Conv2D layer).
    For each batch size b, draws ``num_batches`` batches of b examples (without replacement)
    and compares each channel's batch mean and biased batch variance with the whole data's
    mean mu and biased variance var. Returns a list of dicts, one per batch size:

    - 'batch_size': b;
    - 'mean_error': root mean square over batches and channels of (batch mean - mu) /
      sqrt(var + eps), the shift a BN layer adds by normalizing with this batch;
    - 'var_ratio': the mean of batch variance / var; the biased variance of b independent
      values averages (b - 1) / b of the true one;
    - 'var_error': root mean square of batch variance / var - 1, the random scale it adds.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim not in (2, 4):
        raise ValueError('batch_statistics_spread expects features of shape (N, D) or '
                         '(N, C, H, W); got %s' % (features.shape,))
    n = features.shape[0]
    bad = [b for b in batch_sizes if not (is_integer(b) and 1 <= b <= n)]
    if bad:
        raise ValueError('batch_statistics_spread: batch sizes must be integers from 1 to the '
                         'number of examples (%d); got %s. Pass more examples or smaller batch '
                         'sizes.' % (n, bad))
    # Per example and channel: the mean of x and of x**2 over its positions, (N, C). A batch's
    # moments are the means of these over its examples (every example has as many positions).
    flat = features.reshape(n, features.shape[1], -1)
    first, second = flat.mean(axis=2), np.square(flat).mean(axis=2)
    mu = first.mean(axis=0)
    var = second.mean(axis=0) - np.square(mu)
    rng = np.random.RandomState(seed)
    rows = []
    for b in batch_sizes:
        index = np.stack([rng.choice(n, b, replace=False) for _ in range(num_batches)])
        batch_mean = first[index].mean(axis=1)                           # (num_batches, C)
        batch_var = second[index].mean(axis=1) - np.square(batch_mean)
        rows.append(dict(
            batch_size=int(b),
            mean_error=float(np.sqrt(np.mean(np.square(batch_mean - mu) / (var + eps)))),
            var_ratio=float(np.mean(batch_var / (var + eps))),
            var_error=float(np.sqrt(np.mean(np.square(batch_var / (var + eps) - 1))))))
    return rows


def running_stats_by_device(net):
    """Every BN layer's running statistics (``d2l_utils.batch_norm_layers``), one copy per device.

    Returns {layer name: {'ctx': [devices], 'mean': numpy (num_devices, C),
    'var': numpy (num_devices, C)}}, in the order of the net's layers. A layer keeping its
    statistics as NDArrays (the book's) has one copy, on the device it last ran on.
    """
    layers = {}
    for layer, mean, var in batch_norm_layers(net):
        arrays = {kind: stat.list_data() if isinstance(stat, gluon.Parameter) else [stat]
                  for kind, stat in (('mean', mean), ('var', var))}
        entry = layers.setdefault(layer.name, {'ctx': [a.context for a in arrays['mean']]})
        for kind, copies in arrays.items():
            entry[kind] = np.stack([a.asnumpy().reshape(-1) for a in copies])
    return layers


def device_copy_spread(net, eps=1e-5):
    """How far apart the devices' copies of each BN layer's running statistics are.

    For each layer: 'mean_gap' is the largest |mean_k - mean_0| over channels and devices k,
    in units of device 0's running standard deviation sqrt(var_0 + eps) (0.5 means some
    channel's copies are half a standard deviation apart); 'var_gap' is the largest
    |var_k / var_0 - 1|. Both are 0 with one device or synchronized statistics.
    Returns {layer prefix: {'mean_gap': float, 'var_gap': float}}.
    """
    spread = {}
    for prefix, stats in running_stats_by_device(net).items():
        mean, var = stats['mean'], stats['var']
        spread[prefix] = {
            'mean_gap': float(np.max(np.abs(mean - mean[0]) / np.sqrt(var[0] + eps))),
            'var_gap': float(np.max(np.abs(var / var[0] - 1)))}
    return spread
