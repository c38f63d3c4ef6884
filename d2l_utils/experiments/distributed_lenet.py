"""Data-parallel LeNet with batch norm across machines, on MXNet's parameter server.

Run by ``launch_local`` as the workers of a ``dist_sync`` job (notebook C)::

    launch_local('d2l_utils.experiments.distributed_lenet', '--bn', 'synced', '--out', folder)

Each worker trains LeNet on its own shard of Fashion-MNIST with a Gluon ``Trainer`` on the
``dist_sync`` store, which adds up the workers' gradients every step. ``--bn`` chooses the BN
layers: ``gluon`` (``nn.BatchNorm``: each worker its own batch statistics and moving
statistics), ``local`` (``StoreBatchNorm`` without the store: the same, in Python, the yardstick
for the cost of synchronizing) or ``synced`` (``StoreBatchNorm`` exchanging per-channel sums
through the store, so every worker normalizes with the statistics of all workers' batches).

A worker prints one JSON line (see ``main``) and writes into ``--out``: ``initial.params`` and
``step1.params`` (worker 0: the weights before and after the first step),
``worker<k>.params`` (its net after training) and ``batch1_worker<k>.npz`` (its first batch).
"""
import argparse
import hashlib
import json
import os
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, init, nd

from .fast_batch_norm import ChannelView
from ..data import ArrayDataIter, load_data_fashion_mnist
from ..layers import BatchNorm, batch_norm, moving_average
from ..models import is_batch_norm, lenet
from ..training import set_seed

__all__ = ['PushThenPullStore', 'StoreBatchNorm', 'StoreBatchNormFunction', 'StoreBatchNormMaker',
           'create_store', 'first_batch', 'main', 'moving_statistics', 'moving_statistics_spread',
           'one_process_statistics', 'parameter_digest', 'read_records']

FIRST_KEY = 10 ** 6   # store keys of the BN sums, far above the Trainer's (0, 1, ... per param)


class PushThenPullStore(mx.kv.KVStore):
    """A ``dist_sync`` store whose ``broadcast`` and ``pushpull`` wait between their two halves.

    ``Trainer`` with ``update_on_kvstore=False`` first broadcasts every parameter (``init``,
    then ``pull``) and then, every step, sends each gradient with ``pushpull``. With MXNet
    1.9.1's own store, under load, one worker's first step sometimes came back wrong (its
    weights after step 1 were those of an update by the stored initial weights instead of the
    summed gradient, in about half of the runs on this busy 2-core machine; in a variant that
    stepped the Trainer once before training, the server aborted with "init 19 first": a pull
    had overtaken the initialization of its key). The cause inside MXNet was not pinned down.
    Waiting for every queued operation (``nd.waitall``) after each half made every run agree
    bit for bit (tests/test_distributed.py checks it).
    """

    def pushpull(self, key, value, out=None, priority=0):
        self.push(key, value, priority=priority)
        nd.waitall()
        self.pull(key, out=value if out is None else out, priority=priority)
        nd.waitall()

    def broadcast(self, key, value, out, priority=0):
        self.init(key, value)
        nd.waitall()
        self.pull(key, out=out, priority=priority)
        nd.waitall()


def create_store():
    """mx.kv.create('dist_sync') as a PushThenPullStore."""
    kv = mx.kv.create('dist_sync')
    kv.__class__ = PushThenPullStore   # the same C++ store; only the two methods change
    return kv


