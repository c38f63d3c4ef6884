"""FastBatchNorm and fast_batch_norm against nn.BatchNorm and the scratch BatchNorm; one short
real training run. (What it shares with every BN layer, float64 numerical gradients included:
tests/test_layer_contract.py.)"""
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import (BatchNorm, FastBatchNorm, batch_norm, fast_batch_norm, lenet,
                       load_data_fashion_mnist, set_seed)
# The oracle helpers of the scratch layer's tests, so both layers are checked the same way
from helpers import (ATOL, EPS, MOMENTUM, RTOL, SHAPES, flat, moving_stats, random_input,
                     random_params, tiny_net, train_step)

# fast vs scratch: the same formulas in another order; measured max abs difference ~4e-6 on Y
# and dX (values of order 1-10), ~1e-5 on dgamma (a sum of 200 products)
CLOSE = dict(rtol=1e-5, atol=2e-5)


def three_layers(x_shape, seed=1):
    """FastBatchNorm, scratch BatchNorm and nn.BatchNorm with the same random gamma and beta."""
    gamma, beta, _, _ = random_params(x_shape, seed)
    num_features, num_dims = x_shape[1], len(x_shape)
    layers = []
    for layer in (FastBatchNorm(num_features, num_dims), BatchNorm(num_features, num_dims),
                  nn.BatchNorm(in_channels=num_features)):
        layer.initialize()
        layer.gamma.set_data(gamma.reshape(layer.gamma.shape))
        layer.beta.set_data(beta.reshape(layer.beta.shape))
        layers.append(layer)
    return layers


@pytest.mark.parametrize('kind', sorted(SHAPES))
def test_layer_matches_gluon_and_scratch_batchnorm_outputs_gradients_and_moving_stats(kind):
    fast, scratch, gluon_bn = three_layers(SHAPES[kind])
    rng = np.random.RandomState(2)
    for step in range(3):
        X = random_input(SHAPES[kind], seed=10 + step)
        head = nd.array(rng.randn(*X.shape))   # dY = head: not constant, so dX is not ~0
        Y, dX = train_step(fast, X, head)
        for other, tol in ((scratch, CLOSE), (gluon_bn, dict(rtol=RTOL, atol=ATOL))):
            Y_other, dX_other = train_step(other, X, head)
            np.testing.assert_allclose(Y.asnumpy(), Y_other.asnumpy(), **tol)
            np.testing.assert_allclose(dX.asnumpy(), dX_other.asnumpy(), **tol)
            for name in ('gamma', 'beta'):
                np.testing.assert_allclose(flat(getattr(fast, name).grad()),
                                           flat(getattr(other, name).grad()), rtol=1e-4, atol=1e-4)
    for other in (scratch, gluon_bn):
        for ours, theirs in zip(moving_stats(fast)[0], moving_stats(other)[0]):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    X = random_input(SHAPES[kind], seed=99)
    for other in (scratch, gluon_bn):   # prediction mode: the moving statistics
        np.testing.assert_allclose(fast(X).asnumpy(), other(X).asnumpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('kind', sorted(SHAPES))
def test_function_returns_what_batch_norm_returns_in_both_modes(kind):
    X = random_input(SHAPES[kind])
    params = random_params(X.shape)
    with autograd.record():
        ours = fast_batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)
        reference = batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)
    for a, b in zip(ours, reference):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), **CLOSE)
    Y, moving_mean, moving_var = fast_batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)
    Y_ref, _, _ = batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)
    np.testing.assert_allclose(Y.asnumpy(), Y_ref.asnumpy(), **CLOSE)
    assert moving_mean is params[2] and moving_var is params[3]   # returned unchanged


@pytest.mark.usefixtures('fail_instead_of_hanging')
def test_trainer_steps_train_and_save_load_round_trip_predicts_identically(tmp_path):
    # Several Trainer steps after a Dense layer: what hung when backward read gamma
    net = tiny_net(FastBatchNorm(8, num_dims=2))
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    gamma_before = net[1].gamma.data().copy()
    for step in range(3):
        with autograd.record():
            loss = net(random_input((16, 4), seed=step)).square().mean()
        loss.backward()
        trainer.step(16)
    assert np.abs((net[1].gamma.data() - gamma_before).asnumpy()).max() > 1e-3
    path = str(tmp_path / 'fast.params')
    net.save_parameters(path)
    loaded = tiny_net(FastBatchNorm(8, num_dims=2))
    loaded.load_parameters(path)
    X = random_input((5, 4), seed=7)
    np.testing.assert_array_equal(loaded(X).asnumpy(), net(X).asnumpy())
    assert np.abs(net[1].moving_var.data().asnumpy() - 1).max() > 0.1   # training moved them


def lenet_with_random_stats(bn, seed=0):
    """An initialized LeNet whose BN layers have nonzero moving statistics."""
    set_seed(seed)
    net = lenet(bn=bn)
    net.initialize(init.Xavier())
    with autograd.record():   # two training steps' worth of statistics
        net(random_input((8, 1, 28, 28), seed=1))
        net(random_input((8, 1, 28, 28), seed=2))
    return net


