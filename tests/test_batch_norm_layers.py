"""One idea of "a batch-norm layer" (``d2l_utils.models.is_batch_norm``): every kind the course
builds is found, recalibrated, folded and probed the same way, the book's own layer (NDArray
statistics) included. Each runs a LeNet trained a few steps on real Fashion-MNIST."""
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import (BatchNorm, BookBatchNorm, CrossDeviceBatchNorm, FastBatchNorm,
                       batch_norm_layers, fold_batch_norm, is_batch_norm, lenet,
                       load_data_fashion_mnist, recalibrate_batch_norm, running_stats_by_device,
                       set_seed)

KINDS = {'BatchNorm': BatchNorm, 'FastBatchNorm': FastBatchNorm,
         'CrossDeviceBatchNorm': CrossDeviceBatchNorm, 'BookBatchNorm': BookBatchNorm,
         'nn.BatchNorm': 'gluon'}
CHANNELS = [6, 16, 120, 84]   # LeNet's four BN layers


@pytest.fixture(scope='module')
def data(fashion_mnist_dir):
    return load_data_fashion_mnist(64, train_subset=512, test_subset=128, seed=0)


def trained(kind, data, steps=4):
    set_seed(0)
    net = lenet(bn=KINDS[kind])
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for step, (X, y) in enumerate(data[0]):
        if step == steps:
            break
        with autograd.record():
            value = loss(net(X), y)
        value.backward()
        trainer.step(X.shape[0])
    return net


def statistics(net):
    def values(stat):
        return (stat.data() if isinstance(stat, gluon.Parameter) else stat).asnumpy().reshape(-1)
    return [(values(mean), values(var)) for _, mean, var in batch_norm_layers(net)]


@pytest.mark.parametrize('kind', KINDS)
def test_every_kind_is_found_with_its_statistics(kind, data):
    net = trained(kind, data)
    layers = batch_norm_layers(net)
    assert [layer for layer, _, _ in layers] == [b for b in net if is_batch_norm(b)]
    assert [mean.size for mean, _ in statistics(net)] == CHANNELS
    assert not any(is_batch_norm(b) for b in net if isinstance(b, (nn.Conv2D, nn.Dense)))


@pytest.mark.parametrize('kind', KINDS)
def test_every_kind_is_recalibrated_to_its_inputs_statistics(kind, data):
    net = trained(kind, data)
    before = statistics(net)
    batches = [batch for _, batch in zip(range(4), data[0])]
    assert recalibrate_batch_norm(net, batches, num_batches=4) == 4
    after = statistics(net)
    # the first layer's input is conv0's output: measure it directly
    X = nd.concat(*[X for X, _ in batches], dim=0)
    conv = net[0](X).asnumpy()
    np.testing.assert_allclose(after[0][0], conv.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(after[0][1], conv.var(axis=(0, 2, 3)), rtol=1e-3, atol=1e-6)
    assert not np.allclose(before[0][1], after[0][1])   # the lagging averages were replaced


@pytest.mark.parametrize('kind', KINDS)
def test_every_kind_is_folded_into_the_layer_before_it(kind, data):
    net = trained(kind, data)
    folded = fold_batch_norm(net)
    X, _ = next(iter(data[1]))
    assert not any(is_batch_norm(b) for b in folded)
    np.testing.assert_allclose(folded(X).asnumpy(), net(X).asnumpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize('kind', KINDS)
def test_every_kind_is_probed_one_copy_per_device(kind, data):
    net = trained(kind, data)
    stats = running_stats_by_device(net)
    assert list(stats) == [layer.name for layer, _, _ in batch_norm_layers(net)]
    for (mean, var), entry in zip(statistics(net), stats.values()):
        assert len(entry['ctx']) == 1
        np.testing.assert_array_equal(entry['mean'], mean[None])
        np.testing.assert_array_equal(entry['var'], var[None])


def test_a_block_without_the_books_statistics_is_not_a_batch_norm_layer():
    class HalfWritten(nn.Block):
        def __init__(self):
            super().__init__()
            self.moving_mean = nd.zeros((1, 3))   # no moving_var yet
    assert not is_batch_norm(HalfWritten())
    assert not is_batch_norm(nn.LayerNorm()) and not is_batch_norm(nn.Dense(3))
    assert is_batch_norm(nn.BatchNorm()) and is_batch_norm(BookBatchNorm(3, 2))
