"""The scratch batch_norm/BatchNorm against MXNet's own batch norm and numerical gradients."""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

# numerical_gradient, relative_error: the package's own (tested in test_experiments.py)
from d2l_utils.experiments import numerical_gradient, relative_error
from d2l_utils.layers import BatchNorm, batch_norm

EPS, MOMENTUM = 1e-5, 0.9
# float32 agreement with MXNet's fused operator: measured max abs difference ~1e-6 on these sizes
RTOL, ATOL = 1e-4, 1e-5
SHAPES = {'dense': (16, 5), 'conv': (8, 3, 5, 5)}


def param_shape(x_shape):
    return (1, x_shape[1]) if len(x_shape) == 2 else (1, x_shape[1], 1, 1)


def random_input(shape, seed=0):
    """X with a mean and a scale far from 0 and 1, so normalizing it changes it."""
    rng = np.random.RandomState(seed)
    return nd.array(3.0 + 2.5 * rng.randn(*shape))


def random_params(x_shape, seed=1):
    """gamma, beta, moving_mean, moving_var (positive) of the shape batch_norm expects."""
    rng = np.random.RandomState(seed)
    shape = param_shape(x_shape)
    return (nd.array(1 + 0.5 * rng.randn(*shape)), nd.array(rng.randn(*shape)),
            nd.array(rng.randn(*shape)), nd.array(0.5 + rng.rand(*shape)))


def flat(a):
    return a.asnumpy().reshape(-1)


def mxnet_op(X, gamma, beta, moving_mean, moving_var, use_global_stats):
    """MXNet's fused BatchNorm operator on copies (it updates moving statistics in place)."""
    # nd.BatchNorm's own defaults differ from nn.BatchNorm's: eps=1e-3 and fix_gamma=True.
    return nd.BatchNorm(X, gamma.reshape(-1), beta.reshape(-1), moving_mean.reshape(-1).copy(),
                        moving_var.reshape(-1).copy(), eps=EPS, momentum=MOMENTUM,
                        fix_gamma=False, use_global_stats=use_global_stats)


def paired_layers(x_shape, seed=1):
    """A scratch BatchNorm and an nn.BatchNorm with the same random gamma and beta."""
    ours = BatchNorm(x_shape[1], num_dims=len(x_shape))
    ref = nn.BatchNorm(in_channels=x_shape[1])
    ours.initialize()
    ref.initialize()
    gamma, beta, _, _ = random_params(x_shape, seed)
    ours.gamma.set_data(gamma)
    ours.beta.set_data(beta)
    ref.gamma.set_data(gamma.reshape(-1))
    ref.beta.set_data(beta.reshape(-1))
    return ours, ref


def train_step(layer, X, head):
    """One recorded forward and backward; returns (Y, dX). head weights Y so grads are not 0."""
    X = X.copy()
    X.attach_grad()
    with autograd.record():
        Y = layer(X)
        loss = (Y * head).sum()
    loss.backward()
    return Y, X.grad


@pytest.mark.parametrize('kind', sorted(SHAPES))
def test_training_output_matches_mxnet_operator(kind):
    X = random_input(SHAPES[kind])
    params = random_params(X.shape)
    with autograd.record():
        Y, _, _ = batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)
        expected = mxnet_op(X, *params, use_global_stats=False)
    np.testing.assert_allclose(Y.asnumpy(), expected.asnumpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('kind', sorted(SHAPES))
def test_prediction_output_matches_mxnet_operator_with_global_stats(kind):
    X = random_input(SHAPES[kind])
    params = random_params(X.shape)
    Y, _, _ = batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)
    expected = mxnet_op(X, *params, use_global_stats=True)
    np.testing.assert_allclose(Y.asnumpy(), expected.asnumpy(), rtol=RTOL, atol=ATOL)


def test_prediction_mode_returns_moving_stats_unchanged():
    X = random_input(SHAPES['conv'])
    gamma, beta, moving_mean, moving_var = random_params(X.shape)
    _, new_mean, new_var = batch_norm(X, gamma, beta, moving_mean, moving_var, EPS, MOMENTUM)
    assert new_mean is moving_mean and new_var is moving_var


