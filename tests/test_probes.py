"""The measuring tools of d2l_utils.experiments.probes on real Fashion-MNIST batches and real
LeNets, against numpy oracles (sigmoid, softmax cross-entropy's gradient, brute-force batch
statistics)."""
import numpy as np
import pytest
from mxnet.gluon import nn

from d2l_utils import (BatchNorm, batch_statistics_spread, load_data_fashion_mnist, record_layers,
                       weight_gradient_norms)
from d2l_utils.experiments.probes import saturated_fraction
from helpers import fresh_lenet, moving_statistics

LENET_ACTIVATION_SHAPES = [(64, 6, 24, 24), (64, 16, 8, 8), (64, 120), (64, 84)]


@pytest.fixture(scope='module')
def batch(fashion_mnist_dir):
    """64 real training images (64, 1, 28, 28) and their labels (64,)."""
    train_iter, _ = load_data_fashion_mnist(64, root=fashion_mnist_dir, train_subset=256,
                                            test_subset=64, seed=0)
    return next(iter(train_iter))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize('bn', [None, 'scratch', 'gluon'])
def test_record_layers_gives_each_sigmoid_its_input_and_output_in_forward_order(bn, batch):
    X, _ = batch
    records = record_layers(fresh_lenet(bn, X), X)
    assert [r.input.shape for r in records] == LENET_ACTIVATION_SHAPES
    assert all(r.kind == 'Activation' for r in records)
    for r in records:
        np.testing.assert_allclose(r.output, sigmoid(r.input), rtol=1e-5, atol=1e-6)


def test_record_layers_in_training_mode_sees_batch_normalized_pre_activations(batch):
    X, _ = batch
    records = record_layers(fresh_lenet('scratch', X), X, training=True)
    for r in records:
        axes = (0, 2, 3) if r.input.ndim == 4 else 0
        np.testing.assert_allclose(r.input.mean(axis=axes), 0, atol=1e-4)
        np.testing.assert_allclose(r.input.std(axis=axes), 1, atol=1e-3)
    # prediction mode at init: moving mean 0, var 1, so BN is the identity and passes the
    # first convolution's output unchanged (not normalized)
    first_conv = record_layers(fresh_lenet('scratch', X), X, training=False,
                               select=lambda block: isinstance(block, BatchNorm))[0]
    np.testing.assert_allclose(first_conv.output, first_conv.input / np.sqrt(1 + 1e-5),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('bn', ['scratch', 'gluon'])
def test_measurements_leave_the_moving_statistics_unchanged(bn, batch):
    X, y = batch
    net = fresh_lenet(bn, X)
    before = moving_statistics(net)
    record_layers(net, X, training=True)
    weight_gradient_norms(net, X, y)
    for a, b in zip(before, moving_statistics(net)):
        np.testing.assert_array_equal(a, b)


def test_record_layers_says_why_when_nothing_is_recorded(batch):
    X, _ = batch
    with pytest.raises(ValueError, match='no block'):
        record_layers(fresh_lenet(None, X), X, select=lambda block: isinstance(block, BatchNorm))
    hybrid = nn.HybridSequential()
    hybrid.add(nn.Dense(8, activation='sigmoid'), nn.Dense(10))
    hybrid.initialize()
    hybrid.hybridize()
    hybrid(X)
    with pytest.raises(ValueError, match='hybridize'):
        record_layers(hybrid, X)


@pytest.mark.parametrize('bn', [None, 'gluon'])
def test_weight_gradient_norm_of_the_output_layer_matches_the_softmax_formula(bn, batch):
    X, y = batch
    net = fresh_lenet(bn, X)
    norms = weight_gradient_norms(net, X, y)
    assert [name for name, _, _ in norms] == [b.name for b in net
                                               if isinstance(b, (nn.Conv2D, nn.Dense))]
    # Oracle: for the mean cross-entropy, dL/dW of the last Dense layer = (p - onehot)^T h / N,
    # with h its input and p the softmax of its output.
    last = record_layers(net, X, select=lambda block: block is net[-1])[0]
    h = last.input.reshape(len(last.input), -1).astype(np.float64)
    logits = last.output.astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(10)[y.asnumpy().astype(int)]
    expected = np.linalg.norm((p - onehot).T @ h / len(h))
    np.testing.assert_allclose(norms[-1][1], expected, rtol=1e-4)
    np.testing.assert_allclose(norms[-1][2], np.linalg.norm(net[-1].weight.data().asnumpy()),
                               rtol=1e-5)
    assert all(g > 0 for _, g, _ in norms)


def test_saturated_fraction_counts_outputs_beyond_the_thresholds():
    assert saturated_fraction(np.array([0.005, 0.5, 0.995, 0.3])) == 0.5
    # the default thresholds are |pre-activation| > ln(99) = 4.595
    z = np.array([-4.7, -4.5, 0.0, 4.5, 4.7])
    assert saturated_fraction(sigmoid(z)) == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match='low < high'):
        saturated_fraction(z, low=0.9, high=0.1)


def test_batch_statistics_spread_equals_brute_force_batches_of_real_images(batch):
    X, _ = batch
    pixels = X.asnumpy().astype(np.float64)                   # (64, 1, 28, 28): one channel
    rows = batch_statistics_spread(pixels, [4, 16], num_batches=5, seed=3)
    mu, var = pixels.mean(), pixels.var()
    rng = np.random.RandomState(3)   # the same draws as the function
    for b, row in zip([4, 16], rows):
        means, variances = [], []
        for _ in range(5):
            chosen = pixels[rng.choice(64, b, replace=False)]
            means.append(chosen.mean())
            variances.append(chosen.var())
        means, variances = np.array(means), np.array(variances)
        assert row['batch_size'] == b
        scaled = var + 1e-5
        assert row['mean_error'] == pytest.approx(np.sqrt(np.mean((means - mu) ** 2 / scaled)))
        assert row['var_ratio'] == pytest.approx(np.mean(variances / (var + 1e-5)))
        assert row['var_error'] == pytest.approx(np.sqrt(np.mean((variances / scaled - 1) ** 2)))


def test_batch_statistics_spread_of_independent_features_follows_the_textbook():
    # Independent standard normal features: a batch mean is off by 1/sqrt(b) standard
    # deviations, and the biased batch variance averages (b - 1) / b of the variance.
    features = np.random.RandomState(0).randn(20000, 50)
    for row in batch_statistics_spread(features, [2, 8, 64], num_batches=400):
        b = row['batch_size']
        assert row['mean_error'] == pytest.approx(1 / np.sqrt(b), rel=0.05)
        assert row['var_ratio'] == pytest.approx((b - 1) / b, rel=0.03)


def test_batch_statistics_spread_rejects_impossible_batch_sizes_and_shapes():
    with pytest.raises(ValueError, match='from 1 to the number of examples'):
        batch_statistics_spread(np.zeros((10, 3)), [4, 11])
    with pytest.raises(ValueError, match=r'\(N, D\) or'):
        batch_statistics_spread(np.zeros((10, 3, 4)), [4])


