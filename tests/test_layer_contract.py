"""What every batch-norm layer of the package promises, checked for each of them the same way:
BatchNorm (the scratch layer), FastBatchNorm (hand-written backward) and CrossDeviceBatchNorm
(statistics across devices; on one array it is a batch norm over that array). The oracles are
MXNet's nn.BatchNorm and, for the functions the layers call, float64 numerical gradients."""
import inspect

import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, init, nd
from mxnet.gluon import nn

from d2l_utils import (BatchNorm, CrossDeviceBatchNorm, FastBatchNorm, batch_norm, fast_batch_norm,
                       numerical_gradient, relative_error)
from d2l_utils.layers import BatchNormCalling
from helpers import (ATOL, EPS, MOMENTUM, RTOL, SHAPES, flat, moving_stats, random_input,
                     random_params, tiny_net, train_a_little, train_step)

LAYERS = [BatchNorm, FastBatchNorm, CrossDeviceBatchNorm]
layer_classes = pytest.mark.parametrize('cls', LAYERS, ids=[c.__name__ for c in LAYERS])


def paired_layers(cls, x_shape, seed=1):
    """A layer of class cls and an nn.BatchNorm with the same random gamma and beta."""
    ours = cls(x_shape[1], num_dims=len(x_shape))
    ref = nn.BatchNorm(in_channels=x_shape[1])
    ours.initialize()
    ref.initialize()
    gamma, beta, _, _ = random_params(x_shape, seed)
    ours.gamma.set_data(gamma)
    ours.beta.set_data(beta)
    ref.gamma.set_data(gamma.reshape(-1))
    ref.beta.set_data(beta.reshape(-1))
    return ours, ref


@layer_classes
@pytest.mark.parametrize('kind', sorted(SHAPES))
def test_layer_matches_gluon_batchnorm_outputs_gradients_and_moving_stats(cls, kind):
    ours, ref = paired_layers(cls, SHAPES[kind])
    rng = np.random.RandomState(2)
    for step in range(3):
        X = random_input(SHAPES[kind], seed=10 + step)
        head = nd.array(rng.randn(*X.shape))
        Y, dX = train_step(ours, X, head)
        Y_ref, dX_ref = train_step(ref, X, head)   # nn.BatchNorm updates its stats in backward
        np.testing.assert_allclose(Y.asnumpy(), Y_ref.asnumpy(), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(dX.asnumpy(), dX_ref.asnumpy(), rtol=1e-4, atol=1e-5)
        for name in ('gamma', 'beta'):
            np.testing.assert_allclose(flat(getattr(ours, name).grad()),
                                       flat(getattr(ref, name).grad()), rtol=1e-4, atol=1e-4)
    (mean, var), = moving_stats(ours)
    (ref_mean, ref_var), = moving_stats(ref)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, ref_var, rtol=1e-5, atol=1e-6)
    X = random_input(SHAPES[kind], seed=99)   # prediction mode: the moving statistics
    np.testing.assert_allclose(ours(X).asnumpy(), ref(X).asnumpy(), rtol=RTOL, atol=ATOL)


@layer_classes
def test_untrained_layer_predicts_like_gluon_batchnorm_not_hundreds_of_times_larger(cls):
    # With the book's moving_var=0 an untrained layer would divide by sqrt(1e-5), about 316x.
    X = random_input(SHAPES['conv'])
    ours, ref = paired_layers(cls, X.shape)
    np.testing.assert_allclose(ours(X).asnumpy(), ref(X).asnumpy(), rtol=RTOL, atol=ATOL)


@layer_classes
def test_moving_stats_update_on_every_training_step_with_momentum_on_the_old_value(cls):
    layer = cls(3, num_dims=4)
    layer.initialize()
    mean, var = np.zeros(3), np.ones(3)
    for step in range(3):
        X = random_input((4, 3, 2, 2), seed=step)
        with autograd.record():
            layer(X)
        x = X.asnumpy()
        mean = MOMENTUM * mean + (1 - MOMENTUM) * x.mean(axis=(0, 2, 3))
        var = MOMENTUM * var + (1 - MOMENTUM) * x.var(axis=(0, 2, 3))   # biased (ddof=0)
        np.testing.assert_allclose(flat(layer.moving_mean.data()), mean, rtol=1e-5)
        np.testing.assert_allclose(flat(layer.moving_var.data()), var, rtol=1e-5)
    layer(random_input((4, 3, 2, 2), seed=9))   # prediction changes nothing
    np.testing.assert_allclose(flat(layer.moving_mean.data()), mean, rtol=1e-5)


@layer_classes
def test_xavier_initialize_keeps_gamma_one_beta_zero_and_moving_var_one(cls):
    layer = cls(3, num_dims=4)
    layer.initialize(init.Xavier())
    for param, value in ((layer.gamma, 1), (layer.beta, 0),
                         (layer.moving_mean, 0), (layer.moving_var, 1)):
        np.testing.assert_array_equal(param.data().asnumpy(), np.full((1, 3, 1, 1), value))


@layer_classes
def test_moving_stats_are_not_learnable(cls):
    layer = cls(3, num_dims=2)
    layer.moving_mean.grad_req = 'write'   # e.g. net.collect_params().setattr('grad_req', 'write')
    assert layer.moving_mean.grad_req == 'null' and layer.moving_var.grad_req == 'null'
    assert layer.gamma.grad_req == 'write' and layer.beta.grad_req == 'write'


