"""fold_batch_norm: the folded LeNet predicts as the original, on real data, for every BN kind."""
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import FastBatchNorm, lenet, load_data_fashion_mnist, set_seed
from d2l_utils import relative_error
from d2l_utils.experiments.folding import ChannelShift, fold_batch_norm
from d2l_utils.models import is_batch_norm
from d2l_utils.layers import BatchNorm
from d2l_utils import batch_norm_layers

BN_KINDS = {'scratch': 'scratch', 'FastBatchNorm': FastBatchNorm, 'nn.BatchNorm': 'gluon'}


@pytest.fixture(scope='module')
def data(fashion_mnist_dir):
    train_iter, test_iter = load_data_fashion_mnist(64, root=fashion_mnist_dir, train_subset=512,
                                                    test_subset=256, seed=0)
    return train_iter, next(iter(test_iter))[0]


def trained_lenet(train_iter, bn, use_bias=True, steps=8):
    """A LeNet trained for a few SGD steps at lr 1.0, so its moving statistics are not trivial."""
    set_seed(0)
    net = lenet(bn=bn, use_bias=use_bias)
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for step, (X, y) in enumerate(train_iter, 1):
        with autograd.record():
            value = loss(net(X), y)
        value.backward()
        trainer.step(X.shape[0])
        if step == steps:
            break
    return net


def parameter_values(net):
    return {name: p.data().asnumpy().copy() for name, p in net.collect_params().items()}


@pytest.mark.parametrize('use_bias', [True, False], ids=['with bias', 'use_bias=False'])
@pytest.mark.parametrize('kind', list(BN_KINDS), ids=list(BN_KINDS))
def test_folded_lenet_predicts_as_the_original(data, kind, use_bias):
    train_iter, X = data
    net = trained_lenet(train_iter, BN_KINDS[kind], use_bias)
    for _, mean, var in batch_norm_layers(net):   # the statistics moved away from 0 and 1
        assert np.abs(mean.data().asnumpy()).max() > 1e-3
        assert np.abs(var.data().asnumpy() - 1).max() > 1e-3
    folded = fold_batch_norm(net)
    error = relative_error(net(X).asnumpy(), folded(X).asnumpy())
    assert error <= 1e-5, error
    # and the predicted classes are the same for the test images
    assert (net(X).argmax(axis=1) == folded(X).argmax(axis=1)).asnumpy().all()


@pytest.mark.parametrize('kind', list(BN_KINDS), ids=list(BN_KINDS))
def test_folded_net_has_no_bn_layer_and_every_affine_layer_is_shifted(data, kind):
    for use_bias in (True, False):
        net = trained_lenet(data[0], BN_KINDS[kind], use_bias=use_bias)
        folded = fold_batch_norm(net)
        blocks = []
        folded.apply(blocks.append)
        assert not any(is_batch_norm(b) for b in blocks)
        affine = [b for b in blocks if isinstance(b, (nn.Conv2D, nn.Dense))]
        shifts = [b for b in blocks if isinstance(b, ChannelShift)]
        assert len(affine) == 5
        if use_bias:   # LeNet's four BN layers are gone, their shift is in the biases
            assert all(b.bias is not None for b in affine) and not shifts
            assert len(folded) == len(net) - 4
        else:          # a bias-less layer cannot get a bias: a ChannelShift takes the BN's place
            assert len(shifts) == 4 and len(folded) == len(net)


def test_folding_leaves_the_original_untouched_and_shares_nothing_with_it(data):
    train_iter, X = data
    net = trained_lenet(train_iter, 'gluon')
    before, prediction = parameter_values(net), net(X).asnumpy()
    folded = fold_batch_norm(net)
    after = parameter_values(net)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    for p in folded.collect_params().values():   # changing the folded net ...
        p.set_data(p.data() * 0)
    np.testing.assert_array_equal(net(X).asnumpy(), prediction)   # ... does not change net


