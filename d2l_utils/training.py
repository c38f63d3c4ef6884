"""Training and evaluation loops with the book's names, a returned history, and a NaN guard.

``train`` is the book's ``train_ch5`` loop (d2lzh) with a few named calls. Differences from
``d2lzh`` (each one a fix):
- metrics are summed on the device and read once per epoch, not synchronized twice per batch;
- the last partial batch is averaged over its real size (d2lzh divides by the full batch size);
- a non-finite loss stops training at once, naming the epoch, batch and first bad layer; so does
  a non-finite parameter after an update (``d2l_utils.nan_guard``);
- labels the output layer cannot score, an iterator that yields nothing, a number of epochs
  that is not a positive integer, a learning rate that is a string or negative, no test_iter,
  train and test iterators of different image sizes and data of another dtype than the net are
  refused with a clear error; a batch whose shapes MXNet rejects is named, with its shapes;
- d2lzh's chapter-9 ``train(train_iter, test_iter, net, loss, ...)`` gets a TypeError naming
  both signatures (the chapter's loop is this one);
- ``train`` returns a ``History`` for plotting instead of only printing.

``ctx`` may also be a list of devices (data parallelism, as ``d2lzh.train`` takes it): each batch
is split across them, the Trainer sums the gradients over the devices, and evaluation splits
the test batches the same way. With one device everything is as before.
"""
import numbers
import random
import time
from contextlib import contextmanager

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.base import MXNetError

from .data_parallel import (forward_parts, needs_all_parts, split_batch,
                            validate_batches_fit_devices, validate_gpus_usable,
                            validate_initialized_on)
from .device import as_ctx_list
from .nan_guard import NanGuard, NonFiniteParameterError, first_nonfinite_parameter, parameter_flag
from .support.errors import short_message
from .recalibration import recalibrate_batch_norm, restoring_state
from .support.progress import Progress
from .support.validation import is_integer, require_positive_int

__all__ = ['History', 'evaluate_accuracy', 'recalibrated_accuracy', 'set_seed', 'train',
           'train_ch5']


