"""recalibrate_batch_norm (PreciseBN) and train(..., recalibrate=k), on real Fashion-MNIST.

The oracle for the statistics is computed independently of the function under test: the net's
layers are run one by one in training mode, every BN layer's input is kept, and numpy's own
mean and variance (float64) of all those inputs are what the layer must end up holding.
"""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, gluon, init
from mxnet.gluon import nn

from d2l_utils import (BatchNorm, BookBatchNorm, CrossDeviceBatchNorm, FastBatchNorm, lenet,
                       load_data_fashion_mnist, recalibrate_batch_norm, set_seed, train)
from d2l_utils import batch_norm_layers

LAYER_KINDS = {
    'BatchNorm': BatchNorm,
    'FastBatchNorm': FastBatchNorm,
    'CrossDeviceBatchNorm': CrossDeviceBatchNorm,
    'nn.BatchNorm': 'gluon',
}


@pytest.fixture(scope='module')
def data(fashion_mnist_dir):
    return load_data_fashion_mnist(64, train_subset=1024, test_subset=512, seed=0)


def trained_lenet(kind, data, ctx=(mx.cpu(),), steps=6, seed=0):
    """A LeNet with `kind` BN layers after `steps` SGD steps at lr 1.0 (moving stats lagging)."""
    set_seed(seed)
    net = lenet(bn=LAYER_KINDS[kind])
    net.initialize(init.Xavier(), ctx=list(ctx))
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for step, (X, y) in enumerate(data[0]):
        if step == steps:
            break
        Xs = gluon.utils.split_and_load(X, list(ctx))
        ys = gluon.utils.split_and_load(y, list(ctx))
        with autograd.record():
            losses = [loss(net(Xk), yk) for Xk, yk in zip(Xs, ys)]
        autograd.backward(losses)
        trainer.step(X.shape[0])
    return net


def population_stats_by_hand(net, batches, kinds=(BatchNorm, nn.BatchNorm)):
    """Each BN layer's input over all batches, run layer by layer: [(mean (C,), var (C,))]."""
    kept = {}
    with autograd.train_mode():
        for X, _ in batches:
            for block in net:
                if isinstance(block, kinds):
                    x = X.asnumpy().astype(np.float64)
                    kept.setdefault(block.name, []).append(
                        np.moveaxis(x, 1, 0).reshape(x.shape[1], -1))
                X = block(X)
    stats = []
    for parts in kept.values():
        values = np.concatenate(parts, axis=1)
        stats.append((values.mean(axis=1), values.var(axis=1)))
    return stats


def stored_stats(net, ctx=None):
    return [(mean.data(ctx).asnumpy().reshape(-1), var.data(ctx).asnumpy().reshape(-1))
            for _, mean, var in batch_norm_layers(net)]


@pytest.mark.parametrize('kind', sorted(LAYER_KINDS))
def test_recalibrated_statistics_are_the_population_statistics_of_each_layer_input(kind, data):
    net = trained_lenet(kind, data)
    batches = list(data[0].in_order())[:5]
    # the oracle runs first: the scratch layers write their own moving averages in a
    # training-mode forward, which recalibration must overwrite completely
    expected = population_stats_by_hand(net, batches)
    used = recalibrate_batch_norm(net, batches, num_batches=5)
    assert used == 5
    got = stored_stats(net)
    assert len(got) == len(expected) == 4
    for (mean, var), (mean_ref, var_ref) in zip(got, expected):
        np.testing.assert_allclose(mean, mean_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var, var_ref, rtol=1e-5, atol=1e-7)


def test_a_layer_with_the_books_plain_ndarray_statistics_is_recalibrated_too(data):
    # the book's layer keeps moving_mean/moving_var as NDArray attributes, as a learner's own
    # layer may; recalibration finds it by those names and replaces the arrays
    set_seed(0)
    net = lenet(bn=BookBatchNorm)
    net.initialize(init.Xavier())
    batches = list(data[0].in_order())[:3]
    with autograd.record():
        net(batches[0][0])
    expected = population_stats_by_hand(net, batches, kinds=(BookBatchNorm,))
    assert recalibrate_batch_norm(net, batches, num_batches=3) == 3
    layers = [block for block in net if isinstance(block, BookBatchNorm)]
    assert len(layers) == len(expected) == 4
    for layer, (mean_ref, var_ref) in zip(layers, expected):
        assert isinstance(layer.moving_var, mx.nd.NDArray)
        np.testing.assert_allclose(layer.moving_mean.asnumpy().reshape(-1), mean_ref,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.moving_var.asnumpy().reshape(-1), var_ref,
                                   rtol=1e-5, atol=1e-7)


