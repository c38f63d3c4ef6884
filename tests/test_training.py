"""Training and evaluation helpers, on real Fashion-MNIST subsets."""
import re

import d2lzh
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import (ArrayDataIter, History, NonFiniteLossError, NonFiniteParameterError,
                       evaluate_accuracy, lenet, load_data_fashion_mnist, restoring_state, set_seed,
                       train, train_ch5)
from d2l_utils.nan_guard import first_nonfinite_layer
from helpers import fresh_lenet, moving_statistics

# Chance on Fashion-MNIST is 0.10. Two epochs of LeNet+BN (lr 1.0) on 20,000 examples ended at
# test accuracy 0.58-0.67 over seeds 0-2 here. Epoch 1 alone is erratic (0.17-0.62): after 80
# steps at lr 1.0 the running statistics lag the weights. 0.45 is 4.5x chance, below every run.
ACCURACY_FLOOR = 0.45


def mlp():
    net = nn.Sequential()
    net.add(nn.Dense(64, activation='relu'), nn.Dense(10))
    return net


@pytest.fixture(scope='module')
def small_data():
    return load_data_fashion_mnist(256, train_subset=10000, test_subset=2000, seed=0)


def fit(net_fn, data, lr=1.0, epochs=2, seed=0, **kwargs):
    """Train a fresh network; the shuffle draws from numpy's global RNG, so set_seed fixes it."""
    set_seed(seed)
    train_iter = ArrayDataIter(data[0].X, data[0].y, 256, shuffle=True)
    net = net_fn()
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
    history = train(net, train_iter, data[1], trainer, mx.cpu(), epochs, progress=False,
                    verbose=False, **kwargs)
    return net, history


def test_short_lenet_bn_run_beats_chance_clearly():
    data = load_data_fashion_mnist(256, train_subset=20000, test_subset=2000, seed=0)
    _, history = fit(lambda: lenet(bn='gluon'), data)
    assert len(history) == 2
    assert history.last['test_acc'] > ACCURACY_FLOOR, history.epochs
    assert history.last['train_loss'] < history.epochs[0]['train_loss'] * 1.05
    for row in history.epochs:
        assert set(row) == set(History.KEYS)
        assert row['seconds'] > 0 and row['examples_per_sec'] > 0


def test_seeded_runs_repeat_exactly(small_data):
    _, first = fit(mlp, small_data, lr=0.5)
    _, second = fit(mlp, small_data, lr=0.5)
    for key in ('train_loss', 'train_acc', 'test_acc'):
        assert first.column(key) == second.column(key)


def test_evaluate_accuracy_agrees_with_d2lzh(small_data):
    net, _ = fit(mlp, small_data, lr=0.5, epochs=1)
    test_iter = small_data[1]
    ours = evaluate_accuracy(test_iter, net, mx.cpu())
    book = d2lzh.evaluate_accuracy(test_iter, net, mx.cpu())
    assert ours == pytest.approx(book, abs=1e-7)
    assert 0.3 < ours <= 1.0


def test_last_partial_batch_gets_a_mean_gradient():
    # 44 examples in one partial batch of a 256-batch iterator must train exactly like
    # a full batch of 44 (d2lzh's trainer.step(256) would shrink this step 44/256 times).
    train_iter, test_iter = load_data_fashion_mnist(44, train_subset=44, test_subset=44, seed=3)
    X, y = train_iter.X, train_iter.y
    weights = []
    for batch_size in (44, 256):
        set_seed(1)
        net = mlp()
        net.initialize(init.Xavier())
        trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
        train(net, ArrayDataIter(X, y, batch_size), test_iter, trainer, num_epochs=1,
              progress=False, verbose=False)
        weights.append(net[0].weight.data().asnumpy())
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-6, atol=1e-7)


def test_nan_guard_stops_a_diverging_network_and_names_the_layer(small_data):
    # lr 1e4 makes this MLP's loss NaN or inf within the first 5 batches for every seed tried
    with pytest.raises(NonFiniteLossError) as caught:
        fit(_deep_relu, small_data, lr=1e4, epochs=3)
    message = str(caught.value)
    assert re.search(r'loss is (nan|inf) at epoch 1, batch \d of 40', message), message
    # Dense(activation='relu') holds an Activation block: the layer is named, then its part
    assert re.search(r'first layer whose output is not finite is dense\d+ \(Dense\)', message)
    assert 'learning rate' in message


