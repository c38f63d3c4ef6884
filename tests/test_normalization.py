"""layer_norm, group_norm, instance_norm against a float64 numpy reference, numerical gradients
and MXNet's own nn.LayerNorm, nn.GroupNorm and nn.InstanceNorm, on real Fashion-MNIST features.

Conventions in which MXNet 1.9.1's layers differ from ours (checked below, not assumed):
- nn.LayerNorm normalizes over ONE axis (default axis=-1, the last) and learns gamma/beta of
  that axis' length, (D,). Ours normalizes a 4-D input over axes 1, 2, 3 with gamma per
  channel, (1, C, 1, 1). Compared by flattening X to (N, C*H*W) and giving nn.LayerNorm gamma
  repeated over each channel's H*W positions; its per-position gamma gradient summed over the
  positions is our per-channel one.
- nn.GroupNorm learns gamma/beta per GROUP, shape (num_groups,); ours (and the paper's) are
  per channel. Compared with gamma constant within each group; its gradient is our channel
  gradients summed over the group.
- nn.InstanceNorm has scale=False by default: gamma is fixed at ones (grad_req 'null') and
  only beta is learned; ours learns both. Compared with scale=True. Its docstring writes the
  denominator as sqrt(Var) + eps, but the operator computes sqrt(Var + eps) as we do (the
  comparison uses a channel with a tiny variance, where the two would differ).
"""
import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import (GroupNorm, InstanceNorm, LayerNorm, group_norm, instance_norm,
                       layer_norm, lenet, load_data_fashion_mnist, set_seed, train)
from d2l_utils import numerical_gradient, relative_error

EPS = 1e-5


@pytest.fixture(scope='module')
def images(fashion_mnist_dir):
    """8 real Fashion-MNIST test images (8, 1, 28, 28) and their labels (8,)."""
    _, test_iter = load_data_fashion_mnist(8, root=fashion_mnist_dir, test_subset=8, seed=0)
    return next(iter(test_iter))


@pytest.fixture(scope='module')
def features(images):
    """What a normalization layer in LeNet sees: conv1 (8, 6, 24, 24) and dense1 (8, 120)
    outputs of a Xavier-initialized LeNet on real images, in float32 (no normalization before)."""
    set_seed(0)
    net = lenet()
    net.initialize(init.Xavier())
    X = images[0]
    conv = net[0](X)                                  # Conv2D(6) with its sigmoid
    hidden = net[3](net[2](net[1](conv)))             # pool, Conv2D(16), pool
    dense = net[4](hidden)                            # Dense(120) with its sigmoid
    # the pre-activations are what a normalization gets: undo the sigmoid (logit)
    def logit(a):
        return nd.log(a / (1 - a))
    return {'conv': logit(conv), 'dense': logit(dense)}


def param_shape(x_shape):
    return (1, x_shape[1]) if len(x_shape) == 2 else (1, x_shape[1], 1, 1)


def random_affine(x_shape, seed=1, dtype='float32'):
    """gamma (around 1) and beta of shape (1, D) / (1, C, 1, 1)."""
    rng = np.random.RandomState(seed)
    shape = param_shape(x_shape)
    return (nd.array(1 + 0.5 * rng.randn(*shape), dtype=dtype),
            nd.array(rng.randn(*shape), dtype=dtype))


