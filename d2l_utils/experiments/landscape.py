"""Tools for Santurkar et al. (2018), "How Does Batch Normalization Help Optimization?".

- ``NoisyBatchNorm(bn)``: a BN layer followed by a deliberate distribution shift: at every
  training step each channel's output gets a new random mean and scale, so the next layer's
  input distribution changes at every step more than internal covariate shift would move it;
- ``gradient_direction_probe(net, X, y, step_sizes)``: the loss landscape along the gradient:
  the loss and the gradient after a step of each size, and from them the range of the loss and
  the "effective beta-smoothness" (how fast the gradient changes per unit of distance);
- ``train_steps(net, batches, trainer, num_steps, every, measure)``: a training loop counted in
  steps, not epochs, that calls ``measure`` every ``every`` steps (for curves against steps).
"""
from collections import namedtuple
import itertools
import numbers

import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from ..recalibration import restoring_state
from ..support.validation import require_positive_int

__all__ = ['NoisyBatchNorm', 'LandscapeProbe', 'gradient_direction_probe', 'train_steps']


class NoisyBatchNorm(nn.Block):
    """``bn`` (any BN block) followed by a random per-channel affine map redrawn at every step.

    bn: a BN block for inputs (N, C) or (N, C, H, W), e.g. ``nn.BatchNorm()`` or
        ``BatchNorm(C, 4)``; it is a child block, so its parameters, moving statistics,
        ``recalibrate_batch_norm`` and saving work as without the noise.
    max_shift, max_scale: in training mode every forward call draws, for each channel c, a
        mean m_c ~ U(-max_shift, max_shift) and a scale s_c ~ U(1, max_scale) from MXNet's
        random generator (so ``set_seed`` repeats them), and returns ``s_c * bn(X) + m_c``:
        where BN made every channel's batch mean 0 and variance 1 (before gamma and beta),
        the next layer now sees mean m_c and variance s_c^2, changing at every step.
        Santurkar et al. draw their noise for every activation of every example; here it is
        per channel and step, a pure shift of the distribution with no per-example noise.

    In prediction mode the map is the expected one, ``E[s] * bn(X) + E[m]`` =
    ``(1 + max_scale) / 2 * bn(X)``: the scale the next layer saw on average in training.
    Output: X's shape.
    """

    def __init__(self, bn, max_shift=1.0, max_scale=2.0, **kwargs):
        super().__init__(**kwargs)
        if not (isinstance(max_shift, numbers.Real) and max_shift >= 0):
            raise ValueError('NoisyBatchNorm: max_shift must be a number >= 0 (the largest mean '
                             'shift, e.g. 1.0); got %r.' % (max_shift,))
        if not (isinstance(max_scale, numbers.Real) and max_scale >= 1):
            raise ValueError('NoisyBatchNorm: max_scale must be a number >= 1 (the largest '
                             'scale, e.g. 2.0; scales are drawn from [1, max_scale]); got %r.'
                             % (max_scale,))
        self.max_shift, self.max_scale = float(max_shift), float(max_scale)
        self.bn = bn   # registered as a child block

    def forward(self, X):
        Y = self.bn(X)
        if not autograd.is_training():
            return Y * ((1.0 + self.max_scale) / 2)
        shape = (1, Y.shape[1]) + (1,) * (Y.ndim - 2)   # one value per channel, broadcast
        # the noise is data, not something to differentiate: draw it outside the graph
        with autograd.pause():
            shift = nd.random.uniform(-self.max_shift, self.max_shift, shape=shape,
                                      ctx=Y.context, dtype=Y.dtype)
            scale = nd.random.uniform(1.0, self.max_scale, shape=shape, ctx=Y.context,
                                      dtype=Y.dtype)
        return nd.broadcast_add(nd.broadcast_mul(Y, scale), shift)


LandscapeProbe = namedtuple('LandscapeProbe',
                            'step_sizes start_loss losses grad_changes grad_norm loss_range '
                            'beta_smoothness')
LandscapeProbe.__doc__ = """The loss landscape along the gradient at one point, on one batch.

step_sizes: the step sizes eta (array (K,)); start_loss: the mean loss at w; losses: the mean
loss at w - eta * g (K,), with g the gradient at w; grad_changes: ||grad L(w - eta * g) - g||
(K,) (L2 norm over every learned parameter); grad_norm: ||g||; loss_range: max - min of
losses (together with the loss at w); beta_smoothness: max over eta > 0 of grad_changes /
(eta * ||g||), the largest rate at which the gradient changes per unit of distance moved:
Santurkar et al.'s "effective beta-smoothness".
"""


def _learned(net):
    return [p for p in net.collect_params().values() if p.grad_req != 'null']


def _loss_and_gradient(net, params, X, y, loss):
    with autograd.record():
        value = loss(net(X), y).mean()
    value.backward()
    return value.asscalar(), [p.grad().copy() for p in params]


