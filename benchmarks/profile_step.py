"""Where a LeNet+BN training step spends its time: MXNet's profiler, operators by total time.

    python benchmarks/profile_step.py                    # nn.BatchNorm, 20 steps of batch 256
    python benchmarks/profile_step.py --bn fast --steps 40
    python benchmarks/profile_step.py --bn scratch --top 15
    python benchmarks/profile_step.py --hybridize graph    # the net as one hybridized graph

Trains the benchmark's LeNet (same data, seed and hyperparameters as bench_epoch.py) for a few
warm-up steps, then profiles ``--steps`` steps (forward, backward, SGD update) with MXNet's
profiler in aggregate mode. Prints the wall time per step, and the operators that took the most
time (per step, calls per step, and share of all operators' time), so a
missed target in RESULTS.md can be traced to the operators that cost it.
"""
import argparse
import time

BN_CHOICES = ('gluon', 'scratch', 'fast', 'none')
# none: imperative; layers: lenet()'s nn.Sequential hybridized (each layer its own graph);
# graph: the same layers in an nn.HybridSequential, hybridized as one graph with static_alloc
HYBRIDIZE_CHOICES = ('none', 'layers', 'graph')


def profile(bn, steps, warmup, batch_size=256, lr=1.0, hybridize='none'):
    """Return (wall ms per step, [(operator, total ms, calls)] sorted by total ms, descending)."""
    import mxnet as mx
    from mxnet import autograd, gluon, init, profiler
    from d2l_utils import data, models, training
    from d2l_utils.experiments.fast_batch_norm import FastBatchNorm

    training.set_seed(0)
    ctx = mx.cpu()
    bn_arg = {'gluon': 'gluon', 'scratch': 'scratch', 'fast': FastBatchNorm, 'none': None}[bn]
    net = models.lenet(bn=bn_arg)
    if hybridize == 'graph':
        from bench_epoch import one_graph   # this folder: the benchmark's 'one graph' row
        net = one_graph(net)
    net.initialize(init.Xavier(), ctx=ctx)
    if hybridize == 'graph':
        net.hybridize(static_alloc=True)   # as bench_epoch.py's 'one graph, static_alloc' row
    elif hybridize == 'layers':
        net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    train_iter, _ = data.load_data_fashion_mnist(
        batch_size, ctx=ctx, train_subset=batch_size * (steps + warmup), test_subset=batch_size,
        seed=0)
    batches = list(train_iter)

    def step(X, y):
        with autograd.record():
            loss = loss_fn(net(X), y)
        loss.backward()
        trainer.step(X.shape[0])

    for X, y in batches[:warmup]:
        step(X, y)
    mx.nd.waitall()
    profiler.set_config(profile_all=True, aggregate_stats=True,
                        filename='/tmp/d2l_utils_profile.json')
    profiler.set_state('run')
    start = time.time()
    for X, y in batches[warmup:]:
        step(X, y)
    mx.nd.waitall()
    wall_ms = (time.time() - start) * 1000 / steps
    profiler.set_state('stop')
    table = profiler.dumps(reset=True, format='json')
    return wall_ms, _operator_totals(table)


def _operator_totals(dump):
    """Parse profiler.dumps(format='json') into [(operator, total ms, calls)], largest first."""
    import json
    stats = json.loads(dump)
    rows = {}
    for domain, operators in stats.get('Time', {}).items():
        if 'operator' not in domain.lower():
            continue
        for name, entry in operators.items():
            total, calls = rows.get(name, (0.0, 0))
            rows[name] = (total + entry['Total'], calls + entry['Count'])
    return sorted(((name, total, calls) for name, (total, calls) in rows.items()),
                  key=lambda row: -row[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--bn', choices=BN_CHOICES, default='gluon',
                        help='gluon: nn.BatchNorm; scratch: d2l_utils.BatchNorm; '
                             'fast: d2l_utils.FastBatchNorm; none: no batch norm')
    parser.add_argument('--hybridize', choices=HYBRIDIZE_CHOICES, default='none',
                        help='none: imperative; layers: net.hybridize() on lenet()\'s '
                             'nn.Sequential (one graph per layer); graph: the layers in an '
                             'nn.HybridSequential, hybridized as one graph with static_alloc=True '
                             '(needs bn gluon/none)')
    parser.add_argument('--steps', type=int, default=20, help='profiled training steps')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--top', type=int, default=12, help='operators to list')
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.top < 1:
        parser.error('--steps and --top must be at least 1, --warmup at least 0')
    if args.hybridize != 'none' and args.bn in ('scratch', 'fast'):
        parser.error('--hybridize %s needs --bn gluon or none: the scratch layers are nn.Blocks, '
                     'which cannot be hybridized' % args.hybridize)
    wall_ms, rows = profile(args.bn, args.steps, args.warmup, hybridize=args.hybridize)
    profiled = sum(total for _, total, _ in rows)   # all operators, not only the listed ones
    print('LeNet, bn=%s, batch 256: %.1f ms per training step (wall, %d steps)%s'
          % (args.bn, wall_ms, args.steps,
             '' if args.hybridize == 'none' else ', hybridized (%s)' % args.hybridize))
    print('operators in total: %.1f ms per step (they overlap with Python work and each other)'
          % (profiled / args.steps))
    print('%-40s %10s %8s %7s' % ('operator', 'ms/step', 'calls', 'share'))
    for name, total, calls in rows[:args.top]:
        print('%-40s %10.2f %8d %6.1f%%' % (name, total / args.steps, calls // args.steps,
                                            100 * total / profiled))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
