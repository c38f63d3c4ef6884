"""The book's own scratch batch normalization, verbatim (comments translated), defects included.

This is the code of chapter 批量归一化 as 动手学深度学习 (MXNet edition) prints it, kept
once so that ``bn_mistakes``, the tests and the benchmark use the same text and notebook 2 can
show it as a checked cell. ``d2l_utils.layers`` holds the version the notebooks teach; the
differences are the two defects of ``BookBatchNorm``, which notebook 2 demonstrates:

1. the moving statistics are plain NDArray attributes, not Parameters: ``save_parameters`` does
   not save them (a reloaded net predicts with zeros) and ``initialize(ctx=...)`` does not place
   them (the layer copies them to X's device on first use);
2. ``moving_var`` starts at zeros, so predicting before any training divides by sqrt(eps) ~ 0.003.

``book_batch_norm`` itself is correct (it passes every property of ``check_batch_norm``); for a
2-D input its statistics have shape (D,) and broadcast against the (1, D) moving statistics.
"""
from mxnet import autograd, init, nd
from mxnet.gluon import nn

__all__ = ['BookBatchNorm', 'book_batch_norm']


def book_batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    # Use autograd to tell whether we are in training mode or prediction mode
    if not autograd.is_training():
        # In prediction mode, use the moving averages passed in
        X_hat = (X - moving_mean) / nd.sqrt(moving_var + eps)
    else:
        assert len(X.shape) in (2, 4)
        if len(X.shape) == 2:
            # Fully connected layer: mean and variance over the feature dimension
            mean = X.mean(axis=0)
            var = ((X - mean) ** 2).mean(axis=0)
        else:
            # 2-D convolutional layer: mean and variance per channel (axis=1). Keep X's
            # shape so that broadcasting works later
            mean = X.mean(axis=(0, 2, 3), keepdims=True)
            var = ((X - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        # In training mode, standardize with the current mean and variance
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # Update the moving averages of the mean and variance
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta  # scale and shift
    return Y, moving_mean, moving_var


class BookBatchNorm(nn.Block):
    """Mistake 6: the book's layer, with the moving statistics as plain NDArray attributes.

    It trains and predicts correctly in one session, but ``save_parameters`` saves only
    Parameters (gamma, beta): a reloaded model predicts with moving_mean = 0 and moving_var = 0,
    i.e. divides by sqrt(eps) ~ 0.003, and its accuracy collapses. The zeros also make an
    untrained layer's predictions about 316x too large.
    """

    def __init__(self, num_features, num_dims, **kwargs):
        super(BookBatchNorm, self).__init__(**kwargs)
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        # The scale and shift parameters take part in gradients and updates: start at 1 and 0
        self.gamma = self.params.get('gamma', shape=shape, init=init.One())
        self.beta = self.params.get('beta', shape=shape, init=init.Zero())
        # Variables that take no part in gradients and updates: all start at 0, in main memory
        self.moving_mean = nd.zeros(shape)
        self.moving_var = nd.zeros(shape)

    def forward(self, X):
        # If X is not in main memory, copy moving_mean and moving_var to X's device
        if self.moving_mean.context != X.context:
            self.moving_mean = self.moving_mean.copyto(X.context)
            self.moving_var = self.moving_var.copyto(X.context)
        # Keep the updated moving_mean and moving_var
        Y, self.moving_mean, self.moving_var = book_batch_norm(
            X, self.gamma.data(), self.beta.data(), self.moving_mean,
            self.moving_var, eps=1e-5, momentum=0.9)
        return Y
