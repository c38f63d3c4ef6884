"""Seven real batch-norm mistakes, written out for a learner to find and a checker to name.

Each is a small change to code the learner has: the functions and the layers built on them are
copies of ``d2l_utils.layers.batch_norm`` with one line changed (so a diff against the reference
shows the bug and nothing else), called by ``d2l_utils.layers.BatchNormCalling``; mistake 6 is the
book's own layer ``d2l_utils.book.BookBatchNorm`` (moving statistics as plain NDArrays starting at
zero), and mistakes 4 and 5 are changes to it.
Every docstring says the symptom a learner sees. ``MISTAKES`` lists them by number for the notebook
``8_find_the_bug.ipynb`` and for ``tests/test_checks.py``, which asserts which properties of
``d2l_utils.checks`` each one fails.

All functions have the book's signature
``(X, gamma, beta, moving_mean, moving_var, eps, momentum) -> (Y, moving_mean, moving_var)``
with X (N, D) or (N, C, H, W) and the other arrays (1, D) or (1, C, 1, 1); all layers are built
as ``cls(num_features, num_dims)``.
"""
from collections import namedtuple

import mxnet as mx
from mxnet import autograd, nd

from ..book import BookBatchNorm, book_batch_norm
from ..layers import (BatchNorm, BatchNormCalling, batch_norm, param_shape,
                      validate_batch_norm_inputs)

__all__ = ['MISTAKES', 'Mistake', 'FixedDeviceBatchNorm', 'MeanFromItselfBatchNorm',
           'NegativeVarianceBatchNorm', 'RecordingModeBatchNorm', 'TrainingFlagBatchNorm',
           'TypoBatchNorm', 'VarPlusBatchNorm', 'batch_norm_mean_from_itself',
           'batch_norm_mode_from_recording', 'batch_norm_negative_variance', 'batch_norm_var_plus']


# --- Mistakes in the function (1, 2, 3, 7): copies of d2l_utils.layers.batch_norm, one line changed