class StoreBatchNormFunction(autograd.Function):
    """Training-mode batch norm of this worker's part with the statistics of all workers' parts.

    Call as ``StoreBatchNormFunction(eps, all_reduce)(gamma, beta, X)``, a new instance per
    call. X: (n, D) or (n, C, H, W), this worker's part; gamma, beta: (1, D) or (1, C, 1, 1).
    ``all_reduce(key, values)`` returns the sum over all workers of a 1-D array (keys 0 and 1:
    forward and backward); with ``all_reduce=None`` the statistics are this part's own.
    Returns Y with X's shape; afterwards ``mean`` and ``var`` (shape (C,)) hold the statistics
    used: the mean and biased variance of all parts together.

    Two exchanges per step, as in ``CrossDeviceBatchNormFunction`` (devices in one process):
    forward the per-channel sums of x and x^2 and the count, 2C + 1 numbers; backward the sums
    of g and g * x_hat (g = gamma * dY), 2C numbers. The arguments come in this order for the
    reason given in ``BatchNormFunction``.
    """

    def __init__(self, eps, all_reduce=None):
        super().__init__()
        self.eps = eps
        self.all_reduce = all_reduce or (lambda key, values: values)

    def forward(self, gamma, beta, X):
        ch = ChannelView(X)
        X2 = X.reshape((ch.N, -1))                          # (n, C*S), a view
        local = nd.concat(ch.means(X2) * ch.count, ch.means(nd.square(X2)) * ch.count,
                          nd.full((1,), ch.count, ctx=X.context), dim=0)
        total = self.all_reduce(0, local)                   # (2C + 1,): sums of all workers
        C = ch.C
        count = total[2 * C].asscalar()
        mean = total[:C] / count
        # biased variance as E[x^2] - E[x]^2 (one exchange instead of two); the relu keeps a
        # constant channel's rounding from going below zero
        var = nd.relu(total[C:2 * C] / count - nd.square(mean))
        inv_std = nd.rsqrt(var + self.eps)
        X_centered = nd.broadcast_sub(X2, ch.row(mean))
        gamma = gamma.reshape((-1,)).copy()   # a copy: never keep a Parameter's array
        Y = nd.broadcast_add(nd.broadcast_mul(X_centered, ch.row(gamma * inv_std)),
                             ch.row(beta))
        self.saved = (X_centered, inv_std, gamma, count)
        self.channels, self.param_shape = ch, beta.shape
        self.mean, self.var = mean, var
        return Y.reshape(X.shape)

    def backward(self, dY):
        """dY: X's shape. Returns (dgamma, dbeta, dX): this part's shares of dgamma and dbeta
        (the Trainer adds the workers' up) and dX with X's shape."""
        X_centered, inv_std, gamma, count = self.saved
        ch = self.channels
        dY2 = dY.reshape((ch.N, -1))
        sum_dY = ch.means(dY2) * ch.count
        sum_dY_x_hat = ch.means(dY2 * X_centered) * inv_std * ch.count
        # x_hat depends on every worker's x through the mean and variance, so dX needs the
        # sums over all workers of g = gamma * dY and g * x_hat
        total = self.all_reduce(1, nd.concat(gamma * sum_dY, gamma * sum_dY_x_hat, dim=0))
        C = ch.C
        shift = inv_std * total[:C] / count
        slope = inv_std * inv_std * total[C:] / count
        dX = (nd.broadcast_mul(dY2, ch.row(gamma * inv_std)) - ch.row(shift)
              - nd.broadcast_mul(X_centered, ch.row(slope)))
        return (sum_dY_x_hat.reshape(self.param_shape), sum_dY.reshape(self.param_shape),
                dX.reshape(dY.shape))


class StoreBatchNorm(BatchNorm):
    """The scratch ``BatchNorm`` (same Parameters) with statistics over all workers' batches.

    num_features, num_dims: as for ``BatchNorm``. kvstore: a ``dist_sync`` store, or None for
    this worker's own statistics. keys: two int keys of the store, initialized by
    ``StoreBatchNormMaker``. In training every worker normalizes with the mean and biased
    variance of all workers' parts and updates its moving statistics with them, so the
    workers' moving statistics stay equal. Prediction uses the moving statistics.
    """

    def __init__(self, num_features, num_dims, kvstore=None, keys=None, **kwargs):
        super().__init__(num_features, num_dims, **kwargs)
        self.kvstore, self.keys = kvstore, keys
        self.last_mean = self.last_var = None   # the statistics of the last training step
        self.exchange_seconds = 0.0             # time spent in all_reduce (see there)

    def all_reduce(self, which, values):
        """Push this worker's 1-D ``values`` under keys[which]; pull the sum of all workers'.

        The seconds from the push to the pulled sum (waiting for the other workers included)
        are added to ``exchange_seconds``."""
        key = self.keys[which]
        values.wait_to_read()   # the time below is the exchange's, not the layers' before it
        start = time.perf_counter()
        self.kvstore.push(key, values)
        total = nd.zeros_like(values)
        self.kvstore.pull(key, out=total)
        total.wait_to_read()
        self.exchange_seconds += time.perf_counter() - start
        return total

    def forward(self, X):
        ctx = X.context
        gamma, beta = self.gamma.data(ctx), self.beta.data(ctx)
        moving_mean, moving_var = self.moving_mean.data(ctx), self.moving_var.data(ctx)
        if not autograd.is_training():
            return batch_norm(X, gamma, beta, moving_mean, moving_var, self.eps,
                              self.momentum)[0]
        function = StoreBatchNormFunction(
            self.eps, self.all_reduce if self.kvstore is not None else None)
        Y = function(gamma, beta, X)
        self.last_mean, self.last_var = function.mean, function.var
        with autograd.pause():
            shape = moving_mean.shape
            moving_mean[:] = moving_average(moving_mean, function.mean.reshape(shape),
                                            self.momentum)
            moving_var[:] = moving_average(moving_var, function.var.reshape(shape),
                                           self.momentum)
        return Y