def train(net, train_iter, test_iter, trainer, ctx=None, num_epochs=1, loss=None, name='',
          progress=None, check_finite=True, verbose=True, recalibrate=None,
          recalibrate_iter=None, first_epoch=1):
    """Train ``net`` with ``trainer`` and return a ``History`` of per-epoch metrics.

    train_iter/test_iter yield (X, y), X (batch, ...) and y (batch,) class indices. ctx: a
    device (default the CPU) or a list of devices: each batch is split across them (see the
    module docstring; the net must be initialized on every device). loss: default softmax
    cross-entropy (then the first batch's labels must be in [0, number of outputs)).
    progress: True/False/None (None: on in Jupyter or a terminal). verbose: print the book's
    per-epoch line. check_finite: stop with NonFiniteLossError (or NonFiniteParameterError,
    naming the parameter) at the first non-finite loss or parameter (``NanGuard``: one small
    device read per batch). recalibrate: None, or k: after each epoch also measure the test
    accuracy with BN statistics re-estimated over k training batches (``recalibrated_accuracy``,
    which leaves the net as it was), as 'test_acc_recalibrated'; recalibrate_iter: those batches
    (default ``train_iter.in_order()``). first_epoch: the number of the first epoch trained here,
    to continue a run: History rows, printed lines and errors count from it.
    """
    ctx, recalibrate_iter = _validate_train_arguments(
        net, train_iter, test_iter, trainer, ctx, num_epochs, first_epoch, recalibrate,
        recalibrate_iter)
    check_labels = loss is None or isinstance(loss, gluon.loss.SoftmaxCrossEntropyLoss)
    loss = loss or gluon.loss.SoftmaxCrossEntropyLoss()
    lockstep = len(ctx) > 1 and needs_all_parts(net)   # asked once, not per batch
    num_batches = len(train_iter) if hasattr(train_iter, '__len__') else 0
    guard = NanGuard(net, ctx, num_batches, enabled=check_finite)
    history, last_epoch = History(name), first_epoch + num_epochs - 1
    for epoch in range(first_epoch, last_epoch + 1):
        loss_sum, correct, n, start = nd.zeros(1, ctx[0]), nd.zeros(1, ctx[0]), 0, time.time()
        with Progress(progress) as bar:
            for batch, (X, y) in enumerate(train_iter, 1):
                first = epoch == first_epoch and batch == 1
                if first:
                    shapes = _validate_batch(net, X, y)
                Xs, ys = split_batch(X, y, ctx, 'train')   # one part per device
                with autograd.record(), _explained('train', batch, X, y, shapes, epoch):
                    y_hats = forward_parts(net, Xs) if lockstep else [net(part) for part in Xs]
                    losses = [loss(y_hat, y_part).sum() for y_hat, y_part in zip(y_hats, ys)]
                if first and check_labels:
                    _validate_labels(y, y_hats[0])
                autograd.backward(losses)
                for y_hat, y_part, part_loss in zip(y_hats, ys, losses):
                    loss_sum += part_loss.as_in_context(ctx[0])
                    hits = y_hat.argmax(axis=1) == y_part.astype('float32')
                    correct += hits.sum().as_in_context(ctx[0])
                n += X.shape[0]
                guard.check(losses, Xs, epoch, batch)   # before the update: NaN is not applied
                trainer.step(X.shape[0])   # the real size: a last partial batch gets a mean too
                guard.after_step(epoch, batch, X)
                bar.update(f'epoch {epoch}/{last_epoch}', batch, num_batches or batch)
        _validate_epoch_size(n, epoch, first_epoch)
        train_loss, train_acc = (total / n for total in guard.end_epoch(loss_sum, correct))
        train_seconds = time.time() - start
        test_acc = evaluate_accuracy(test_iter, net, ctx)
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_acc=test_acc,
                   seconds=time.time() - start, examples_per_sec=n / train_seconds)
        if recalibrate_iter is not None:   # after 'seconds': the book's time stays comparable
            row['test_acc_recalibrated'] = recalibrated_accuracy(
                net, test_iter, recalibrate_iter, recalibrate, ctx)
        history.add_epoch(row, verbose)
    return history


def evaluate_accuracy(data_iter, net, ctx=None):
    """Fraction of examples in ``data_iter`` whose argmax prediction equals the label.

    data_iter yields (X, y) with X (batch, ...) and y (batch,). net: a Gluon block, or, as in the
    book's chapter 3, a plain function returning scores (batch, classes) (then the parameter
    check below is skipped). ctx is a device (default the CPU), as in the book, or a list of
    devices: then each batch is split across them and every
    device predicts its part with its own copy of the net (a batch with fewer examples than
    devices uses the first ones: the split policy of ``d2l_utils.data_parallel``). Runs in
    prediction mode. Counts are summed on the devices and read once at the end, together with
    two flags: a non-finite output or parameter raises NonFiniteParameterError (naming the first
    non-finite parameter) or FloatingPointError instead of returning a meaningless accuracy.
    """
    ctx = as_ctx_list(ctx, 'evaluate_accuracy')
    validate_gpus_usable(ctx, 'evaluate_accuracy')
    block = isinstance(net, gluon.Block)   # else the book's chapter-3 style: a plain function
    if block:
        validate_initialized_on(net, ctx, 'evaluate_accuracy')
    elif not callable(net):
        raise TypeError(f'evaluate_accuracy(data_iter, net, ctx): net must be a Gluon block or '
                        f'a function returning scores (batch, classes); got {net!r}. Note the '
                        'book\'s order: data_iter first, then net.')
    lockstep = block and len(ctx) > 1 and needs_all_parts(net)   # asked once, not per batch
    correct, n = [nd.zeros((1,), ctx=c) for c in ctx], 0
    # (y_hat * 0).sum() is 0, or NaN when an output is NaN or infinite: a flag read once
    finite = [nd.zeros((1,), ctx=c) for c in ctx]
    for batch, (X, y) in enumerate(data_iter, 1):
        with _explained('evaluate_accuracy', batch, X, y):
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
    parameters = parameter_flag(net, ctx) if block else nd.zeros((1,), ctx[0])
    total, flag, parameters = nd.concat(total.astype('float32'), flag, parameters,
                                        dim=0).asnumpy()
    if not (np.isfinite(flag) and np.isfinite(parameters)):
        parameter = first_nonfinite_parameter(net) if block else None
        if parameter:
            raise NonFiniteParameterError(
                f'evaluate_accuracy: the net\'s parameter {parameter} is NaN or infinite, so its '
                'predictions mean nothing (argmax of NaN is class 0). It was trained into that '
                'state: retrain it (train() stops at the step that breaks a parameter).')
        raise FloatingPointError(
            'evaluate_accuracy: some outputs of the net are NaN or infinite although its '
            'parameters are finite; check the data for non-finite values and the layers for a '
            'division by zero or the square root of a negative number (e.g. a BN layer\'s '
            'moving_var).')
    return float(total) / n


