"""Real batch-norm mistakes in PyTorch, planted for ``check_torch_batch_norm(_module)`` to name.

The functions are copies of ``d2l_utils.pytorch.batch_norm`` with one line changed (a diff shows
the bug and nothing else), run in a layer by ``CallingBatchNorm``; the layers are changes to
``d2l_utils.pytorch.BatchNorm``. Mistake 1 is the book's own PyTorch code (d2l-zh v2, section
7.5), written out: its function is correct under the book's mode convention, its layer reads the
mode from ``torch.is_grad_enabled()`` and keeps the running statistics as plain tensors.
``TORCH_MISTAKES`` lists them by number for notebook A and ``tests/test_torch_checker.py``.
Needs PyTorch.
"""
from collections import namedtuple

import torch
from torch import nn

from ..pytorch import BatchNorm, batch_norm, validate_batch_norm_inputs, moving_average

__all__ = ['TORCH_MISTAKES', 'BookTorchBatchNorm', 'CallingBatchNorm', 'GradModeBatchNorm',
           'NonPersistentBatchNorm', 'PlainAttributeBatchNorm', 'TorchMistake',
           'UpdateInEvalBatchNorm', 'ZeroVarBatchNorm', 'batch_norm_detached_mean',
           'batch_norm_keeps_history', 'batch_norm_per_position', 'batch_norm_swapped_momentum',
           'batch_norm_unbiased_var', 'batch_norm_updates_in_prediction', 'book_torch_batch_norm']


# --- Mistake 1: the book's PyTorch code (d2l-zh v2, section 7.5)

def book_torch_batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    """The book's PyTorch batch_norm: the mode is the grad mode (no_grad() means prediction).

    X (N, D) or (N, C, H, W); the other tensors (1, D) or (1, C, 1, 1). Returns (Y, moving_mean,
    moving_var), the new statistics through ``.data`` (no autograd history).
    """
    if not torch.is_grad_enabled():
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        if X.dim() == 2:
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
        else:
            mean = X.mean(dim=(0, 2, 3), keepdim=True)
            var = ((X - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        X_hat = (X - mean) / torch.sqrt(var + eps)
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta
    return Y, moving_mean.data, moving_var.data


class BookTorchBatchNorm(nn.Module):
    """The book's PyTorch layer: running statistics as plain tensors, copied to X's device.

    Its two defects: the mode is ``torch.is_grad_enabled()`` (so ``eval()`` without ``no_grad()``
    normalizes with the batch and updates the statistics), and ``state_dict()`` and ``.to()`` do
    not know the statistics (a reloaded net predicts with 0 and 1).
    """

    def __init__(self, num_features, num_dims):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)

    def forward(self, X):
        if self.moving_mean.device != X.device:
            self.moving_mean = self.moving_mean.to(X.device)
            self.moving_var = self.moving_var.to(X.device)
        Y, self.moving_mean, self.moving_var = book_torch_batch_norm(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var, eps=1e-5, momentum=0.9)
        return Y


# --- Mistakes in the function: copies of d2l_utils.pytorch.batch_norm, one line changed

def batch_norm_unbiased_var(X, gamma, beta, moving_mean, moving_var, eps, momentum, *, training):
    """Mistake 2: ``X.var(dim)``, torch's default unbiased variance (divided by m - 1).

    Normalizing with it makes each feature's std sqrt((m - 1) / m) instead of 1 (0.94 for a batch
    of 8); the running variance is m / (m - 1) too large.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var)
    if not training:
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        mean = X.mean(dim=dims, keepdim=True)
        X_centered = X - mean
        var = X.var(dim=dims, keepdim=True)   # BUG: unbiased; (X_centered * X_centered).mean(...)
        X_hat = X_centered / torch.sqrt(var + eps)
        with torch.no_grad():
            moving_mean = moving_average(moving_mean, mean, momentum)
            moving_var = moving_average(moving_var, var, momentum)
    Y = gamma * X_hat + beta
    return Y, moving_mean, moving_var


def batch_norm_swapped_momentum(X, gamma, beta, moving_mean, moving_var, eps, momentum, *,
                                training):
    """Mistake 3: nn.BatchNorm2d's momentum convention with the book's momentum 0.9.

    ``(1 - momentum) * old + momentum * batch`` is what PyTorch's own layer computes, with its
    momentum 0.1; given the book's 0.9 the running statistics follow the last batch almost alone.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var)
    if not training:
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        mean = X.mean(dim=dims, keepdim=True)
        X_centered = X - mean
        var = (X_centered * X_centered).mean(dim=dims, keepdim=True)
        X_hat = X_centered / torch.sqrt(var + eps)
        with torch.no_grad():
            moving_mean = (1 - momentum) * moving_mean + momentum * mean   # BUG: swapped
            moving_var = (1 - momentum) * moving_var + momentum * var      # BUG: swapped
    Y = gamma * X_hat + beta
    return Y, moving_mean, moving_var


def batch_norm_per_position(X, gamma, beta, moving_mean, moving_var, eps, momentum, *, training):
    """Mistake 4: statistics over dim 0 only, also for a conv layer's (N, C, H, W) input.

    Right for (N, D); for (N, C, H, W) every position gets its own mean and variance, which no
    longer fit the (1, C, 1, 1) running statistics (the update fails to broadcast).
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var)
    if not training:
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        dims = (0,)   # BUG: (0, 2, 3) for a 4-D input
        mean = X.mean(dim=dims, keepdim=True)
        X_centered = X - mean
        var = (X_centered * X_centered).mean(dim=dims, keepdim=True)
        X_hat = X_centered / torch.sqrt(var + eps)
        with torch.no_grad():
            moving_mean = moving_average(moving_mean, mean, momentum)
            moving_var = moving_average(moving_var, var, momentum)
    Y = gamma * X_hat + beta
    return Y, moving_mean, moving_var


def batch_norm_detached_mean(X, gamma, beta, moving_mean, moving_var, eps, momentum, *,
                             training):
    """Mistake 5: the batch mean detached ("statistics need no gradient").

    The output is right; dX is not: the gradient through the mean is lost, so dX no longer sums
    to zero over the batch.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var)
    if not training:
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        mean = X.mean(dim=dims, keepdim=True).detach()   # BUG: no .detach()
        X_centered = X - mean
        var = (X_centered * X_centered).mean(dim=dims, keepdim=True)
        X_hat = X_centered / torch.sqrt(var + eps)
        with torch.no_grad():
            moving_mean = moving_average(moving_mean, mean, momentum)
            moving_var = moving_average(moving_var, var, momentum)
    Y = gamma * X_hat + beta
    return Y, moving_mean, moving_var