def test_training_mode_updates_moving_stats_with_batch_mean_and_biased_variance():
    X = random_input(SHAPES['dense'])
    gamma, beta, moving_mean, moving_var = random_params(X.shape)
    with autograd.record():
        _, new_mean, new_var = batch_norm(X, gamma, beta, moving_mean, moving_var, EPS, MOMENTUM)
    x = X.asnumpy()
    np.testing.assert_allclose(
        new_mean.asnumpy(), MOMENTUM * moving_mean.asnumpy() + (1 - MOMENTUM) * x.mean(0),
        rtol=1e-5)
    np.testing.assert_allclose(
        new_var.asnumpy(), MOMENTUM * moving_var.asnumpy() + (1 - MOMENTUM) * x.var(0, ddof=0),
        rtol=1e-5)


@pytest.mark.parametrize('kind', sorted(SHAPES))
def test_layer_matches_gluon_batchnorm_outputs_gradients_and_moving_stats(kind):
    ours, ref = paired_layers(SHAPES[kind])
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
    np.testing.assert_allclose(flat(ours.moving_mean.data()), flat(ref.running_mean.data()),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flat(ours.moving_var.data()), flat(ref.running_var.data()),
                               rtol=1e-5, atol=1e-6)
    X = random_input(SHAPES[kind], seed=99)
    np.testing.assert_allclose(ours(X).asnumpy(), ref(X).asnumpy(), rtol=RTOL, atol=ATOL)


def test_untrained_layer_predicts_like_gluon_batchnorm_not_hundreds_of_times_larger():
    # With the book's moving_var=0 an untrained layer would divide by sqrt(1e-5), about 316x.
    X = random_input(SHAPES['conv'])
    ours, ref = paired_layers(X.shape)
    np.testing.assert_allclose(ours(X).asnumpy(), ref(X).asnumpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('shape', [(4, 3), (3, 2, 2, 2)])
def test_training_mode_gradients_match_float64_numerical_gradients(shape):
    rng = np.random.RandomState(0)
    X = nd.array(rng.randn(*shape), dtype='float64')
    gamma, beta, moving_mean, moving_var = (p.astype('float64') for p in random_params(shape))
    head = nd.array(rng.randn(*shape), dtype='float64')

    def loss():
        with autograd.train_mode():   # batch statistics, as in training, without recording
            Y, _, _ = batch_norm(X, gamma, beta, moving_mean, moving_var, EPS, MOMENTUM)
        return (Y * head).sum().asscalar()

    for p in (X, gamma, beta):
        p.attach_grad()
    with autograd.record():
        Y, _, _ = batch_norm(X, gamma, beta, moving_mean, moving_var, EPS, MOMENTUM)
        total = (Y * head).sum()
    total.backward()
    for p in (X, gamma, beta):
        assert relative_error(p.grad.asnumpy(), numerical_gradient(loss, p)) < 1e-6


def tiny_net(layer):
    net = nn.Sequential()
    net.add(nn.Dense(8), layer, nn.Dense(3))
    net.initialize(init.Xavier())
    return net


def train_a_little(net, steps=3):
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    for step in range(steps):
        X = random_input((16, 4), seed=step)
        with autograd.record():
            loss = net(X).square().mean()
        loss.backward()
        trainer.step(16)   # the Trainer skips moving_mean/moving_var (grad_req='null')


def test_moving_stats_survive_save_and_load(tmp_path):
    net = tiny_net(BatchNorm(8, num_dims=2))
    train_a_little(net)
    path = str(tmp_path / 'bn.params')
    net.save_parameters(path)
    loaded = tiny_net(BatchNorm(8, num_dims=2))
    loaded.load_parameters(path)
    X = random_input((5, 4), seed=7)
    np.testing.assert_array_equal(loaded(X).asnumpy(), net(X).asnumpy())
    np.testing.assert_array_equal(loaded[1].moving_var.data().asnumpy(),
                                  net[1].moving_var.data().asnumpy())
    assert np.abs(net[1].moving_var.data().asnumpy() - 1).max() > 0.1   # training moved them
    assert np.abs(net[1].moving_mean.data().asnumpy()).max() > 0.1


class BookStyleBatchNorm(nn.Block):
    """The book's storage: moving statistics as plain NDArray attributes, not Parameters."""

    def __init__(self, num_features, **kwargs):
        super().__init__(**kwargs)
        self.gamma = self.params.get('gamma', shape=(1, num_features), init=init.One())
        self.beta = self.params.get('beta', shape=(1, num_features), init=init.Zero())
        self.moving_mean = nd.zeros((1, num_features))
        self.moving_var = nd.zeros((1, num_features))

    def forward(self, X):
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma.data(), self.beta.data(), self.moving_mean, self.moving_var,
            EPS, MOMENTUM)
        return Y


