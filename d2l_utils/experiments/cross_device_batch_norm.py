"""Batch norm with the whole batch's statistics when the batch is split across devices.

In data parallelism (``d2l_utils.data_parallel``) each device runs the net on its part of the
batch. A BN layer then normalizes each part with that part's own statistics, and its running
statistics are not learned: each device updates its own copy from its own part, and the copies
drift apart (``d2l_utils.running_stats_by_device`` and ``device_copy_spread`` measure it).

``CrossDeviceBatchNorm`` is the scratch ``BatchNorm`` with statistics over the whole batch: each
device sums its part (per channel: the sum and the sum of squares), the sums are added on the
first device, and the mean and variance go back to every device. It needs every device's part
at once, so ``forward_parts`` runs a net that contains it layer by layer, in lockstep over the
devices. MXNet's ``gluon.contrib.nn.SyncBatchNorm`` does the same in C++ and is meant for GPUs:
on several CPU contexts its backward pass can deadlock in MXNet 1.9.1 (it does for LeNet on two
CPU contexts: every CPU context draws its temporary workspace from one shared pool; notebook B
shows it).
"""
from mxnet import autograd, nd

from .fast_batch_norm import ChannelView
from ..layers import BatchNorm, batch_norm, validate_batch_norm_inputs, moving_average

__all__ = ['CrossDeviceBatchNorm', 'CrossDeviceBatchNormFunction']


class CrossDeviceBatchNormFunction(autograd.Function):
    """Training-mode batch norm of K parts on K devices with the statistics of all parts.

    Call as ``CrossDeviceBatchNormFunction(eps, K)(*gammas, *betas, *Xs)``, a new instance per
    call: part k is X_k (n_k, D) or (n_k, C, H, W) with gamma_k, beta_k ((1, D) or
    (1, C, 1, 1)) on X_k's device. Returns Y_k with X_k's shape on X_k's device (a tuple when
    K > 1); afterwards ``mean`` and ``var`` (shape (C,), on the first device) hold the
    statistics of the whole batch.

    Two exchanges of per-channel sums between the devices, the same ones MXNet's SyncBatchNorm
    makes: forward sums x and x^2 (for the mean and variance), backward sums g and g * x_hat
    (g = gamma * dY, the gradient reaching x_hat), which every x_hat depends on through the mean
    and variance. The large arrays never leave their device. The arithmetic per device is
    ``FastBatchNorm``'s (cheap per-channel means, closed-form backward); the arguments come in
    this order for the reason given in its ``BatchNormFunction``.
    """

    def __init__(self, eps, num_parts):
        super().__init__()
        self.eps, self.num_parts = eps, num_parts

    def _all_reduce(self, per_device):
        """Add up one (C,) array per device on the first device; return the sum on every device."""
        total = nd.add_n(*[a.as_in_context(self.home) for a in per_device])
        return [total.as_in_context(ctx) for ctx in self.contexts]

    def forward(self, *args):
        K = self.num_parts
        gammas, betas, Xs = args[:K], args[K:2 * K], args[2 * K:]
        self.home, self.contexts = Xs[0].context, [X.context for X in Xs]
        self.channels = [ChannelView(X) for X in Xs]
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
            validate_batch_norm_inputs(X, self.gamma.data(ctx), self.beta.data(ctx),
                                     self.moving_mean.data(ctx), self.moving_var.data(ctx))
        function = CrossDeviceBatchNormFunction(self.eps, len(Xs))
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
                moving_mean[:] = moving_average(moving_mean, mean, self.momentum)
                moving_var[:] = moving_average(moving_var, var, self.momentum)
        return Ys
