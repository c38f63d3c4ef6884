"""deep_mlp, MeanOnlyBatchNorm and VarianceOnlyBatchNorm, on real Fashion-MNIST batches."""
import math

import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import (MeanOnlyBatchNorm, VarianceOnlyBatchNorm, batch_norm_layers, deep_mlp,
                       lenet, load_data_fashion_mnist, recalibrate_batch_norm, set_seed,
                       train_steps)


@pytest.fixture(scope='module')
def data(fashion_mnist_dir):
    return load_data_fashion_mnist(64, root=fashion_mnist_dir, train_subset=2048,
                                   test_subset=256, seed=0)


def standardized(Y, axes):
    """Y with every channel's mean 2 and variance 9: far from 0 and 1, so each half shows."""
    y = Y.asnumpy().astype(np.float64)
    y = (y - y.mean(axis=axes, keepdims=True)) / y.std(axis=axes, keepdims=True)
    return nd.array(3 * y + 2 + np.random.RandomState(0).uniform(-1, 1, size=y.shape[1])
                    .reshape((1, -1) + (1,) * (y.ndim - 2)))


@pytest.fixture(scope='module')
def features(data):
    """Real Fashion-MNIST features: a 5x5 convolution's (64, 6, 24, 24) and a Dense layer's
    (64, 50), each channel moved to a mean near 2 and a variance 9."""
    set_seed(0)
    conv, dense = nn.Conv2D(6, kernel_size=5), nn.Dense(50)
    conv.initialize(init.Xavier())
    dense.initialize(init.Xavier())
    X = next(iter(data[0]))[0]
    return {4: standardized(conv(X), (0, 2, 3)), 2: standardized(dense(X), 0)}


@pytest.fixture(scope='module')
def conv_features(features):
    return features[4]


def kinds(net):
    return [type(block).__name__ for block in net]


def test_deep_mlp_has_the_asked_depth_and_order_and_gives_ten_scores(data):
    X = next(iter(data[0]))[0]
    for dropout_position, block in (('after_activation', ['Dense', 'BatchNorm', 'Activation',
                                                          'Dropout']),
                                    ('before_bn', ['Dense', 'Dropout', 'BatchNorm',
                                                   'Activation'])):
        net = deep_mlp(5, width=16, bn=True, dropout=0.5, dropout_position=dropout_position)
        assert kinds(net) == block * 5 + ['Dense']
        net.initialize()
        assert net(X).shape == (64, 10)
    plain = deep_mlp(3, width=16, activation='sigmoid')
    assert kinds(plain) == ['Dense', 'Activation'] * 3 + ['Dense']
    assert kinds(deep_mlp(2, bn=MeanOnlyBatchNorm))[1] == 'MeanOnlyBatchNorm'


@pytest.mark.parametrize('kwargs, word', [
    (dict(num_hidden=0), 'num_hidden'), (dict(num_hidden=3, width=0), 'width'),
    (dict(num_hidden=3, activation='gelu'), 'activation'),
    (dict(num_hidden=3, dropout=1.0), 'dropout'),
    (dict(num_hidden=3, dropout_position='before_dense'), 'dropout_position'),
    (dict(num_hidden=3, bn='yes'), 'bn')])
def test_deep_mlp_names_the_bad_argument(kwargs, word):
    with pytest.raises(ValueError, match='deep_mlp: %s must' % word):
        deep_mlp(**kwargs)


def channel_stats(Y):
    y = Y.asnumpy().astype(np.float64)
    axes = (0,) if y.ndim == 2 else (0, 2, 3)
    return y.mean(axis=axes), y.var(axis=axes)


@pytest.mark.parametrize('ndim', [2, 4])
def test_mean_only_removes_the_mean_and_leaves_the_variance(features, ndim):
    X = features[ndim]
    layer = MeanOnlyBatchNorm()
    layer.initialize()
    with autograd.record():
        Y = layer(X)
    mean_in, var_in = channel_stats(X)
    mean_out, var_out = channel_stats(Y)
    assert np.abs(mean_in).min() > 0.9                 # there was a mean to remove
    np.testing.assert_allclose(mean_out, 0, atol=1e-4 * np.abs(mean_in).max())
    np.testing.assert_allclose(var_out, var_in, rtol=1e-3)