def train_ch5(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs, **kwargs):
    """The book's ``train_ch5``: same arguments, same printed lines; returns a ``History``.

    ``batch_size`` is accepted for compatibility; each update uses the real size of its batch.
    ctx: a device or a list of devices (see ``train``). Extra keyword arguments go to ``train``
    (e.g. ``progress=False``, ``name='scratch BN'``).
    """
    del batch_size  # the book passes it to trainer.step; the real batch size is used instead
    print('training on', ctx)
    return train(net, train_iter, test_iter, trainer, ctx, num_epochs, **kwargs)


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

    def add_epoch(self, row, verbose=True):
        """Append one epoch's metrics (a dict with ``KEYS``) and, if verbose, print the book's
        line: ``epoch 1, loss 0.6, train acc 0.8, test acc 0.8, time 12.3 sec``."""
        self.epochs.append(row)
        if verbose:
            recalibrated = (f" (recalibrated {row['test_acc_recalibrated']:.3f})"
                            if 'test_acc_recalibrated' in row else '')
            print(f"epoch {row['epoch']}, loss {row['train_loss']:.4f}, train acc "
                  f"{row['train_acc']:.3f}, test acc {row['test_acc']:.3f}{recalibrated}, time "
                  f"{row['seconds']:.1f} sec")

    def __len__(self):
        return len(self.epochs)

    def __repr__(self):
        last = self.last
        if last is None:
            return f'History({self.name!r}, no epochs)'
        return (f"History({self.name!r}, {len(self)} epochs, test acc {last['test_acc']:.3f}, "
                f"{np.median(self.column('seconds')):.1f} s/epoch)")


def set_seed(seed):
    """Seed Python's, numpy's and MXNet's random generators (all devices).

    With the same seed two CPU runs of the same training give the same numbers: weight
    initialization, dropout and (when the iterator has no seed of its own) shuffling all draw
    from these generators. seed: an integer in [0, 2**32 - 1] (numpy's range).
    """
    if not (is_integer(seed) and 0 <= seed <= 2 ** 32 - 1):
        # checked first: numpy would refuse it after Python's generator was already seeded
        raise ValueError(f'set_seed: seed must be an integer in [0, 2**32 - 1], e.g. 0; got '
                         f'{seed!r}.')
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def recalibrated_accuracy(net, test_iter, recalibrate_iter, num_batches, ctx=None):
    """Test accuracy with BN statistics re-estimated over ``num_batches`` training batches.

    The net's own moving statistics are saved first and put back afterwards, so the net (and a
    training run that measures this every epoch) is left exactly as it was. See
    ``recalibrate_batch_norm`` for how the statistics are measured.
    """
    with restoring_state(net):
        recalibrate_batch_norm(net, recalibrate_iter, num_batches, ctx=ctx)
        return evaluate_accuracy(test_iter, net, ctx)