def test_book_style_plain_ndarrays_are_not_saved_so_predictions_change_after_load(tmp_path):
    net = tiny_net(BookStyleBatchNorm(8))
    train_a_little(net)
    path = str(tmp_path / 'book.params')
    net.save_parameters(path)
    assert not any('moving' in name for name in nd.load(path))
    loaded = tiny_net(BookStyleBatchNorm(8))
    loaded.load_parameters(path)
    X = random_input((5, 4), seed=7)
    assert np.abs(loaded(X).asnumpy() - net(X).asnumpy()).max() > 1.0


def test_xavier_initialize_keeps_gamma_one_beta_zero_and_moving_var_one():
    layer = BatchNorm(3, num_dims=4)
    layer.initialize(init.Xavier())
    for param, value in ((layer.gamma, 1), (layer.beta, 0),
                         (layer.moving_mean, 0), (layer.moving_var, 1)):
        np.testing.assert_array_equal(param.data().asnumpy(), np.full((1, 3, 1, 1), value))


def test_moving_stats_are_not_learnable():
    layer = BatchNorm(3, num_dims=2)
    layer.moving_mean.grad_req = 'write'   # e.g. net.collect_params().setattr('grad_req', 'write')
    assert layer.moving_mean.grad_req == 'null' and layer.moving_var.grad_req == 'null'
    assert layer.gamma.grad_req == 'write' and layer.beta.grad_req == 'write'


def test_only_the_device_copy_that_saw_the_batch_updates_its_moving_stats():
    devices = [mx.cpu(0), mx.cpu(1)]   # two CPU contexts stand in for two GPUs
    layer = BatchNorm(3, num_dims=4)
    layer.initialize(ctx=devices)
    with autograd.record():
        layer(random_input((4, 3, 2, 2)).as_in_context(devices[1]))
    assert np.abs(layer.moving_mean.data(devices[1]).asnumpy()).max() > 0.1
    np.testing.assert_array_equal(layer.moving_mean.data(devices[0]).asnumpy(), 0)
    layer.collect_params().reset_ctx(mx.cpu(2))
    assert layer.moving_var.list_ctx() == [mx.cpu(2)]


def test_three_d_input_error_suggests_reshaping_to_four_d():
    X = nd.ones((2, 3, 4))
    params = [nd.ones((1, 3, 1, 1))] * 4
    with pytest.raises(ValueError, match=r'got shape \(2, 3, 4\).*reshape to \(N, C, L, 1\)'):
        batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)


def test_wrong_channel_count_error_says_expected_and_got_shapes():
    layer = BatchNorm(6, num_dims=4)
    layer.initialize()
    with pytest.raises(ValueError) as error:
        layer(nd.ones((2, 3, 4, 4)))
    message = str(error.value)
    assert '(1, 3, 1, 1)' in message and 'got (1, 6, 1, 1)' in message
    assert 'BatchNorm(3, num_dims=4)' in message


def test_integer_input_error_names_dtype_and_the_fix():
    with pytest.raises(ValueError, match=r"int32.*astype\('float32'\)"):
        batch_norm(nd.ones((4, 2), dtype='int32'), *[nd.ones((1, 2))] * 4,
                   eps=EPS, momentum=MOMENTUM)


def test_num_dims_other_than_two_or_four_is_rejected():
    with pytest.raises(ValueError, match='num_dims must be 2.*or 4'):
        BatchNorm(6, num_dims=3)