def test_nan_guard_leaves_parameters_finite():
    # the check runs before trainer.step, so the batch that produced NaN never updates weights
    data = load_data_fashion_mnist(256, train_subset=2560, test_subset=256, seed=0)
    set_seed(0)
    net = _deep_relu()
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1e4})
    with pytest.raises(NonFiniteLossError):
        train(net, data[0], data[1], trainer, num_epochs=5, progress=False, verbose=False)
    for name, param in net.collect_params().items():
        assert np.isfinite(param.data().asnumpy()).all(), name


def _deep_relu():
    net = nn.Sequential()
    net.add(nn.Dense(256, activation='relu'), nn.Dense(256, activation='relu'), nn.Dense(10))
    return net


def test_train_ch5_prints_the_books_lines(small_data, capsys):
    set_seed(0)
    net = mlp()
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
    history = train_ch5(net, small_data[0], small_data[1], 256, trainer, mx.cpu(), 2,
                        progress=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == 'training on cpu(0)'
    pattern = (r'epoch %d, loss \d+\.\d{4}, train acc \d\.\d{3}, test acc \d\.\d{3}, '
               r'time \d+\.\d sec')
    assert re.fullmatch(pattern % 1, lines[1]) and re.fullmatch(pattern % 2, lines[2]), lines
    assert '%.3f' % history.last['test_acc'] in lines[2]


def test_evaluate_accuracy_rejects_an_empty_iterator():
    with pytest.raises(ValueError, match='empty'):
        evaluate_accuracy([], mlp(), mx.cpu())


def test_history_columns_and_repr():
    history = History('demo')
    history.epochs.append(dict(epoch=1, train_loss=1.0, train_acc=0.5, test_acc=0.6,
                               seconds=2.0, examples_per_sec=100.0))
    assert history.column('test_acc') == [0.6]
    assert 'demo' in repr(history) and '0.600' in repr(history)


def test_diagnosing_a_layer_leaves_the_moving_statistics_as_they_were():
    set_seed(0)
    net = lenet(bn='scratch')
    net.initialize(init.Xavier())
    X = nd.random.uniform(shape=(8, 1, 28, 28))
    before = {k: p.data().copy() for k, p in net.collect_params().items() if p.grad_req == 'null'}
    assert first_nonfinite_layer(net, X) is None   # finite input and weights: nothing to blame
    for name, value in before.items():
        np.testing.assert_array_equal(net.collect_params()[name].data().asnumpy(), value.asnumpy())


# --- several devices (data parallelism); CPU contexts mx.cpu(k) stand in for GPUs ---

TWO_CPUS = [mx.cpu(0), mx.cpu(1)]


def fit_on(ctx, net_fn, data, lr=0.1, epochs=1, seed=0, **kwargs):
    """Like ``fit`` but with the net initialized on every device in ``ctx`` (a list)."""
    set_seed(seed)
    train_iter = ArrayDataIter(data[0].X, data[0].y, 256, shuffle=True)
    net = net_fn()
    net.initialize(init.Xavier(), ctx=ctx)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
    history = train(net, train_iter, data[1], trainer, ctx, epochs, progress=False,
                    verbose=False, **kwargs)
    return net, history


def test_a_list_of_one_device_trains_exactly_like_the_device(small_data):
    _, single = fit(lambda: lenet(bn='gluon'), small_data, lr=0.5, epochs=1)
    # LeNet+BN, as `fit`
    _, listed = fit_on([mx.cpu()], lambda: lenet(bn='gluon'), small_data, lr=0.5)
    for key in ('train_loss', 'train_acc', 'test_acc'):
        assert single.column(key) == listed.column(key)


def test_data_parallel_training_without_bn_matches_one_device(small_data):
    # no per-device state: the summed gradient over two halves is the gradient of the batch
    one, h_one = fit_on([mx.cpu()], mlp, small_data)
    two, h_two = fit_on(TWO_CPUS, mlp, small_data)
    for (name, p_one), p_two in zip(one.collect_params().items(), two.collect_params().values()):
        for c in TWO_CPUS:   # every device's copy got the same update
            # float32 sums in another order: measured max abs difference 9e-8 after 40 steps
            # (at lr 0.5 this MLP's ReLUs amplify it to 8e-5)
            np.testing.assert_allclose(p_two.data(c).asnumpy(), p_one.data().asnumpy(),
                                       rtol=1e-5, atol=1e-6, err_msg=name)
    assert h_two.last['train_loss'] == pytest.approx(h_one.last['train_loss'], rel=1e-5)
    assert h_two.last['test_acc'] == pytest.approx(h_one.last['test_acc'], abs=2e-3)


def test_evaluate_accuracy_on_several_devices_counts_every_example_once(small_data):
    net, _ = fit_on(TWO_CPUS, mlp, small_data)
    X, y = small_data[1].X[:515], small_data[1].y[:515]   # last batch of 3 for 4 devices
    test_iter = ArrayDataIter(X, y, 256)
    four = [mx.cpu(k) for k in range(4)]
    net.collect_params().reset_ctx(four)
    on_one = evaluate_accuracy(test_iter, net, mx.cpu(0))
    assert evaluate_accuracy(test_iter, net, four) == on_one
    correct = (net(X).argmax(axis=1) == y).sum().asscalar()
    assert on_one == pytest.approx(correct / 515)


def test_train_names_bad_device_lists(small_data):
    net = mlp()
    net.initialize(ctx=TWO_CPUS)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    for ctx, error, match in (([], ValueError, 'empty list'),
                              ('cpu', TypeError, 'must be a device'),
                              ([mx.cpu(0), mx.cpu(0)], ValueError, 'more than once')):
        with pytest.raises(error, match=match):
            train(net, small_data[0], small_data[1], trainer, ctx, progress=False)


def test_train_refuses_a_net_missing_on_a_device(small_data):
    net = mlp()
    net.initialize(ctx=mx.cpu(0))
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    with pytest.raises(ValueError, match=r'net.initialize\(ctx='):
        train(net, small_data[0], small_data[1], trainer, TWO_CPUS, progress=False)


def test_train_refuses_batches_smaller_than_the_number_of_devices():
    train_iter, test_iter = load_data_fashion_mnist(256, train_subset=257, test_subset=64, seed=0)
    net = mlp()
    net.initialize(ctx=TWO_CPUS)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    net(train_iter.X[:1])   # finish the deferred initialization
    before = net[0].weight.data().copy()
    # 257 = 256 + 1: the last batch has one example for two devices; caught before training
    with pytest.raises(ValueError, match='smallest batch has 1.*2 devices'):
        train(net, train_iter, test_iter, trainer, TWO_CPUS, progress=False)
    np.testing.assert_array_equal(net[0].weight.data().asnumpy(), before.asnumpy())
    # an iterator that does not say its sizes is checked batch by batch
    batches = [(train_iter.X[:4], train_iter.y[:4]), (train_iter.X[4:5], train_iter.y[4:5])]
    with pytest.raises(ValueError, match='batch of 1 example'):
        train(net, batches, test_iter, trainer, TWO_CPUS, progress=False)


def test_nan_guard_on_several_devices_names_the_device_and_layer(small_data):
    with pytest.raises(NonFiniteLossError) as caught:
        fit_on(TWO_CPUS, _deep_relu, small_data, lr=1e4, epochs=3)
    message = str(caught.value)
    assert re.search(r'loss is (nan|inf) at epoch 1, batch \d of 40 \(first on cpu\(\d\), '
                     r'part \d of 2 of the batch\)', message), message
    assert re.search(r'first layer whose output is not finite is dense\d+ \(Dense\)', message)


def test_train_ch5_prints_the_device_list(small_data, capsys):
    set_seed(0)
    net = mlp()
    net.initialize(init.Xavier(), ctx=TWO_CPUS)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
    train_ch5(net, small_data[0], small_data[1], 256, trainer, TWO_CPUS, 1, progress=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == 'training on [cpu(0), cpu(1)]'
    assert lines[1].startswith('epoch 1, loss ')


def test_restoring_state_restores_statistics_but_keeps_learned_weights(small_data):
    X, y = next(iter(small_data[0]))
    net = fresh_lenet('scratch', X)
    before, weight = moving_statistics(net), net[0].weight.data().asnumpy().copy()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
    with restoring_state(net):
        with autograd.record():
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(X), y)
        loss.backward()
        trainer.step(X.shape[0])
        changed = moving_statistics(net)
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(before, changed))
    for a, b in zip(before, moving_statistics(net)):
        np.testing.assert_array_equal(a, b)
    assert np.abs(net[0].weight.data().asnumpy() - weight).max() > 0


