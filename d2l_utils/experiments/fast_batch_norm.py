"""Batch normalization with a hand-written backward pass: the scratch layer, fast on a CPU.

``FastBatchNorm`` is ``BatchNorm`` (same constructor, same Parameters, same saved files, same
training and prediction semantics) computed the way the chapter's exercise derives the
backward pass. The scratch layer is slow on a CPU not because of its arithmetic but because of
which MXNet operators it uses. Measured on a (256, 6, 24, 24) input (2-core CPU):

- a mean over axes (0, 2, 3) takes ~10 ms; the same means as two matrix-vector products (with
  vectors of 1/S and 1/N) take ~0.5 ms. So every per-channel mean here is such a product;
- broadcasting a (1, C, 1, 1) operand over (N, C, H, W) takes ~1.9 ms; broadcasting a (1, C*S)
  row over the input viewed as (N, C*S) takes ~0.9 ms. So every per-channel operand is
  expanded to such a row (S = H*W positions per channel; channel c owns S consecutive columns);
- letting autograd differentiate the broadcasts in ``gamma * X_hat + beta`` costs tens of ms.
  So nothing is differentiated by autograd: ``BatchNormFunction.backward`` applies the
  closed-form gradient.
"""
import numpy as np
from mxnet import autograd, nd

from ..layers import BatchNormCalling, batch_norm, validate_batch_norm_inputs, moving_average

__all__ = ['BatchNormFunction', 'ChannelView', 'FastBatchNorm', 'fast_batch_norm']


class ChannelView:
    """Per-channel means and broadcasts for an input X viewed as (N, C*S).

    X: (N, C, H, W), with S = H*W positions per channel, or (N, D), where the D features are
    the channels and S = 1. ``count`` = N*S, the number of values behind each channel's mean.
    """

    def __init__(self, X):
        self.N, self.C = X.shape[0], X.shape[1]
        self.S = X.size // (self.N * self.C)
        self.count = self.N * self.S
        self.ctx, self.dtype = X.context, X.dtype
        self.weights = None   # made by the first means(); prediction needs none

    def means(self, A):
        """(N, C*S) -> (C,): each channel's mean over the batch and its S positions."""
        if self.weights is None:
            self.weights = [nd.full((n,), 1.0 / n, ctx=self.ctx, dtype=self.dtype)
                            for n in (self.N, self.S)]
        over_N, over_S = self.weights
        if self.S > 1:
            # (N*C, S) @ (1/S, ..., 1/S): each example's mean of each channel, shape (N*C,)
            A = nd.dot(A.reshape((self.N * self.C, self.S)), over_S).reshape((self.N, self.C))
        return nd.dot(over_N, A)   # (1/N, ..., 1/N) @ (N, C): the mean over the batch

    def row(self, values):
        """(C,) or (1, C) or (1, C, 1, 1) -> (1, C*S): each channel's value repeated over its S
        columns, to broadcast over the N rows of the (N, C*S) view."""
        values = values.reshape((1, self.C))
        return values if self.S == 1 else nd.repeat(values, repeats=self.S, axis=1)


