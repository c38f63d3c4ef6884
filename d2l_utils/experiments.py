"""Measuring tools for the exercises beyond the book: what each layer sees, what flows back,
how noisy a mini-batch's statistics are, and a float64 gradient check.

- ``restoring_state(net)``: a ``with`` block after which the net's non-learned Parameters (the
  moving/running statistics of its BN layers) are as before, so measuring changes nothing;
- ``record_layers(net, X, select)``: the input and output of chosen blocks in one forward pass
  (e.g. every ``nn.Activation``: the pre-activations and activations);
- ``weight_gradient_norms(net, X, y)``: the gradient norm of each Conv2D/Dense weight on a batch;
- ``batch_statistics_spread(features, batch_sizes)``: how far a batch's per-channel mean and
  variance fall from the whole data's, for each batch size;
- ``numerical_gradient(f, x)`` and ``relative_error(a, b)``: the float64 oracle for a backward pass.
"""
from collections import namedtuple
from contextlib import contextmanager

import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

LayerRecord = namedtuple('LayerRecord', 'name kind input output')
LayerRecord.__doc__ = """One block's input and output in a forward pass, as numpy arrays.

name: the block's name (e.g. 'sigmoid0'); kind: its class name (e.g. 'Activation');
input: the block's first input; output: its output (same shape for Activation and BN layers).
"""


@contextmanager
def restoring_state(net):
    """Inside the ``with`` block anything goes; on exit every Parameter of ``net`` that is not
    learned (grad_req 'null': BN moving/running statistics) gets back its value from the entry.

    A training-mode forward of the scratch ``BatchNorm`` (or a backward of ``nn.BatchNorm``)
    updates those statistics; measurements wrapped in this block leave the net as they found
    it. The learned Parameters' gradient buffers are not restored (the next backward overwrites
    them anyway).
    """
    saved = [(p, [d.copy() for d in p.list_data()])
             for p in net.collect_params().values() if p.grad_req == 'null']
    try:
        yield net
    finally:
        for param, copies in saved:
            for data, copy in zip(param.list_data(), copies):
                data[:] = copy


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
    bad = [b for b in batch_sizes if not (isinstance(b, (int, np.integer)) and 1 <= b <= n)]
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


def numerical_gradient(f, x, h=1e-6):
    """Central differences (f(x + h) - f(x - h)) / 2h of the scalar f() w.r.t. each entry of x.

    x: a float64 NDArray that f reads; it is changed in place one entry at a time and restored.
    Returns a numpy array of x's shape. In float64 the error is ~1e-9 relative for h=1e-6.
    """
    if x.dtype != np.float64:
        raise TypeError('numerical_gradient needs a float64 NDArray (float32 rounding swamps the '
                        'differences); got %s. Use x.astype(\'float64\').' % np.dtype(x.dtype).name)
    grad = np.zeros(x.shape)
    values = x.asnumpy()
    for index in np.ndindex(*x.shape):
        original = values[index]
        values[index] = original + h
        x[:] = values
        plus = f()
        values[index] = original - h
        x[:] = values
        minus = f()
        values[index] = original
        x[:] = values
        grad[index] = (plus - minus) / (2 * h)
    return grad


def relative_error(a, b):
    """max |a - b| / (max |a| + max |b|): 0 for equal arrays, ~1 for unrelated ones."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError('relative_error: shapes differ, %s and %s' % (a.shape, b.shape))
    return float(np.abs(a - b).max() / max(np.abs(a).max() + np.abs(b).max(), 1e-300))