def test_gamma_is_ignored_when_nn_batchnorm_has_scale_false(data):
    train_iter, X = data
    net = trained_lenet(train_iter, lambda c, d: nn.BatchNorm(scale=False))
    for layer, _, _ in batch_norm_layers(net):
        layer.gamma.set_data(nd.full(layer.gamma.shape, 3.0))   # nn.BatchNorm uses 1 anyway
    assert relative_error(net(X).asnumpy(), fold_batch_norm(net)(X).asnumpy()) <= 1e-5


def test_bn_after_the_activation_gives_a_clear_error(data):
    net = lenet(bn='gluon', bn_position='after_activation')
    net.initialize()
    net(data[1])
    with pytest.raises(ValueError, match="follows sigmoid.*bn_position='after_activation'"):
        fold_batch_norm(net)


def test_bn_after_a_fused_activation_gives_a_clear_error():
    net = nn.Sequential()
    net.add(nn.Dense(8, activation='relu', in_units=4), BatchNorm(8, 2), nn.Dense(3))
    net.initialize()
    with pytest.raises(ValueError, match='activation.*fused into the layer'):
        fold_batch_norm(net)


def test_bn_first_or_after_pooling_gives_a_clear_error():
    first = nn.Sequential()
    first.add(nn.BatchNorm(in_channels=1), nn.Conv2D(2, 3, in_channels=1))
    after_pool = nn.Sequential()
    after_pool.add(nn.Conv2D(2, 3, in_channels=1), nn.MaxPool2D(), nn.BatchNorm(in_channels=2))
    for net, what in ((first, 'follows nothing'), (after_pool, 'follows pool')):
        net.initialize()
        with pytest.raises(ValueError, match=what):
            fold_batch_norm(net)


def test_an_uninitialized_net_or_a_non_sequential_gives_a_clear_error():
    net = lenet(bn='gluon')
    net.initialize()   # deferred: no shapes yet
    with pytest.raises(ValueError, match='deferred initialization'):
        fold_batch_norm(net)
    with pytest.raises(ValueError, match='expects an nn.Sequential'):
        fold_batch_norm(nn.Dense(3))


def hybrid_conv_dense_net():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, kernel_size=5), nn.BatchNorm(), nn.Activation('sigmoid'),
            nn.MaxPool2D(2, 2), nn.Dense(32), nn.BatchNorm(), nn.Activation('sigmoid'),
            nn.Dense(10))
    return net


@pytest.mark.parametrize('build', [hybrid_conv_dense_net, lambda: lenet(bn='gluon')],
                         ids=['HybridSequential', "lenet(bn='gluon')"])
def test_a_hybridized_net_that_has_run_folds_and_predicts_as_the_original(data, build, capfd):
    # battery rows C3 and C4: "ctypes objects containing pointers cannot be pickled"
    train_iter, X = data
    set_seed(0)
    net = build()
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    net.hybridize()
    for step, (Xb, y) in enumerate(train_iter, 1):
        with autograd.record():
            value = loss(net(Xb), y)
        value.backward()
        trainer.step(Xb.shape[0])
        if step == 4:
            break
    folded = fold_batch_norm(net)
    assert relative_error(net(X).asnumpy(), folded(X).asnumpy()) <= 1e-5
    folded.hybridize()   # the folded net compiles a graph of its own
    assert relative_error(net(X).asnumpy(), folded(X).asnumpy()) <= 1e-5
    assert 'CachedOp' not in capfd.readouterr().err


def test_a_net_trained_on_two_devices_folds_and_predicts_as_the_original(data):
    # battery row C5: the deepcopy used to reach the Trainer's KVStore
    import mxnet as mx

    from d2l_utils import train
    train_iter, X = data
    set_seed(0)
    net = lenet(bn='scratch')
    devices = [mx.cpu(0), mx.cpu(1)]
    net.initialize(init.Xavier(), ctx=devices)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    train(net, train_iter, [(X, nd.zeros(X.shape[0]))], trainer, devices, 1, progress=False,
          verbose=False)
    folded = fold_batch_norm(net)
    reference = net(X.as_in_context(mx.cpu(0))).asnumpy()
    assert relative_error(reference, folded(X.as_in_context(mx.cpu(0))).asnumpy()) <= 1e-5