@pytest.mark.parametrize('saved, loaded', [('scratch', FastBatchNorm), (FastBatchNorm, 'scratch')])
def test_lenet_parameter_file_loads_across_scratch_and_fast_batchnorm(tmp_path, saved, loaded):
    net = lenet_with_random_stats(saved)
    path = str(tmp_path / 'lenet.params')
    net.save_parameters(path)
    other = lenet(bn=loaded)
    other.load_parameters(path)
    X = random_input((5, 1, 28, 28), seed=3)
    np.testing.assert_allclose(other(X).asnumpy(), net(X).asnumpy(), rtol=RTOL, atol=ATOL)
    moving_means = [flat(layer.moving_mean.data()) for layer in other
                    if isinstance(layer, BatchNorm)]
    assert len(moving_means) == 4 and all(np.abs(m).max() > 0.01 for m in moving_means)


@pytest.mark.parametrize('grad_req', ['null', 'add'])
@pytest.mark.parametrize('params', [('gamma',), ('beta',), ('gamma', 'beta')])
def test_frozen_or_accumulating_gamma_beta_get_the_same_gradients_as_scratch(params, grad_req):
    # autograd.Function cannot skip or add gradients: these settings take the scratch path
    shape = SHAPES['conv']
    fast, scratch, _ = three_layers(shape)
    head = nd.array(np.random.RandomState(2).randn(*shape))
    for layer in (fast, scratch):
        for name in params:
            getattr(layer, name).grad_req = grad_req
    for step in range(2):   # two steps, so 'add' has something to add
        X = random_input(shape, seed=step)
        _, dX = train_step(fast, X, head)
        _, dX_scratch = train_step(scratch, X, head)
        np.testing.assert_allclose(dX.asnumpy(), dX_scratch.asnumpy(), **CLOSE)
    for name in ('gamma', 'beta'):
        if getattr(fast, name).grad_req != 'null':
            np.testing.assert_allclose(flat(getattr(fast, name).grad()),
                                       flat(getattr(scratch, name).grad()), rtol=1e-4, atol=1e-4)


def test_applied_to_data_without_gradient_it_still_trains_gamma_and_beta():
    # X needs no gradient here; MXNet's Function would skip every gradient after X's
    fast, _, gluon_bn = three_layers(SHAPES['conv'])
    X = random_input(SHAPES['conv'])
    head = nd.array(np.random.RandomState(2).randn(*X.shape))
    for layer in (fast, gluon_bn):
        with autograd.record():
            loss = (layer(X) * head).sum()
        loss.backward()
    for name in ('gamma', 'beta'):
        grad = flat(getattr(fast, name).grad())
        assert np.abs(grad).max() > 0.1
        np.testing.assert_allclose(grad, flat(getattr(gluon_bn, name).grad()), rtol=1e-4, atol=1e-4)


def test_recording_in_prediction_mode_differentiates_through_the_moving_stats():
    fast, scratch, _ = three_layers(SHAPES['dense'])
    X = random_input(SHAPES['dense'])
    grads = []
    for layer in (fast, scratch):
        x = X.copy()
        x.attach_grad()
        with autograd.record(train_mode=False):
            Y = layer(x)
        Y.backward()
        grads.append(x.grad.asnumpy())
    np.testing.assert_allclose(grads[0], grads[1], **CLOSE)
    np.testing.assert_array_equal(flat(fast.moving_mean.data()), 0)   # not a training step


def test_float16_on_cpu_predicts_with_batch_norm_since_dot_has_no_float16_cpu_kernel():
    X = random_input(SHAPES['conv']).astype('float16')
    params = [p.astype('float16') for p in random_params(X.shape)]
    # float16 training is refused (its statistics overflow: test_layers.py, row E10)
    ours = fast_batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)
    reference = batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)
    for a, b in zip(ours, reference):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())


@pytest.mark.usefixtures('fail_instead_of_hanging')
def test_lenet_trains_like_the_scratch_lenet_on_real_fashion_mnist(fashion_mnist_dir):
    train_iter, _ = load_data_fashion_mnist(256, root=fashion_mnist_dir, train_subset=1024,
                                            test_subset=256, seed=0)
    nets = [lenet(bn=FastBatchNorm), lenet(bn='scratch')]
    set_seed(0)
    for net in nets:
        net.initialize(init.Xavier())
        net(nd.zeros((1, 1, 28, 28)))   # finish deferred initialization
    for fast_param, scratch_param in zip(nets[0].collect_params().values(),
                                         nets[1].collect_params().values()):
        fast_param.set_data(scratch_param.data())   # the same starting point
    trainers = [gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.9}) for net in nets]
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    losses = [[], []]
    for X, y in train_iter:   # 4 batches of 256
        for net, trainer, history in zip(nets, trainers, losses):
            with autograd.record():
                value = loss(net(X), y)
            value.backward()
            trainer.step(X.shape[0])
            history.append(value.mean().asscalar())
    assert len(losses[0]) == 4 and losses[0][-1] < losses[0][0]   # it learns
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    X, _ = next(iter(train_iter))
    np.testing.assert_allclose(nets[0](X).asnumpy(), nets[1](X).asnumpy(), rtol=1e-3, atol=1e-3)