def batch_norm_keeps_history(X, gamma, beta, moving_mean, moving_var, eps, momentum, *,
                             training):
    """Mistake 6: the running statistics updated with gradients on (no no_grad(), no .data).

    They become part of every step's graph: each step's statistics hold the previous ones, so
    memory grows with every step, and a backward pass through a prediction fails.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var)
    if not training:
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        mean = X.mean(dim=dims, keepdim=True)
        X_centered = X - mean
        var = (X_centered * X_centered).mean(dim=dims, keepdim=True)
        X_hat = X_centered / torch.sqrt(var + eps)
        moving_mean = moving_average(moving_mean, mean, momentum)   # BUG: under torch.no_grad()
        moving_var = moving_average(moving_var, var, momentum)
    Y = gamma * X_hat + beta
    return Y, moving_mean, moving_var


def batch_norm_updates_in_prediction(X, gamma, beta, moving_mean, moving_var, eps, momentum, *,
                                     training):
    """Mistake 7: the update moved after the mode branch, so prediction updates too.

    Every evaluation pulls the running statistics toward the test batch.
    """
    validate_batch_norm_inputs(X, gamma, beta, moving_mean, moving_var)
    dims = (0,) if X.dim() == 2 else (0, 2, 3)
    mean = X.mean(dim=dims, keepdim=True)
    var = ((X - mean) * (X - mean)).mean(dim=dims, keepdim=True)
    if not training:
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        X_hat = (X - mean) / torch.sqrt(var + eps)
    with torch.no_grad():   # BUG: inside the training branch
        moving_mean = moving_average(moving_mean, mean, momentum)
        moving_var = moving_average(moving_var, var, momentum)
    Y = gamma * X_hat + beta
    return Y, moving_mean, moving_var


class CallingBatchNorm(BatchNorm):
    """d2l_utils.pytorch.BatchNorm calling ``batch_norm_fn`` (a planted function) instead."""
    batch_norm_fn = None

    def forward(self, X):
        Y, moving_mean, moving_var = type(self).batch_norm_fn(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var,
            eps=self.eps, momentum=self.momentum, training=self.training)
        if self.training:
            self.moving_mean.copy_(moving_mean)
            self.moving_var.copy_(moving_var)
        return Y


def calling(fn, number):
    """The layer class calling ``fn``, named after the mistake."""
    return type('Mistake%dBatchNorm' % number, (CallingBatchNorm,),
                {'batch_norm_fn': staticmethod(fn), '__doc__': 'Mistake %d in a layer.' % number})


# --- Mistakes in the layer: changes to d2l_utils.pytorch.BatchNorm

class ZeroVarBatchNorm(BatchNorm):
    """Mistake 8: the running variance starts at 0 (the MXNet book's layer did).

    Before training, prediction divides by sqrt(0 + eps): outputs ~316 times too large.
    """

    def __init__(self, num_features, num_dims):
        super().__init__(num_features, num_dims)
        self.register_buffer('moving_var', torch.zeros_like(self.moving_var))   # BUG: ones


class GradModeBatchNorm(BatchNorm):
    """Mistake 9: buffers, but the mode from torch.is_grad_enabled() as in the book.

    ``eval()`` without ``no_grad()`` normalizes each batch with its own statistics and updates
    them; ``train()`` under ``no_grad()`` (recalibration, a training accuracy) predicts instead.
    """

    def forward(self, X):
        training = torch.is_grad_enabled()   # BUG: self.training
        Y, moving_mean, moving_var = check_and_call(self, X, training)
        if training:
            self.moving_mean.copy_(moving_mean)
            self.moving_var.copy_(moving_var)
        return Y


class PlainAttributeBatchNorm(BatchNorm):
    """Mistake 10: the mode from self.training, but the statistics as plain tensors.

    ``state_dict()`` leaves them out (a reloaded net predicts with 0 and 1, and
    ``load_state_dict`` raises nothing); ``.to()`` neither converts nor moves them.
    """

    def __init__(self, num_features, num_dims):
        super().__init__(num_features, num_dims)
        moving_mean, moving_var = self.moving_mean, self.moving_var
        del self.moving_mean, self.moving_var
        self.moving_mean, self.moving_var = moving_mean, moving_var   # BUG: not buffers

    def forward(self, X):
        Y, self.moving_mean, self.moving_var = check_and_call(self, X, self.training)
        return Y


class NonPersistentBatchNorm(BatchNorm):
    """Mistake 11: buffers registered with ``persistent=False``.

    ``.to()`` moves them, but ``state_dict()`` leaves them out: a reloaded net predicts with 0
    and 1.
    """

    def __init__(self, num_features, num_dims):
        super().__init__(num_features, num_dims)
        for name in ('moving_mean', 'moving_var'):
            value = getattr(self, name)
            del self._buffers[name]
            self.register_buffer(name, value, persistent=False)   # BUG: persistent=True


class UpdateInEvalBatchNorm(BatchNorm):
    """Mistake 7 in a layer: it stores what ``batch_norm_updates_in_prediction`` returns on
    every call ("in prediction the function returns them unchanged anyway").

    Each evaluation (with or without no_grad()) pulls the statistics toward the test batch, so
    predictions depend on what was evaluated before.
    """

    def forward(self, X):
        Y, moving_mean, moving_var = batch_norm_updates_in_prediction(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var,
            eps=self.eps, momentum=self.momentum, training=self.training)
        self.moving_mean.copy_(moving_mean)   # the copy trusts the function's mode
        self.moving_var.copy_(moving_var)
        return Y


def check_and_call(layer, X, training):
    """d2l_utils.pytorch.batch_norm with the layer's tensors and the given mode."""
    return batch_norm(X, layer.gamma, layer.beta, layer.moving_mean, layer.moving_var,
                      eps=layer.eps, momentum=layer.momentum, training=training)


TorchMistake = namedtuple('TorchMistake', 'number title function layer')
TorchMistake.__doc__ = """One planted PyTorch mistake: its number, a short title, the function
(None when the bug is in the layer) and a layer class ``layer(num_features, num_dims)``."""

TORCH_MISTAKES = {
    1: TorchMistake(1, "the book's PyTorch layer: mode from grad mode, plain-tensor statistics",
                    book_torch_batch_norm, BookTorchBatchNorm),
    2: TorchMistake(2, 'the unbiased batch variance (X.var(dim))', batch_norm_unbiased_var,
                    calling(batch_norm_unbiased_var, 2)),
    3: TorchMistake(3, "nn.BatchNorm2d's momentum convention with momentum 0.9",
                    batch_norm_swapped_momentum, calling(batch_norm_swapped_momentum, 3)),
    4: TorchMistake(4, 'statistics over dim 0 only on conv input', batch_norm_per_position,
                    calling(batch_norm_per_position, 4)),
    5: TorchMistake(5, 'the batch mean detached', batch_norm_detached_mean,
                    calling(batch_norm_detached_mean, 5)),
    6: TorchMistake(6, 'running statistics updated with gradients on',
                    batch_norm_keeps_history, calling(batch_norm_keeps_history, 6)),
    7: TorchMistake(7, 'the update after the mode branch: eval() updates too',
                    batch_norm_updates_in_prediction, UpdateInEvalBatchNorm),
    8: TorchMistake(8, 'running variance starting at 0', None, ZeroVarBatchNorm),
    9: TorchMistake(9, 'mode from torch.is_grad_enabled() (buffers kept)', None,
                    GradModeBatchNorm),
    10: TorchMistake(10, 'running statistics as plain tensors (mode kept)', None,
                     PlainAttributeBatchNorm),
    11: TorchMistake(11, 'buffers registered with persistent=False', None,
                     NonPersistentBatchNorm),
    12: TorchMistake(12, "PyTorch's own nn.BatchNorm2d passed as the layer", None,
                     nn.BatchNorm2d),
}