def test_training_continued_from_a_later_epoch_numbers_its_rows_and_errors_from_it(small_data):
    net, _ = fit(mlp, small_data, lr=0.5, epochs=1)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
    history = train(net, small_data[0], small_data[1], trainer, num_epochs=2, progress=False,
                    verbose=False, first_epoch=4)
    assert history.column('epoch') == [4, 5]
    trainer.set_learning_rate(1e30)   # the loss becomes infinite in the first step
    with pytest.raises(NonFiniteLossError, match='at epoch 6, batch'):
        for _ in range(3):
            train(net, small_data[0], small_data[1], trainer, progress=False, verbose=False,
                  first_epoch=6)
    with pytest.raises(ValueError, match='first_epoch must be a positive integer'):
        train(net, small_data[0], small_data[1], trainer, first_epoch=0)


# ----------------------------------------------------------------------------- bad input and faults
# (issue 17; docs/reviews reliability.md rows 2.2-2.7, 2.13-2.17, 2.24-2.27)

@pytest.fixture(scope='module')
def tiny_data():
    return load_data_fashion_mnist(64, train_subset=256, test_subset=128, seed=0)


def train_fresh(net, train_iter, test_iter, epochs=1, lr=0.9, ctx=None, **kwargs):
    set_seed(0)
    net.initialize(init.Xavier(), ctx=ctx)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
    return train(net, train_iter, test_iter, trainer, ctx, epochs, progress=False,
                 verbose=False, **kwargs)