def test_recalibration_measures_inputs_not_the_layers_own_update(data):
    # MXNet's CPU nn.BatchNorm updates its running statistics only in backward: after forward
    # passes alone they would not move. Recalibration must move them all the same.
    net = trained_lenet('nn.BatchNorm', data)
    before = stored_stats(net)
    recalibrate_batch_norm(net, data[0].in_order(), num_batches=3)
    after = stored_stats(net)
    assert all(np.abs(a[0] - b[0]).max() > 1e-3 for a, b in zip(after, before))


@pytest.mark.parametrize('kind', ['BatchNorm', 'nn.BatchNorm', 'CrossDeviceBatchNorm'])
def test_recalibration_on_two_devices_writes_the_same_statistics_to_both_copies(kind, data):
    devices = [mx.cpu(0), mx.cpu(1)]
    net = trained_lenet(kind, data, ctx=devices)
    batches = list(data[0].in_order())[:4]
    recalibrate_batch_norm(net, batches, num_batches=4)
    on_first, on_second = stored_stats(net, devices[0]), stored_stats(net, devices[1])
    for (m0, v0), (m1, v1) in zip(on_first, on_second):
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(v0, v1)
    # The first BN layer sees the conv output of the raw images, whatever the other layers do:
    # the two-device run must measure exactly what one device measures on the whole batches.
    reference = population_stats_by_hand(net, [(X.as_in_context(devices[0]), y)
                                               for X, y in batches])
    np.testing.assert_allclose(on_first[0][0], reference[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(on_first[0][1], reference[0][1], rtol=1e-5, atol=1e-7)


def test_recalibration_changes_no_learned_parameter_and_no_gradient(data):
    net = trained_lenet('BatchNorm', data)
    learned = {name: (p.data().asnumpy(), p.grad().asnumpy())
               for name, p in net.collect_params().items() if p.grad_req != 'null'}
    recalibrate_batch_norm(net, data[0].in_order(), num_batches=4)
    for name, p in net.collect_params().items():
        if p.grad_req != 'null':
            np.testing.assert_array_equal(p.data().asnumpy(), learned[name][0], err_msg=name)
            np.testing.assert_array_equal(p.grad().asnumpy(), learned[name][1], err_msg=name)


def test_recalibration_uses_at_most_num_batches_and_says_how_many(data):
    net = trained_lenet('nn.BatchNorm', data)
    assert recalibrate_batch_norm(net, data[0].in_order(), num_batches=2) == 2
    # an iterable shorter than num_batches: all of it, and the count says so
    assert recalibrate_batch_norm(net, list(data[0].in_order())[:3], num_batches=100) == 3


def fit(data, epochs, **kwargs):
    set_seed(3)
    net = lenet(bn='gluon')
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    train_iter, test_iter = load_data_fashion_mnist(128, train_subset=1024, test_subset=512,
                                                    seed=5)
    history = train(net, train_iter, test_iter, trainer, mx.cpu(), epochs, progress=False,
                    verbose=False, **kwargs)
    return net, history


def test_training_with_recalibrated_accuracy_trains_bit_for_bit_as_without(data):
    net_plain, plain = fit(data, 2)
    net_recal, recal = fit(data, 2, recalibrate=4)
    for key in ('train_loss', 'train_acc', 'test_acc'):
        assert plain.column(key) == recal.column(key), key
    for (name, p), q in zip(net_plain.collect_params().items(),
                            net_recal.collect_params().values()):
        np.testing.assert_array_equal(p.data().asnumpy(), q.data().asnumpy(), err_msg=name)
    assert 'test_acc_recalibrated' not in plain.last
    assert all(0.0 <= acc <= 1.0 for acc in recal.column('test_acc_recalibrated'))


def test_recalibrated_accuracy_is_the_accuracy_after_recalibrating(data):
    net, history = fit(data, 1, recalibrate=4)
    train_iter, test_iter = load_data_fashion_mnist(128, train_subset=1024, test_subset=512,
                                                    seed=5)
    from d2l_utils import evaluate_accuracy
    recalibrate_batch_norm(net, train_iter.in_order(), num_batches=4)
    assert evaluate_accuracy(test_iter, net) == history.last['test_acc_recalibrated']


def test_a_net_without_batch_norm_is_a_clear_error(data):
    net = lenet()
    net.initialize()
    with pytest.raises(ValueError, match='contains no batch normalization layer'):
        recalibrate_batch_norm(net, data[0])


def test_an_uninitialized_net_is_a_clear_error(data):
    with pytest.raises(ValueError, match=r'not initialized.*net\.initialize'):
        recalibrate_batch_norm(lenet(bn='gluon'), data[0])


def test_no_batches_is_a_clear_error(data):
    net = trained_lenet('BatchNorm', data, steps=1)
    with pytest.raises(ValueError, match='yielded no batch'):
        recalibrate_batch_norm(net, [])
    with pytest.raises(ValueError, match='yielded no batch'):
        recalibrate_batch_norm(net, iter([]))


@pytest.mark.parametrize('bad', [0, -3, 2.5, '10', True])
def test_num_batches_that_is_not_a_positive_integer_is_named_with_its_value(bad, data):
    net = trained_lenet('BatchNorm', data, steps=1)
    with pytest.raises(ValueError) as caught:
        recalibrate_batch_norm(net, data[0], num_batches=bad)
    message = str(caught.value)   # the argument, what it must be, and what came
    assert 'num_batches' in message and 'positive integer' in message and repr(bad) in message


def test_a_hybridized_net_is_a_clear_error(data):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, kernel_size=5), nn.BatchNorm(), nn.Activation('sigmoid'), nn.Dense(10))
    net.initialize()
    net.hybridize()
    with pytest.raises(ValueError, match='hybridize'):
        recalibrate_batch_norm(net, data[0], num_batches=1)


