"""Data parallelism and batch norm across devices (d2l_utils.data_parallel,
cross_device_batch_norm, probes' device statistics): several CPU contexts stand in for GPUs (MXNet
gives each mx.cpu(k) its own parameter copies and its own engine worker, as it does for each GPU).
What MXNet itself does with several devices: tests/test_framework_facts.py."""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import (BatchNorm, CrossDeviceBatchNorm, device_copy_spread, lenet,
                       load_data_fashion_mnist, running_stats_by_device, set_seed, split_batch,
                       train)
from d2l_utils.data_parallel import forward_parts, needs_all_parts
from d2l_utils.device import as_ctx_list
from helpers import halves_that_differ

TWO = [mx.cpu(0), mx.cpu(1)]
SHAPES = {'dense': (10, 5), 'conv': (10, 3, 4, 4)}
# float32 agreement with nn.BatchNorm on the whole batch: measured max abs difference <= 7e-6
ATOL = 5e-5


def whole_batch_reference(x, gamma, beta, head):
    """nn.BatchNorm on one device over the whole batch: output, dX, dgamma, dbeta, running stats."""
    ref = nn.BatchNorm(in_channels=x.shape[1])
    ref.initialize()
    ref.gamma.set_data(nd.array(gamma))
    ref.beta.set_data(nd.array(beta))
    X = nd.array(x)
    X.attach_grad()
    with autograd.record():
        Y = ref(X)
        loss = (Y * nd.array(head)).sum()
    loss.backward()
    return dict(Y=Y.asnumpy(), dX=X.grad.asnumpy(), dgamma=ref.gamma.grad().asnumpy(),
                dbeta=ref.beta.grad().asnumpy(), mean=ref.running_mean.data().asnumpy(),
                var=ref.running_var.data().asnumpy())


@pytest.mark.parametrize('kind', sorted(SHAPES))
@pytest.mark.parametrize('num_devices', [1, 2, 3])
def test_cross_device_batch_norm_is_batch_norm_over_the_whole_batch(kind, num_devices):
    # 10 examples on 3 devices: parts of 4, 3 and 3, so uneven parts are covered too
    shape = SHAPES[kind]
    ctx = [mx.cpu(k) for k in range(num_devices)]
    rng = np.random.RandomState(1)
    x, head = halves_that_differ(shape), rng.randn(*shape)
    gamma, beta = 1 + 0.5 * rng.randn(shape[1]), rng.randn(shape[1])
    ref = whole_batch_reference(x, gamma, beta, head)

    layer = CrossDeviceBatchNorm(shape[1], num_dims=len(shape))
    layer.initialize(ctx=ctx)
    layer.gamma.set_data(nd.array(gamma).reshape(layer.gamma.shape))
    layer.beta.set_data(nd.array(beta).reshape(layer.beta.shape))
    Xs = gluon.utils.split_and_load(nd.array(x), ctx, even_split=False)
    heads = gluon.utils.split_and_load(nd.array(head), ctx, even_split=False)
    for X in Xs:
        X.attach_grad()
    with autograd.record():
        Ys = forward_parts(layer, Xs)
        losses = [(Y * h).sum() for Y, h in zip(Ys, heads)]
    autograd.backward(losses)

    assert [Y.context for Y in Ys] == ctx
    np.testing.assert_allclose(np.concatenate([Y.asnumpy() for Y in Ys]), ref['Y'], atol=ATOL)
    np.testing.assert_allclose(np.concatenate([X.grad.asnumpy() for X in Xs]), ref['dX'],
                               atol=ATOL)
    # each device's gamma/beta gradient covers its part; the Trainer sums them
    for name in ('gamma', 'beta'):
        summed = sum(getattr(layer, name).grad(c).asnumpy().reshape(-1) for c in ctx)
        np.testing.assert_allclose(summed, ref['d' + name], atol=ATOL)
    stats = running_stats_by_device(layer)[layer.prefix.rstrip('_')]
    for k in range(num_devices):
        np.testing.assert_allclose(stats['mean'][k], ref['mean'], atol=ATOL)
        np.testing.assert_allclose(stats['var'][k], ref['var'], atol=ATOL)
        np.testing.assert_array_equal(stats['mean'][k], stats['mean'][0])   # identical copies