def dense_net(outputs):
    net = nn.Sequential()
    net.add(nn.Dense(64, activation='relu'), nn.Dense(outputs))
    return net


def test_one_nan_pixel_stops_training_at_the_update_that_makes_conv_weights_nan(tiny_data):
    train_iter, test_iter = tiny_data
    batches = [(X.copy(), y) for X, y in train_iter]
    batches[0][0][0, 0, 0, 0] = np.nan   # max pooling keeps the loss finite
    net = lenet()
    with pytest.raises(NonFiniteParameterError,
                       match=r'parameter conv\d+_weight on cpu\(0\) is NaN.*epoch 1, batch 1 of '
                             r'4.*input batch had non-finite values'):
        train_fresh(net, batches, test_iter)
    assert issubclass(NonFiniteParameterError, NonFiniteLossError)


def test_evaluate_accuracy_refuses_a_net_with_nan_weights(tiny_data):
    _, test_iter = tiny_data
    net = lenet()
    net.initialize(init.Xavier())
    net(next(iter(test_iter))[0])
    conv_weight = net[0].weight.data()
    conv_weight[0, 0, 0, 0] = np.nan
    with pytest.raises(NonFiniteParameterError, match=r'parameter conv\d+_weight on cpu\(0\)'):
        evaluate_accuracy(test_iter, net)


@pytest.mark.parametrize('outputs', [5, 1])
def test_an_output_layer_narrower_than_the_labels_is_refused(tiny_data, outputs):
    with pytest.raises(ValueError, match=r'the net has %d outputs, so labels must be integers in '
                                         r'\[0, %d\); the first batch has labels from 0 to 9'
                                         % (outputs, outputs)):
        train_fresh(dense_net(outputs), *tiny_data)


def test_a_wider_output_layer_still_trains(tiny_data):
    assert len(train_fresh(dense_net(20), *tiny_data)) == 1


