"""Training and evaluation loops with the book's names, a returned history, and a NaN guard.

Differences from ``d2lzh`` (each one a fix):
- metrics are summed on the device and read once per epoch, not synchronized twice per batch;
- the last partial batch is averaged over its real size (d2lzh divides by the full batch size);
- a non-finite loss stops training at once, naming the epoch, batch and first bad layer;
- ``train`` returns a ``History`` for plotting instead of only printing.
"""
import random
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

from .progress import Progress


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message says where and what to check."""


class History:
    """Per-epoch metrics of one training run.

    epochs: list of dicts with keys 'epoch' (1-based), 'train_loss', 'train_acc', 'test_acc',
    'seconds' (training plus evaluation, as the book prints) and 'examples_per_sec' (training).
    """

    KEYS = ('epoch', 'train_loss', 'train_acc', 'test_acc', 'seconds', 'examples_per_sec')

    def __init__(self, name=''):
        self.name, self.epochs = name, []

    def column(self, key):
        """All epochs' values of one metric, e.g. ``history.column('test_acc')``."""
        return [row[key] for row in self.epochs]

    @property
    def last(self):
        return self.epochs[-1] if self.epochs else None

    def __len__(self):
        return len(self.epochs)

    def __repr__(self):
        last = self.last
        if last is None:
            return 'History(%r, no epochs)' % self.name
        return ('History(%r, %d epochs, test acc %.3f, %.1f s/epoch)'
                % (self.name, len(self), last['test_acc'], np.median(self.column('seconds'))))


def set_seed(seed):
    """Seed Python's, numpy's and MXNet's random generators (all devices).

    With the same seed two CPU runs of the same training give the same numbers: weight
    initialization, dropout and (when the iterator has no seed of its own) shuffling all draw
    from these generators.
    """
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def _as_ctx_list(ctx):
    if ctx is None:
        return [mx.cpu()]
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]


def evaluate_accuracy(data_iter, net, ctx=None):
    """Fraction of examples in ``data_iter`` whose argmax prediction equals the label.

    data_iter yields (X, y) with X (batch, ...) and y (batch,); ctx is a device (default the
    CPU), as in the book. Runs in prediction mode. Counts are summed on the device and read
    once at the end.
    """
    ctx = _as_ctx_list(ctx)[0]
    correct, n = nd.zeros((1,), ctx=ctx), 0
    for X, y in data_iter:
        X, y = X.as_in_context(ctx), y.as_in_context(ctx)
        correct += (net(X).argmax(axis=1) == y.astype('float32')).sum()
        n += X.shape[0]
    if n == 0:
        raise ValueError('evaluate_accuracy got an empty data iterator')
    return correct.asscalar() / n


def first_nonfinite_layer(net, X):
    """Re-run ``net`` on X as in training; describe the first layer whose output is not finite.

    Returns e.g. ``'batchnorm0 (BatchNorm)'``, or ``'dense2 (Dense), in its part dense2_relu
    (Activation)'`` when the culprit is a sub-block; None if no block output was non-finite
    (a hybridized network runs as one graph and hides its layers).
    """
    finished, handles, layer_of = [], [], {}

    def record(block, _inputs, out):
        finished.append((block, out))   # children finish before their parents

    def hook(block, layer):
        layer_of[block] = layer
        handles.append(block.register_forward_hook(record))
        for child in block._children.values():
            hook(child, layer)

    for child in net._children.values():
        hook(child, child)
    # Re-run exactly as training does (inside record(): a layer may look at is_recording()),
    # and put back the state a forward pass writes (moving statistics), so that diagnosing
    # changes nothing.
    state = [(p, [d.copy() for d in p.list_data()])
             for p in net.collect_params().values() if p.grad_req == 'null']
    try:
        with autograd.record():
            net(X)
    finally:
        for handle in handles:
            handle.detach()
        for param, saved in state:
            for data, copy in zip(param.list_data(), saved):
                data[:] = copy
    for block, out in finished:
        out = out[0] if isinstance(out, (list, tuple)) else out
        if not np.isfinite(out.asnumpy()).all():
            layer = layer_of[block]
            where = '%s (%s)' % (layer.name, type(layer).__name__)
            if block is not layer:
                where += ', in its part %s (%s)' % (block.name, type(block).__name__)
            return where
    return None


