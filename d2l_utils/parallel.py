"""Data parallelism on several devices, and what it does to batch normalization.

Data parallelism (the book's 多GPU计算): every device holds a copy of the parameters; each batch
is split across the devices (``split_batch``), each device runs the net on its part, and the
Trainer sums the gradients over the devices (its kvstore) before one update, so every learned
parameter stays the same on all devices. A BN layer's running statistics are not learned: each
device updates its own copy from its own part of the batch, and the copies drift apart
(``running_stats_by_device``, ``device_copy_spread`` measure it).

``CrossDeviceBatchNorm`` is the scratch ``BatchNorm`` with statistics over the whole batch: each
device sums its part (per channel: the sum and the sum of squares), the sums are added on the
first device, and the mean and variance go back to every device. It needs every device's part
at once, so ``forward_parts`` runs a net that contains it layer by layer, in lockstep over the
devices. MXNet's ``gluon.contrib.nn.SyncBatchNorm`` does the same in C++ and is meant for GPUs:
on several CPU contexts its backward pass can deadlock in MXNet 1.9.1 (it does for LeNet on two
CPU contexts: every CPU context draws its temporary workspace from one shared pool; notebook 8
shows it).
"""
import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from .fast_batch_norm import _Channels
from .layers import BatchNorm, _check_batch_norm_inputs, batch_norm


def as_ctx_list(ctx, caller='train'):
    """The devices to use, as a list: None -> [mx.cpu()], a device -> [device], a list -> itself.

    Raises TypeError for anything that is not an ``mx.Context`` (or a list of them) and
    ValueError for an empty list or a device listed twice; ``caller`` names the function in
    the message.
    """
    if ctx is None:
        return [mx.cpu()]
    if isinstance(ctx, mx.Context):
        return [ctx]
    if not isinstance(ctx, (list, tuple)):
        raise TypeError('%s: ctx must be a device such as mx.cpu() or mx.gpu(0), or a list of '
                        'devices such as [mx.cpu(0), mx.cpu(1)]; got %r (a %s).'
                        % (caller, ctx, type(ctx).__name__))
    ctx = list(ctx)
    if not ctx:
        raise ValueError('%s: ctx is an empty list of devices; give at least one, e.g. '
                         '[mx.cpu()] or d2l_utils.try_all_gpus().' % caller)
    for c in ctx:
        if not isinstance(c, mx.Context):
            raise TypeError('%s: every entry of ctx must be a device such as mx.cpu(1) or '
                            'mx.gpu(0); got %r (a %s) in %r.'
                            % (caller, c, type(c).__name__, ctx))
    repeated = sorted({str(c) for c in ctx if ctx.count(c) > 1})
    if repeated:
        raise ValueError('%s: ctx lists %s more than once (%r); each device takes one part of '
                         'the batch, so list each device once, e.g. [mx.cpu(0), mx.cpu(1)].'
                         % (caller, ', '.join(repeated), ctx))
    return ctx


def split_batch(X, y, ctx_list, caller='train'):
    """Split a batch across devices: ([X_0, X_1, ...], [y_0, y_1, ...]), part k on ctx_list[k].

    X: (batch, ...), y: (batch,). The parts differ in size by at most one example when the
    batch does not divide evenly (``gluon.utils.split_and_load(..., even_split=False)``).
    Raises ValueError if the batch has fewer examples than there are devices.
    """
    n, k = X.shape[0], len(ctx_list)
    if n < k:
        raise ValueError('%s: a batch of %d example(s) cannot be split across %d devices (each '
                         'device needs at least one example). Use a batch size of at least %d, '
                         'fewer devices, or a training set whose last batch is not that small.'
                         % (caller, n, k, k))
    return (gluon.utils.split_and_load(X, ctx_list, even_split=False),
            gluon.utils.split_and_load(y, ctx_list, even_split=False))


def check_initialized_on(net, ctx_list, caller='train'):
    """Raise ValueError, saying how to fix it, if a Parameter of ``net`` is missing on a device.

    Parameters not initialized yet (deferred until the first forward pass) are checked against
    the devices they will be created on.
    """
    for name, param in net.collect_params().items():
        try:
            have = param.list_ctx()
        except RuntimeError:   # never initialized: the forward pass raises its own clear error
            continue
        missing = [c for c in ctx_list if c not in have]
        if missing:
            raise ValueError('%s: the parameter %s lives on %s, but the batches go to %s. '
                             'Initialize the net on every device, net.initialize(ctx=%s), or move '
                             'an initialized net with net.collect_params().reset_ctx(%s).'
                             % (caller, name, have, ctx_list, ctx_list, ctx_list))


def _needs_all_parts(block):
    """True if ``block`` or a block inside it must see every device's part at once."""
    return hasattr(block, 'forward_parts') or any(
        _needs_all_parts(child) for child in block._children.values())