def test_labels_counted_from_one_are_refused(tiny_data):
    train_iter, test_iter = tiny_data
    with pytest.raises(ValueError, match=r'labels from 1 to 10.*y - 1'):
        train_fresh(dense_net(10), [(X, y + 1) for X, y in train_iter], test_iter)


def test_one_hot_labels_and_numpy_batches_are_refused_before_training(tiny_data):
    train_iter, test_iter = tiny_data
    with pytest.raises(ValueError, match=r'class indices of shape \(batch,\) = \(64,\); got '
                                         r'shape \(64, 10\).*argmax'):
        train_fresh(dense_net(10), [(X, nd.one_hot(y, 10)) for X, y in train_iter], test_iter)
    with pytest.raises(TypeError, match=r'pair \(X, y\) of NDArrays; got \(ndarray, ndarray\)'):
        train_fresh(dense_net(10), [(X.asnumpy(), y.asnumpy()) for X, y in train_iter],
                    test_iter)


def test_an_empty_training_iterator_is_refused(tiny_data):
    with pytest.raises(ValueError, match='train_iter gave no batches in epoch 1'):
        train_fresh(dense_net(10), [], tiny_data[1])


def test_a_one_shot_generator_for_two_epochs_is_refused_before_training(tiny_data):
    train_iter, test_iter = tiny_data
    with pytest.raises(ValueError, match='one-shot iterator.*first of the 2 epochs'):
        train_fresh(dense_net(10), ((X, y) for X, y in train_iter), test_iter, epochs=2)
    # for one epoch a generator is fine
    assert len(train_fresh(dense_net(10), ((X, y) for X, y in train_iter), test_iter)) == 1


@pytest.mark.parametrize('epochs', [0, -1, 1.5, '1'])
def test_num_epochs_must_be_a_positive_integer(tiny_data, epochs):
    with pytest.raises(ValueError, match=r'num_epochs must be a positive integer.*got %s'
                                         % re.escape(repr(epochs))):
        train_fresh(dense_net(10), *tiny_data, epochs=epochs)


def test_a_missing_trainer_is_refused_before_training(tiny_data):
    net = dense_net(10)
    net.initialize()
    with pytest.raises(TypeError, match='trainer must be a gluon.Trainer.*got None'):
        train(net, *tiny_data, None, mx.cpu(), 1, progress=False)


def test_a_gpu_that_cannot_run_is_named_with_advice_that_fits(tiny_data):
    if mx.context.num_gpus() > 0:
        pytest.skip('this machine has a GPU MXNet can see')
    net = dense_net(10)
    net.initialize(ctx=mx.cpu())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    with pytest.raises(ValueError, match=r'ctx includes gpu\(0\), which cannot run here: .*'
                                         r'try_all_gpus\(\)') as error:
        train(net, *tiny_data, trainer, [mx.cpu(), mx.gpu(0)], 1, progress=False)
    assert 'net.initialize(ctx=[cpu(0), gpu(0)])' not in str(error.value)


@pytest.mark.parametrize('seed', ['abc', -1, 2 ** 32, 1.5])
def test_set_seed_refuses_a_bad_seed_before_seeding_anything(seed):
    import random
    state = random.getstate()
    with pytest.raises(ValueError, match=r'seed must be an integer in \[0, 2\*\*32 - 1\]'):
        set_seed(seed)
    assert random.getstate() == state   # no partial seeding


def test_restoring_state_of_a_net_that_has_not_seen_a_batch_puts_back_the_initial_statistics(
        tiny_data):
    net = lenet(bn='gluon')
    net.initialize(init.Xavier())
    X = next(iter(tiny_data[0]))[0]
    with restoring_state(net):
        with autograd.record():
            net(X).sum().backward()   # nn.BatchNorm updates its running statistics here
    for name, param in net.collect_params().items():
        if 'running_mean' in name:
            assert (param.data().asnumpy() == 0).all(), name
        if 'running_var' in name:
            assert (param.data().asnumpy() == 1).all(), name


# --- Bad inputs, round 3 (issue 29, battery section D)