def batch_norm_negative_variance(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """Mistake 1: the variance written as ``(X - mean ** 2).mean(...)``.

    The book's 2-D line ``((X - mean) ** 2).mean(axis=0)`` loses a pair of parentheses (or the
    4-D one, with ``axis=(0, 2, 3), keepdims=True``). That computes E[X] - mean**2, which is
    negative whenever the mean is outside [0, 1]: ``nd.sqrt`` of it is NaN, so the output and the
    loss become NaN on the first batch; for means inside [0, 1] it is silently the wrong scale.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var, eps, momentum)
    # autograd tells us the mode: record() means training, otherwise we are predicting
    if not autograd.is_training():
        # Prediction: use the moving averages, so an example's output does not depend on its batch
        X_hat = (X - moving_mean) / nd.sqrt(moving_var + eps)
    else:
        # Fully connected (N, D): statistics per feature, over the batch (axis 0).
        # Convolutional (N, C, H, W): per channel, over the batch and all positions (axes 0, 2, 3).
        # keepdims=True gives shape (1, D) or (1, C, 1, 1), which broadcasts against X.
        axes = 0 if X.ndim == 2 else (0, 2, 3)
        mean = X.mean(axis=axes, keepdims=True)
        # Biased variance (divide by m, not m - 1), as the paper and nn.BatchNorm do in training
        var = (X - mean ** 2).mean(axis=axes, keepdims=True)   # BUG: nd.square(X - mean)
        # Standardize with the batch's own statistics
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # Exponential moving averages, the estimate of the whole data's statistics used to predict
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta  # scale and shift: the layer can learn back any mean and variance
    return Y, moving_mean, moving_var


def batch_norm_mean_from_itself(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """Mistake 2: the moving mean is averaged with itself, so it never leaves its initial zeros.

    ``momentum * moving_mean + (1 - momentum) * moving_mean`` equals ``moving_mean``. Training
    looks normal (training mode uses the batch mean); prediction subtracts 0 instead of each
    feature's mean, so test accuracy is far below training accuracy.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var, eps, momentum)
    # autograd tells us the mode: record() means training, otherwise we are predicting
    if not autograd.is_training():
        # Prediction: use the moving averages, so an example's output does not depend on its batch
        X_hat = (X - moving_mean) / nd.sqrt(moving_var + eps)
    else:
        # Fully connected (N, D): statistics per feature, over the batch (axis 0).
        # Convolutional (N, C, H, W): per channel, over the batch and all positions (axes 0, 2, 3).
        # keepdims=True gives shape (1, D) or (1, C, 1, 1), which broadcasts against X.
        axes = 0 if X.ndim == 2 else (0, 2, 3)
        mean = X.mean(axis=axes, keepdims=True)
        # Biased variance (divide by m, not m - 1), as the paper and nn.BatchNorm do in training
        var = nd.square(X - mean).mean(axis=axes, keepdims=True)
        # Standardize with the batch's own statistics
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # Exponential moving averages, the estimate of the whole data's statistics used to predict
        moving_mean = momentum * moving_mean + (1.0 - momentum) * moving_mean   # BUG: * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta  # scale and shift: the layer can learn back any mean and variance
    return Y, moving_mean, moving_var


def batch_norm_var_plus(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """Mistake 3: ``+`` typed for ``*`` in the moving variance's update.

    ``momentum * moving_var + (1 - momentum) + moving_var`` adds 1 - momentum plus most of itself
    on every step instead of averaging: the moving variance grows without bound (about 1.9x per
    step), so prediction divides by an ever larger number and its outputs shrink toward beta;
    test accuracy falls toward chance while training accuracy looks fine.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var, eps, momentum)
    # autograd tells us the mode: record() means training, otherwise we are predicting
    if not autograd.is_training():
        # Prediction: use the moving averages, so an example's output does not depend on its batch
        X_hat = (X - moving_mean) / nd.sqrt(moving_var + eps)
    else:
        # Fully connected (N, D): statistics per feature, over the batch (axis 0).
        # Convolutional (N, C, H, W): per channel, over the batch and all positions (axes 0, 2, 3).
        # keepdims=True gives shape (1, D) or (1, C, 1, 1), which broadcasts against X.
        axes = 0 if X.ndim == 2 else (0, 2, 3)
        mean = X.mean(axis=axes, keepdims=True)
        # Biased variance (divide by m, not m - 1), as the paper and nn.BatchNorm do in training
        var = nd.square(X - mean).mean(axis=axes, keepdims=True)
        # Standardize with the batch's own statistics
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # Exponential moving averages, the estimate of the whole data's statistics used to predict
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) + moving_var   # BUG: * var
    Y = gamma * X_hat + beta  # scale and shift: the layer can learn back any mean and variance
    return Y, moving_mean, moving_var


def batch_norm_mode_from_recording(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """Mistake 7: the mode taken from ``autograd.is_recording()`` instead of ``is_training()``.

    In the usual loop the two agree (``autograd.record()`` records and trains), so training and
    evaluation look right. They differ in the two other contexts MXNet has: inside
    ``autograd.record(train_mode=False)`` (gradients of a prediction, e.g. a saliency map) this
    normalizes with the batch's statistics; inside ``autograd.train_mode()`` without recording
    it predicts with the moving statistics and does not update them.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var, eps, momentum)
    # autograd tells us the mode: record() means training, otherwise we are predicting
    if not autograd.is_recording():   # BUG: autograd.is_training()
        # Prediction: use the moving averages, so an example's output does not depend on its batch
        X_hat = (X - moving_mean) / nd.sqrt(moving_var + eps)
    else:
        # Fully connected (N, D): statistics per feature, over the batch (axis 0).
        # Convolutional (N, C, H, W): per channel, over the batch and all positions (axes 0, 2, 3).
        # keepdims=True gives shape (1, D) or (1, C, 1, 1), which broadcasts against X.
        axes = 0 if X.ndim == 2 else (0, 2, 3)
        mean = X.mean(axis=axes, keepdims=True)
        # Biased variance (divide by m, not m - 1), as the paper and nn.BatchNorm do in training
        var = nd.square(X - mean).mean(axis=axes, keepdims=True)
        # Standardize with the batch's own statistics
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # Exponential moving averages, the estimate of the whole data's statistics used to predict
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta  # scale and shift: the layer can learn back any mean and variance
    return Y, moving_mean, moving_var


# --- The same function mistakes inside the reference layer

class NegativeVarianceBatchNorm(BatchNormCalling):
    """Mistake 1 in a layer: d2l_utils.BatchNorm calling ``batch_norm_negative_variance``."""
    batch_norm_fn = staticmethod(batch_norm_negative_variance)


class MeanFromItselfBatchNorm(BatchNormCalling):
    """Mistake 2 in a layer: d2l_utils.BatchNorm calling ``batch_norm_mean_from_itself``."""
    batch_norm_fn = staticmethod(batch_norm_mean_from_itself)


class VarPlusBatchNorm(BatchNormCalling):
    """Mistake 3 in a layer: d2l_utils.BatchNorm calling ``batch_norm_var_plus``."""
    batch_norm_fn = staticmethod(batch_norm_var_plus)


class RecordingModeBatchNorm(BatchNormCalling):
    """Mistake 7 in a layer: d2l_utils.BatchNorm calling ``batch_norm_mode_from_recording``."""
    batch_norm_fn = staticmethod(batch_norm_mode_from_recording)


# --- Mistakes 4 and 5, made in the book's layer (d2l_utils.book.BookBatchNorm, mistake 6)

class TypoBatchNorm(BookBatchNorm):
    """Mistake 4: the book's layer storing the new moving variance under a misspelt name.

    ``self.moving_varv = ...`` creates a new attribute; ``self.moving_var`` keeps its initial
    zeros forever. Training looks normal; prediction divides by sqrt(0 + eps) ~ 0.003, so the
    layer's outputs are hundreds of times too large and a sigmoid after it saturates at 0 or 1.
    Test accuracy need not drop much (saturated sigmoids keep each value's sign; in LeNet on a
    Fashion-MNIST subset it matched the correct layer's), which is why it goes unnoticed.
    """

    def forward(self, X):
        if self.moving_mean.context != X.context:
            self.moving_mean = self.moving_mean.copyto(X.context)
            self.moving_var = self.moving_var.copyto(X.context)
        Y, self.moving_mean, self.moving_varv = book_batch_norm(   # BUG: self.moving_var
            X, self.gamma.data(), self.beta.data(), self.moving_mean,
            self.moving_var, eps=1e-5, momentum=0.9)
        return Y


class FixedDeviceBatchNorm(BookBatchNorm):
    """Mistake 5: the book's layer with its moving statistics created on a fixed device.

    ``nd.zeros(shape, ctx=mx.gpu())`` in the constructor (and the book's copy to X's device
    dropped, since "everything is on the GPU anyway"): on a machine without a GPU, building the
    layer raises ``MXNetError: Operator _zeros is not implemented for GPU``; on a machine with one,
    a net initialized on another device (``mx.cpu()``, ``mx.gpu(1)``) fails or keeps its moving
    statistics on the wrong device. ``ctx`` is an argument only so tests can fix another device.
    """

    def __init__(self, num_features, num_dims, ctx=mx.gpu(), **kwargs):
        super().__init__(num_features, num_dims, **kwargs)
        shape = param_shape(num_features, num_dims)
        self.moving_mean = nd.zeros(shape, ctx=ctx)   # BUG: a fixed device
        self.moving_var = nd.zeros(shape, ctx=ctx)

    def forward(self, X):
        Y, self.moving_mean, self.moving_var = book_batch_norm(
            X, self.gamma.data(), self.beta.data(), self.moving_mean,
            self.moving_var, eps=1e-5, momentum=0.9)
        return Y


class TrainingFlagBatchNorm(BatchNorm):
    """Mistake 7, second variant: the mode taken from a ``self.training`` flag (a PyTorch habit).

    The flag is set to True in the constructor and nothing in Gluon ever turns it off (Gluon has
    no ``net.eval()``; the mode is ``autograd.is_training()``). So prediction normalizes each
    test batch with its own statistics: accuracy depends on the batch size and on which examples
    share a batch, and a single example is normalized against itself.
    """

    def __init__(self, num_features, num_dims, **kwargs):
        super().__init__(num_features, num_dims, **kwargs)
        self.training = True   # BUG: Gluon never switches this off

    def forward(self, X):
        ctx = X.context
        with autograd.train_mode() if self.training else autograd.predict_mode():
            Y, moving_mean, moving_var = batch_norm(
                X, self.gamma.data(ctx), self.beta.data(ctx), self.moving_mean.data(ctx),
                self.moving_var.data(ctx), eps=self.eps, momentum=self.momentum)
        if self.training:
            with autograd.pause():
                self.moving_mean.data(ctx)[:] = moving_mean
                self.moving_var.data(ctx)[:] = moving_var
        return Y


Mistake = namedtuple('Mistake', 'number title function layer')
Mistake.__doc__ = """One mistake: its number, a short title, the buggy function (None when the
bug is in the layer) and a layer class ``layer(num_features, num_dims)`` that contains it."""

MISTAKES = {
    1: Mistake(1, 'variance written as (X - mean ** 2).mean()', batch_norm_negative_variance,
               NegativeVarianceBatchNorm),
    2: Mistake(2, 'moving mean updated from itself', batch_norm_mean_from_itself,
               MeanFromItselfBatchNorm),
    3: Mistake(3, "'+' for '*' in the moving variance update", batch_norm_var_plus,
               VarPlusBatchNorm),
    4: Mistake(4, 'typo in the attribute the moving variance is stored in', None, TypoBatchNorm),
    5: Mistake(5, 'moving statistics created on a fixed device (mx.gpu())', None,
               FixedDeviceBatchNorm),
    6: Mistake(6, "moving statistics as plain NDArrays (the book's layer)", None, BookBatchNorm),
    7: Mistake(7, 'mode from autograd.is_recording() instead of autograd.is_training()',
               batch_norm_mode_from_recording, RecordingModeBatchNorm),
}
