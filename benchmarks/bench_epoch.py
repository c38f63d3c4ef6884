"""Side-by-side epoch times of LeNet+BN on Fashion-MNIST, and per-layer BN times.

    python benchmarks/bench_epoch.py                       # full: 60,000 images, 2 epochs + warm-up
    python benchmarks/bench_epoch.py --train-subset 2048 --epochs 1 --out /tmp/r.md   # smoke

Every configuration trains the same LeNet (book hyperparameters: batch 256, SGD lr 1.0,
Xavier, seed 0) on the same data for the same epochs, each in its own child process so its
peak memory is its own. One warm-up epoch (not timed) precedes the timed ones. Results go to a
Markdown file (default benchmarks/RESULTS.md) with the machine, versions and date.

The "book path" is d2lzh's pipeline: a gluon DataLoader (4 workers) applying ToTensor to each
image every epoch, and d2lzh.train_ch5. MXNet's FashionMNIST dataset class would re-download
Debian's recompressed files (it checks gzip checksums), so the same decoded arrays are wrapped
in an ArrayDataset; what happens per epoch is exactly d2lzh.load_data_fashion_mnist's.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

CONFIGS = {
    # name: (data path, batch norm, hybridize: False, 'each layer' or 'one graph')
    'book path, book scratch BN': ('book', 'book_scratch', False),
    'book path, nn.BatchNorm': ('book', 'gluon', False),
    'd2l_utils, scratch BatchNorm': ('d2l_utils', 'scratch', False),
    'd2l_utils, FastBatchNorm': ('d2l_utils', 'fast', False),
    'd2l_utils, nn.BatchNorm': ('d2l_utils', 'gluon', False),
    # lenet() is an nn.Sequential: its hybridize() hybridizes each layer on its own
    'd2l_utils, nn.BatchNorm, hybridized': ('d2l_utils', 'gluon', 'each layer'),
    # the same layers in an nn.HybridSequential, hybridize(static_alloc=True): the whole net is
    # one graph whose arrays are allocated once and reused
    'd2l_utils, nn.BatchNorm, one graph, static_alloc': ('d2l_utils', 'gluon', 'one graph'),
    # PyTorch (CPU build, requirements-torch.txt): skipped when torch is not installed
    'PyTorch, scratch BatchNorm': ('torch', 'scratch', False),
    'PyTorch, nn.BatchNorm2d/1d': ('torch', 'torch', False),
}
BATCH_SIZE, LR = 256, 1.0
# Everything from this line on in the output file is written by hand (the analysis of the
# numbers) and kept when the tables above it are regenerated.
ANALYSIS_MARKER = ('<!-- Hand-written analysis below: bench_epoch.py keeps it when it rewrites '
                   'the tables -->')
RECALIBRATE_BATCHES = 50   # 12,800 training images for the recalibrated accuracy


def make_bn(kind):
    if kind == 'book_scratch':   # the book's layer, verbatim (d2l_utils.book)
        from d2l_utils import BookBatchNorm
        return BookBatchNorm
    if kind == 'fast':
        from d2l_utils import FastBatchNorm
        return FastBatchNorm
    return kind   # 'scratch' or 'gluon': understood by d2l_utils.models.lenet


def torch_available():
    import importlib.util
    return importlib.util.find_spec('torch') is not None


def run_torch_config(bn_kind, epochs, train_subset, test_subset):
    """Train LeNet in PyTorch on the d2l_utils batches (same arrays, batch order and recipe)."""
    from d2l_utils import data, pytorch
    train_iter, test_iter = (pytorch.as_torch_iter(it) for it in data.load_data_fashion_mnist(
        BATCH_SIZE, train_subset=train_subset, test_subset=test_subset, seed=0))
    pytorch.set_seed(0)
    net = pytorch.lenet(bn=bn_kind)

    def one_epoch():
        pytorch.train(net, train_iter, test_iter, LR, 1, progress=False, verbose=False)
    # no recalibrated accuracy: d2l_utils' recalibration is for MXNet nets
    return (one_epoch, lambda: pytorch.evaluate_accuracy(test_iter, net), lambda: None,
            'cpu (torch)')


def run_config(name, epochs, train_subset, test_subset):
    """Train one configuration in this process; return its measurements as a dict."""
    data_path, bn_kind, hybridize = CONFIGS[name]
    if data_path == 'torch':
        one_epoch, test_accuracy, recalibrated_accuracy, device_name = run_torch_config(
            bn_kind, epochs, train_subset, test_subset)
    else:
        one_epoch, test_accuracy, recalibrated_accuracy, device_name = run_mxnet_config(
            data_path, bn_kind, hybridize, train_subset, test_subset)
    one_epoch()   # warm-up: first-call allocation and operator setup
    seconds = []
    for _ in range(epochs):
        start = time.time()
        one_epoch()
        seconds.append(time.time() - start)
    test_acc = test_accuracy()
    # prediction-mode accuracy at lr 1.0 swings with the lagging moving averages (issue 12):
    # the recalibrated one is the column to compare nets by
    recalibrated = recalibrated_accuracy()
    n_train = train_subset or 60000
    median = statistics.median(seconds)
    return dict(name=name, seconds=seconds, median=median, examples_per_sec=n_train / median,
                test_acc=float(test_acc), device=device_name,
                test_acc_recalibrated=None if recalibrated is None else float(recalibrated),
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def one_graph(net):
    """The layers of ``net`` (lenet()'s nn.Sequential) in an nn.HybridSequential, not initialized.

    nn.Sequential.hybridize() only hybridizes each child (MXNet warns: "All children of this
    Sequential layer are HybridBlocks. Consider using HybridSequential"): one cached graph per
    layer, each called from Python. The same layers in a HybridSequential hybridize as one graph
    for the whole net. Used by this benchmark's 'one graph' row and by profile_step.py.
    """
    from mxnet import gluon
    graph = gluon.nn.HybridSequential()
    graph.add(*net)
    return graph


def run_mxnet_config(data_path, bn_kind, hybridize, train_subset, test_subset):
    """Build one MXNet configuration; return (one_epoch(), test_accuracy(),
    recalibrated_accuracy(), device name): the last measures the test accuracy with BN statistics
    re-estimated over RECALIBRATE_BATCHES training batches (the net's own are restored)."""
    import mxnet as mx
    from mxnet import gluon, init
    from d2l_utils import data, device, models
    from d2l_utils import training
    ctx = device.try_gpu()
    training.set_seed(0)
    if data_path == 'book':
        import d2lzh
        from mxnet.gluon import data as gdata
        loaders = []
        for is_train, subset in ((True, train_subset), (False, test_subset)):
            images, labels, _ = data.fashion_mnist_arrays(is_train)
            if subset:
                images, labels = images[:subset], labels[:subset]
            dataset = gdata.ArrayDataset(mx.nd.array(images[..., None], dtype='uint8'),
                                         labels.astype('int32'))
            to_tensor = gdata.vision.transforms.ToTensor()
            loaders.append(gdata.DataLoader(dataset.transform_first(to_tensor), BATCH_SIZE,
                                            shuffle=is_train, num_workers=4))
        train_iter, test_iter = loaders

        def train_one_epoch(net, trainer):   # train_ch5: one epoch and evaluation, as the book
            d2lzh.train_ch5(net, train_iter, test_iter, BATCH_SIZE, trainer, ctx, 1)

        def accuracy(net):
            return d2lzh.evaluate_accuracy(test_iter, net, ctx)
    else:
        train_iter, test_iter = data.load_data_fashion_mnist(
            BATCH_SIZE, ctx=ctx, train_subset=train_subset, test_subset=test_subset, seed=0)

        def train_one_epoch(net, trainer):   # one epoch and evaluation, like train_ch5
            training.train(net, train_iter, test_iter, trainer, ctx, 1, progress=False,
                           verbose=False)

        def accuracy(net):
            return training.evaluate_accuracy(test_iter, net, ctx)
    net = models.lenet(bn=make_bn(bn_kind))
    if hybridize == 'one graph':
        net = one_graph(net)
    net.initialize(init.Xavier(), ctx=ctx)
    if hybridize == 'one graph':
        # static_alloc: the graph's arrays are allocated at the first call and reused, not
        # allocated and freed at every step (static_shape measured no further gain, and the
        # last partial batch and the test batches have other shapes)
        net.hybridize(static_alloc=True)
    elif hybridize:
        net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': LR})
    # the same fixed training batches for every MXNet row, whichever loader it trains with
    recalibrate_iter = data.load_data_fashion_mnist(
        BATCH_SIZE, ctx=ctx, train_subset=train_subset, test_subset=test_subset,
        seed=0)[0].in_order()
    d2l_test_iter = data.load_data_fashion_mnist(
        BATCH_SIZE, ctx=ctx, train_subset=train_subset, test_subset=test_subset, seed=0)[1]

    def recalibrated():
        # recalibrate_batch_norm watches each BN layer run; inside one hybridized graph no
        # layer runs on its own, so measure imperatively (after the timed epochs)
        if hybridize == 'one graph':
            net.hybridize(active=False)
        return training.recalibrated_accuracy(net, d2l_test_iter, recalibrate_iter,
                                              RECALIBRATE_BATCHES, ctx)
    return ((lambda: train_one_epoch(net, trainer)), (lambda: accuracy(net)), recalibrated,
            str(ctx))


def layer_times(repeats):
    """Median ms of forward+backward of one BN layer for LeNet's four BN input shapes."""
    import mxnet as mx
    from mxnet import autograd, nd
    from d2l_utils import batch_norm, fast_batch_norm
    from d2l_utils.layers import param_shape
    functions = {'scratch batch_norm': batch_norm, 'fast_batch_norm': fast_batch_norm}

    def nd_batch_norm(X, gamma, beta, mm, mv, eps, momentum):
        shape = (-1,)
        return (nd.BatchNorm(X, gamma.reshape(shape), beta.reshape(shape), mm.reshape(shape),
                             mv.reshape(shape), eps=eps, momentum=momentum, fix_gamma=False),)
    functions['nd.BatchNorm'] = nd_batch_norm
    rows = []
    for shape in ((256, 6, 24, 24), (256, 16, 8, 8), (256, 120), (256, 84)):
        stat_shape = param_shape(shape[1], len(shape))
        X = nd.random.normal(shape=shape)
        row = {'shape': shape}
        for label, fn in functions.items():
            gamma, beta = nd.ones(stat_shape), nd.zeros(stat_shape)
            for p in (X, gamma, beta):
                p.attach_grad()
            times = []
            for i in range(repeats + 1):
                start = time.time()
                with autograd.record():
                    Y = fn(X, gamma, beta, nd.zeros(stat_shape), nd.ones(stat_shape), 1e-5, 0.9)[0]
                Y.backward()
                mx.nd.waitall()
                if i:   # the first call is a warm-up
                    times.append((time.time() - start) * 1000)
            row[label] = statistics.median(times)
        rows.append(row)
    return rows


def write_markdown(path, results, layers, args, load_before=None):
    import mxnet as mx
    import numpy as np
    by_name = {r['name']: r for r in results}

    def ratio(a, b):
        if a not in by_name or b not in by_name:
            return None
        return by_name[a]['median'] / by_name[b]['median']
    lines = ['# Benchmark: LeNet + batch normalization on Fashion-MNIST', '',
             'Made by `%s` on %s.' % (shlex.join(['python', 'benchmarks/bench_epoch.py'] + args),
                                     datetime.date.today()),
             '', 'Machine: %s, %s, %d cores, %s; Python %s, mxnet %s, numpy %s%s.' % (
                 cpu_model(), platform.machine(), os.cpu_count(), platform.platform(),
                 platform.python_version(), mx.__version__, np.__version__, torch_version()),
             '', load_line(load_before), '',
             '## Seconds per epoch (train on %s images + evaluate on %s)' % (
                 args_value(args, '--train-subset') or '60,000',
                 args_value(args, '--test-subset') or '10,000'),
             '', '| configuration | device | s/epoch (median) | examples/s | test acc '
             '| test acc, recalibrated BN | peak memory (MB) |',
             '| --- | --- | ---: | ---: | ---: | ---: | ---: |']
    for r in results:
        recalibrated = r.get('test_acc_recalibrated')
        lines.append('| %s | %s | %.1f | %.0f | %.3f | %s | %.0f |' % (
            r['name'], r['device'], r['median'], r['examples_per_sec'], r['test_acc'],
            'n/a' if recalibrated is None else '%.3f' % recalibrated, r['peak_mb']))
    lines += ['', 'Test accuracy is measured once, after the last timed epoch, in prediction '
              'mode: with the moving averages, and with BN statistics re-estimated over %d '
              'training batches (recalibrate_batch_norm; at lr 1.0 the moving averages lag the '
              'weights, so compare nets by the recalibrated column).' % RECALIBRATE_BATCHES]
    lines += ['', 'Peak memory is the training process\'s own; the book path\'s 4 DataLoader '
              'workers are separate processes, not counted.']
    lines += ['', 'Ratios of seconds per epoch (above 1: the first takes longer):', '']
    for a, b in (('book path, nn.BatchNorm', 'd2l_utils, nn.BatchNorm'),
                 ('book path, book scratch BN', 'd2l_utils, scratch BatchNorm'),
                 ('d2l_utils, FastBatchNorm', 'd2l_utils, nn.BatchNorm'),
                 ('d2l_utils, scratch BatchNorm', 'd2l_utils, nn.BatchNorm'),
                 ('d2l_utils, nn.BatchNorm, hybridized', 'd2l_utils, nn.BatchNorm'),
                 ('d2l_utils, nn.BatchNorm, one graph, static_alloc',
                  'd2l_utils, nn.BatchNorm'),
                 ('d2l_utils, nn.BatchNorm', 'PyTorch, nn.BatchNorm2d/1d'),
                 ('d2l_utils, nn.BatchNorm, one graph, static_alloc', 'PyTorch, nn.BatchNorm2d/1d'),
                 ('d2l_utils, FastBatchNorm', 'PyTorch, scratch BatchNorm')):
        value = ratio(a, b)
        if value is not None:
            lines.append('- %s / %s: %.2fx' % (a, b, value))
    if layers:
        labels = [k for k in layers[0] if k != 'shape']
        lines += ['', '## One BN layer, forward + backward (ms, median)', '',
                  '| input shape | ' + ' | '.join(labels) + ' |',
                  '| --- |' + ' ---: |' * len(labels)]
        for row in layers:
            lines.append('| %s | %s |' % ('x'.join(map(str, row['shape'])),
                                          ' | '.join('%.2f' % row[k] for k in labels)))
    lines += ['', ANALYSIS_MARKER] + kept_analysis(path)
    # a finished table or none: write beside the target, then rename over it
    tmp = '%s.tmp%d' % (path, os.getpid())
    try:
        with open(tmp, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def kept_analysis(path):
    """The lines after ANALYSIS_MARKER in the file at ``path`` (the hand-written analysis of an
    earlier run), or [] if the file or the marker is missing. Regenerating the tables must not
    wipe it; the analysis itself says which run its numbers come from."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    if ANALYSIS_MARKER not in text:
        return []
    return text.split(ANALYSIS_MARKER, 1)[1].strip('\n').split('\n')


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (Linux), or the platform's processor string."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def load_line(load_before):
    """The 1-minute load average before and after the run: other work on the machine inflates
    every time in the table and can skew the ratios (configurations run one after another)."""
    after = os.getloadavg()[0]
    before = 'unknown' if load_before is None else '%.1f' % load_before
    return ('Load average (1 min) before the run %s, after %.1f, on %d cores; near 0 means the '
            'machine was otherwise idle.' % (before, after, os.cpu_count()))


def torch_version():
    if not torch_available():
        return ''
    import torch
    return ', torch %s' % torch.__version__


def args_value(args, flag):
    return args[args.index(flag) + 1] if flag in args else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--epochs', type=int, default=2, help='timed epochs per configuration')
    parser.add_argument('--train-subset', type=int, default=None)
    parser.add_argument('--test-subset', type=int, default=None)
    parser.add_argument('--configs', nargs='*', default=list(CONFIGS), help='which ones (names)')
    parser.add_argument('--layer-repeats', type=int, default=10)
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'RESULTS.md'))
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_config(args.child, args.epochs, args.train_subset, args.test_subset)))
        return 0
    load_before = os.getloadavg()[0]
    results = []
    unknown = [name for name in args.configs if name not in CONFIGS]
    if unknown:
        parser.error('unknown configuration(s) %s; choose from %s' % (unknown, list(CONFIGS)))
    for name in args.configs:
        if CONFIGS[name][0] == 'torch' and not torch_available():
            print('%-40s skipped: torch is not installed (pip install -r requirements-torch.txt)'
                  % name, flush=True)
            continue
        cmd = [sys.executable, __file__, '--child', name, '--epochs', str(args.epochs)]
        for flag, value in (('--train-subset', args.train_subset),
                            ('--test-subset', args.test_subset)):
            if value:
                cmd += [flag, str(value)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print('%s failed:\n%s' % (name, out.stderr[-2000:]), file=sys.stderr)
            return 1
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        print('%-40s %6.1f s/epoch  test acc %.3f  peak %4.0f MB'
              % (name, result['median'], result['test_acc'], result['peak_mb']), flush=True)
    layers = layer_times(args.layer_repeats) if args.layer_repeats else []
    write_markdown(args.out, results, layers, sys.argv[1:] if argv is None else argv, load_before)
    print('written', args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