class BatchNormFunction(autograd.Function):
    """Training-mode batch normalization with the batch statistics, and its backward pass.

    Call as ``BatchNormFunction(eps)(gamma, beta, X)``, with a new instance for every call
    (MXNet runs each instance once). X: (N, D) or (N, C, H, W); gamma, beta: (1, D) or
    (1, C, 1, 1). Returns Y with X's shape; afterwards the attributes ``mean`` and ``var``
    (shape (C,)) hold the batch statistics, for the moving averages.

    The arguments come in the order (gamma, beta, X) because MXNet 1.9.1 stops writing
    gradients at the first argument whose gradient is not requested: X needs none when the
    layer is applied straight to the data, so it goes last. (Frozen gamma or beta cannot be
    handled this way; ``FastBatchNorm`` sends those to ``batch_norm``.)
    """

    def __init__(self, eps):
        super().__init__()
        self.eps = eps

    def forward(self, gamma, beta, X):
        ch = ChannelView(X)
        X2 = X.reshape((ch.N, -1))                        # (N, C*S), a view: no copy
        mean = ch.means(X2)
        X_centered = nd.broadcast_sub(X2, ch.row(mean))   # computed once: var, Y and backward
        var = ch.means(nd.square(X_centered))             # biased variance, as in training
        inv_std = nd.rsqrt(var + self.eps)                # 1 / sqrt(var + eps)
        # Y = gamma * X_hat + beta with X_hat = X_centered * inv_std, folded into one scale so
        # that X_hat itself is never stored: one pass over the data fewer.
        scale = gamma.reshape((-1,)) * inv_std
        Y = nd.broadcast_add(nd.broadcast_mul(X_centered, ch.row(scale)), ch.row(beta))
        # Save only arrays made here: saving an argument that is a Parameter's data (gamma)
        # makes MXNet 1.9.1 hang in the next training step (apache/mxnet#15844).
        self.save_for_backward(X_centered, inv_std, scale)
        self.channels, self.param_shape = ch, gamma.shape
        self.mean, self.var = mean, var
        return Y.reshape(X.shape)

    def backward(self, dY):
        """dY: X's shape. Returns (dgamma, dbeta, dX), the shapes of (gamma, beta, X)."""
        X_centered, inv_std, scale = self.saved_tensors
        ch = self.channels
        dY2 = dY.reshape((ch.N, -1))
        # With m = ch.count values per channel and X_hat = X_centered * inv_std:
        #   dbeta = sum(dY) = m * mean(dY),   dgamma = sum(dY * X_hat) = m * mean(dY * X_hat),
        #   dX = gamma * inv_std / m * (m * dY - dbeta - X_hat * dgamma)
        #      = scale * (dY - mean(dY) - X_hat * mean(dY * X_hat))      (per channel)
        dY_mean = ch.means(dY2)
        dY_X_hat_mean = ch.means(dY2 * X_centered) * inv_std
        correction = nd.broadcast_add(
            nd.broadcast_mul(X_centered, ch.row(inv_std * dY_X_hat_mean)), ch.row(dY_mean))
        dX = nd.broadcast_mul(dY2 - correction, ch.row(scale))
        dgamma, dbeta = dY_X_hat_mean * ch.count, dY_mean * ch.count
        return (dgamma.reshape(self.param_shape), dbeta.reshape(self.param_shape),
                dX.reshape(dY.shape))


def fast_batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """``batch_norm``, same arguments and results, with a hand-written backward pass.

    X: (N, D) or (N, C, H, W); gamma, beta, moving_mean, moving_var: (1, D) or (1, C, 1, 1).
    Returns (Y, moving_mean, moving_var); Y has X's shape. In training mode (inside
    ``autograd.record()``) X is normalized with the batch mean and biased batch variance and
    the returned moving statistics are updated; in prediction mode the moving statistics are
    used and returned unchanged.

    When differentiating, gamma and beta must both get gradients written (``attach_grad()``,
    or learnable Parameters): MXNet 1.9.1's ``autograd.Function`` writes no gradient after an
    argument that needs none and never adds to one (grad_req='add'). ``FastBatchNorm`` checks
    this and uses ``batch_norm`` otherwise. float16 on a CPU also goes to ``batch_norm``: MXNet
    has no float16 CPU kernel for ``nd.dot``.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var, eps, momentum)
    if X.dtype == np.float16 and X.context.device_type == 'cpu':
        return batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum)
    if not autograd.is_training():
        # Prediction: one affine map per channel, Y = X * scale + shift
        ch = ChannelView(X)
        scale = gamma / nd.sqrt(moving_var + eps)
        shift = beta - moving_mean * scale
        Y = nd.broadcast_add(nd.broadcast_mul(X.reshape((ch.N, -1)), ch.row(scale)),
                             ch.row(shift))
        return Y.reshape(X.shape), moving_mean, moving_var
    function = BatchNormFunction(eps)
    Y = function(gamma, beta, X)
    moving_mean = moving_average(moving_mean, function.mean.reshape(gamma.shape), momentum)
    moving_var = moving_average(moving_var, function.var.reshape(gamma.shape), momentum)
    return Y, moving_mean, moving_var


class FastBatchNorm(BatchNormCalling):
    """``BatchNorm`` computed by ``fast_batch_norm``.

    num_features, num_dims: as for ``BatchNorm`` (num_features channels or units of the layer
    before; num_dims 4 after Conv2D, 2 after Dense). The Parameters are BatchNorm's own (gamma,
    beta, moving_mean, moving_var; same shapes, inits and grad_req), so a parameter file saved
    from a net with either layer loads into the same net with the other. The forward pass is
    ``BatchNorm``'s (through ``BatchNormCalling``), with the function chosen per call.
    """

    @property
    def batch_norm_fn(self):
        """``fast_batch_norm``, or ``batch_norm`` when gamma or beta is not learned.

        fast_batch_norm needs gradients written for both gamma and beta (see its docstring);
        frozen (grad_req='null') or accumulating ('add') scale and shift take the scratch path.
        """
        fast = self.gamma.grad_req == 'write' and self.beta.grad_req == 'write'
        return fast_batch_norm if fast else batch_norm