def gradient_direction_probe(net, X, y, step_sizes, loss=None):
    """Move the weights along the negative gradient by each step size and record what happens.

    net: an initialized net; X: a batch (N, ...); y: (N,) class indices; step_sizes: positive
    numbers (e.g. ``np.geomspace(0.05, 4, 8)`` times the learning rate); loss: default softmax
    cross-entropy (the mean over the batch is used). BN layers use the batch's statistics, as
    in a training step, so a ``NoisyBatchNorm`` draws new noise in every forward pass.

    At the current weights w the gradient g of the loss on (X, y) is computed; then for each
    eta the weights are set to w - eta * g (every learned Parameter, as an SGD step of learning
    rate eta would) and the loss and gradient there are computed. Afterwards the weights and
    every non-learned Parameter (moving statistics) are as before; gradient buffers hold the
    last probe's gradient (the next training step overwrites them). Returns a LandscapeProbe.
    """
    step_sizes = np.asarray(step_sizes, dtype=np.float64)
    if step_sizes.ndim != 1 or step_sizes.size == 0 or not np.all(step_sizes > 0):
        raise ValueError('gradient_direction_probe: step_sizes must be a non-empty 1-D list of '
                         'positive numbers, e.g. np.geomspace(0.05, 4, 8); got %r.'
                         % (step_sizes,))
    loss = loss or gluon.loss.SoftmaxCrossEntropyLoss()
    params = _learned(net)
    if not params:
        raise ValueError('gradient_direction_probe: %s has no learned parameters.' % net.name)
    losses, changes = [], []
    with autograd.predict_mode():
        net(X)   # finishes a deferred initialization; prediction mode changes no statistics
    with restoring_state(net):
        start = [p.data().copy() for p in params]
        try:
            loss0, grad0 = _loss_and_gradient(net, params, X, y, loss)
            grad_norm = float(np.sqrt(sum(nd.sum(nd.square(g)).asscalar() for g in grad0)))
            for eta in step_sizes:
                for p, w, g in zip(params, start, grad0):
                    p.set_data(w - float(eta) * g)
                value, grad = _loss_and_gradient(net, params, X, y, loss)
                losses.append(value)
                changes.append(float(np.sqrt(sum(nd.sum(nd.square(a - b)).asscalar()
                                                 for a, b in zip(grad, grad0)))))
        finally:
            for p, w in zip(params, start):
                p.set_data(w)
    losses, changes = np.array(losses), np.array(changes)
    with_start = np.append(losses, loss0)
    beta = float(np.max(changes / (step_sizes * max(grad_norm, 1e-30))))
    return LandscapeProbe(step_sizes, loss0, losses, changes, grad_norm,
                          float(np.nanmax(with_start) - np.nanmin(with_start)), beta)


def train_steps(net, batches, trainer, num_steps, every=None, measure=None, loss=None):
    """Train for ``num_steps`` SGD steps (cycling over ``batches``) and measure along the way.

    batches: an iterable of (X, y), X (batch, ...) and y (batch,), iterated again when it ends
        (a ``load_data_fashion_mnist`` iterator reshuffles each time).
    every, measure: call ``measure(step)`` before step 1 (step 0) and after every ``every``
        steps (and after the last); it returns a dict of measurements (e.g. test accuracy).
    Returns a list of dicts, one per measurement: 'step', 'train_loss' (the mean training loss
    over the steps since the previous measurement; NaN at step 0) and measure's keys. If the
    loss becomes NaN or infinite, training stops there and the last row has 'diverged': True.
    """
    require_positive_int(num_steps, 'num_steps', 'train_steps', 'how many SGD steps, e.g. 100')
    every = every or num_steps
    loss = loss or gluon.loss.SoftmaxCrossEntropyLoss()
    rows, loss_sum, count = [], 0.0, 0

    def record(step, **extra):
        row = dict(step=step, train_loss=loss_sum / count if count else float('nan'), **extra)
        if measure is not None:
            row.update(measure(step))
        rows.append(row)

    def forever():
        while True:
            empty = True
            for batch in batches:
                empty = False
                yield batch
            if empty:
                raise ValueError('train_steps: batches yielded no batch; pass a training '
                                 'iterator such as load_data_fashion_mnist(60)[0].')

    record(0)
    for step, (X, y) in enumerate(itertools.islice(forever(), num_steps), 1):
        with autograd.record():
            value = loss(net(X), y).mean()
        value.backward()
        value = value.asscalar()
        if not np.isfinite(value):
            loss_sum, count = value, 1
            record(step, diverged=True)
            return rows
        trainer.step(1)   # the loss is already the batch mean
        loss_sum, count = loss_sum + value, count + 1
        if step % every == 0 or step == num_steps:
            record(step)
            loss_sum, count = 0.0, 0
    return rows