def test_a_learning_rate_written_as_a_string_is_refused_before_training(tiny_data):
    net = dense_net(10)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': '0.1'})   # row D1
    with pytest.raises(TypeError, match=r"learning_rate must be a number.*got '0.1' \(a str\)"):
        train(net, *tiny_data, trainer, mx.cpu(), 1, progress=False)


def test_a_negative_learning_rate_is_refused_and_zero_is_allowed(tiny_data):
    # row D2: -0.5 (a sign typo) used to train uphill without a word; refused, not warned
    with pytest.raises(ValueError, match=r'learning_rate is -0.5, negative.*increase the loss'):
        train_fresh(lenet(), *tiny_data, lr=-0.5)
    assert len(train_fresh(dense_net(10), *tiny_data, lr=0)) == 1   # row D3 stays OK


def test_labels_short_in_a_later_batch_name_the_batch_and_the_shapes(tiny_data):
    train_iter, test_iter = tiny_data
    batches = [(X, y[:-3] if k == 2 else y) for k, (X, y) in enumerate(train_iter)]   # row D7
    with pytest.raises(ValueError, match=r'train: epoch 1, batch 3 failed in MXNet \(.*\)\. '
                                         r'That batch has X of shape \(64, 1, 28, 28\) and y of '
                                         r'shape \(61,\); the first batch had X \(64, 1, 28, 28\) '
                                         r'and y \(64,\)'):
        train_fresh(lenet(), batches, test_iter)


def test_a_later_batch_of_smaller_images_names_the_batch_and_the_shapes(tiny_data):
    train_iter, test_iter = tiny_data
    batches = [(X[:, :, :20, :20] if k == 2 else X, y)                       # row D8
               for k, (X, y) in enumerate(train_iter)]
    with pytest.raises(ValueError, match=r'epoch 1, batch 3 .*X of shape \(64, 1, 20, 20\).*'
                                         r'first batch had X \(64, 1, 28, 28\)'):
        train_fresh(lenet(), batches, test_iter)


def test_a_test_iterator_of_another_image_size_is_refused_before_training(tiny_data):
    train_iter, _ = tiny_data
    _, test_32 = load_data_fashion_mnist(64, resize=32, train_subset=64, test_subset=64, seed=0)
    net = lenet()
    with pytest.raises(ValueError, match=r'train_iter gives examples of shape \(1, 28, 28\) but '
                                         r'test_iter gives \(1, 32, 32\).*resize='):   # row D9
        train_fresh(net, train_iter, test_32)
    assert not net[0].weight.shape[1]   # refused before the first batch: nothing ran
    # an iterator that does not say its shape fails at evaluation, naming the batch and shapes
    trained = lenet()
    train_fresh(trained, train_iter, tiny_data[1])
    with pytest.raises(ValueError, match=r'evaluate_accuracy: batch 1 failed in MXNet.*X of '
                                         r'shape \(64, 1, 32, 32\)'):
        evaluate_accuracy(list(test_32), trained)


def test_evaluate_accuracy_on_a_device_the_net_is_not_on_is_a_clear_error(tiny_data):
    net = lenet()
    net.initialize(ctx=mx.cpu(0))
    net(next(iter(tiny_data[1]))[0])
    with pytest.raises(ValueError, match=r'evaluate_accuracy: the parameter \w+ lives on '
                                         r'\[cpu\(0\)\], but the batches go to \[cpu\(0\), '
                                         r'cpu\(1\)\].*net.initialize\(ctx='):   # row D12
        evaluate_accuracy(tiny_data[1], net, [mx.cpu(0), mx.cpu(1)])


def test_a_float16_net_with_float32_data_is_a_clear_error(tiny_data):
    net = lenet()
    net.initialize()
    net.cast('float16')   # row D17
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    with pytest.raises(TypeError, match=r"parameters are float16 but the batch X is float32.*"
                                        r"net.cast\('float32'\)"):
        train(net, *tiny_data, trainer, mx.cpu(), 1, progress=False)


def test_no_test_iterator_is_refused_before_training(tiny_data):
    net = lenet()
    with pytest.raises(TypeError, match='test_iter must be an iterable of .*got None'):  # D19
        train_fresh(net, tiny_data[0], None)
    assert not net[0].weight.shape[1]   # before the first epoch, not after it
