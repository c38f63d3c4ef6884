"""PyTorch appendix: the scratch batch norm and LeNet in PyTorch against MXNet and float64 formulas.

The oracle is the batch norm formula in float64 numpy (outputs, gradients, running statistics in
each framework's convention); five float32 implementations are checked against it on features of
real Fashion-MNIST images: MXNet's scratch BatchNorm (d2l_utils) and nn.BatchNorm, PyTorch's
scratch BatchNorm (d2l_utils.pytorch) and nn.BatchNorm1d/2d.
Skipped as a whole when PyTorch is not installed (pip install -r requirements-torch.txt).
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip(
    'torch', reason='PyTorch is optional; install it with pip install -r requirements-torch.txt')

import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon, init, nd  # noqa: E402
from mxnet.gluon import nn as mx_nn  # noqa: E402

import d2l_utils  # noqa: E402
from d2l_utils import pytorch as d2t  # noqa: E402

EPS = 1e-5
STEPS = 3
# Errors from the float64 formula, relative to the largest reference value (at least 1),
# measured on these inputs: at most 5e-7 for both scratch versions and nn.BatchNorm1d/2d, and
# 3e-5 for MXNet's fused CPU operator on the 4-D input (64 x 24 x 24 values per channel).
ATOL = {'mxnet nn.BatchNorm': 2e-4}
DEFAULT_ATOL = 2e-6
IMPLEMENTATIONS = ('mxnet scratch', 'mxnet nn.BatchNorm', 'torch scratch', 'torch nn.BatchNorm')


@pytest.fixture(scope='module')
def images(fashion_mnist_dir):
    """Real Fashion-MNIST training images, float32 numpy (STEPS * 64, 1, 28, 28)."""
    train_iter, _ = d2l_utils.load_data_fashion_mnist(64, root=fashion_mnist_dir, train_subset=1024,
                                                      test_subset=10, seed=0)
    return np.concatenate([X.asnumpy() for _, (X, _) in zip(range(STEPS), train_iter)])


def features(images, kind):
    """What a BN layer in LeNet sees: 4-D (64, 4, 24, 24) conv or 2-D (64, 20) dense features
    of the images, from fixed random weights; one array per step, float32."""
    rng = np.random.RandomState(1)
    if kind == '4-D':
        weight = torch.from_numpy(rng.randn(4, 1, 5, 5) * 0.3)
        out = torch.nn.functional.conv2d(torch.from_numpy(images.astype(np.float64)), weight)
        out = out.numpy() + 1.5
    else:
        out = images.reshape(len(images), -1).astype(np.float64) @ rng.randn(784, 20) * 0.1
    return [a.astype(np.float32) for a in np.split(out, STEPS)]


def reference(batches, gamma, beta, heads, torch_momentum=0.1):
    """float64 formulas: per step (Y, dX, dgamma, dbeta) for loss = sum(Y * head); then the
    running mean and the running variance with biased (MXNet) and unbiased (PyTorch) batch
    variances, all started at (0, 1)."""
    steps, mean_run, var_biased, var_unbiased = [], 0.0, 1.0, 1.0
    for X, head in zip(batches, heads):
        x, h = X.astype(np.float64), head.astype(np.float64)
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        m = x.size // x.shape[1]
        mean, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
        x_hat = (x - mean) / np.sqrt(var + EPS)
        g = gamma.reshape(mean.shape)
        d_hat = h * g
        dX = (d_hat - d_hat.mean(axes, keepdims=True)
              - x_hat * (d_hat * x_hat).mean(axes, keepdims=True)) / np.sqrt(var + EPS)
        steps.append((g * x_hat + beta.reshape(mean.shape), dX,
                      (h * x_hat).sum(axes), h.sum(axes)))
        mean_run = (1 - torch_momentum) * mean_run + torch_momentum * mean
        var_biased = (1 - torch_momentum) * var_biased + torch_momentum * var
        var_unbiased = (1 - torch_momentum) * var_unbiased + torch_momentum * var * m / (m - 1)
    return steps, [a.reshape(-1) for a in (mean_run, var_biased, var_unbiased)]


def run_mxnet(layer, gamma, beta, batches, heads):
    for name, value in (('gamma', gamma), ('beta', beta)):
        param = getattr(layer, name)
        param.set_data(nd.array(value.reshape(param.shape)))
    results = []
    for X, head in zip(batches, heads):
        x = nd.array(X)
        x.attach_grad()
        with autograd.record():
            Y = layer(x)
            loss = (Y * nd.array(head)).sum()
        loss.backward()   # nn.BatchNorm on the CPU updates its running statistics here
        results.append((Y.asnumpy(), x.grad.asnumpy(), layer.gamma.grad().asnumpy().reshape(-1),
                        layer.beta.grad().asnumpy().reshape(-1)))
    if isinstance(layer, mx_nn.BatchNorm):
        stats = layer.running_mean, layer.running_var
    else:
        stats = layer.moving_mean, layer.moving_var
    return results, [s.data().asnumpy().reshape(-1) for s in stats]


def run_torch(layer, gamma, beta, batches, heads):
    weight, bias, running_mean, running_var = d2t.bn_tensors(layer)
    with torch.no_grad():
        weight.copy_(torch.from_numpy(gamma).reshape(weight.shape))
        bias.copy_(torch.from_numpy(beta).reshape(bias.shape))
    layer.train()
    results = []
    for X, head in zip(batches, heads):
        x = torch.from_numpy(X).requires_grad_()
        weight.grad = bias.grad = None
        Y = layer(x)
        (Y * torch.from_numpy(head)).sum().backward()
        results.append((Y.detach().numpy(), x.grad.numpy(), weight.grad.numpy().reshape(-1),
                        bias.grad.numpy().reshape(-1)))
    return results, [running_mean.numpy().reshape(-1).copy(),
                     running_var.numpy().reshape(-1).copy()]


def run_all(batches, heads, gamma, beta):
    C, num_dims = batches[0].shape[1], batches[0].ndim
    mx_scratch, mx_gluon = d2l_utils.BatchNorm(C, num_dims), mx_nn.BatchNorm(in_channels=C)
    mx_scratch.initialize()
    mx_gluon.initialize()
    torch_nn = torch.nn.BatchNorm2d(C) if num_dims == 4 else torch.nn.BatchNorm1d(C)
    return {
        'mxnet scratch': run_mxnet(mx_scratch, gamma, beta, batches, heads),
        'mxnet nn.BatchNorm': run_mxnet(mx_gluon, gamma, beta, batches, heads),
        'torch scratch': run_torch(d2t.BatchNorm(C, num_dims), gamma, beta, batches, heads),
        'torch nn.BatchNorm': run_torch(torch_nn, gamma, beta, batches, heads),
    }


@pytest.fixture(scope='module', params=['2-D', '4-D'])
def parity(request, images):
    batches = features(images, request.param)
    rng = np.random.RandomState(2)
    C = batches[0].shape[1]
    gamma = (1 + 0.5 * rng.randn(C)).astype(np.float32)
    beta = rng.randn(C).astype(np.float32)
    heads = [rng.randn(*X.shape).astype(np.float32) for X in batches]
    return run_all(batches, heads, gamma, beta), reference(batches, gamma, beta, heads), batches


@pytest.mark.parametrize('name', IMPLEMENTATIONS)
def test_training_outputs_and_gradients_match_the_float64_formula(parity, name):
    results, (steps, _), _ = parity
    atol = ATOL.get(name, DEFAULT_ATOL)
    for step, (got, expected) in enumerate(zip(results[name][0], steps), 1):
        for label, a, b in zip(('Y', 'dX', 'dgamma', 'dbeta'), got, expected):
            scale = max(1.0, np.abs(b).max())   # dgamma/dbeta sum thousands of terms
            err = np.abs(a.reshape(b.shape) - b).max() / scale
            assert err < atol, '%s, step %d: %s differs by %.1e (relative to %.1f)' % (
                name, step, label, err, scale)


def test_the_fused_mxnet_operator_is_the_least_precise_on_large_channels(parity):
    """Shows why ATOL has an entry for it: on 4-D input its output error is far above the rest."""
    results, (steps, _), batches = parity
    errors = {name: max(np.abs(r[0] - s[0]).max() for r, s in zip(results[name][0], steps))
              for name in IMPLEMENTATIONS}
    others = max(v for k, v in errors.items() if k != 'mxnet nn.BatchNorm')
    assert others < DEFAULT_ATOL, errors
    if batches[0].ndim == 4:
        assert errors['mxnet nn.BatchNorm'] > 10 * others, errors


@pytest.mark.parametrize('name', IMPLEMENTATIONS)
def test_running_statistics_follow_their_framework_convention(parity, name):
    """MXNet (both) and the scratch layers: 0.9 * old + 0.1 * biased batch variance; PyTorch's
    nn.BatchNorm: the same weights but the unbiased variance (m / (m - 1) times larger)."""
    results, (_, (mean, var_biased, var_unbiased)), _ = parity
    got_mean, got_var = results[name][1]
    expected_var = var_unbiased if name == 'torch nn.BatchNorm' else var_biased
    np.testing.assert_allclose(got_mean, mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_var, expected_var, rtol=1e-5, atol=1e-5)


def test_running_variances_agree_once_the_unbiased_one_is_converted(parity):
    results, _, batches = parity
    m = batches[0].size // batches[0].shape[1]   # values per feature/channel per batch
    torch_var = results['torch nn.BatchNorm'][1][1].astype(np.float64)
    initial = 0.9 ** STEPS     # weight left on the starting value 1, which was not rescaled
    converted = initial + (torch_var - initial) * (m - 1) / m
    for name in ('mxnet scratch', 'mxnet nn.BatchNorm', 'torch scratch'):
        np.testing.assert_allclose(results[name][1][1], converted, rtol=1e-5, atol=1e-6)
    if m < 1000:   # the 2-D case (m = 64): unconverted, they differ visibly
        assert np.abs(torch_var - results['mxnet nn.BatchNorm'][1][1]).max() > 1e-3


def one_step_running_mean(layer, X, backward):
    """Running mean of a fresh layer after one training-mode forward (and backward, if asked)."""
    if isinstance(layer, torch.nn.Module):
        layer.train()
        Y = layer(torch.from_numpy(X))
        if backward:
            Y.sum().backward()
        return d2t.bn_tensors(layer)[2].detach().numpy().reshape(-1).copy()
    layer.initialize()
    with autograd.record():
        Y = layer(nd.array(X))
    if backward:
        Y.backward()
    stat = layer.running_mean if isinstance(layer, mx_nn.BatchNorm) else layer.moving_mean
    return stat.data().asnumpy().reshape(-1)


def test_mxnet_nn_batchnorm_updates_in_backward_the_others_in_forward(images):
    X = features(images, '2-D')[0]
    expected = 0.1 * X.astype(np.float64).mean(0)
    layers = {'mxnet scratch': lambda: d2l_utils.BatchNorm(20, 2),
              'mxnet nn.BatchNorm': lambda: mx_nn.BatchNorm(in_channels=20),
              'torch scratch': lambda: d2t.BatchNorm(20, 2),
              'torch nn.BatchNorm': lambda: torch.nn.BatchNorm1d(20)}
    for name, make in layers.items():
        after_forward = one_step_running_mean(make(), X, backward=False)
        after_backward = one_step_running_mean(make(), X, backward=True)
        np.testing.assert_allclose(after_backward, expected, rtol=1e-5, atol=1e-6, err_msg=name)
        if name == 'mxnet nn.BatchNorm':
            assert np.all(after_forward == 0), 'MXNet CPU: nothing happens before backward'
        else:
            np.testing.assert_allclose(after_forward, expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_scratch_mode_follows_the_module_flag_not_grad_mode(images):
    X = torch.from_numpy(features(images, '4-D')[0])
    layer = d2t.BatchNorm(4, 4)
    batch_normalized = (X - X.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        X.var((0, 2, 3), unbiased=False, keepdim=True) + EPS)
    with torch.no_grad():   # training mode without gradients: still batch statistics
        Y = layer(X)
    torch.testing.assert_close(Y, batch_normalized, rtol=1e-4, atol=1e-4)
    assert layer.moving_mean.abs().max() > 0.1, 'and the moving statistics were updated'
    layer.eval()            # prediction mode with gradients on: moving statistics, no update
    before = layer.moving_mean.clone()
    Y = layer(X.clone().requires_grad_())
    expected = (X - layer.moving_mean) / torch.sqrt(layer.moving_var + EPS)
    torch.testing.assert_close(Y.detach(), expected)
    assert torch.equal(layer.moving_mean, before)


def test_moving_statistics_are_buffers_saved_loaded_and_moved(images):
    X = torch.from_numpy(features(images, '2-D')[0])
    layer = d2t.BatchNorm(20, 2)
    layer(X)                                        # one training step's statistics
    state = layer.state_dict()
    assert sorted(state) == ['beta', 'gamma', 'moving_mean', 'moving_var']
    assert [name for name, _ in layer.named_parameters()] == ['gamma', 'beta'], \
        'the optimizer must not see the moving statistics'
    fresh = d2t.BatchNorm(20, 2)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.eval()(X), layer.eval()(X), rtol=0, atol=0)
    layer.to(torch.float64)
    assert layer.moving_var.dtype == torch.float64
    layer.to('meta')                                # a second device that every machine has
    assert layer.moving_mean.device.type == 'meta' and layer.moving_var.device.type == 'meta'


@pytest.mark.parametrize('call, message', [
    (lambda: d2t.batch_norm(torch.ones(2, 6, 10), *[torch.ones(1, 6, 1, 1)] * 4, EPS, 0.9,
                            training=True), 'reshape to (N, C, L, 1)'),
    (lambda: d2t.batch_norm(torch.ones(2, 3, dtype=torch.int64), *[torch.ones(1, 3)] * 4, EPS,
                            0.9, training=True), 'X.float()'),
    (lambda: d2t.batch_norm(torch.ones(2, 3), torch.ones(3), *[torch.ones(1, 3)] * 3, EPS, 0.9,
                            training=True), 'gamma must have shape (1, 3)'),
    (lambda: d2t.BatchNorm(6, num_dims=3), 'num_dims must be 2'),
    (lambda: d2t.lenet(bn='gluon'), "bn must be one of None, 'scratch', 'torch'"),
])
def test_bad_input_raises_value_error_saying_how_to_fix_it(call, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        call()


def mxnet_lenet(bn):
    net = d2l_utils.lenet(bn=bn)
    net.initialize(init.Xavier())
    net(nd.zeros((2, 1, 28, 28)))   # completes deferred initialization
    return net


@pytest.mark.parametrize('bn, torch_bn', [(None, None), ('scratch', 'scratch'),
                                          ('gluon', 'torch')])
def test_lenet_is_the_same_net_as_the_mxnet_lenet(images, bn, torch_bn):
    d2t.set_seed(0)
    mx_net = mxnet_lenet(bn)
    net = d2t.load_mxnet_parameters(d2t.lenet(torch_bn), mx_net)
    assert sum(p.numel() for p in net.parameters()) == sum(
        p.data().size for p in mx_net.collect_params().values() if p.grad_req != 'null')
    X = images[:64]
    # prediction first: a training-mode forward updates torch's running statistics (and MXNet's
    # scratch layer's), but not nn.BatchNorm's on the CPU, which waits for backward
    mx_predict = mx_net(nd.array(X)).asnumpy()
    torch_predict = net.eval()(torch.from_numpy(X)).detach().numpy()
    with autograd.record():   # training mode: batch statistics
        mx_train = mx_net(nd.array(X)).asnumpy()
    torch_train = net.train()(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(torch_train, mx_train, atol=1e-3)
    np.testing.assert_allclose(torch_predict, mx_predict, atol=1e-5)


def test_lenet_weights_have_mxnet_xavier_bounds():
    d2t.set_seed(0)
    mx_net, net = mxnet_lenet('gluon'), d2t.lenet('torch')
    mx_weights = [b.weight.data().asnumpy() for b in mx_net if hasattr(b, 'weight')
                  and not isinstance(b, mx_nn.BatchNorm)]
    weights = [m.weight.detach().numpy() for m in net
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [w.shape for w in weights] == [w.shape for w in mx_weights]
    for w, w_mx in zip(weights, mx_weights):
        fan_in, fan_out = np.prod(w.shape[1:]), w.shape[0] * np.prod(w.shape[2:])
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        for a in (w, w_mx):
            assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
            # uniform on [-bound, bound]: std bound / sqrt(3), within sampling error
            assert abs(a.std() / (bound / np.sqrt(3)) - 1) < 4 / np.sqrt(a.size) + 0.02
    assert all(float(m.bias.detach().abs().max()) == 0 for m in net
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


def test_as_torch_iter_replays_the_same_batches(fashion_mnist_dir):
    def load():
        return d2l_utils.load_data_fashion_mnist(256, root=fashion_mnist_dir, train_subset=600,
                                                 test_subset=300, seed=0)
    train_iter, test_iter = load()
    torch_train, torch_test = (d2t.as_torch_iter(i) for i in load())
    for _ in range(2):   # two epochs: two different shuffles
        for (X, y), (X_t, y_t) in zip(train_iter, torch_train):
            np.testing.assert_array_equal(X_t.numpy(), X.asnumpy())
            np.testing.assert_array_equal(y_t.numpy(), y.asnumpy())
            assert y_t.dtype == torch.int64
    assert [len(y) for _, y in torch_test] == [len(y) for _, y in test_iter] == [256, 44]


def test_training_from_the_same_weights_follows_the_mxnet_run(fashion_mnist_dir):
    """One real epoch (8 batches of 256, lr 1.0) in both frameworks from identical weights."""
    def load():
        return d2l_utils.load_data_fashion_mnist(256, root=fashion_mnist_dir, train_subset=2048,
                                                 test_subset=1024, seed=0)
    d2t.set_seed(0)
    mx_net = mxnet_lenet('gluon')
    net = d2t.load_mxnet_parameters(d2t.lenet('torch'), mx_net)
    trainer = gluon.Trainer(mx_net.collect_params(), 'sgd', {'learning_rate': 1.0})
    mx_history = d2l_utils.train(mx_net, *load(), trainer, mx.cpu(), 1, progress=False,
                                 verbose=False)
    history = d2t.train(net, *load(), lr=1.0, num_epochs=1, progress=False, verbose=False)
    assert set(history.last) == set(d2l_utils.History.KEYS)
    assert abs(history.last['train_loss'] - mx_history.last['train_loss']) < 0.01
    assert abs(history.last['test_acc'] - mx_history.last['test_acc']) < 0.03
    # 8 steps learn (training mode); the running statistics still hold 0.9 ** 8 = 43% of their
    # starting values, so test accuracy (prediction mode) is not a measure of learning yet
    assert history.last['train_acc'] > 0.3          # 10 classes: chance is 0.1


def test_non_finite_loss_stops_training(fashion_mnist_dir):
    train_iter, test_iter = d2l_utils.load_data_fashion_mnist(
        256, root=fashion_mnist_dir, train_subset=512, test_subset=256, seed=0)
    net = d2t.lenet(None)
    with torch.no_grad():
        net[0].weight.fill_(float('nan'))
    with pytest.raises(d2l_utils.NonFiniteLossError, match='epoch 1, batch 1 of 2'):
        d2t.train(net, train_iter, test_iter, lr=1.0, num_epochs=1, progress=False, verbose=False)


def test_torch_threads_are_what_torch_picks_without_mxnet():
    """Importing MXNet sets torch to 1 thread; importing d2l_utils.pytorch puts back the default."""
    code = 'import {0}torch; print(torch.get_num_threads())'
    fresh = int(subprocess.run([sys.executable, '-c', code.format('')], capture_output=True,
                               text=True, check=True).stdout)
    after_mxnet = int(subprocess.run([sys.executable, '-c', code.format('mxnet, ')],
                                     capture_output=True, text=True, check=True).stdout)
    assert d2t.default_num_threads() == fresh
    assert d2t.NUM_THREADS_AT_IMPORT == after_mxnet
    restored = subprocess.run(
        [sys.executable, '-c', 'import torch; from d2l_utils import pytorch; '
         'print(torch.get_num_threads())'], capture_output=True, text=True, check=True).stdout
    assert int(restored) == fresh
