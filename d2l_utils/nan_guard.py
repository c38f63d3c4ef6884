"""The NaN guard of ``train``: stop at the first non-finite loss or parameter, and say where.

A NaN loss poisons every later step, and the accuracy printed at the end of the epoch is then
meaningless (argmax of NaN is class 0). ``NanGuard`` reads each batch's loss before the update
(so a NaN loss is never applied) together with a flag computed after the previous update (so a
parameter that turned NaN while the loss stayed finite, e.g. behind max pooling, is found too),
in one small device read per batch:

    guard = NanGuard(net, ctx, num_batches)
    for batch, (X, y) in enumerate(train_iter, 1):
        ...forward and backward...
        guard.check(losses, Xs, epoch, batch)   # raises NonFiniteLossError
        trainer.step(batch_size)
        guard.after_step(epoch, batch, X)       # queues the parameters' flag, reads nothing
    loss_sum, correct = guard.end_epoch(loss_sum, correct)   # one read; raises if a flag is bad

``first_nonfinite_layer`` and ``first_nonfinite_parameter`` name the culprit in the message.
"""
import numpy as np
from mxnet import autograd, nd
from mxnet.gluon import nn

from .recalibration import restoring_state

__all__ = ['NanGuard', 'NonFiniteLossError', 'NonFiniteParameterError', 'first_nonfinite_layer',
           'first_nonfinite_parameter', 'parameter_flag']


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message says where and what to check."""


class NonFiniteParameterError(NonFiniteLossError):
    """A parameter of the net holds NaN or infinity (after a training step, or when evaluating).

    A subclass of ``NonFiniteLossError``, so ``except NonFiniteLossError`` catches every stop of
    the NaN guard.
    """


class NanGuard:
    """Watches one training run for non-finite losses and parameters (see the module docstring).

    net: the net being trained; ctx: the list of devices it trains on; num_batches: batches per
    epoch, for the messages (0 if unknown). enabled=False turns the checks off: then
    ``check`` and ``after_step`` do nothing and ``end_epoch`` only reads its arrays.
    """

    def __init__(self, net, ctx, num_batches=0, enabled=True):
        self.net, self.ctx, self.num_batches, self.enabled = net, ctx, num_batches, enabled
        self.last_step = None   # (epoch, batch, X, flag) of the last update, its flag unread
        self.arrays = None      # the parameters' arrays for the flag, after the first update

    def check(self, losses, Xs, epoch, batch):
        """Read this batch's losses (one (1,) NDArray per device part, inputs ``Xs``) and the
        previous update's parameter flag in one read; raise NonFiniteParameterError or
        NonFiniteLossError if either is not finite."""
        if not self.enabled:
            return
        ctx = self.ctx
        flag = self.last_step[3] if self.last_step else nd.zeros((1,), ctx=ctx[0])
        read = nd.concat(*[part_loss.reshape((1,)).as_in_context(ctx[0]) for part_loss in losses],
                         flag, dim=0).asnumpy()
        values, flag_value = read[:-1].tolist(), read[-1]
        if not np.isfinite(flag_value):
            self._raise_if_nonfinite_parameter()
        value = sum(values) if len(values) > 1 else values[0]
        if not np.isfinite(value):
            k = next(k for k, v in enumerate(values) if not np.isfinite(v))
            device = (f' (first on {ctx[k]}, part {k + 1} of {len(ctx)} of the batch)'
                      if len(ctx) > 1 else '')
            raise self._loss_error(Xs[k], value, epoch, batch, device)

    def after_step(self, epoch, batch, X):
        """Queue the flag of the parameters just updated; it is read with the next ``check``."""
        if not self.enabled:
            return
        if self.arrays is None:   # after the first update: deferred initialization has happened
            self.arrays = parameter_arrays(self.net, self.ctx)
        self.last_step = (epoch, batch, X, parameter_flag(self.net, self.ctx, self.arrays))

    def end_epoch(self, *arrays):
        """Read ``arrays`` ((1,) NDArrays on ctx[0], e.g. the epoch's loss sum and correct count)
        with the last update's flag, in one read; return their values as floats. Raises
        NonFiniteParameterError if the last update made a parameter non-finite."""
        flag = self.last_step[3] if self.last_step else nd.zeros((1,), ctx=self.ctx[0])
        *values, flag_value = nd.concat(*arrays, flag, dim=0).asnumpy().tolist()
        if self.enabled and not np.isfinite(flag_value):
            self._raise_if_nonfinite_parameter()
        self.last_step = None   # its flag is read
        return values

    def _raise_if_nonfinite_parameter(self):
        """Raise NonFiniteParameterError for the last update if a parameter is non-finite (the
        flag can overflow for huge finite weights: then this returns)."""
        parameter = first_nonfinite_parameter(self.net)
        if parameter is None:
            return
        epoch, batch, X, _ = self.last_step
        inputs = ('the input batch had non-finite values' if not np.isfinite(X.asnumpy()).all()
                  else 'the input batch was finite')
        raise NonFiniteParameterError(
            f'Training stopped: the parameter {parameter} is NaN or infinite after the update of '
            f'epoch {epoch}, batch {batch} of {self.num_batches}, although the loss was finite '
            f'({inputs}). Layers such as max pooling can pass a NaN pixel to the gradient without '
            'showing it in the loss. Common causes: non-finite values in the data (check it with '
            'np.isfinite), a learning rate too large, or a hand-written layer dividing by zero in '
            'its backward pass.')

    def _loss_error(self, X, loss_value, epoch, batch, device):
        if not np.isfinite(X.asnumpy()).all():
            where = 'the input batch itself has non-finite values'
        else:
            layer = first_nonfinite_layer(self.net, X)
            where = (f'the first layer whose output is not finite is {layer}' if layer else
                     'no layer output was non-finite on a re-run (a hybridized network hides its '
                     'layers: call net.hybridize(active=False) to locate it)')
        return NonFiniteLossError(
            f'Training stopped: the loss is {loss_value} at epoch {epoch}, batch {batch} of '
            f'{self.num_batches}{device}; {where}. The trainer did not apply this batch (a '
            'layer\'s moving statistics may already hold it). Common causes: a learning rate too '
            'large for this network, a hand-written layer that takes the square root of a '
            'negative number (check a batch norm\'s variance), or a log/division of zero.')


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
                return f'{name} on {data.context}'
    return None


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
            where = f'{layer.name} ({type(layer).__name__})'
            if block is not layer:
                where += f', in its part {block.name} ({type(block).__name__})'
            return where
    return None


def parameter_arrays(net, ctx):
    """[(the data arrays of net's initialized parameters on c, whether they share one dtype)
    for c in ctx]. The arrays are updated in place by the Trainer, so ``NanGuard`` collects them
    once, after its first update, instead of walking the net (``collect_params``) per batch."""
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


def parameter_flag(net, ctx, arrays=None):
    """A (1,) NDArray on ctx[0], non-finite iff (almost always) a parameter is non-finite.

    One fused sum of squares over every parameter per device (``nd.multi_sum_sq``); nothing is
    read here, so the guard adds no device sync of its own: the flag is read with the next loss.
    A sum of squares can overflow for finite weights above ~1e19; ``first_nonfinite_parameter``
    then finds none and training goes on. arrays: ``parameter_arrays(net, ctx)`` collected
    earlier (default: collected now).
    """
    flags = []
    for device_arrays, single_dtype in (arrays or parameter_arrays(net, ctx)):
        if device_arrays:
            if not single_dtype:   # multi_sum_sq needs one dtype
                sums = nd.add_n(*[nd.square(a).sum() for a in device_arrays])
            else:
                sums = nd.multi_sum_sq(*device_arrays, num_arrays=len(device_arrays)).sum()
            flags.append(sums.astype('float32').as_in_context(ctx[0]))
    return nd.add_n(*flags) if len(flags) > 1 else (flags[0] if flags else nd.zeros((1,), ctx[0]))