# --- What train calls: its argument checks

CHAPTER_9_CALL = (
    'train: this is d2l_utils.train(net, train_iter, test_iter, trainer, ctx=None, num_epochs=1, '
    'loss=None, ...), the book\'s train_ch5 loop; d2lzh\'s chapter-9 train(train_iter, test_iter, '
    'net, loss, trainer, ctx, num_epochs) takes its arguments in another order. Call '
    'train(net, train_iter, test_iter, trainer, ctx, num_epochs, loss=loss), or for chapter 9 '
    '`import d2lzh as d2l`.')


def _validate_train_arguments(net, train_iter, test_iter, trainer, ctx, num_epochs, first_epoch,
                              recalibrate, recalibrate_iter):
    """Raise a clear error for arguments train cannot use; return (the devices as a list, the
    recalibration batches or None when recalibration is off)."""
    if not isinstance(net, gluon.Block):
        if isinstance(test_iter, gluon.Block):   # train(train_iter, test_iter, net, ...)
            raise TypeError(CHAPTER_9_CALL)
        raise TypeError(f'train: net must be a Gluon block, e.g. lenet(); got {net!r}.')
    ctx = as_ctx_list(ctx, 'train')
    if test_iter is None or not hasattr(test_iter, '__iter__'):
        raise TypeError('train: test_iter must be an iterable of (X, y) batches (the test '
                        'accuracy is measured on it after every epoch), e.g. the second iterator '
                        f'of load_data_fashion_mnist; got {test_iter!r}.')
    _validate_same_examples(train_iter, test_iter)
    _validate_learning_rate(trainer)
    require_positive_int(first_epoch, 'first_epoch', 'train',
                         'the number of the first epoch trained in this call, e.g. 1')
    require_positive_int(num_epochs, 'num_epochs', 'train',
                         'how many passes over train_iter, e.g. 5')
    if not callable(getattr(trainer, 'step', None)):
        raise TypeError('train: trainer must be a gluon.Trainer for this net, e.g. '
                        'gluon.Trainer(net.collect_params(), \'sgd\', {\'learning_rate\': 0.1}); '
                        f'got {trainer!r}.')
    if num_epochs > 1 and iter(train_iter) is train_iter:
        raise ValueError(f'train: train_iter (a {type(train_iter).__name__}) is a one-shot '
                         f'iterator: it is used up after the first of the {num_epochs} epochs, '
                         'so the later epochs would see no data. Pass something that can be '
                         'iterated again: a list of (X, y) batches, or load_data_fashion_mnist\'s '
                         'iterators.')
    validate_gpus_usable(ctx, 'train')
    recalibrate_iter = _recalibration_batches(train_iter, recalibrate, recalibrate_iter)
    if len(ctx) > 1:
        validate_initialized_on(net, ctx, 'train')
        validate_batches_fit_devices(train_iter, len(ctx), 'train')
    return ctx, recalibrate_iter


def _validate_same_examples(train_iter, test_iter):
    """Raise ValueError if both iterators say their example shape and the shapes differ."""
    shapes = [getattr(it, 'example_shape', None) for it in (train_iter, test_iter)]
    if None not in shapes and shapes[0] != shapes[1]:
        raise ValueError(f'train: train_iter gives examples of shape {shapes[0]} but test_iter '
                         f'gives {shapes[1]}; a net is built for one input size. Load both with '
                         'the same resize= (load_data_fashion_mnist returns a matching pair).')