@pytest.mark.parametrize('ndim', [2, 4])
def test_variance_only_scales_to_unit_variance_and_leaves_the_mean(features, ndim):
    X = features[ndim]
    layer = VarianceOnlyBatchNorm()
    layer.initialize()
    with autograd.record():
        Y = layer(X)
    mean_in, var_in = channel_stats(X)
    mean_out, var_out = channel_stats(Y)
    assert np.abs(var_in - 1).min() > 7                # there was a variance to remove
    np.testing.assert_allclose(mean_out, mean_in, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(var_out, var_in / (var_in + 1e-5), rtol=1e-3)


def test_the_gradients_are_those_of_the_formulas(conv_features):
    """The oracle: autograd through the formula written with plain nd operations."""
    X = conv_features[:16, :, :6, :6].astype('float64')
    head = nd.random.normal(shape=X.shape, dtype='float64')

    def mean_only(X):
        return X - X.mean(axis=(0, 2, 3), keepdims=True)

    def variance_only(X):
        mean = X.mean(axis=(0, 2, 3), keepdims=True)
        var = nd.square(X - mean).mean(axis=(0, 2, 3), keepdims=True)
        return (X - mean) / nd.sqrt(var + 1e-5) + mean

    for layer_class, formula in ((MeanOnlyBatchNorm, mean_only),
                                 (VarianceOnlyBatchNorm, variance_only)):
        layer = layer_class()
        layer.initialize()
        layer.cast('float64')
        grads = []
        for fn in (layer, formula):
            x = X.copy()
            x.attach_grad()
            with autograd.record():
                Y = fn(x)
            Y.backward(head)
            grads.append(x.grad.asnumpy())
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-9)


def test_prediction_uses_the_running_statistics_that_recalibration_finds(conv_features):
    X = conv_features
    mean, var = channel_stats(X)
    for layer_class, expected in ((MeanOnlyBatchNorm, lambda x: x - mean[:, None, None]),
                                  (VarianceOnlyBatchNorm,
                                   lambda x: (x - mean[:, None, None])
                                   / np.sqrt(var[:, None, None] + 1e-5)
                                   + mean[:, None, None])):
        net = nn.Sequential()
        net.add(layer_class())
        net.initialize()
        net(X)
        assert [type(layer) for layer, _, _ in batch_norm_layers(net)] == [layer_class]
        recalibrate_batch_norm(net, [(X, None)], 1)
        Y = net(X).asnumpy()                     # prediction mode: the recalibrated statistics
        np.testing.assert_allclose(Y, expected(X.asnumpy()), rtol=1e-4, atol=1e-4)


def test_lite_layers_refuse_to_be_hybridized():
    net = deep_mlp(2, bn=VarianceOnlyBatchNorm)
    with pytest.raises(ValueError, match='VarianceOnlyBatchNorm cannot be hybridized'):
        net.hybridize()


@pytest.mark.parametrize('bn', [MeanOnlyBatchNorm, VarianceOnlyBatchNorm])
def test_a_lenet_with_a_lite_batch_norm_learns_in_a_short_real_run(data, bn):
    set_seed(0)
    net = lenet(bn=lambda num_features, num_dims: bn(), activation='relu')
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.2})
    rows = train_steps(net, data[0], trainer, 60, every=30)
    assert not rows[-1].get('diverged')
    assert rows[-1]['train_loss'] < 0.8 * math.log(10), rows


def test_a_deep_bn_mlp_learns_in_a_short_real_run(data):
    set_seed(0)
    net = deep_mlp(8, width=32, bn=True)
    net.initialize(init.Xavier())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.3})
    rows = train_steps(net, data[0], trainer, 40, every=20)
    assert rows[-1]['train_loss'] < 0.6 * math.log(10), rows