def test_scratch_batch_norm_keeps_one_copy_of_its_moving_statistics_per_device():
    x = halves_that_differ((8, 3))
    bn = BatchNorm(3, num_dims=2)
    bn.initialize(ctx=TWO)
    with autograd.record():
        for X in gluon.utils.split_and_load(nd.array(x), TWO):
            bn(X)
    stats = running_stats_by_device(bn)[bn.prefix.rstrip('_')]
    np.testing.assert_allclose(stats['mean'], 0.1 * np.stack([x[:4].mean(0), x[4:].mean(0)]),
                               rtol=1e-5)
    assert device_copy_spread(bn)[bn.prefix.rstrip('_')]['mean_gap'] > 0.1


def test_prediction_mode_uses_each_devices_moving_statistics_like_batch_norm():
    x = halves_that_differ((6, 2, 3, 3))
    ours, scratch = CrossDeviceBatchNorm(2, num_dims=4), BatchNorm(2, num_dims=4)
    ours.initialize()
    scratch.initialize()
    for layer in (ours, scratch):
        layer.moving_mean.set_data(nd.array([[[[0.5]], [[-1.0]]]]))
        layer.moving_var.set_data(nd.array([[[[2.0]], [[0.5]]]]))
    X = nd.array(x)
    np.testing.assert_array_equal(ours(X).asnumpy(), scratch(X).asnumpy())


def lenet_run(bn, ctx, lr=0.05, seed=0):
    """LeNet+BN trained one epoch (4 batches of 256 real images) on the devices ``ctx``.

    lr 0.05 keeps training smooth: at lr 0.3 a one-device run and a two-device run of the same
    math part ways after 3-4 steps (max pooling amplifies rounding differences), here they stay
    within ~1e-6.
    """
    set_seed(seed)
    train_iter, test_iter = load_data_fashion_mnist(256, train_subset=1024, test_subset=256,
                                                    seed=seed)
    net = lenet(bn=bn)
    net.initialize(init.Xavier(), ctx=ctx)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
    history = train(net, train_iter, test_iter, trainer, ctx, 1, progress=False, verbose=False)
    return net, history


def max_param_difference(net_a, net_b):
    """Largest |a - b| over all Parameters (device 0's copy), with the parameter's name."""
    return max((np.abs(a.data(a.list_ctx()[0]).asnumpy() - b.data(b.list_ctx()[0]).asnumpy()).max(),
                name) for (name, a), b in zip(net_a.collect_params().items(),
                                              net_b.collect_params().values()))


def test_synchronized_bn_on_two_devices_trains_like_one_device():
    one, h_one = lenet_run(CrossDeviceBatchNorm, [mx.cpu()])
    two, h_two = lenet_run(CrossDeviceBatchNorm, TWO)
    diff, name = max_param_difference(one, two)
    assert diff < 1e-5, (name, diff)   # measured 6e-7; per-device BN differs by 4e-3 here
    assert h_two.last['train_loss'] == pytest.approx(h_one.last['train_loss'], rel=1e-5)
    assert all(gap == {'mean_gap': 0.0, 'var_gap': 0.0} for gap in device_copy_spread(two).values())


def test_per_device_bn_on_two_devices_keeps_different_running_statistics():
    one, _ = lenet_run('gluon', [mx.cpu()])
    two, _ = lenet_run('gluon', TWO)
    gaps = device_copy_spread(two)
    # measured: largest gaps 0.008 (mean, in standard deviations) and 0.006 (var, relative)
    # after these 4 steps; with synchronized statistics they are exactly 0
    assert max(g['mean_gap'] for g in gaps.values()) > 1e-3, gaps
    assert max(g['var_gap'] for g in gaps.values()) > 1e-3, gaps
    # the learned parameters are still the same on both devices (the Trainer syncs them) ...
    for name, param in two.collect_params().items():
        if param.grad_req != 'null':
            np.testing.assert_array_equal(param.data(TWO[0]).asnumpy(),
                                          param.data(TWO[1]).asnumpy(), err_msg=name)
    # ... but they followed a different path than on one device
    diff, name = max_param_difference(one, two)
    assert diff > 1e-4, (name, diff)


def test_forward_parts_is_a_plain_forward_for_nets_without_synchronized_layers():
    set_seed(0)
    net = lenet(bn='gluon')
    net.initialize(ctx=TWO)
    X = nd.random.uniform(shape=(6, 1, 28, 28))
    Xs = gluon.utils.split_and_load(X, TWO)
    for out, part in zip(forward_parts(net, Xs), Xs):
        np.testing.assert_array_equal(out.asnumpy(), net(part).asnumpy())