def forward_parts(net, Xs):
    """Run ``net`` on each device's part of a batch; returns the outputs, k-th on Xs[k]'s device.

    Xs: one part per device, e.g. from ``split_batch``. For an ordinary net this is
    ``[net(X) for X in Xs]``. A layer that needs all parts at once (a block with a
    ``forward_parts(Xs)`` method, such as ``CrossDeviceBatchNorm``) gets them together: the net
    is then run layer by layer, each layer on every part before the next layer starts. That
    works for ``nn.Sequential`` and ``nn.HybridSequential`` (also nested).
    """
    if not _needs_all_parts(net):
        return [net(X) for X in Xs]
    if hasattr(net, 'forward_parts'):
        return net.forward_parts(Xs)
    if not isinstance(net, (nn.Sequential, nn.HybridSequential)):
        raise TypeError('forward_parts: %s (a %s) contains a layer that needs every device\'s '
                        'part of the batch at once (e.g. CrossDeviceBatchNorm); it can run only '
                        'inside nn.Sequential or nn.HybridSequential, layer by layer. Build the '
                        'net as a Sequential.' % (net.name, type(net).__name__))
    for block in net._children.values():
        Xs = forward_parts(block, Xs)
    return Xs


class _CrossDeviceBatchNormFunction(autograd.Function):
    """Training-mode batch norm of K parts on K devices with the statistics of all parts.

    Call as ``_CrossDeviceBatchNormFunction(eps, K)(*gammas, *betas, *Xs)``, a new instance per
    call: part k is X_k (n_k, D) or (n_k, C, H, W) with gamma_k, beta_k ((1, D) or
    (1, C, 1, 1)) on X_k's device. Returns Y_k with X_k's shape on X_k's device (a tuple when
    K > 1); afterwards ``mean`` and ``var`` (shape (C,), on the first device) hold the
    statistics of the whole batch.

    Two exchanges of per-channel sums between the devices, the same ones MXNet's SyncBatchNorm
    makes: forward sums x and x^2 (for the mean and variance), backward sums g and g * x_hat
    (g = gamma * dY, the gradient reaching x_hat), which every x_hat depends on through the mean
    and variance. The large arrays never leave their device. The arithmetic per device is
    ``FastBatchNorm``'s (cheap per-channel means, closed-form backward); the arguments come in
    this order for the reason given in its ``_BatchNormFunction``.
    """

    def __init__(self, eps, num_parts):
        super(_CrossDeviceBatchNormFunction, self).__init__()
        self.eps, self.num_parts = eps, num_parts

    def _all_reduce(self, per_device):
        """Add up one (C,) array per device on the first device; return the sum on every device."""
        total = nd.add_n(*[a.as_in_context(self.home) for a in per_device])
        return [total.as_in_context(ctx) for ctx in self.contexts]

    def forward(self, *args):
        K = self.num_parts
        gammas, betas, Xs = args[:K], args[K:2 * K], args[2 * K:]
        self.home, self.contexts = Xs[0].context, [X.context for X in Xs]
        self.channels = [_Channels(X) for X in Xs]
        self.count = sum(ch.count for ch in self.channels)   # values per channel, all parts
        X2s = [X.reshape((ch.N, -1)) for X, ch in zip(Xs, self.channels)]   # (n_k, C*S) views
        sums = self._all_reduce([ch.means(X2) * ch.count for X2, ch in zip(X2s, self.channels)])
        sums_sq = self._all_reduce([ch.means(nd.square(X2)) * ch.count
                                    for X2, ch in zip(X2s, self.channels)])
        Ys, self.saved = [], []
        for k, ch in enumerate(self.channels):
            mean = sums[k] / self.count
            # biased variance as E[x^2] - E[x]^2 (one exchange instead of two); rounding can
            # put it a hair below zero for a constant channel, hence the relu
            var = nd.relu(sums_sq[k] / self.count - nd.square(mean))
            inv_std = nd.rsqrt(var + self.eps)
            X_centered = nd.broadcast_sub(X2s[k], ch.row(mean))
            gamma = gammas[k].reshape((-1,)).copy()   # a copy: never keep a Parameter's array
            scale = gamma * inv_std
            Ys.append(nd.broadcast_add(nd.broadcast_mul(X_centered, ch.row(scale)),
                                       ch.row(betas[k])).reshape(Xs[k].shape))
            self.saved.append((X_centered, inv_std, gamma, scale, gammas[k].shape))
        self.mean, self.var = mean.as_in_context(self.home), var.as_in_context(self.home)
        return tuple(Ys) if K > 1 else Ys[0]

    def backward(self, *dYs):
        """dY_k: X_k's shape. Returns (*dgammas, *dbetas, *dXs), the shapes of the arguments."""
        dY2s = [dY.reshape((ch.N, -1)) for dY, ch in zip(dYs, self.channels)]
        # each device: the per-channel sums of dY and of dY * x_hat over its own part
        sum_dY, sum_dY_x_hat = [], []
        for dY2, ch, (X_centered, inv_std, _, _, _) in zip(dY2s, self.channels, self.saved):
            sum_dY.append(ch.means(dY2) * ch.count)
            sum_dY_x_hat.append(ch.means(dY2 * X_centered) * inv_std * ch.count)
        # x_hat = (x - mean) * inv_std depends on every part through the mean and variance, so
        # dX needs the means over all parts of g and g * x_hat, with g = gamma * dY
        mean_g = self._all_reduce([g * s for (_, _, g, _, _), s in zip(self.saved, sum_dY)])
        mean_g_x_hat = self._all_reduce([g * s for (_, _, g, _, _), s
                                         in zip(self.saved, sum_dY_x_hat)])
        dgammas, dbetas, dXs = [], [], []
        for k, (dY2, ch) in enumerate(zip(dY2s, self.channels)):
            X_centered, inv_std, _, scale, param_shape = self.saved[k]
            # dX = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), all per channel
            shift = inv_std * mean_g[k] / self.count
            slope = inv_std * inv_std * mean_g_x_hat[k] / self.count
            dX = (nd.broadcast_mul(dY2, ch.row(scale)) - ch.row(shift)
                  - nd.broadcast_mul(X_centered, ch.row(slope)))
            dXs.append(dX.reshape(dYs[k].shape))
            dgammas.append(sum_dY_x_hat[k].reshape(param_shape))   # this device's part only:
            dbetas.append(sum_dY[k].reshape(param_shape))          # the Trainer adds them up
        return tuple(dgammas + dbetas + dXs)


