"""Data parallelism: splitting each batch across devices and running a net on the parts.

Data parallelism (the book's 多GPU计算): every device holds a copy of the parameters; each batch
is split across the devices (``split_batch``), each device runs the net on its part, and the
Trainer sums the gradients over the devices (its kvstore) before one update, so every learned
parameter stays the same on all devices. ``d2l_utils.train`` and ``evaluate_accuracy`` take a
list of devices as ``ctx`` and use this module; with one device the same code runs (a split
into one part is ``as_in_context``).

Split policy, one rule for the whole package. A batch of n examples over k devices gives k parts
that differ in size by at most one example. If n < k:
- prediction (``evaluate_accuracy``, ``recalibrate_batch_norm``) uses the first n devices, one
  example each;
- training refuses (ValueError): a device without a part would keep the gradient of its last
  batch, and ``Trainer.step`` refuses such a stale gradient (or, told to ignore it, adds it).
  ``train`` checks this before the first epoch (``validate_batches_fit_devices``).

A layer that needs every device's part at once (a block with a ``forward_parts(Xs)`` method,
such as ``CrossDeviceBatchNorm``) is run by ``forward_parts``, layer by layer in lockstep over
the devices.
"""

from mxnet import gluon
from mxnet.gluon import nn

from .device import gpu_status, no_gpu_reason
from .support.validation import is_integer

__all__ = ['validate_batches_fit_devices', 'validate_gpus_usable', 'validate_initialized_on',
           'forward_parts', 'needs_all_parts', 'split_batch', 'split_parts']


def validate_gpus_usable(ctx_list, caller='train'):
    """Raise ValueError, naming the GPU and why, if a GPU in ``ctx_list`` cannot run here.

    Asks ``device.gpu_status()`` (one test kernel per GPU, once per process) only when the list
    holds a GPU, so CPU runs probe nothing. Without it MXNet fails deep inside the first
    operator (``Compile with USE_CUDA=1``), and the advice to initialize on that GPU cannot work.
    """
    gpus = [c for c in ctx_list if c.device_type == 'gpu']
    if not gpus:
        return
    status = {s.index: s for s in gpu_status()}
    for c in gpus:
        if c.device_id in status and status[c.device_id].usable:
            continue
        reason = (status[c.device_id].reason if c.device_id in status else
                  no_gpu_reason() or 'MXNet sees only %d GPU(s)' % len(status))
        raise ValueError('%s: ctx includes %s, which cannot run here: %s. Use the devices that '
                         'work, ctx=d2l_utils.try_all_gpus() (the usable GPUs, or [cpu(0)] when '
                         'there are none), for the net (net.initialize(ctx=ctx)) and for %s.'
                         % (caller, c, reason, caller))


def split_batch(X, y, ctx_list, caller='train', training=True):
    """Split a batch across devices: ([X_0, X_1, ...], [y_0, y_1, ...]), part k on ctx_list[k].

    X: (batch, ...), y: (batch,). The parts differ in size by at most one example when the
    batch does not divide evenly (``gluon.utils.split_and_load(..., even_split=False)``). A
    batch with fewer examples than devices raises ValueError when ``training`` and uses the
    first devices otherwise (the module's split policy says why).
    """
    return (split_parts(X, ctx_list, caller, training),
            split_parts(y, ctx_list, caller, training))


def split_parts(X, ctx_list, caller='train', training=True):
    """``split_batch`` for one array: [X_0, X_1, ...], part k on ctx_list[k] (the same policy)."""
    n, k = X.shape[0], len(ctx_list)
    if n < k:
        if training:
            raise ValueError('%s: a batch of %d example(s) cannot be split across %d devices (each '
                             'device needs at least one example). Use a batch size of at least %d, '
                             'fewer devices, or a training set whose last batch is not that small.'
                             % (caller, n, k, k))
        ctx_list = ctx_list[:n]
    return gluon.utils.split_and_load(X, ctx_list, even_split=False)


def validate_batches_fit_devices(train_iter, num_devices, caller='train'):
    """Raise ValueError before training if some batch of ``train_iter`` is smaller than
    ``num_devices`` (it could not be split, see ``split_batch``). An iterator that does not say
    its ``batch_size`` and ``num_examples`` is not checked here; each batch is as it comes."""
    batch_size = getattr(train_iter, 'batch_size', None)
    num_examples = getattr(train_iter, 'num_examples', None)
    if not (is_integer(batch_size) and is_integer(num_examples)):
        return
    last = num_examples % batch_size or batch_size
    smallest = min(batch_size, last, num_examples)
    if smallest < num_devices:
        raise ValueError('%s: the training batches (batch size %d, %d examples, so the '
                         'smallest batch has %d) cannot be split across %d devices: each device '
                         'needs at least one example. Use a batch size of at least %d and a '
                         'training set size whose remainder modulo the batch size is 0 or at '
                         'least %d, or fewer devices.'
                         % (caller, batch_size, num_examples, smallest, num_devices, num_devices,
                            num_devices))


def validate_initialized_on(net, ctx_list, caller='train'):
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


def needs_all_parts(net):
    """True if ``net`` or a block inside it must see every device's part at once."""
    found = []
    net.apply(lambda block: found.append(block) if hasattr(block, 'forward_parts') else None)
    return bool(found)


def forward_parts(net, Xs):
    """Run ``net`` on each device's part of a batch; returns the outputs, k-th on Xs[k]'s device.

    Xs: one part per device, e.g. from ``split_batch``. For an ordinary net this is
    ``[net(X) for X in Xs]``. A layer that needs all parts at once (a block with a
    ``forward_parts(Xs)`` method, such as ``CrossDeviceBatchNorm``) gets them together: the net
    is then run layer by layer, each layer on every part before the next layer starts. That
    works for ``nn.Sequential`` and ``nn.HybridSequential`` (also nested).
    """
    if not needs_all_parts(net):
        return [net(X) for X in Xs]
    if hasattr(net, 'forward_parts'):
        return net.forward_parts(Xs)
    if not isinstance(net, (nn.Sequential, nn.HybridSequential)):
        raise TypeError('forward_parts: %s (a %s) contains a layer that needs every device\'s '
                        'part of the batch at once (e.g. CrossDeviceBatchNorm); it can run only '
                        'inside nn.Sequential or nn.HybridSequential, layer by layer. Build the '
                        'net as a Sequential.' % (net.name, type(net).__name__))
    for block in net:
        Xs = forward_parts(block, Xs)
    return Xs