def test_forward_parts_runs_nested_sequentials_layer_by_layer():
    set_seed(0)
    inner = nn.Sequential()
    inner.add(nn.Dense(4), CrossDeviceBatchNorm(4, num_dims=2))
    net = nn.Sequential()
    net.add(inner, nn.Dense(3))
    net.initialize(ctx=TWO)
    X = nd.array(halves_that_differ((6, 5)))
    with autograd.record():
        hidden = forward_parts(inner, gluon.utils.split_and_load(X, TWO))
    together = np.concatenate([h.asnumpy() for h in hidden])
    np.testing.assert_allclose(together.mean(axis=0), 0, atol=1e-5)   # one batch, not two
    with autograd.record():
        outs = forward_parts(net, gluon.utils.split_and_load(X, TWO))
    assert [o.shape for o in outs] == [(3, 3), (3, 3)]


def test_forward_parts_explains_that_synchronized_layers_need_a_sequential():
    class Custom(nn.Block):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.bn = CrossDeviceBatchNorm(3, num_dims=2)

        def forward(self, X):
            return self.bn(X)

    net = Custom()
    net.initialize(ctx=TWO)
    with pytest.raises(TypeError, match='nn.Sequential'):
        forward_parts(net, gluon.utils.split_and_load(nd.ones((4, 3)), TWO))


def test_cross_device_batch_norm_refuses_frozen_gamma():
    layer = CrossDeviceBatchNorm(3, num_dims=2)
    layer.initialize()
    layer.gamma.grad_req = 'null'
    with pytest.raises(ValueError, match="grad_req 'write'"):
        with autograd.record():
            layer(nd.ones((4, 3)))


def test_as_ctx_list_accepts_devices_and_names_the_mistakes():
    assert as_ctx_list(None) == [mx.cpu()]
    assert as_ctx_list(mx.cpu(1)) == [mx.cpu(1)]
    assert as_ctx_list((mx.cpu(0), mx.cpu(1))) == TWO
    with pytest.raises(ValueError, match='empty list'):
        as_ctx_list([])
    with pytest.raises(TypeError, match="got 'cpu' \\(a str\\)"):
        as_ctx_list('cpu')
    with pytest.raises(TypeError, match='every entry'):
        as_ctx_list([mx.cpu(0), 1])
    with pytest.raises(ValueError, match='more than once'):
        as_ctx_list([mx.cpu(0), mx.cpu(0)])


def test_split_batch_needs_an_example_per_device():
    Xs, ys = split_batch(nd.ones((5, 2)), nd.arange(5), TWO)
    assert [X.shape[0] for X in Xs] == [3, 2] and [y.context for y in ys] == TWO
    with pytest.raises(ValueError, match='batch of 1 example\\(s\\) cannot be split across 2'):
        split_batch(nd.ones((1, 2)), nd.ones((1,)), TWO)


def test_split_batch_for_prediction_uses_the_first_devices_for_a_small_batch():
    three = [mx.cpu(k) for k in range(3)]
    Xs, ys = split_batch(nd.ones((2, 2)), nd.arange(2), three, 'evaluate_accuracy',
                         training=False)
    assert [X.context for X in Xs] == three[:2] and [X.shape[0] for X in Xs] == [1, 1]
    with pytest.raises(ValueError, match='evaluate_accuracy: a batch of 2'):
        split_batch(nd.ones((2, 2)), nd.arange(2), three, 'evaluate_accuracy')


def test_train_refuses_before_the_first_epoch_a_last_batch_smaller_than_the_devices():
    train_iter, test_iter = load_data_fashion_mnist(256, train_subset=257, test_subset=256,
                                                    seed=0)   # the last batch has 1 example
    net = lenet()
    net.initialize(ctx=TWO)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    with pytest.raises(ValueError, match='smallest batch has 1.*across 2 devices'):
        train(net, train_iter, test_iter, trainer, TWO, progress=False, verbose=False)


def test_needs_all_parts_finds_a_cross_device_layer_at_any_depth():
    inner = nn.Sequential()
    inner.add(nn.Dense(4), CrossDeviceBatchNorm(4, num_dims=2))
    outer = nn.Sequential()
    outer.add(inner, nn.Dense(3))
    assert needs_all_parts(outer) and needs_all_parts(inner)
    assert not needs_all_parts(lenet(bn='scratch'))
