"""Importing this module resets torch's CPU thread count (MXNet's import set it to 1): see below.

The chapter in PyTorch: scratch batch norm, LeNet and a training loop, for the appendix notebook A.
Optional: this module needs PyTorch (``pip install -r requirements-torch.txt``); the rest of
``d2l_utils`` does not, and ``import d2l_utils`` never imports this module.

- ``batch_norm``/``BatchNorm``: the book's PyTorch signatures, with two fixes. The mode comes from
  the module's ``self.training`` (``net.train()``/``net.eval()``), passed to ``batch_norm`` as
  ``training=``, not from ``torch.is_grad_enabled()``; the moving statistics are registered
  buffers, so ``state_dict()`` saves them and ``.to(device)`` moves them.
- ``lenet(bn=None|'scratch'|'torch')``: the same LeNet as ``d2l_utils.lenet``, initialized like
  MXNet's ``init.Xavier()``; ``load_mxnet_parameters`` copies an MXNet LeNet's weights into it.
- ``as_torch_iter``: a ``d2l_utils`` data iterator as torch tensors, converted once, giving the
  same batches in the same order; ``train``/``evaluate_accuracy``: the book's loop (SGD, mean
  loss per batch), returning a ``d2l_utils.History``.
- ``check_torch_batch_norm``/``check_torch_batch_norm_module``: the checkers for a learner's
  PyTorch batch norm (from ``d2l_utils.checks.torch_layer``).

Threads: MXNet and PyTorch's CPU build share one OpenMP runtime, and importing MXNet (which
``d2l_utils`` does) sets this thread's OpenMP thread count to 1, so torch would quietly compute on
one core. Importing this module sets torch back to its own default (``default_num_threads()``);
call ``torch.set_num_threads(n)`` afterwards to choose another count.
"""
INSTALL_HINT = ('d2l_utils.pytorch needs PyTorch, which is optional in this repository. Install '
                'the pinned CPU build (it works beside mxnet 1.9.1 and numpy 1.23.5) from the '
                'repository folder:\n    pip install -r requirements-torch.txt')

try:
    import torch
except ImportError as err:
    raise ImportError(INSTALL_HINT) from err

import math
import os
import time

import torch.nn.functional as F
from torch import nn

from . import training
from .checks.torch_layer import check_torch_batch_norm, check_torch_batch_norm_module
from .data import BatchCount, epoch_order
from .layers import moving_average, validate_batch_norm_shapes
from .models import is_batch_norm, statistic_names
from .nan_guard import NonFiniteLossError
from .support.progress import Progress
from .training import History

__all__ = ['BN_CHOICES', 'BatchNorm', 'INSTALL_HINT', 'NUM_THREADS_AT_IMPORT', 'TorchDataIter',
           'as_torch_iter', 'batch_norm', 'bn_tensors', 'check_torch_batch_norm',
           'check_torch_batch_norm_module', 'default_num_threads', 'evaluate_accuracy', 'lenet',
           'load_mxnet_parameters', 'set_seed', 'train', 'validate_batch_norm_inputs',
           'xavier_init_']

BN_CHOICES = (None, 'scratch', 'torch')


def default_num_threads():
    """The number of intra-op threads torch chooses by itself in a process without MXNet.

    torch takes OMP_NUM_THREADS (then MKL_NUM_THREADS) if set, else one thread per physical
    core, the count it also gives its inter-op pool; that pool is not touched by MXNet's import.
    """
    for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        value = os.environ.get(name, '')
        if value.isdigit() and int(value) > 0:
            return int(value)
    return torch.get_num_interop_threads()


NUM_THREADS_AT_IMPORT = torch.get_num_threads()   # 1 when MXNet was imported first
torch.set_num_threads(default_num_threads())


def set_seed(seed):
    """Seed Python's, numpy's, MXNet's and torch's generators (d2l_utils.set_seed, then torch)."""
    training.set_seed(seed)
    torch.manual_seed(seed)


def validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var):
    """Raise ValueError, saying what to change, if batch_norm cannot use these inputs.

    X: (N, D) or (N, C, H, W), float; gamma, beta, moving_mean, moving_var: shape (1, D) or
    (1, C, 1, 1). The shape checks and messages are d2l_utils.validate_batch_norm_shapes'.
    """
    if X.dim() in (2, 4) and not X.dtype.is_floating_point:
        raise ValueError('batch_norm expects a float input (float16, float32 or float64); got X '
                         'of dtype %s. Convert it first, e.g. X.float().' % X.dtype)
    validate_batch_norm_shapes(X.shape, gamma=gamma.shape, beta=beta.shape,
                            moving_mean=moving_mean.shape, moving_var=moving_var.shape)