def _validate_learning_rate(trainer):
    """Raise TypeError for a learning rate that is not a number, ValueError for a negative one
    (each step would climb the loss, and nothing would say so)."""
    lr = getattr(trainer, 'learning_rate', None)
    if lr is None or not callable(getattr(trainer, 'step', None)):
        return   # not a gluon.Trainer: refused just below
    if not isinstance(lr, numbers.Real) or isinstance(lr, bool):
        raise TypeError(f'train: the trainer\'s learning_rate must be a number, e.g. '
                        f'{{\'learning_rate\': 0.1}}; got {lr!r} (a {type(lr).__name__}). Write '
                        'the number without quotes.')
    if lr < 0:
        raise ValueError(f'train: the trainer\'s learning_rate is {lr}, negative: every step '
                         'would go up the gradient and increase the loss. Use a positive '
                         'learning rate, e.g. 0.1 (0 is allowed: nothing changes).')


def _validate_epoch_size(n, epoch, first_epoch):
    """Raise ValueError if an epoch gave no examples."""
    if n == 0:
        again = '' if epoch == first_epoch else (' although it gave batches before: it is a '
                                                  'one-shot iterator')
        raise ValueError(f'train: train_iter gave no batches in epoch {epoch}{again}. Pass an '
                         'iterable of (X, y) batches that can be iterated once per epoch (a '
                         'list, or load_data_fashion_mnist\'s iterators).')


def _recalibration_batches(train_iter, recalibrate, recalibrate_iter):
    """The batches to recalibrate on each epoch, or None when recalibration is off."""
    if recalibrate is None or recalibrate is False or recalibrate == 0:
        return None
    require_positive_int(recalibrate, 'recalibrate', 'train',
                         'how many training batches to re-estimate the statistics on, e.g. 50; '
                         'or None to measure only the moving-average test accuracy')
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


def _validate_batch(net, X, y):
    """Raise TypeError/ValueError unless the first batch is an NDArray X of the net's dtype and
    labels y (batch,); return the shapes (X.shape, y.shape)."""
    if not (isinstance(X, nd.NDArray) and isinstance(y, nd.NDArray)):
        raise TypeError('train: each batch must be a pair (X, y) of NDArrays; got (%s, %s). '
                        'Convert numpy arrays with nd.array(...), or use ArrayDataIter.'
                        % (type(X).__name__, type(y).__name__))
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError('train: labels y must be class indices of shape (batch,) = (%d,); got '
                         'shape %s. For one-hot labels use y.argmax(axis=1).'
                         % (X.shape[0], y.shape))
    dtypes = {np.dtype(param.dtype) for param in net.collect_params().values()}
    if len(dtypes) == 1 and np.dtype(X.dtype) not in dtypes:
        (dtype,) = dtypes
        raise TypeError(f'train: the net\'s parameters are {dtype} but the batch X is '
                        f'{np.dtype(X.dtype)}; MXNet needs one dtype in a layer. Cast the net '
                        f'back (net.cast(\'{np.dtype(X.dtype)}\')) or the data '
                        f'(X.astype(\'{dtype}\')); note that MXNet 1.9.1 has no float16 matrix '
                        'product on the CPU.')
    return X.shape, y.shape


@contextmanager
def _explained(caller, batch, X, y, first_shapes=None, epoch=None):
    """Re-raise MXNet's shape and dtype errors of one batch as a ValueError naming the batch and
    its shapes (no check per batch: only a batch that fails costs anything)."""
    try:
        yield
    except MXNetError as error:
        said = short_message(error)
        if 'shape' not in said.lower() and 'type' not in said.lower():
            raise
        where = f'epoch {epoch}, batch {batch}' if epoch is not None else f'batch {batch}'
        got = f'X of shape {X.shape} and y of shape {y.shape}'
        first = ('' if first_shapes is None or first_shapes == (X.shape, y.shape) else
                 f'; the first batch had X {first_shapes[0]} and y {first_shapes[1]}')
        raise ValueError(f'{caller}: {where} failed in MXNet ({said}). That batch has {got}'
                         f'{first}. Every batch must give images of the size the net was built '
                         'for (a test iterator too: load it with the same resize=) and one label '
                         'per image.') from error


def _validate_labels(y, y_hat):
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
