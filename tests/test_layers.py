"""The scratch batch_norm against MXNet's own batch norm operator; the book's code against the
scratch one. (What every BN layer promises, and the numerical gradients of the functions they
call: tests/test_layer_contract.py.)"""
import re

import numpy as np
import pytest
from mxnet import autograd, nd

from d2l_utils import (BatchNorm, BookBatchNorm, FastBatchNorm, batch_norm, book_batch_norm,
                       moving_average)
from d2l_utils.layers import param_shape
from helpers import (ATOL, EPS, MOMENTUM, RTOL, SHAPES, mxnet_op, random_input, random_params,
                     tiny_net, train_a_little)


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


def test_books_plain_ndarrays_are_not_saved_so_predictions_change_after_load(tmp_path):
    net = tiny_net(BookBatchNorm(8, num_dims=2))
    train_a_little(net)
    path = str(tmp_path / 'book.params')
    net.save_parameters(path)
    assert not any('moving' in name for name in nd.load(path))
    loaded = tiny_net(BookBatchNorm(8, num_dims=2))
    loaded.load_parameters(path)
    X = random_input((5, 4), seed=7)
    assert np.abs(loaded(X).asnumpy() - net(X).asnumpy()).max() > 1.0


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


def test_param_shape_is_the_shape_batch_norm_checks():
    assert param_shape(5, 2) == (1, 5) and param_shape(3, 4) == (1, 3, 1, 1)
    layer = BatchNorm(3, num_dims=4)
    assert layer.gamma.shape == layer.moving_var.shape == param_shape(3, 4)


def test_moving_average_is_the_update_batch_norm_writes_out():
    X = random_input(SHAPES['conv'])
    gamma, beta, moving_mean, moving_var = random_params(X.shape)
    with autograd.record():
        _, new_mean, _ = batch_norm(X, gamma, beta, moving_mean, moving_var, EPS, MOMENTUM)
    batch_mean = X.mean(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(moving_average(moving_mean, batch_mean, MOMENTUM).asnumpy(),
                               new_mean.asnumpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('kind', sorted(SHAPES))
def test_books_function_gives_the_scratch_functions_results_in_both_modes(kind):
    X = random_input(SHAPES[kind])
    params = random_params(X.shape)
    for record in (False, True):
        with autograd.record(train_mode=record):
            ours = batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)
            book = book_batch_norm(X, *params, eps=EPS, momentum=MOMENTUM)
        for a, b in zip(ours, book):
            assert a.shape == b.shape   # (1, D) for the 2-D statistics too, by broadcasting
            np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=RTOL, atol=ATOL)


def test_books_layer_starts_moving_var_at_zero_so_untrained_predictions_are_316_times_larger():
    X = random_input(SHAPES['dense'])
    book, ours = BookBatchNorm(5, num_dims=2), BatchNorm(5, num_dims=2)
    for layer in (book, ours):
        layer.initialize()
    ratio = np.abs(book(X).asnumpy()).mean() / np.abs(ours(X).asnumpy()).mean()
    assert ratio == pytest.approx(1 / np.sqrt(EPS), rel=1e-3)   # 1/sqrt(1e-5) ~ 316


# ----------------------------------------------------------------------------- bad settings
# (issue 17, docs review reliability.md rows 3.7-3.11, 3.13-3.16)

@pytest.mark.parametrize('eps, momentum, error, words', [
    (0, MOMENTUM, ValueError, 'eps must be > 0'),
    (-1, MOMENTUM, ValueError, 'eps must be > 0'),
    (EPS, 1.5, ValueError, 'momentum must be in [0, 1]'),
    (EPS, -0.1, ValueError, 'momentum must be in [0, 1]'),
    (EPS, None, TypeError, 'momentum must be a number'),
    ('1e-5', MOMENTUM, TypeError, 'eps must be a number'),
])
def test_batch_norm_refuses_eps_and_momentum_that_give_nan_or_extrapolate(eps, momentum, error,
                                                                           words):
    X = nd.ones((8, 5))   # constant: with eps = 0 the variance 0 would give 0 / 0
    with pytest.raises(error, match=re.escape(words)):
        with autograd.record():
            batch_norm(X, *random_params(X.shape), eps=eps, momentum=momentum)