@layer_classes
def test_parameters_are_batchnorms_names_shapes_inits_and_grad_req(cls):
    for num_features, num_dims in ((6, 4), (120, 2)):
        layer, scratch = cls(num_features, num_dims), BatchNorm(num_features, num_dims)
        ours, theirs = layer.collect_params(), scratch.collect_params()
        def strip(params, block):
            return [name[len(block.prefix):] for name in params.keys()]
        assert strip(ours, layer) == strip(theirs, scratch) == [
            'gamma', 'beta', 'moving_mean', 'moving_var']
        for a, b in zip(ours.values(), theirs.values()):
            assert (a.shape, a.grad_req, type(a.init)) == (b.shape, b.grad_req, type(b.init))


@layer_classes
def test_only_the_device_copy_that_saw_the_batch_updates_its_moving_stats(cls):
    devices = [mx.cpu(0), mx.cpu(1)]   # two CPU contexts stand in for two GPUs
    layer = cls(3, num_dims=4)
    layer.initialize(ctx=devices)
    X = random_input((4, 3, 2, 2)).as_in_context(devices[1])
    X.attach_grad()
    with autograd.record():
        Y = layer(X)
    Y.backward()
    assert Y.context == X.grad.context == devices[1]
    assert np.abs(layer.moving_mean.data(devices[1]).asnumpy()).max() > 0.1
    np.testing.assert_array_equal(layer.moving_mean.data(devices[0]).asnumpy(), 0)
    np.testing.assert_array_equal(layer.moving_var.data(devices[0]).asnumpy(), 1)
    layer.collect_params().reset_ctx(mx.cpu(2))
    assert layer.moving_var.list_ctx() == [mx.cpu(2)]


@layer_classes
def test_moving_stats_survive_save_and_load(cls, tmp_path):
    net = tiny_net(cls(8, num_dims=2))
    train_a_little(net)
    path = str(tmp_path / 'bn.params')
    net.save_parameters(path)
    loaded = tiny_net(cls(8, num_dims=2))
    loaded.load_parameters(path)
    X = random_input((5, 4), seed=7)
    np.testing.assert_array_equal(loaded(X).asnumpy(), net(X).asnumpy())
    np.testing.assert_array_equal(loaded[1].moving_var.data().asnumpy(),
                                  net[1].moving_var.data().asnumpy())
    assert np.abs(net[1].moving_var.data().asnumpy() - 1).max() > 0.1   # training moved them
    assert np.abs(net[1].moving_mean.data().asnumpy()).max() > 0.1


@layer_classes
@pytest.mark.parametrize('X, num_features, num_dims', [
    (nd.ones((2, 3, 4)), 3, 4),                    # 3-D input: suggests reshaping to 4-D
    (nd.ones((2, 3, 4, 4)), 6, 4),                 # channel count differs from num_features
    (nd.ones((4, 2), dtype='int32'), 2, 2),        # integer input: names the fix
])
@pytest.mark.parametrize('training', [False, True], ids=['prediction', 'training'])
def test_input_errors_are_batch_norms_errors(cls, X, num_features, num_dims, training):
    messages = []
    for layer_cls in (cls, BatchNorm):
        layer = layer_cls(num_features, num_dims)
        layer.initialize()
        with pytest.raises(ValueError) as error:
            with autograd.record(train_mode=training):
                layer(X)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert 'batch_norm' in messages[0]


@layer_classes
def test_num_dims_other_than_two_or_four_is_rejected(cls):
    with pytest.raises(ValueError, match='num_dims must be 2.*or 4'):
        cls(6, num_dims=3)


def test_the_layer_calling_another_function_is_batch_norms_forward_with_one_name_changed():
    # FastBatchNorm and the mistakes of bn_mistakes are built on BatchNormCalling: its forward
    # must stay BatchNorm's, so they differ from the taught layer only in the function called
    ours = inspect.getsource(BatchNormCalling.forward).splitlines()
    taught = inspect.getsource(BatchNorm.forward).splitlines()
    assert len(ours) == len(taught)
    changed = [(old, new) for old, new in zip(taught, ours) if old != new]
    assert changed == [(line, line.replace('batch_norm(', 'self.batch_norm_fn('))
                       for line, _ in changed] and len(changed) == 1, changed


# measured: relative errors at most 3e-10 for both functions on these inputs; the tolerances
# are the ones each function's own test had before they were merged here
@pytest.mark.parametrize('fn, tolerance', [(batch_norm, 1e-6), (fast_batch_norm, 1e-8)],
                         ids=['batch_norm', 'fast_batch_norm'])
@pytest.mark.parametrize('shape', [(4, 3), (3, 2, 2, 2)])
def test_training_mode_gradients_match_float64_numerical_gradients(fn, tolerance, shape):
    rng = np.random.RandomState(0)
    X = nd.array(rng.randn(*shape), dtype='float64')
    gamma, beta, moving_mean, moving_var = (p.astype('float64') for p in random_params(shape))
    head = nd.array(rng.randn(*shape), dtype='float64')

    def loss():
        with autograd.train_mode():   # batch statistics, as in training, without recording
            Y, _, _ = fn(X, gamma, beta, moving_mean, moving_var, EPS, MOMENTUM)
        return (Y * head).sum().asscalar()

    for p in (X, gamma, beta):
        p.attach_grad()
    with autograd.record():
        Y, _, _ = fn(X, gamma, beta, moving_mean, moving_var, EPS, MOMENTUM)
        total = (Y * head).sum()
    total.backward()
    for name, p in (('X', X), ('gamma', gamma), ('beta', beta)):
        error = relative_error(p.grad.asnumpy(), numerical_gradient(loss, p))
        print('relative error of d%s: %.1e' % (name, error))   # shown with pytest -s
        assert error < tolerance, 'd%s: relative error %.1e' % (name, error)