# float64 numpy references: the formulas, written independently of the nd code
def reference_layer_norm(x, gamma, beta, eps=EPS):
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def reference_group_norm(x, gamma, beta, num_groups, eps=EPS):
    n, c = x.shape[:2]
    groups = [x[:, g * c // num_groups:(g + 1) * c // num_groups] for g in range(num_groups)]
    parts = [reference_layer_norm(part, 1.0, 0.0, eps) for part in groups]
    return gamma * np.concatenate(parts, axis=1) + beta


def reference_instance_norm(x, gamma, beta, eps=EPS):
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


CASES = {
    'layer_norm dense': ('dense', lambda X, g, b: layer_norm(X, g, b, EPS),
                         lambda x, g, b: reference_layer_norm(x, g, b)),
    'layer_norm conv': ('conv', lambda X, g, b: layer_norm(X, g, b, EPS),
                        lambda x, g, b: reference_layer_norm(x, g, b)),
    'group_norm dense, 4 groups': ('dense', lambda X, g, b: group_norm(X, g, b, 4, EPS),
                                   lambda x, g, b: reference_group_norm(x, g, b, 4)),
    'group_norm conv, 2 groups': ('conv', lambda X, g, b: group_norm(X, g, b, 2, EPS),
                                  lambda x, g, b: reference_group_norm(x, g, b, 2)),
    'group_norm conv, 3 groups': ('conv', lambda X, g, b: group_norm(X, g, b, 3, EPS),
                                  lambda x, g, b: reference_group_norm(x, g, b, 3)),
    'instance_norm conv': ('conv', lambda X, g, b: instance_norm(X, g, b, EPS),
                           lambda x, g, b: reference_instance_norm(x, g, b)),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_output_matches_float64_numpy_reference_on_real_features(case, features):
    kind, ours, reference = CASES[case]
    X = features[kind].astype('float64')
    gamma, beta = random_affine(X.shape, dtype='float64')
    Y = ours(X, gamma, beta).asnumpy()
    expected = reference(X.asnumpy(), gamma.asnumpy(), beta.asnumpy())
    assert Y.shape == X.shape
    assert relative_error(Y, expected) < 1e-12
    # float32 (what training uses) agrees to float32 rounding
    Y32 = ours(features[kind], gamma.astype('float32'), beta.astype('float32')).asnumpy()
    assert relative_error(Y32, expected) < 1e-5


@pytest.mark.parametrize('case', sorted(CASES))
def test_gradients_match_float64_numerical_gradients(case, features):
    kind, ours, _ = CASES[case]
    # a small real crop, so that central differences over every entry stay fast
    X = features[kind][:2, :12] if kind == 'dense' else features[kind][:2, :6, 8:11, 8:11]
    X = X.astype('float64')
    gamma, beta = random_affine(X.shape, dtype='float64')
    head = nd.array(np.random.RandomState(2).randn(*X.shape), dtype='float64')

    def loss():
        return (ours(X, gamma, beta) * head).sum().asscalar()

    for p in (X, gamma, beta):
        p.attach_grad()
    with autograd.record():
        total = (ours(X, gamma, beta) * head).sum()
    total.backward()
    for p in (X, gamma, beta):
        assert relative_error(p.grad.asnumpy(), numerical_gradient(loss, p)) < 1e-6


def forward_backward(layer_fn, X, params, head):
    """Y, dX and the gradients of params for the loss sum(Y * head), in training mode."""
    X = X.copy()
    X.attach_grad()
    for p in params:
        p.attach_grad()
    with autograd.record():
        Y = layer_fn(X)
        loss = (Y * head).sum()
    loss.backward()
    return Y.asnumpy(), X.grad.asnumpy(), [p.grad.asnumpy() for p in params]


def gluon_layer(layer, **params):
    """Initialize an nn layer and set its gamma and beta."""
    layer.initialize()
    for name, value in params.items():
        getattr(layer, name).set_data(value)
    return layer


def test_layer_norm_matches_nn_layernorm_on_flattened_conv_features(features):
    X = features['conv']
    N, C, H, W = X.shape
    gamma, beta = random_affine(X.shape)
    head = nd.array(np.random.RandomState(3).randn(*X.shape))
    Y, dX, (dgamma, dbeta) = forward_backward(lambda x: layer_norm(x, gamma, beta, EPS), X,
                                              [gamma, beta], head)
    # nn.LayerNorm normalizes the last axis: flatten to (N, C*H*W); its gamma is per position
    ref = gluon_layer(nn.LayerNorm(in_channels=C * H * W),
                      gamma=gamma.broadcast_to((1, C, H, W)).reshape(-1),
                      beta=beta.broadcast_to((1, C, H, W)).reshape(-1))
    assert ref.gamma.shape == (C * H * W,)
    Y_ref, dX_ref, _ = forward_backward(lambda x: ref(x.reshape((N, -1))).reshape(X.shape), X,
                                        [], head)
    dgamma_ref, dbeta_ref = (p.grad().asnumpy().reshape(C, H * W).sum(axis=1)
                             for p in (ref.gamma, ref.beta))
    assert relative_error(Y, Y_ref) < 1e-5
    assert relative_error(dX, dX_ref) < 1e-4
    assert relative_error(dgamma.reshape(-1), dgamma_ref) < 1e-4
    assert relative_error(dbeta.reshape(-1), dbeta_ref) < 1e-4


def test_layer_norm_matches_nn_layernorm_on_dense_features(features):
    X = features['dense']
    gamma, beta = random_affine(X.shape)
    head = nd.array(np.random.RandomState(4).randn(*X.shape))
    Y, dX, (dgamma, dbeta) = forward_backward(lambda x: layer_norm(x, gamma, beta, EPS), X,
                                              [gamma, beta], head)
    ref = gluon_layer(nn.LayerNorm(in_channels=X.shape[1]), gamma=gamma.reshape(-1),
                      beta=beta.reshape(-1))   # axis=-1 is axis 1 for (N, D): same statistics
    Y_ref, dX_ref, _ = forward_backward(ref, X, [], head)
    assert relative_error(Y, Y_ref) < 1e-5
    assert relative_error(dX, dX_ref) < 1e-4
    assert relative_error(dgamma.reshape(-1), ref.gamma.grad().asnumpy()) < 1e-4
    assert relative_error(dbeta.reshape(-1), ref.beta.grad().asnumpy()) < 1e-4


def test_nn_groupnorm_in_mxnet_1_9_learns_one_gamma_per_group_not_per_channel():
    layer = nn.GroupNorm(num_groups=3)
    layer.initialize()
    layer(nd.ones((2, 6, 4, 4)))
    assert layer.gamma.shape == (3,) and layer.beta.shape == (3,)
    ours = GroupNorm(6, num_groups=3)
    assert ours.gamma.shape == (1, 6, 1, 1)


@pytest.mark.parametrize('num_groups', [1, 2, 3, 6])
def test_group_norm_matches_nn_groupnorm_with_gamma_constant_within_groups(num_groups,
                                                                           features):
    X = features['conv']
    C = X.shape[1]
    rng = np.random.RandomState(5)
    group_gamma, group_beta = 1 + 0.5 * rng.randn(num_groups), rng.randn(num_groups)
    def per_channel(v):
        return nd.array(np.repeat(v, C // num_groups).reshape(1, C, 1, 1))
    gamma, beta = per_channel(group_gamma), per_channel(group_beta)
    head = nd.array(rng.randn(*X.shape))
    Y, dX, (dgamma, dbeta) = forward_backward(
        lambda x: group_norm(x, gamma, beta, num_groups, EPS), X, [gamma, beta], head)
    ref = gluon_layer(nn.GroupNorm(num_groups=num_groups), gamma=nd.array(group_gamma),
                      beta=nd.array(group_beta))
    Y_ref, dX_ref, _ = forward_backward(ref, X, [], head)
    # a group's gamma gradient is the sum of its channels' gradients
    def by_group(g):
        return g.reshape(num_groups, C // num_groups).sum(axis=1)
    assert relative_error(Y, Y_ref) < 1e-5
    assert relative_error(dX, dX_ref) < 1e-4
    assert relative_error(by_group(dgamma), ref.gamma.grad().asnumpy()) < 1e-4
    assert relative_error(by_group(dbeta), ref.beta.grad().asnumpy()) < 1e-4


def test_nn_instancenorm_learns_no_gamma_by_default():
    layer = nn.InstanceNorm()
    layer.initialize()
    layer(nd.ones((2, 6, 4, 4)))
    assert layer.gamma.grad_req == 'null' and layer.beta.grad_req == 'write'
    ours = InstanceNorm(6)
    assert ours.gamma.grad_req == 'write' and ours.beta.grad_req == 'write'


def test_instance_norm_matches_nn_instancenorm_with_scale(features):
    X = features['conv'].copy()
    # one channel of one example almost constant: variance ~1e-6, comparable to eps, where
    # sqrt(var + eps) and sqrt(var) + eps (nn.InstanceNorm's docstring) differ by a factor ~2
    X[0, 0] = 0.5 + 1e-3 * nd.array(np.random.RandomState(6).randn(*X.shape[2:]))
    gamma, beta = random_affine(X.shape)
    head = nd.array(np.random.RandomState(7).randn(*X.shape))
    Y, dX, (dgamma, dbeta) = forward_backward(lambda x: instance_norm(x, gamma, beta, EPS), X,
                                              [gamma, beta], head)
    ref = gluon_layer(nn.InstanceNorm(scale=True, in_channels=X.shape[1]),
                      gamma=gamma.reshape(-1), beta=beta.reshape(-1))
    Y_ref, dX_ref, _ = forward_backward(ref, X, [], head)
    assert relative_error(Y, Y_ref) < 1e-5
    assert relative_error(dX, dX_ref) < 1e-4
    assert relative_error(dgamma.reshape(-1), ref.gamma.grad().asnumpy()) < 1e-4
    assert relative_error(dbeta.reshape(-1), ref.beta.grad().asnumpy()) < 1e-4


def test_group_norm_with_one_group_is_layer_norm_and_with_c_groups_is_instance_norm(features):
    X = features['conv']
    gamma, beta = random_affine(X.shape)
    C = X.shape[1]
    assert relative_error(group_norm(X, gamma, beta, 1, EPS).asnumpy(),
                          layer_norm(X, gamma, beta, EPS).asnumpy()) < 1e-6
    assert relative_error(group_norm(X, gamma, beta, C, EPS).asnumpy(),
                          instance_norm(X, gamma, beta, EPS).asnumpy()) < 1e-6


BLOCKS = {
    'LayerNorm dense': (lambda: LayerNorm(120, num_dims=2), 'dense'),
    'LayerNorm conv': (lambda: LayerNorm(6, num_dims=4), 'conv'),
    'GroupNorm conv': (lambda: GroupNorm(6, num_groups=2), 'conv'),
    'GroupNorm dense': (lambda: GroupNorm(120, num_groups=4, num_dims=2), 'dense'),
    'InstanceNorm conv': (lambda: InstanceNorm(6), 'conv'),
}


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_an_example_gets_the_same_output_alone_in_prediction_as_in_a_training_batch(
        name, features):
    make, kind = BLOCKS[name]
    layer = make()
    layer.initialize()
    X = features[kind]
    with autograd.record():            # training mode, as in a training step
        Y_batch = layer(X)
    Y_alone = layer(X[3:4])            # prediction mode, a batch of one
    assert np.abs(Y_alone.asnumpy() - Y_batch[3:4].asnumpy()).max() < 1e-5


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_blocks_have_per_channel_gamma_and_beta_starting_at_one_and_zero(name, features):
    make, kind = BLOCKS[name]
    layer = make()
    layer.initialize(init.Xavier())     # the parameters' own init takes precedence
    layer(features[kind])
    params = list(layer.collect_params().values())
    assert len(params) == 2, 'gamma and beta only: no moving statistics'
    expected = param_shape(features[kind].shape)
    assert layer.gamma.shape == expected and layer.beta.shape == expected
    assert (layer.gamma.data().asnumpy() == 1).all() and (layer.beta.data().asnumpy() == 0).all()


def test_relu_lenet_with_layer_norm_trains_on_real_images(fashion_mnist_dir):
    # ReLU, as notebook 7's sweep: with the book's sigmoid, layer norm barely trains this short
    train_iter, test_iter = load_data_fashion_mnist(32, root=fashion_mnist_dir,
                                                    train_subset=2048, test_subset=256, seed=0)
    set_seed(0)
    net = lenet(bn=LayerNorm, activation='relu')
    net.initialize(init.Xavier())
    # lr 1.0 * 32 / 256: the book's lr scaled to the batch
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.125})
    history = train(net, train_iter, test_iter, trainer, num_epochs=2, progress=False,
                    verbose=False)
    losses = history.column('train_loss')
    assert losses[1] < losses[0] < np.log(10)
    assert history.last['test_acc'] > 0.4   # chance is 0.1


def test_lenet_accepts_group_and_instance_norm_factories(images):
    for net in (lenet(bn=lambda n, d: GroupNorm(n, 2, d)),
                lenet(bn=InstanceNorm, bn_in='conv')):
        net.initialize(init.Xavier())
        assert net(images[0]).shape == (8, 10)
    with pytest.raises(ValueError, match="bn_in='conv'"):
        lenet(bn=InstanceNorm)          # the Dense layers cannot take instance norm


# errors a learner can act on
def test_group_count_that_does_not_divide_the_channels_is_a_clear_error():
    X = nd.ones((2, 6, 4, 4))
    gamma, beta = nd.ones((1, 6, 1, 1)), nd.zeros((1, 6, 1, 1))
    with pytest.raises(ValueError, match=r'num_groups=4 does not divide the 6 channels.*'
                                         r'\[1, 2, 3, 6\]'):
        group_norm(X, gamma, beta, 4, EPS)
    with pytest.raises(ValueError, match='divides the 16 channels'):
        GroupNorm(16, num_groups=3)
    with pytest.raises(ValueError, match='positive integer'):
        group_norm(X, gamma, beta, 0, EPS)


def test_instance_norm_of_a_two_d_input_says_why_and_what_to_use():
    with pytest.raises(ValueError, match=r'4-D \(N, C, H, W\).*every output would be beta.*'
                                         r'layer_norm'):
        instance_norm(nd.ones((4, 5)), nd.ones((1, 5)), nd.zeros((1, 5)), EPS)
    with pytest.raises(ValueError, match='num_dims=4.*LayerNorm'):
        InstanceNorm(120, num_dims=2)


@pytest.mark.parametrize('fn', [lambda X, g, b: layer_norm(X, g, b, EPS),
                                lambda X, g, b: group_norm(X, g, b, 1, EPS)])
def test_three_d_input_error_suggests_reshaping_to_four_d(fn):
    with pytest.raises(ValueError, match=r'got shape \(2, 3, 4\).*\(N, C, L, 1\)'):
        fn(nd.ones((2, 3, 4)), nd.ones((1, 3)), nd.zeros((1, 3)))


def test_wrong_gamma_shape_error_gives_the_expected_shape():
    with pytest.raises(ValueError, match=r'gamma must have shape \(1, 6, 1, 1\).*got \(6,\)'):
        layer_norm(nd.ones((2, 6, 4, 4)), nd.ones((6,)), nd.zeros((1, 6, 1, 1)), EPS)


def test_integer_input_and_mismatched_dtype_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"dtype int32.*astype\('float32'\)"):
        layer_norm(nd.ones((2, 3), dtype='int32'), nd.ones((1, 3)), nd.zeros((1, 3)), EPS)
    with pytest.raises(ValueError, match=r'beta has dtype float64 but X has dtype float32'):
        layer_norm(nd.ones((2, 3)), nd.ones((1, 3)), nd.zeros((1, 3), dtype='float64'), EPS)


def test_non_positive_eps_is_refused():
    with pytest.raises(ValueError, match=r'layer_norm: eps must be > 0.*got 0\b'):
        layer_norm(nd.ones((2, 3)), nd.ones((1, 3)), nd.zeros((1, 3)), 0)


def test_statistics_over_a_single_value_are_refused():
    # instance norm of 1 x 1 feature maps: each channel of each example is one value
    with pytest.raises(ValueError, match='over 1 value.*every output would be beta'):
        instance_norm(nd.ones((4, 3, 1, 1)), nd.ones((1, 3, 1, 1)), nd.zeros((1, 3, 1, 1)), EPS)


def test_block_num_dims_other_than_two_or_four_is_rejected():
    with pytest.raises(ValueError, match='num_dims must be 2.*or 4'):
        LayerNorm(6, num_dims=3)


@pytest.mark.parametrize('case', ['layer_norm conv', 'group_norm conv, 2 groups',
                                  'instance_norm conv'])
def test_float16_at_activation_scale_300_is_normalized_in_float32_not_nan_or_beta(case,
                                                                                 features):
    # battery rows E7-E9: float16 statistics overflowed (all NaN, or exactly beta). The
    # functions compute them in float32, as MXNet's operators do, and return float16.
    kind, fn, reference = CASES[case]
    x = features[kind].asnumpy().astype(np.float64)
    x = 300 * (x - x.mean()) / x.std() + 900            # std 300 around 900, as the battery
    gamma, beta = random_affine(x.shape, dtype='float16')
    Y = fn(nd.array(x, dtype='float16'), gamma, beta)
    assert Y.dtype == np.float16
    expected = reference(x.astype(np.float16).astype(np.float64),
                         gamma.asnumpy().astype(np.float64), beta.asnumpy().astype(np.float64))
    y = Y.asnumpy().astype(np.float64)
    assert np.isfinite(y).all()
    assert np.abs(y - expected).max() < 0.02, np.abs(y - expected).max()   # float16 rounding
    assert not np.array_equal(y, np.broadcast_to(beta.asnumpy(), y.shape))
