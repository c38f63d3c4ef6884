"""NoisyBatchNorm, gradient_direction_probe and train_steps, on real Fashion-MNIST batches."""
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import load_data_fashion_mnist, recalibrate_batch_norm, set_seed
from d2l_utils.experiments.landscape import NoisyBatchNorm, gradient_direction_probe, train_steps


@pytest.fixture(scope='module')
def data(fashion_mnist_dir):
    return load_data_fashion_mnist(64, root=fashion_mnist_dir, train_subset=512,
                                   test_subset=256, seed=0)


def mlp(bn=None):
    """784-32-32-10 sigmoid MLP; bn() builds the layer after each hidden Dense."""
    net = nn.Sequential()
    for _ in range(2):
        if bn is None:
            net.add(nn.Dense(32, activation='sigmoid'))
        else:
            net.add(nn.Dense(32), bn(), nn.Activation('sigmoid'))
    net.add(nn.Dense(10))
    return net


def test_noisy_batch_norm_gives_each_channel_a_new_mean_and_scale_every_step(data):
    X = next(iter(data[0]))[0].reshape((64, -1))
    set_seed(0)
    layer = NoisyBatchNorm(nn.BatchNorm(), max_shift=1.0, max_scale=3.0)
    layer.initialize()
    outputs = []
    for _ in range(2):
        with autograd.record():
            outputs.append(layer(X).asnumpy())
    # pixels that barely vary keep a smaller std: BN divides by sqrt(var + eps), not sqrt(var)
    features = X.asnumpy().std(axis=0) > 0.05
    for Y in outputs:
        mean, std = Y.mean(axis=0)[features], Y.std(axis=0)[features]
        assert np.all(np.abs(mean) <= 1.0 + 1e-5) and np.abs(mean).max() > 0.3
        assert np.all((std >= 1 - 1e-2) & (std <= 3.0 + 1e-5)) and std.max() > 1.5
    assert np.abs(outputs[0] - outputs[1]).max() > 0.1   # a new draw at every call
    # prediction: BN's own prediction times the mean scale (1 + 3) / 2, no randomness
    np.testing.assert_allclose(layer(X).asnumpy(), 2.0 * layer.bn(X).asnumpy(), rtol=1e-6)


def test_noisy_batch_norm_repeats_with_the_seed_and_rejects_bad_ranges(data):
    X = next(iter(data[0]))[0].reshape((64, -1))
    runs = []
    for _ in range(2):
        set_seed(3)
        layer = NoisyBatchNorm(nn.BatchNorm())
        layer.initialize()
        with autograd.record():
            runs.append(layer(X).asnumpy())
    np.testing.assert_array_equal(runs[0], runs[1])
    with pytest.raises(ValueError, match='max_scale must be a number >= 1'):
        NoisyBatchNorm(nn.BatchNorm(), max_scale=0.5)
    with pytest.raises(ValueError, match='max_shift must be a number >= 0'):
        NoisyBatchNorm(nn.BatchNorm(), max_shift=-1)


def test_recalibration_finds_the_bn_inside_a_noisy_layer(data):
    set_seed(0)
    net = mlp(lambda: NoisyBatchNorm(nn.BatchNorm()))
    net.initialize()
    assert recalibrate_batch_norm(net, data[0], num_batches=2) == 2


@pytest.mark.parametrize('bn', [None, nn.BatchNorm], ids=['plain', 'nn.BatchNorm'])
def test_probe_matches_sgd_steps_and_restores_the_net(data, bn):
    X, y = next(iter(data[0]))
    set_seed(0)
    net = mlp(bn)
    net.initialize(init.Xavier())
    net(X)
    before = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}
    etas = [0.1, 1.0]
    probe = gradient_direction_probe(net, X, y, etas)
    after = {k: p.data().asnumpy() for k, p in net.collect_params().items()}
    assert all(np.array_equal(before[k], after[k]) for k in before)   # weights and statistics
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for eta, probed in zip(etas, probe.losses):
        # the oracle: one SGD step of learning rate eta on the same batch, then the loss there
        for k, p in net.collect_params().items():
            p.set_data(nd.array(before[k]))
        trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': eta})
        with autograd.record():
            value = loss(net(X), y).mean()
        value.backward()
        trainer.step(1)
        with autograd.train_mode():
            stepped = loss(net(X), y).mean().asscalar()
        assert abs(stepped - probed) <= 1e-4 * max(1.0, abs(probed))
    expected_beta = np.max(probe.grad_changes / (np.array(etas) * probe.grad_norm))
    assert probe.beta_smoothness == pytest.approx(expected_beta)
    assert probe.loss_range >= abs(probe.losses[0] - probe.start_loss) > 0


def test_a_tiny_step_lowers_the_loss_by_eta_times_the_squared_gradient_norm(data):
    X, y = next(iter(data[0]))
    set_seed(0)
    net = mlp(nn.BatchNorm)
    net.initialize(init.Xavier())
    eta = 1e-3
    probe = gradient_direction_probe(net, X, y, [eta])
    predicted = -eta * probe.grad_norm ** 2   # first-order Taylor: the direction is the gradient
    assert (probe.losses[0] - probe.start_loss) == pytest.approx(predicted, rel=0.1)


def test_probe_rejects_bad_step_sizes(data):
    X, y = next(iter(data[0]))
    net = mlp()
    net.initialize()
    for bad in ([], [0.1, 0], [[0.1]]):
        with pytest.raises(ValueError, match='step_sizes must be'):
            gradient_direction_probe(net, X, y, bad)


def test_train_steps_measures_on_schedule_and_the_loss_falls(data):
    train_iter, test_iter = data
    set_seed(0)
    net = mlp(nn.BatchNorm)
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
    seen = []
    rows = train_steps(net, train_iter, trainer, 20, every=8,
                       measure=lambda step: seen.append(step) or {'twice': 2 * step})
    # 20 steps of 64 images: more than the 8 batches of one pass, so it cycles
    assert [r['step'] for r in rows] == seen == [0, 8, 16, 20]
    assert [r['twice'] for r in rows] == [0, 16, 32, 40]
    assert np.isnan(rows[0]['train_loss']) and rows[-1]['train_loss'] < rows[1]['train_loss']
    with pytest.raises(ValueError, match='num_steps must be a positive integer'):
        train_steps(net, train_iter, trainer, 0)