def _nonfinite_error(net, X, loss_value, epoch, batch, num_batches):
    if not np.isfinite(X.asnumpy()).all():
        where = 'the input batch itself has non-finite values'
    else:
        layer = first_nonfinite_layer(net, X)
        where = ('the first layer whose output is not finite is %s' % layer if layer else
                 'no layer output was non-finite on a re-run (a hybridized network hides its '
                 'layers: call net.hybridize(active=False) to locate it)')
    return NonFiniteLossError(
        'Training stopped: the loss is %s at epoch %d, batch %d of %d; %s. The trainer did not '
        'apply this batch (a layer\'s moving statistics may already hold it). Common causes: a learning rate too large for this network, '
        'a hand-written layer that takes the square root of a negative number (check a batch '
        'norm\'s variance), or a log/division of zero.'
        % (loss_value, epoch, batch, num_batches, where))


def train(net, train_iter, test_iter, trainer, ctx=None, num_epochs=1, loss=None, name='',
          progress=None, check_finite=True, verbose=True):
    """Train ``net`` with ``trainer`` and return a ``History`` of per-epoch metrics.

    train_iter/test_iter yield (X, y), X (batch, ...) and y (batch,) class indices.
    loss: default softmax cross-entropy. progress: True/False/None (None: on in Jupyter or a
    terminal). check_finite: read the batch loss before each update and stop with
    NonFiniteLossError if it is NaN or infinite (one small device sync per batch).
    verbose: print the book's per-epoch line.
    """
    ctx = _as_ctx_list(ctx)[0]
    loss = loss or gluon.loss.SoftmaxCrossEntropyLoss()
    bar = Progress(progress)
    history = History(name)
    num_batches = len(train_iter) if hasattr(train_iter, '__len__') else 0
    for epoch in range(1, num_epochs + 1):
        start = time.time()
        loss_sum, correct = nd.zeros((1,), ctx=ctx), nd.zeros((1,), ctx=ctx)
        n = 0
        for batch, (X, y) in enumerate(train_iter, 1):
            X, y = X.as_in_context(ctx), y.as_in_context(ctx)
            with autograd.record():
                y_hat = net(X)
                batch_loss = loss(y_hat, y).sum()
            batch_loss.backward()
            if check_finite:
                value = batch_loss.asscalar()
                if not np.isfinite(value):
                    bar.close()
                    raise _nonfinite_error(net, X, value, epoch, batch, num_batches)
            # the real batch size, so a last partial batch gets a mean gradient too
            trainer.step(X.shape[0])
            loss_sum += batch_loss
            correct += (y_hat.argmax(axis=1) == y.astype('float32')).sum()
            n += X.shape[0]
            bar.update('epoch %d/%d' % (epoch, num_epochs), batch, num_batches or batch)
        train_loss, train_acc = loss_sum.asscalar() / n, correct.asscalar() / n
        train_seconds = time.time() - start
        test_acc = evaluate_accuracy(test_iter, net, ctx)
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_acc=test_acc,
                   seconds=time.time() - start, examples_per_sec=n / train_seconds)
        history.epochs.append(row)
        bar.close()
        if verbose:
            print('epoch %d, loss %.4f, train acc %.3f, test acc %.3f, time %.1f sec'
                  % (epoch, train_loss, train_acc, test_acc, row['seconds']))
    return history


def train_ch5(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs, **kwargs):
    """The book's ``train_ch5``: same arguments, same printed lines; returns a ``History``.

    ``batch_size`` is accepted for compatibility; each update uses the real size of its batch.
    Extra keyword arguments go to ``train`` (e.g. ``progress=False``, ``name='scratch BN'``).
    """
    del batch_size  # the book passes it to trainer.step; the real batch size is used instead
    print('training on', ctx)
    return train(net, train_iter, test_iter, trainer, ctx, num_epochs, **kwargs)
