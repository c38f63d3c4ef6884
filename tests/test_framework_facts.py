"""Facts about MXNet and PyTorch themselves that the notebooks and the package rely on.

A failure here means "MXNet or PyTorch behaves differently now", not "our code broke": the
notebook text and the code that depends on the fact (named in each test) need a look. Several CPU
contexts stand in for GPUs.
"""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from d2l_utils import load_data_fashion_mnist, running_stats_by_device
from helpers import halves_that_differ

TWO = [mx.cpu(0), mx.cpu(1)]


def test_nn_batch_norm_normalizes_each_device_part_with_its_own_statistics():
    x = halves_that_differ((8, 3))
    bn = nn.BatchNorm(in_channels=3)
    bn.initialize(ctx=TWO)
    Xs = gluon.utils.split_and_load(nd.array(x), TWO)
    with autograd.record():
        Ys = [bn(X) for X in Xs]
        losses = [(Y ** 2).sum() for Y in Ys]
    autograd.backward(losses)   # MXNet's CPU BatchNorm updates running stats in backward
    stats = running_stats_by_device(bn)[bn.prefix.rstrip('_')]
    for k, (Y, half) in enumerate(zip(Ys, (x[:4], x[4:]))):
        np.testing.assert_allclose(Y.asnumpy().mean(axis=0), 0, atol=1e-5)   # normalized alone
        np.testing.assert_allclose(stats['mean'][k], 0.1 * half.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(stats['var'][k], 0.9 + 0.1 * half.var(axis=0), rtol=1e-5)
    assert np.abs(stats['mean'][1] - stats['mean'][0]).max() > 0.2   # halves' means ~0 vs ~3


def test_save_parameters_writes_the_average_of_the_device_copies(tmp_path):
    # Gluon's Parameter._reduce averages the copies when saving; loading on one device gives
    # that average, which is neither device's copy.
    x = halves_that_differ((8, 3))
    bn = nn.BatchNorm(in_channels=3)
    bn.initialize(ctx=TWO)
    with autograd.record():
        losses = [(bn(X) ** 2).sum() for X in gluon.utils.split_and_load(nd.array(x), TWO)]
    autograd.backward(losses)
    copies = [bn.running_mean.data(c).asnumpy() for c in TWO]
    bn.save_parameters(str(tmp_path / 'bn.params'))
    loaded = nn.BatchNorm(in_channels=3)
    loaded.load_parameters(str(tmp_path / 'bn.params'), ctx=mx.cpu())
    np.testing.assert_allclose(loaded.running_mean.data().asnumpy(), np.mean(copies, axis=0),
                               rtol=1e-6)
    assert not np.allclose(loaded.running_mean.data().asnumpy(), copies[0])


def test_split_and_load_onto_one_device_is_a_copy_to_it():
    # d2l_utils.split_batch relies on it: one device needs no branch of its own
    X = nd.arange(6).reshape((3, 2))
    parts = gluon.utils.split_and_load(X, [mx.cpu(1)], even_split=False)
    assert len(parts) == 1 and parts[0].context == mx.cpu(1)
    np.testing.assert_array_equal(parts[0].asnumpy(), X.asnumpy())


def test_trainer_step_refuses_a_device_whose_gradient_is_stale():
    # the reason d2l_utils.train refuses a batch smaller than the number of devices
    net = nn.Dense(2, in_units=3)
    net.initialize(ctx=TWO)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    with autograd.record():
        loss = net(nd.ones((1, 3), ctx=TWO[0])).sum()   # only device 0 gets a part
    loss.backward()
    with pytest.raises(UserWarning, match='on context cpu\\(1\\) has not been updated'):
        trainer.step(1)


def test_torch_momentum_is_one_minus_mxnet_momentum(fashion_mnist_dir):
    # notebook A converts one into the other; d2l_utils.pytorch.batch_norm keeps the book's
    torch = pytest.importorskip(
        'torch', reason='PyTorch is optional: pip install -r requirements-torch.txt')
    train_iter, _ = load_data_fashion_mnist(64, root=fashion_mnist_dir, train_subset=64,
                                            test_subset=10, seed=0)
    images = next(iter(train_iter))[0].asnumpy().reshape(64, -1).astype(np.float64)
    X = (images @ np.random.RandomState(1).randn(784, 20) * 0.1).astype(np.float32)
    mx_layer = nn.BatchNorm(in_channels=20, momentum=0.8)
    mx_layer.initialize()
    with autograd.record():
        Y = mx_layer(nd.array(X))
    Y.backward()   # MXNet's CPU BatchNorm updates its running statistics in backward
    mxnet_mean = mx_layer.running_mean.data().asnumpy()
    torch_means = {}
    for momentum in (0.2, 0.8):
        layer = torch.nn.BatchNorm1d(20, momentum=momentum)
        layer(torch.from_numpy(X)).sum().backward()
        torch_means[momentum] = layer.running_mean.detach().numpy()
    np.testing.assert_allclose(torch_means[0.2], mxnet_mean, rtol=1e-5, atol=1e-6)
    # 0.8 vs 0.2 of the new value
    np.testing.assert_allclose(torch_means[0.8], 4 * mxnet_mean, rtol=1e-5, atol=1e-6)