def test_a_momentum_set_on_the_layer_after_building_is_checked_when_it_trains():
    layer = BatchNorm(3, 2)
    layer.initialize()
    layer.momentum = 1.5   # would extrapolate: moving_var turns negative within 3 steps
    with pytest.raises(ValueError, match=r'momentum must be in \[0, 1\].*got 1.5'):
        with autograd.record():
            layer(random_input((4, 3)))


@pytest.mark.parametrize('make', [lambda: BatchNorm(5, 2), lambda: FastBatchNorm(5, 2)],
                         ids=['BatchNorm', 'FastBatchNorm'])
def test_a_dense_batch_norm_refuses_to_train_on_a_batch_of_one(make):
    layer = make()
    layer.initialize()
    X = random_input((1, 5))
    with pytest.raises(ValueError, match=r'more than one value per feature.*\(1, 5\)'):
        with autograd.record():
            layer(X)
    assert layer(X).shape == (1, 5)   # predicting one example is fine
    with autograd.train_mode():       # and so is looking at batch statistics without training:
        np.testing.assert_array_equal(layer(X).asnumpy(), layer.beta.data().asnumpy())   # beta


def test_a_conv_batch_norm_trains_on_one_image_its_positions_give_the_statistics():
    layer = BatchNorm(6, 4)
    layer.initialize()
    with autograd.record():
        Y = layer(random_input((1, 6, 4, 4)))
    assert np.isfinite(Y.asnumpy()).all() and Y.asnumpy().std() > 0.5


@pytest.mark.parametrize('num_features', [0, -3, 6.0, '6'])
def test_batch_norm_layer_refuses_a_num_features_that_is_not_a_positive_integer(num_features):
    with pytest.raises(ValueError, match='num_features must be a positive integer.*got %s'
                       % re.escape(repr(num_features))):
        BatchNorm(num_features, 4)


def test_batch_norm_given_a_numpy_input_says_to_convert_it():
    # issue 17, reliability.md row 3.6: MXNet's own error prints the whole array
    params = random_params((8, 5))
    with pytest.raises(TypeError, match=r'got X as a ndarray\. Convert it with nd\.array'):
        batch_norm(np.ones((8, 5), dtype=np.float32), *params, eps=EPS, momentum=MOMENTUM)


def test_float16_batch_norm_is_refused_in_training_and_allowed_in_prediction(fashion_mnist_dir):
    """Battery row E10: LeNet's first BN input at the book's batch size 256, in float16, gave
    all-NaN Y and moving statistics without an error (its float16 mean overflows). Refused in
    training mode; prediction (no batch statistics) stays allowed and finite."""
    from mxnet import init
    from mxnet.gluon import nn

    from d2l_utils import fast_batch_norm, load_data_fashion_mnist, set_seed
    train_iter, _ = load_data_fashion_mnist(256, root=fashion_mnist_dir, train_subset=256,
                                            test_subset=8, seed=0)
    set_seed(0)
    conv = nn.Conv2D(6, kernel_size=5)
    conv.initialize(init.Xavier())
    X = conv(next(iter(train_iter))[0]).astype('float16')   # (256, 6, 24, 24)
    params = [p.astype('float16') for p in random_params(X.shape)]
    for fn in (batch_norm, fast_batch_norm):
        with pytest.raises(ValueError, match=r'refuses a float16 X in training mode.*'
                                             r"overflows.*net.cast\('float32'\)"):
            with autograd.record():
                fn(X, *params, eps=EPS, momentum=MOMENTUM)
        Y, _, _ = fn(X, *params, eps=EPS, momentum=MOMENTUM)   # prediction
        assert Y.dtype == np.float16 and np.isfinite(Y.asnumpy()).all()