class CrossDeviceBatchNorm(BatchNorm):
    """``BatchNorm`` whose training statistics are over the whole batch, across devices.

    num_features, num_dims: as for ``BatchNorm``, with the same Parameters (gamma, beta,
    moving_mean, moving_var; shape (1, C) or (1, C, 1, 1)), so a file saved from either loads
    into the other. ``forward_parts([X_0, X_1, ...])``, one part per device (X_k (n_k, C, H, W)
    or (n_k, D)), normalizes every part with the mean and biased variance of all the parts
    together and writes the same moving statistics into every device's copy. Called on one
    array it is a batch norm over that array. In prediction mode each part is normalized with
    its device's moving statistics, exactly as ``BatchNorm`` does. gamma and beta must be
    learned with grad_req 'write' (the default).
    """

    def forward(self, X):
        return self.forward_parts([X])[0]

    def forward_parts(self, Xs):
        if not autograd.is_training():
            return [batch_norm(X, self.gamma.data(X.context), self.beta.data(X.context),
                               self.moving_mean.data(X.context), self.moving_var.data(X.context),
                               self.eps, self.momentum)[0] for X in Xs]
        if self.gamma.grad_req != 'write' or self.beta.grad_req != 'write':
            raise ValueError('CrossDeviceBatchNorm %s: gamma and beta need grad_req \'write\' '
                             '(got %r and %r); its hand-written backward always writes both. '
                             'To freeze them, use BatchNorm on one device instead.'
                             % (self.name, self.gamma.grad_req, self.beta.grad_req))
        for X in Xs:
            ctx = X.context
            _check_batch_norm_inputs(X, self.gamma.data(ctx), self.beta.data(ctx),
                                     self.moving_mean.data(ctx), self.moving_var.data(ctx))
        function = _CrossDeviceBatchNormFunction(self.eps, len(Xs))
        Ys = function(*[self.gamma.data(X.context) for X in Xs],
                      *[self.beta.data(X.context) for X in Xs], *Xs)
        Ys = list(Ys) if len(Xs) > 1 else [Ys]
        shape = self.moving_mean.shape
        for X in Xs:
            # the same update on every device from the same numbers: the copies stay equal
            ctx = X.context
            mean, var = (function.mean.reshape(shape).as_in_context(ctx),
                         function.var.reshape(shape).as_in_context(ctx))
            with autograd.pause():
                moving_mean, moving_var = self.moving_mean.data(ctx), self.moving_var.data(ctx)
                moving_mean[:] = self.momentum * moving_mean + (1.0 - self.momentum) * mean
                moving_var[:] = self.momentum * moving_var + (1.0 - self.momentum) * var
        return Ys


def _is_running_stat(name, param):
    return param.grad_req == 'null' and name.endswith(('running_mean', 'running_var',
                                                       'moving_mean', 'moving_var'))


def running_stats_by_device(net):
    """Every BN layer's running statistics, one copy per device.

    Finds the non-learned Parameters named ...running_mean/...running_var (nn.BatchNorm,
    gluon.contrib.nn.SyncBatchNorm) or ...moving_mean/...moving_var (the scratch blocks).
    Returns {layer prefix: {'ctx': [devices], 'mean': numpy (num_devices, C),
    'var': numpy (num_devices, C)}}, in the order of the net's layers.
    """
    layers = {}
    for name, param in net.collect_params().items():
        if not _is_running_stat(name, param):
            continue
        prefix, kind = name.rsplit('_', 2)[0], name.rsplit('_', 1)[1]   # kind: 'mean' or 'var'
        layer = layers.setdefault(prefix, {'ctx': param.list_ctx()})
        layer[kind] = np.stack([d.asnumpy().reshape(-1) for d in param.list_data()])
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