class StoreBatchNormMaker:
    """``lenet(bn=StoreBatchNormMaker(kv))``: makes ``StoreBatchNorm`` layers, two store keys
    each (initialized here, in the same order on every worker). kv None: no exchange."""

    def __init__(self, kvstore=None):
        self.kvstore, self.next_key = kvstore, FIRST_KEY

    def __call__(self, num_features, num_dims):
        keys = None
        if self.kvstore is not None:
            keys = (self.next_key, self.next_key + 1)
            self.next_key += 2
            self.kvstore.init(keys[0], nd.zeros((2 * num_features + 1,)))
            self.kvstore.init(keys[1], nd.zeros((2 * num_features,)))
        return StoreBatchNorm(num_features, num_dims, self.kvstore, keys)


def parameter_digest(net, learned=True):
    """A short hash of the net's learned Parameters (weights, biases, gamma, beta) or, with
    learned=False, of its moving statistics: equal digests mean bit-for-bit equal values."""
    sha = hashlib.sha1()
    for name, param in sorted(net.collect_params().items()):
        if (param.grad_req != 'null') == learned:
            sha.update(param.data().asnumpy().tobytes())
    return sha.hexdigest()[:12]


def read_records(outputs):
    """``launch_local``'s outputs (one str per worker) -> the workers' JSON records (dicts),
    checking that worker k reports rank k."""
    records = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    for k, record in enumerate(records):
        if record['rank'] != k:
            raise RuntimeError(f'output {k} comes from rank {record["rank"]}: launch_local '
                               f'returns them in rank order; was the job started another way?')
    return records


def first_batch(folder, num_workers):
    """(X, y): the workers' first batches (``batch1_worker<k>.npz``) concatenated in rank
    order, X (batch, 1, 28, 28), y (batch,), as NDArrays: the whole batch of the first step."""
    parts = [np.load(os.path.join(folder, f'batch1_worker{k}.npz')) for k in range(num_workers)]
    return (nd.array(np.concatenate([p['X'] for p in parts])),
            nd.array(np.concatenate([p['y'] for p in parts])))


def one_process_statistics(params_file, X):
    """The mean and biased variance (float64, shape (C,)) of every BN layer's input when one
    process runs ``X`` through LeNet (the scratch ``BatchNorm``, weights from ``params_file``)
    in training mode: the statistics a synchronized worker should have used. A list of
    (mean, var), one per BN layer."""
    net = lenet(bn='scratch')
    net.load_parameters(params_file)
    stats = []

    def record(layer, inputs):
        x = inputs[0].asnumpy().astype(np.float64)
        axes = (0, 2, 3) if x.ndim == 4 else 0
        stats.append((x.mean(axis=axes), x.var(axis=axes)))

    for layer in net:
        if is_batch_norm(layer):
            layer.register_forward_pre_hook(record)
    with autograd.train_mode():
        net(X)
    return stats


def moving_statistics(params_file):
    """{BN layer's structural name (e.g. '1'): (moving mean, moving variance)}, each (C,)
    float64, read from a file saved by ``save_parameters`` (either BN layer kind)."""
    stats = {}
    for name, value in nd.load(params_file).items():
        layer, _, what = name.rpartition('.')
        if what in ('running_mean', 'moving_mean'):
            stats.setdefault(layer, [None, None])[0] = value.asnumpy().reshape(-1)
        elif what in ('running_var', 'moving_var'):
            stats.setdefault(layer, [None, None])[1] = value.asnumpy().reshape(-1)
    return {layer: (m.astype(np.float64), v.astype(np.float64)) for layer, (m, v) in stats.items()}


