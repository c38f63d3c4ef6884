"""Training and evaluation loops with the book's names, a returned history, and a NaN guard.

Differences from ``d2lzh`` (each one a fix):
- metrics are summed on the device and read once per epoch, not synchronized twice per batch;
- the last partial batch is averaged over its real size (d2lzh divides by the full batch size);
- a non-finite loss stops training at once, naming the epoch, batch and first bad layer; so does
  a non-finite parameter after an update (one NaN pixel can make conv weights NaN while max
  pooling keeps the loss finite), naming the first such parameter;
- labels the output layer cannot score, an iterator that yields nothing and a number of epochs
  that is not a positive integer are refused with a clear error;
- ``train`` returns a ``History`` for plotting instead of only printing.

``ctx`` may also be a list of devices (data parallelism, as ``d2lzh.train`` takes it): each batch
is split across them, the Trainer sums the gradients over the devices, and evaluation splits
the test batches the same way. With one device everything is as before.
"""
import numbers
import random
import time
from contextlib import contextmanager

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from .data_parallel import (check_batches_fit_devices, check_gpus_usable, check_initialized_on,
                            forward_parts, needs_all_parts, split_batch)
from .device import as_ctx_list
from .progress import Progress
from .recalibration import recalibrate_batch_norm

__all__ = ['History', 'NonFiniteLossError', 'NonFiniteParameterError', 'evaluate_accuracy',
           'first_nonfinite_layer', 'first_nonfinite_parameter', 'recalibrated_accuracy',
           'restoring_state', 'set_seed', 'train', 'train_ch5']


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message says where and what to check."""


class NonFiniteParameterError(NonFiniteLossError):
    """A parameter of the net holds NaN or infinity (after a training step, or when evaluating).

    A subclass of ``NonFiniteLossError``, so ``except NonFiniteLossError`` catches every stop of
    the NaN guard.
    """


def first_nonfinite_parameter(net):
    """The name of the first parameter of ``net`` (in ``collect_params`` order) holding NaN or
    infinity on some device, with that device, e.g. ``'conv0_weight on cpu(0)'``; None if all
    are finite (or not initialized yet)."""
    for name, param in net.collect_params().items():
        try:
            arrays = param.list_data()
        except Exception:   # not initialized yet (deferred): nothing to be non-finite
            continue
        for data in arrays:
            if not np.isfinite(data.asnumpy()).all():
                return '%s on %s' % (name, data.context)
    return None


def _parameter_arrays(net, ctx):
    """[[the data arrays of net's initialized parameters on c] for c in ctx], with one dtype
    per list noted: [(arrays, single_dtype)]. Walking the net (``collect_params``) costs about
    2 ms of Python; the arrays are updated in place by the Trainer, so ``train`` collects them
    once, after its first update (deferred initialization has then happened), not per batch."""
    per_device = []
    for c in ctx:
        arrays = []
        for param in net.collect_params().values():
            try:
                arrays.append(param.data(c))
            except Exception:   # not initialized (unused by this net's forward)
                continue
        per_device.append((arrays, len({a.dtype for a in arrays}) <= 1))
    return per_device


def _parameter_flag(net, ctx, arrays=None):
    """A (1,) NDArray on ctx[0], non-finite iff (almost always) a parameter is non-finite.

    One fused sum of squares over every parameter per device (``nd.multi_sum_sq``); nothing is
    read here, so the guard adds no device sync of its own: the flag is read with the next loss.
    A sum of squares can overflow for finite weights above ~1e19; ``first_nonfinite_parameter``
    then finds none and training goes on. arrays: ``_parameter_arrays(net, ctx)`` collected
    earlier (default: collected now).
    """
    flags = []
    for device_arrays, single_dtype in (arrays or _parameter_arrays(net, ctx)):
        if device_arrays:
            if not single_dtype:   # multi_sum_sq needs one dtype
                sums = nd.add_n(*[nd.square(a).sum() for a in device_arrays])
            else:
                sums = nd.multi_sum_sq(*device_arrays, num_arrays=len(device_arrays)).sum()
            flags.append(sums.astype('float32').as_in_context(ctx[0]))
    return nd.add_n(*flags) if len(flags) > 1 else (flags[0] if flags else nd.zeros((1,), ctx[0]))


class History:
    """Per-epoch metrics of one training run.

    epochs: list of dicts with keys 'epoch' (1-based), 'train_loss', 'train_acc', 'test_acc'
    (prediction mode, with the layers' moving statistics), 'seconds' (training plus evaluation,
    as the book prints) and 'examples_per_sec' (training); with ``train(..., recalibrate=k)``
    also 'test_acc_recalibrated' (with statistics re-estimated over k training batches).
    """

    KEYS = ('epoch', 'train_loss', 'train_acc', 'test_acc', 'seconds', 'examples_per_sec')
    OPTIONAL_KEYS = ('test_acc_recalibrated',)

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
    from these generators. seed: an integer in [0, 2**32 - 1] (numpy's range).
    """
    if not (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)
            and 0 <= seed <= 2 ** 32 - 1):
        # checked first: numpy would refuse it after Python's generator was already seeded
        raise ValueError('set_seed: seed must be an integer in [0, 2**32 - 1], e.g. 0; got %r.'
                         % (seed,))
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


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


def evaluate_accuracy(data_iter, net, ctx=None):
    """Fraction of examples in ``data_iter`` whose argmax prediction equals the label.

    data_iter yields (X, y) with X (batch, ...) and y (batch,); ctx is a device (default the
    CPU), as in the book, or a list of devices: then each batch is split across them and every
    device predicts its part with its own copy of the net (a batch with fewer examples than
    devices uses the first ones: the split policy of ``d2l_utils.data_parallel``). Runs in
    prediction mode. Counts are summed on the devices and read once at the end, together with
    two flags: a non-finite output or parameter raises NonFiniteParameterError (naming the first
    non-finite parameter) or FloatingPointError instead of returning a meaningless accuracy.
    """
    ctx = as_ctx_list(ctx, 'evaluate_accuracy')
    check_gpus_usable(ctx, 'evaluate_accuracy')
    lockstep = len(ctx) > 1 and needs_all_parts(net)   # asked once, not per batch
    correct, n = [nd.zeros((1,), ctx=c) for c in ctx], 0
    # (y_hat * 0).sum() is 0, or NaN when an output is NaN or infinite: a flag read once
    finite = [nd.zeros((1,), ctx=c) for c in ctx]
    for X, y in data_iter:
        Xs, ys = split_batch(X, y, ctx, 'evaluate_accuracy', training=False)
        y_hats = forward_parts(net, Xs) if lockstep else [net(X_part) for X_part in Xs]
        for k, (y_hat, y_part) in enumerate(zip(y_hats, ys)):
            correct[k] += (y_hat.argmax(axis=1) == y_part.astype('float32')).sum()
            finite[k] += (y_hat * 0).sum().astype('float32')
        n += X.shape[0]
    if n == 0:
        raise ValueError('evaluate_accuracy got an empty data iterator')
    total, flag = correct[0], finite[0]
    for count, bad in zip(correct[1:], finite[1:]):
        total, flag = total + count.as_in_context(ctx[0]), flag + bad.as_in_context(ctx[0])
    # max pooling can hide NaN weights from the outputs: check the parameters too, in the same read
    total, flag, parameters = nd.concat(total.astype('float32'), flag, _parameter_flag(net, ctx),
                                        dim=0).asnumpy()
    if not (np.isfinite(flag) and np.isfinite(parameters)):
        parameter = first_nonfinite_parameter(net)
        if parameter:
            raise NonFiniteParameterError(
                'evaluate_accuracy: the net\'s parameter %s is NaN or infinite, so its '
                'predictions mean nothing (argmax of NaN is class 0). It was trained into that '
                'state: retrain it (train() stops at the step that breaks a parameter).'
                % parameter)
        raise FloatingPointError(
            'evaluate_accuracy: some outputs of the net are NaN or infinite although its '
            'parameters are finite; check the data for non-finite values and the layers for a '
            'division by zero or the square root of a negative number (e.g. a BN layer\'s '
            'moving_var).')
    return float(total) / n


def first_nonfinite_layer(net, X):
    """Re-run ``net`` on X as in training; describe the first layer whose output is not finite.

    Returns e.g. ``'batchnorm0 (BatchNorm)'``, or ``'dense2 (Dense), in its part dense2_relu
    (Activation)'`` when the culprit is a sub-block; None if no block output was non-finite
    (a hybridized network runs as one graph and hides its layers).
    """
    finished, handles, layer_of = [], [], {}

    def record(block, _inputs, out):
        finished.append((block, out))   # children finish before their parents

    # the layers of a Sequential (a block of another kind counts as one layer), and every block
    # inside each of them
    layers = list(net) if isinstance(net, (nn.Sequential, nn.HybridSequential)) else [net]
    for layer in layers:
        layer.apply(lambda block, layer=layer: layer_of.setdefault(block, layer))
    for block in layer_of:
        handles.append(block.register_forward_hook(record))
    # Re-run exactly as training does (inside record(): a layer may look at is_recording()),
    # and put back the state a forward pass writes (moving statistics), so that diagnosing
    # changes nothing.
    try:
        with restoring_state(net), autograd.record():
            net(X)
    finally:
        for handle in handles:
            handle.detach()
    for block, out in finished:
        out = out[0] if isinstance(out, (list, tuple)) else out
        if not np.isfinite(out.asnumpy()).all():
            layer = layer_of[block]
            where = '%s (%s)' % (layer.name, type(layer).__name__)
            if block is not layer:
                where += ', in its part %s (%s)' % (block.name, type(block).__name__)
            return where
    return None


def _nonfinite_error(net, X, loss_value, epoch, batch, num_batches, device=''):
    if not np.isfinite(X.asnumpy()).all():
        where = 'the input batch itself has non-finite values'
    else:
        layer = first_nonfinite_layer(net, X)
        where = ('the first layer whose output is not finite is %s' % layer if layer else
                 'no layer output was non-finite on a re-run (a hybridized network hides its '
                 'layers: call net.hybridize(active=False) to locate it)')
    return NonFiniteLossError(
        'Training stopped: the loss is %s at epoch %d, batch %d of %d%s; %s. The trainer did not '
        'apply this batch (a layer\'s moving statistics may already hold it). Common causes: a '
        'learning rate too large for this network, a hand-written layer that takes the square '
        'root of a negative number (check a batch norm\'s variance), or a log/division of zero.'
        % (loss_value, epoch, batch, num_batches, device, where))


def _check_batch(X, y):
    """Raise TypeError/ValueError unless the first batch is an NDArray X and labels y (batch,)."""
    if not (isinstance(X, nd.NDArray) and isinstance(y, nd.NDArray)):
        raise TypeError('train: each batch must be a pair (X, y) of NDArrays; got (%s, %s). '
                        'Convert numpy arrays with nd.array(...), or use ArrayDataIter.'
                        % (type(X).__name__, type(y).__name__))
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError('train: labels y must be class indices of shape (batch,) = (%d,); got '
                         'shape %s. For one-hot labels use y.argmax(axis=1).'
                         % (X.shape[0], y.shape))


def _check_labels(y, y_hat):
    """Raise ValueError unless every label of the first batch is an integer in [0, classes).

    SoftmaxCrossEntropyLoss clips a label outside the output's width instead of failing: a
    Dense(5) output with labels 0-9, or labels 1-10, would train without a word. Read once.
    """
    if y_hat.ndim != 2:
        return
    classes = y_hat.shape[1]
    labels = y.asnumpy()
    wrong = labels[(labels != np.round(labels)) | (labels < 0) | (labels >= classes)]
    if wrong.size:
        raise ValueError(
            'train: the net has %d outputs, so labels must be integers in [0, %d); the first '
            'batch has labels from %g to %g (e.g. %g). The loss would clip them and train '
            'without error on wrong targets. Give the output layer one unit per class (Fashion-'
            'MNIST: Dense(10)), or shift labels that start at 1 (y - 1).'
            % (classes, classes, labels.min(), labels.max(), wrong[0]))


def _raise_if_nonfinite_parameter(net, last_step, num_batches, bar):
    """Raise NonFiniteParameterError for the update of ``last_step`` if a parameter is
    non-finite (the flag can overflow for huge finite weights: then this returns)."""
    parameter = first_nonfinite_parameter(net)
    if parameter is None:
        return
    bar.close()
    epoch, batch, X, _ = last_step
    inputs = ('the input batch had non-finite values' if not np.isfinite(X.asnumpy()).all()
              else 'the input batch was finite')
    raise NonFiniteParameterError(
        'Training stopped: the parameter %s is NaN or infinite after the update of epoch %d, '
        'batch %d of %d, although the loss was finite (%s). Layers such as max pooling can pass '
        'a NaN pixel to the gradient without showing it in the loss. Common causes: non-finite '
        'values in the data (check it with np.isfinite), a learning rate too large, or a '
        'hand-written layer dividing by zero in its backward pass.'
        % (parameter, epoch, batch, num_batches, inputs))


def recalibrated_accuracy(net, test_iter, recalibrate_iter, num_batches, ctx=None):
    """Test accuracy with BN statistics re-estimated over ``num_batches`` training batches.

    The net's own moving statistics are saved first and put back afterwards, so the net (and a
    training run that measures this every epoch) is left exactly as it was. See
    ``recalibrate_batch_norm`` for how the statistics are measured.
    """
    with restoring_state(net):
        recalibrate_batch_norm(net, recalibrate_iter, num_batches, ctx=ctx)
        return evaluate_accuracy(test_iter, net, ctx)


def _recalibration_batches(train_iter, recalibrate, recalibrate_iter):
    """The batches to recalibrate on each epoch, or None when recalibration is off."""
    if recalibrate is None or recalibrate is False or recalibrate == 0:
        return None
    if not (isinstance(recalibrate, numbers.Integral) and not isinstance(recalibrate, bool)
            and recalibrate > 0):
        raise ValueError('train: recalibrate must be a positive number of training batches '
                         '(e.g. 50), or None to measure only the moving-average test accuracy; '
                         'got %r.' % (recalibrate,))
    if recalibrate_iter is not None:
        return recalibrate_iter
    if hasattr(train_iter, 'in_order'):
        # a fixed order: iterating train_iter itself would draw its next shuffle early and
        # change the training run
        return train_iter.in_order()
    raise ValueError('train: recalibrate=%d needs batches to measure the statistics on, and '
                     'train_iter (a %s) cannot give them without changing its own order. Pass '
                     'recalibrate_iter=..., an iterable of training batches in a fixed order '
                     '(e.g. a second, unshuffled iterator over the training data).'
                     % (recalibrate, type(train_iter).__name__))


def train(net, train_iter, test_iter, trainer, ctx=None, num_epochs=1, loss=None, name='',
          progress=None, check_finite=True, verbose=True, recalibrate=None,
          recalibrate_iter=None, first_epoch=1):
    """Train ``net`` with ``trainer`` and return a ``History`` of per-epoch metrics.

    train_iter/test_iter yield (X, y), X (batch, ...) and y (batch,) class indices.
    ctx: a device (default the CPU) or a list of devices for data parallelism: each batch is
    split across them (part k, about batch/len(ctx) examples, on ctx[k]), each device computes
    the loss and gradient of its part, and ``trainer.step`` sums the gradients over the devices
    before one update. The net must be initialized on every device (``net.initialize(ctx=ctx)``)
    and every batch must have at least len(ctx) examples. Layers with per-device state (BN's
    running statistics) keep one copy per device; see ``d2l_utils.data_parallel`` (and its
    split policy) and ``d2l_utils.CrossDeviceBatchNorm``.
    loss: default softmax cross-entropy (then the first batch's labels must be integers in
    [0, number of outputs)). progress: True/False/None (None: on in Jupyter or a terminal).
    check_finite: read the batch loss before each update and stop with NonFiniteLossError if it
    is NaN or infinite (one small device sync per batch); the same read carries a sum of squares
    of all parameters after the previous update, so a parameter turned non-finite stops training
    with NonFiniteParameterError (naming it) at the next batch or at the end of the epoch.
    verbose: print the book's per-epoch line.
    recalibrate: None, or a number k of training batches: after each epoch also measure the
    test accuracy with every BN layer's statistics re-estimated over k training batches
    (``recalibrate_batch_norm``), as 'test_acc_recalibrated'. The net's own moving statistics
    are saved and restored around the measurement, so the run trains exactly as without it.
    recalibrate_iter: the batches for that (default: ``train_iter.in_order()``, the training
    data in a fixed order, for a ``load_data_fashion_mnist`` iterator).
    first_epoch: the number of the first epoch trained here (default 1). To continue a run, or
    to train one epoch per call, pass the epoch it is at: the History rows, the printed lines
    and a NonFiniteLossError count from it.
    """
    if not (isinstance(first_epoch, numbers.Integral) and not isinstance(first_epoch, bool)
            and first_epoch >= 1):
        raise ValueError('train: first_epoch must be a positive integer (the number of the '
                         'first epoch trained in this call, e.g. 1); got %r.' % (first_epoch,))
    if not (isinstance(num_epochs, numbers.Integral) and not isinstance(num_epochs, bool)
            and num_epochs >= 1):
        raise ValueError('train: num_epochs must be a positive integer (how many passes over '
                         'train_iter, e.g. 5); got %r (a %s).'
                         % (num_epochs, type(num_epochs).__name__))
    if not callable(getattr(trainer, 'step', None)):
        raise TypeError('train: trainer must be a gluon.Trainer for this net, e.g. '
                        'gluon.Trainer(net.collect_params(), \'sgd\', {\'learning_rate\': 0.1}); '
                        'got %r.' % (trainer,))
    if num_epochs > 1 and iter(train_iter) is train_iter:
        raise ValueError('train: train_iter (a %s) is a one-shot iterator: it is used up after '
                         'the first of the %d epochs, so the later epochs would see no data. '
                         'Pass something that can be iterated again: a list of (X, y) batches, '
                         'or load_data_fashion_mnist\'s iterators.'
                         % (type(train_iter).__name__, num_epochs))
    ctx = as_ctx_list(ctx, 'train')
    check_gpus_usable(ctx, 'train')
    recalibrate_iter = _recalibration_batches(train_iter, recalibrate, recalibrate_iter)
    if len(ctx) > 1:
        check_initialized_on(net, ctx, 'train')
        check_batches_fit_devices(train_iter, len(ctx), 'train')
    check_labels = loss is None or isinstance(loss, gluon.loss.SoftmaxCrossEntropyLoss)
    lockstep = len(ctx) > 1 and needs_all_parts(net)   # asked once, not per batch
    loss = loss or gluon.loss.SoftmaxCrossEntropyLoss()
    bar = Progress(progress)
    history = History(name)
    num_batches = len(train_iter) if hasattr(train_iter, '__len__') else 0
    last_epoch = first_epoch + num_epochs - 1
    last_step = None   # (epoch, batch, X, flag) of the last update, while its flag is unread
    flag_arrays = None   # the parameters' arrays for the flag, collected after the first update
    for epoch in range(first_epoch, last_epoch + 1):
        start = time.time()
        loss_sum, correct = nd.zeros((1,), ctx=ctx[0]), nd.zeros((1,), ctx=ctx[0])
        n = 0
        for batch, (X, y) in enumerate(train_iter, 1):
            if epoch == first_epoch and batch == 1:
                _check_batch(X, y)
            Xs, ys = split_batch(X, y, ctx, 'train')
            with autograd.record():
                y_hats = forward_parts(net, Xs) if lockstep else [net(X_part) for X_part in Xs]
                if check_labels and epoch == first_epoch and batch == 1:
                    _check_labels(y, y_hats[0])
                losses = [loss(y_hat, y_part).sum() for y_hat, y_part in zip(y_hats, ys)]
            autograd.backward(losses)
            # queued before the read below, so the device computes them while Python waits
            # there, instead of Python queueing them while the device idles after the read
            for y_hat, y_part, part_loss in zip(y_hats, ys, losses):
                loss_sum += part_loss.as_in_context(ctx[0])
                correct += (y_hat.argmax(axis=1) == y_part.astype('float32')).sum().as_in_context(
                    ctx[0])
            n += X.shape[0]
            if check_finite:
                # one read: this batch's losses and the parameter flag of the previous update
                flag = last_step[3] if last_step else nd.zeros((1,), ctx=ctx[0])
                read = nd.concat(*[part_loss.reshape((1,)).as_in_context(ctx[0])
                                   for part_loss in losses], flag, dim=0).asnumpy()
                values, flag_value = read[:-1].tolist(), read[-1]
                if not np.isfinite(flag_value):
                    _raise_if_nonfinite_parameter(net, last_step, num_batches, bar)
                value = sum(values) if len(values) > 1 else values[0]
                if not np.isfinite(value):
                    bar.close()
                    k = next(k for k, v in enumerate(values) if not np.isfinite(v))
                    device = (' (first on %s, part %d of %d of the batch)'
                              % (ctx[k], k + 1, len(ctx)) if len(ctx) > 1 else '')
                    raise _nonfinite_error(net, Xs[k], value, epoch, batch, num_batches, device)
            # the real batch size, so a last partial batch gets a mean gradient too
            trainer.step(X.shape[0])
            if check_finite:
                if flag_arrays is None:
                    flag_arrays = _parameter_arrays(net, ctx)
                last_step = (epoch, batch, X, _parameter_flag(net, ctx, flag_arrays))
            bar.update('epoch %d/%d' % (epoch, last_epoch), batch, num_batches or batch)
        if n == 0:
            bar.close()
            raise ValueError(
                'train: train_iter gave no batches in epoch %d%s. Pass an iterable of (X, y) '
                'batches that can be iterated once per epoch (a list, or load_data_fashion_mnist\'s '
                'iterators).' % (epoch, '' if epoch == first_epoch else
                                 ' although it gave batches before: it is a one-shot iterator'))
        flag = last_step[3] if check_finite else nd.zeros((1,), ctx=ctx[0])
        loss_total, correct_total, flag_value = nd.concat(loss_sum, correct, flag,
                                                          dim=0).asnumpy()
        if not np.isfinite(flag_value):
            _raise_if_nonfinite_parameter(net, last_step, num_batches, bar)
        last_step = None   # its flag is read
        train_loss, train_acc = float(loss_total) / n, float(correct_total) / n
        train_seconds = time.time() - start
        test_acc = evaluate_accuracy(test_iter, net, ctx)
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_acc=test_acc,
                   seconds=time.time() - start, examples_per_sec=n / train_seconds)
        if recalibrate_iter is not None:
            # measured after 'seconds', so the book's time per epoch stays comparable
            row['test_acc_recalibrated'] = recalibrated_accuracy(
                net, test_iter, recalibrate_iter, recalibrate, ctx)
        history.epochs.append(row)
        bar.close()
        if verbose:
            recalibrated = ('' if recalibrate_iter is None else
                            ' (recalibrated %.3f)' % row['test_acc_recalibrated'])
            print('epoch %d, loss %.4f, train acc %.3f, test acc %.3f%s, time %.1f sec'
                  % (epoch, train_loss, train_acc, test_acc, recalibrated, row['seconds']))
    return history


def train_ch5(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs, **kwargs):
    """The book's ``train_ch5``: same arguments, same printed lines; returns a ``History``.

    ``batch_size`` is accepted for compatibility; each update uses the real size of its batch.
    ctx: a device or a list of devices (see ``train``). Extra keyword arguments go to ``train``
    (e.g. ``progress=False``, ``name='scratch BN'``).
    """
    del batch_size  # the book passes it to trainer.step; the real batch size is used instead
    print('training on', ctx)
    return train(net, train_iter, test_iter, trainer, ctx, num_epochs, **kwargs)