def test_train_rejects_a_recalibrate_that_is_not_a_number_of_batches(data):
    net = lenet(bn='gluon')
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    with pytest.raises(ValueError, match=r'recalibrate must be a positive integer.*got -1'):
        train(net, data[0], data[1], trainer, num_epochs=1, recalibrate=-1, progress=False)
    with pytest.raises(ValueError, match='recalibrate_iter'):
        train(net, list(data[0]), data[1], trainer, num_epochs=1, recalibrate=2, progress=False)


@pytest.mark.parametrize('kind', ['BatchNorm', 'nn.BatchNorm'])
def test_a_nan_pixel_is_refused_naming_the_batch_and_no_statistic_changes(kind, data):
    # battery row B2: one NaN pixel in batch 2 used to write NaN into every BN layer
    net = trained_lenet(kind, data, steps=2)
    batches = [(X.copy(), y) for X, y in data[0].in_order()][:4]
    batches[1][0][0, 0, 5, 5] = np.nan
    before = stored_stats(net)
    expected = r'X of batch 2 \(shape \(64, 1, 28, 28\)\) has 1 NaN.*No statistics were changed'
    with pytest.raises(FloatingPointError, match=expected):
        recalibrate_batch_norm(net, batches, 4)
    for (mean0, var0), (mean1, var1) in zip(before, stored_stats(net)):
        np.testing.assert_array_equal(mean0, mean1)
        np.testing.assert_array_equal(var0, var1)


def test_a_nan_pixel_leaves_the_books_plain_statistics_as_they_were(data):
    set_seed(0)
    net = nn.Sequential()
    net.add(nn.Conv2D(6, kernel_size=5), BookBatchNorm(6, num_dims=4), nn.Dense(10))
    net.initialize()
    net(next(iter(data[0]))[0])
    layer = net[1]
    mean_before = layer.moving_mean.asnumpy()
    batches = [(X.copy(), y) for X, y in data[0].in_order()][:3]
    batches[2][0][1, 0, 0, 0] = np.inf
    with pytest.raises(FloatingPointError, match='batch 3'):
        recalibrate_batch_norm(net, batches, 3)
    np.testing.assert_array_equal(layer.moving_mean.asnumpy(), mean_before)


def test_a_hybridized_net_that_ran_is_told_to_turn_hybridization_off(data):
    # battery row B3: the layer ran inside the cached graph, not "never"
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, kernel_size=5), nn.BatchNorm(), nn.Activation('sigmoid'), nn.Dense(10))
    net.initialize()
    net.hybridize()
    net(next(iter(data[0]))[0])
    with pytest.raises(ValueError, match=r'hybridize\(active=False\)'):
        recalibrate_batch_norm(net, data[0].in_order(), num_batches=1)
    net.hybridize(active=False)   # the advice works
    assert recalibrate_batch_norm(net, data[0].in_order(), num_batches=1) == 1


def test_batches_of_inputs_only_are_a_clear_error(data):
    # battery row B8: a list of X without labels
    net = trained_lenet('BatchNorm', data, steps=1)
    with pytest.raises(TypeError, match=r'\(X, y\) pairs.*batch 1 is an NDArray of shape '
                                        r'\(64, 1, 28, 28\)'):
        recalibrate_batch_norm(net, [X for X, _ in data[0].in_order()], 2)