def moving_statistics_spread(params_files, eps=1e-5):
    """How far apart the workers' moving statistics are, measured as ``device_copy_spread``
    measures devices' copies: for each BN layer, 'mean_gap' is the largest |mean_k - mean_0|
    over channels and workers k in units of worker 0's sqrt(var_0 + eps), 'var_gap' the
    largest |var_k / var_0 - 1|. params_files: one file per worker, worker 0 first.
    Returns {layer: {'mean_gap': float, 'var_gap': float}}."""
    per_worker = [moving_statistics(f) for f in params_files]
    spread = {}
    for layer, (mean0, var0) in per_worker[0].items():
        means = np.array([w[layer][0] for w in per_worker])
        vars_ = np.array([w[layer][1] for w in per_worker])
        spread[layer] = {'mean_gap': float(np.max(np.abs(means - mean0) / np.sqrt(var0 + eps))),
                         'var_gap': float(np.max(np.abs(vars_ / var0 - 1)))}
    return spread


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--bn', choices=('gluon', 'local', 'synced'), required=True)
    parser.add_argument('--out', required=True, help='folder for the files the workers write')
    parser.add_argument('--batch-size', type=int, default=256, help='global: all workers')
    parser.add_argument('--train-subset', type=int, default=None)
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--max-steps', type=int, default=None, help='stop after this many')
    parser.add_argument('--lr', type=float, default=0.3)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    """Train as one worker; print a JSON line: rank, num_workers, bn, steps, per-step
    ``learned`` and ``moving`` digests, ``seconds`` and ``exchange_seconds`` (the BN layers'
    time in the store), and (StoreBatchNorm) ``batch_stats``:
    the first step's mean and variance of every BN layer, [[mean per channel], [var ...]]."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)   # on real machines: a folder on each worker's machine
    kv = create_store()
    rank, num_workers = kv.rank, kv.num_workers
    if args.batch_size % num_workers:
        raise ValueError(f'--batch-size {args.batch_size} must be a multiple of the number of '
                         f'workers ({num_workers}): each worker takes an equal part.')
    set_seed(args.seed)   # the same initial weights on every worker
    train_iter, _ = load_data_fashion_mnist(args.batch_size, train_subset=args.train_subset,
                                            test_subset=1, seed=args.seed)
    # this worker's shard: every num_workers-th example, shuffled by its own seed
    shard = ArrayDataIter(train_iter.X[rank::num_workers], train_iter.y[rank::num_workers],
                          args.batch_size // num_workers, shuffle=True,
                          seed=args.seed + 1 + rank)
    bn = 'gluon' if args.bn == 'gluon' else StoreBatchNormMaker(
        kv if args.bn == 'synced' else None)
    net = lenet(bn=bn)
    net.initialize(init.Xavier())
    net(shard.X[:2])   # finish deferred initialization before saving
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': args.lr},
                            kvstore=kv, update_on_kvstore=False)   # the BN keys hold plain sums
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    bn_layers = [b for b in net if isinstance(b, StoreBatchNorm)]
    initial_digest = parameter_digest(net, learned=True)
    if rank == 0:
        net.save_parameters(os.path.join(args.out, 'initial.params'))
    record = dict(rank=rank, num_workers=num_workers, bn=args.bn, learned=[], moving=[],
                  seconds=[], exchange_seconds=[], initial=initial_digest)
    step = 0
    for _ in range(args.epochs):
        for X, y in shard:
            if args.max_steps is not None and step == args.max_steps:
                break
            if step == 0:
                np.savez(os.path.join(args.out, f'batch1_worker{rank}.npz'),
                         X=X.asnumpy(), y=y.asnumpy())
            start = time.perf_counter()
            with autograd.record():
                batch_loss = loss(net(X), y).sum()
            batch_loss.backward()
            trainer.step(args.batch_size)   # the gradient of the mean loss over all workers
            nd.waitall()
            record['seconds'].append(time.perf_counter() - start)
            record['exchange_seconds'].append(sum(b.exchange_seconds for b in bn_layers))
            for b in bn_layers:
                b.exchange_seconds = 0.0
            step += 1
            if step == 1:
                record['batch_stats'] = [[b.last_mean.asnumpy().tolist(),
                                          b.last_var.asnumpy().tolist()] for b in bn_layers]
                if rank == 0:
                    net.save_parameters(os.path.join(args.out, 'step1.params'))
            record['learned'].append(parameter_digest(net, learned=True))
            record['moving'].append(parameter_digest(net, learned=False))
    record['steps'] = step
    net.save_parameters(os.path.join(args.out, f'worker{rank}.params'))
    print(json.dumps(record), flush=True)


if __name__ == '__main__':
    main()