def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum, *, training):
    """Normalize X per feature (2-D: N x D) or per channel (4-D: N x C x H x W).

    gamma, beta, moving_mean, moving_var: shape (1, D) or (1, C, 1, 1).
    training: the mode, given by the caller (a module passes its ``self.training``). True:
        normalize with the batch mean and biased batch variance and return updated moving
        statistics; False: normalize with the moving statistics and return them unchanged.
    momentum: the book's convention, new = momentum * old + (1 - momentum) * batch statistic
        (0.9); nn.BatchNorm2d's momentum is the weight of the new value, 1 - this (0.1).
    Returns (Y, moving_mean, moving_var); Y has X's shape. The new moving statistics carry no
    autograd history: they are state, not something to differentiate.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var)
    if not training:
        # Prediction: use the moving averages, so an example's output does not depend on its batch
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        # (N, D): statistics per feature over the batch; (N, C, H, W): per channel over the
        # batch and all positions. keepdim=True gives (1, D) or (1, C, 1, 1), which broadcasts.
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        mean = X.mean(dim=dims, keepdim=True)
        X_centered = X - mean
        var = (X_centered * X_centered).mean(dim=dims, keepdim=True)   # biased: divide by m
        X_hat = X_centered / torch.sqrt(var + eps)
        with torch.no_grad():   # the moving averages are state: no graph behind them
            moving_mean = moving_average(moving_mean, mean, momentum)   # as in d2l_utils
            moving_var = moving_average(moving_var, var, momentum)
    Y = gamma * X_hat + beta  # scale and shift: the layer can learn back any mean and variance
    return Y, moving_mean, moving_var


class BatchNorm(nn.Module):
    """Batch normalization layer built on ``batch_norm``.

    num_features: the number of outputs of the layer before (Linear units or Conv2d channels).
    num_dims: 2 after a Linear layer (input (N, D)), 4 after a Conv2d layer (input (N, C, H, W)).
    Parameters gamma, beta (learned) and buffers moving_mean, moving_var (state) all have shape
    (1, num_features) or (1, num_features, 1, 1). eps=1e-5, momentum=0.9 (the book's convention).
    """

    def __init__(self, num_features, num_dims):
        super().__init__()
        if num_dims == 2:
            shape = (1, num_features)
        elif num_dims == 4:
            shape = (1, num_features, 1, 1)
        else:
            raise ValueError('BatchNorm num_dims must be 2 (after Linear: input (N, D)) or 4 '
                             '(after Conv2d: input (N, C, H, W)); got %r.' % (num_dims,))
        self.eps, self.momentum = 1e-5, 0.9
        # Learned scale and shift, starting as the identity
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        # Buffers, not plain attributes: state_dict() saves them, .to()/.double() converts them,
        # and the optimizer never sees them (they are not Parameters)
        self.register_buffer('moving_mean', torch.zeros(shape))
        self.register_buffer('moving_var', torch.ones(shape))

    def forward(self, X):
        # The mode is this module's flag, set by net.train() / net.eval()
        Y, moving_mean, moving_var = batch_norm(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var,
            eps=self.eps, momentum=self.momentum, training=self.training)
        if self.training:
            # In place: the buffers stay the same tensors that state_dict() and .to() know
            self.moving_mean.copy_(moving_mean)
            self.moving_var.copy_(moving_var)
        return Y


def _torch_bn(num_features, num_dims):
    return nn.BatchNorm2d(num_features) if num_dims == 4 else nn.BatchNorm1d(num_features)


def xavier_init_(net):
    """Initialize like MXNet's ``init.Xavier()``: weights uniform in +-sqrt(6 / (fan_in + fan_out)),
    biases zero; batch norm layers keep gamma 1, beta 0. Returns ``net``."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


def lenet(bn=None):
    """LeNet for (N, 1, 28, 28) images, the same net as ``d2l_utils.lenet(bn=...)``; (N, 10) scores.

    bn: None (the book's plain LeNet), 'scratch' (this module's BatchNorm) or 'torch'
        (nn.BatchNorm2d after a convolution, nn.BatchNorm1d after a Linear layer). With batch
        norm: Conv(6, 5)-BN-sigmoid-MaxPool-Conv(16, 5)-BN-sigmoid-MaxPool-Linear(120)-BN-sigmoid-
        Linear(84)-BN-sigmoid-Linear(10).
    Returns an nn.Sequential, initialized as by ``xavier_init_`` (draws from torch's generator:
    seed it with ``set_seed``), in training mode.
    """
    if bn == 'scratch':
        make_bn = BatchNorm
    elif bn == 'torch':
        make_bn = _torch_bn
    elif bn is None:
        make_bn = None
    else:
        raise ValueError('lenet: bn must be one of %s; got %r.'
                         % (', '.join(map(repr, BN_CHOICES)), bn))
    layers = []
    # (layer, its output size, num_dims of that output); MaxPool and Flatten follow the convs
    for layer, size, num_dims in ((nn.Conv2d(1, 6, kernel_size=5), 6, 4),
                                  (nn.Conv2d(6, 16, kernel_size=5), 16, 4),
                                  (nn.Linear(16 * 4 * 4, 120), 120, 2),
                                  (nn.Linear(120, 84), 84, 2)):
        layers.append(layer)
        if make_bn is not None:
            layers.append(make_bn(size, num_dims))
        layers.append(nn.Sigmoid())
        if num_dims == 4:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        if size == 16:
            layers.append(nn.Flatten())   # MXNet's Dense flattens by itself; torch's Linear doesn't
    layers.append(nn.Linear(84, 10))
    return xavier_init_(nn.Sequential(*layers))


def bn_tensors(module):
    """(gamma, beta, moving mean, moving var) tensors of a torch batch norm layer: this module's
    BatchNorm (shape (1, C) or (1, C, 1, 1)) or nn.BatchNorm1d/2d (weight, bias, running_mean,
    running_var, shape (C,))."""
    if isinstance(module, BatchNorm):
        return module.gamma, module.beta, module.moving_mean, module.moving_var
    return module.weight, module.bias, module.running_mean, module.running_var


def load_mxnet_parameters(net, mx_net):
    """Copy every weight and batch norm state of an MXNet LeNet into the same torch LeNet.

    net: from ``lenet(bn)``; mx_net: from ``d2l_utils.lenet(bn)`` with the same kind of batch
    norm or none, initialized (deferred initialization completed by one forward pass).
    Conv/Dense weights and biases, gamma, beta and the moving statistics are copied in layer
    order, reshaped between MXNet's (C,) and the scratch layers' (1, C[, 1, 1]). Returns ``net``.
    """
    from mxnet import gluon
    from mxnet.gluon import nn as mx_nn

    def kinds(layers):
        return [kind for kind, _ in layers]

    ours = [('affine', m) if isinstance(m, (nn.Conv2d, nn.Linear)) else ('bn', m)
            for m in net if isinstance(m, (nn.Conv2d, nn.Linear, BatchNorm, nn.BatchNorm1d,
                                           nn.BatchNorm2d))]
    theirs = [('bn', b) if is_batch_norm(b) else ('affine', b)
              for b in mx_net if is_batch_norm(b) or isinstance(b, (mx_nn.Conv2D, mx_nn.Dense))]
    if kinds(ours) != kinds(theirs):
        raise ValueError(f'load_mxnet_parameters: the two nets differ (torch layers '
                         f'{kinds(ours)}, MXNet layers {kinds(theirs)}); build both with the '
                         f'same bn= argument.')
    with torch.no_grad():
        for (kind, module), (_, block) in zip(ours, theirs):
            if kind == 'affine':
                targets, names = (module.weight, module.bias), ('weight', 'bias')
            else:
                targets = bn_tensors(module)
                names = ('gamma', 'beta') + statistic_names(block)
            for target, name in zip(targets, names):
                source = getattr(block, name)
                array = source.data() if isinstance(source, gluon.Parameter) else source
                value = torch.from_numpy(array.asnumpy())
                if value.numel() != target.numel():
                    raise ValueError(f'load_mxnet_parameters: {block.name}.{name} has '
                                     f'{value.numel()} values, the torch layer expects '
                                     f'{target.numel()}; build both with the same bn= argument.')
                target.copy_(value.reshape(target.shape))
    return net


class TorchDataIter(BatchCount):
    """Mini-batches (X, y) of torch tensors from arrays held in memory, like ``ArrayDataIter``.

    X: float32 tensor (N, 1, 28, 28); y: int64 tensor (N,) of class indices (what
    F.cross_entropy wants). Each ``iter()`` is one epoch; the last partial batch is kept. With
    ``shuffle``, each epoch's order is ``rng.permutation(N)`` (rng: a numpy RandomState, or None
    for numpy's global generator), drawn by the same ``d2l_utils.data.epoch_order`` as
    ``ArrayDataIter``, so a copy of its generator (``ArrayDataIter.rng_copy()``) replays its
    batches.
    """

    def __init__(self, X, y, batch_size, shuffle=False, rng=None):
        if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError('TorchDataIter takes torch tensors X and y; got %s and %s. For a '
                            'd2l_utils data iterator use as_torch_iter(data_iter).'
                            % (type(X).__name__, type(y).__name__))
        self.X, self.y = X, y.long()
        self.batch_size, self.shuffle, self._rng = int(batch_size), shuffle, rng

    def __iter__(self):
        n = self.num_examples
        if self.shuffle:
            order = torch.from_numpy(epoch_order(n, self._rng))
        for start in range(0, n, self.batch_size):
            if self.shuffle:
                idx = order[start:start + self.batch_size]
                yield self.X.index_select(0, idx), self.y.index_select(0, idx)
            else:
                yield self.X[start:start + self.batch_size], self.y[start:start + self.batch_size]


def as_torch_iter(data_iter):
    """The batches of a ``d2l_utils`` ``ArrayDataIter`` as torch tensors, converted once.

    The whole split is copied to numpy and wrapped by torch.from_numpy here, not per batch, so a
    training loop does not time the conversion. With a seeded iterator
    (``load_data_fashion_mnist(..., seed=s)``), the result replays the batches that
    ``data_iter`` would serve from now on, in the same order (it gets a copy of its generator).
    Returns a ``TorchDataIter``; a ``TorchDataIter`` is returned unchanged.
    """
    if isinstance(data_iter, TorchDataIter):
        return data_iter
    if not all(hasattr(data_iter, name) for name in ('X', 'y', 'batch_size', 'shuffle',
                                                     'rng_copy')):
        raise TypeError('as_torch_iter takes a d2l_utils data iterator (from '
                        'load_data_fashion_mnist); got %s.' % type(data_iter).__name__)
    if getattr(data_iter, 'resize', None):
        raise ValueError('as_torch_iter: resized batches are not supported; build the iterator '
                         'without resize= (LeNet takes 28 x 28 images).')
    X = torch.from_numpy(data_iter.X.asnumpy())
    y = torch.from_numpy(data_iter.y.asnumpy()).long()
    return TorchDataIter(X, y, data_iter.batch_size, shuffle=data_iter.shuffle,
                         rng=data_iter.rng_copy())


def evaluate_accuracy(data_iter, net, device=None):
    """Fraction of examples whose argmax prediction equals the label, in prediction mode.

    data_iter: a TorchDataIter or a d2l_utils data iterator (converted first). device: where
    the batches go (default: where the net's first parameter is). The net is put in eval() mode
    for the pass and back in the mode it had afterwards.
    """
    data_iter = as_torch_iter(data_iter)
    if device is None:
        device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    correct, n = 0, 0
    try:
        with torch.no_grad():
            for X, y in data_iter:
                X, y = X.to(device), y.to(device)
                correct += (net(X).argmax(dim=1) == y).sum().item()
                n += X.shape[0]
    finally:
        net.train(was_training)
    if n == 0:
        raise ValueError('evaluate_accuracy got an empty data iterator')
    return correct / n


def train(net, train_iter, test_iter, lr, num_epochs, device='cpu', name='', progress=None,
          verbose=True):
    """Train ``net`` with plain SGD on the mean cross-entropy of each batch; return a ``History``.

    The book's recipe, as ``d2l_utils.train`` runs it in MXNet: the loss is averaged over each
    batch's real size (MXNet: summed, then ``trainer.step(batch_size)``), no momentum, no weight
    decay. train_iter/test_iter: TorchDataIter or d2l_utils iterators (converted at the start of
    the call, before any timing; when calling ``train`` once per epoch, convert once with
    ``as_torch_iter`` and pass the result, so each call gets the next shuffle). device: where
    the net is moved and each batch is sent, e.g. 'cuda' (only the CPU is tested here). History
    rows have the keys of ``d2l_utils.History`` ('seconds': training plus test
    evaluation, as the book prints; 'examples_per_sec': training only). A NaN or infinite batch
    loss stops training with ``NonFiniteLossError`` before the update.
    """
    train_iter, test_iter = as_torch_iter(train_iter), as_torch_iter(test_iter)
    device = torch.device(device)
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    bar = Progress(progress)
    history = History(name)
    num_batches = len(train_iter)
    for epoch in range(1, num_epochs + 1):
        net.train()
        start = time.time()
        loss_sum, correct, n = 0.0, 0, 0
        for batch, (X, y) in enumerate(train_iter, 1):
            X, y = X.to(device), y.to(device)   # no copy when already there (the CPU)
            y_hat = net(X)
            loss = F.cross_entropy(y_hat, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            value = loss.item()
            if not math.isfinite(value):
                bar.close()
                raise NonFiniteLossError(
                    'Training stopped: the loss is %s at epoch %d, batch %d of %d; the optimizer '
                    'did not apply this batch. A learning rate too large for this network is the '
                    'usual cause.' % (value, epoch, batch, num_batches))
            optimizer.step()
            loss_sum += value * X.shape[0]
            correct += (y_hat.argmax(dim=1) == y).sum().item()
            n += X.shape[0]
            bar.update('epoch %d/%d' % (epoch, num_epochs), batch, num_batches)
        train_seconds = time.time() - start
        test_acc = evaluate_accuracy(test_iter, net, device)
        row = dict(epoch=epoch, train_loss=loss_sum / n, train_acc=correct / n, test_acc=test_acc,
                   seconds=time.time() - start, examples_per_sec=n / train_seconds)
        bar.close()
        history.add_epoch(row, verbose)
    return history
