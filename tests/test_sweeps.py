"""Sweeps: a diverging run is recorded, not raised; a repeated run is reused and would give the
same numbers; prepare() freezes what it freezes; the summaries and the plot say what happened."""
import math

import matplotlib
matplotlib.use('Agg')

import numpy as np   # noqa: E402
import pytest   # noqa: E402
from matplotlib import pyplot as plt   # noqa: E402
from mxnet.gluon import nn   # noqa: E402

from mxnet import init   # noqa: E402

from d2l_utils import (History, Runner, count_parameters, fit, lenet, load_data_fashion_mnist,
                       lr_range, plot_lr_sweep, set_seed)
from d2l_utils.experiments.sweeps import Result, sweep_table
from d2l_utils.experiments.sweeps import CHANCE_ACC, UNIFORM_GUESS_ACC   # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close('all')


@pytest.fixture
def load_small(fashion_mnist_dir):
    """Fresh (train_iter, test_iter) on 512 real training and 256 test images, the same order
    each call."""
    def load():
        return load_data_fashion_mnist(64, train_subset=512, test_subset=256, seed=0)
    return load


def made_up(name, lr, test_accs, losses, diverged_epoch=None):
    """A Result with a hand-written History (no training): for the summaries and the plot."""
    history = History(name)
    for epoch, (acc, loss) in enumerate(zip(test_accs, losses), 1):
        history.epochs.append(dict(epoch=epoch, train_loss=loss, train_acc=acc, test_acc=acc,
                                   seconds=1.0, examples_per_sec=100.0))
    return Result(name, lr, history, net=None, diverged_epoch=diverged_epoch,
                  error=None if diverged_epoch is None else 'loss is nan')


def test_a_run_whose_loss_becomes_infinite_is_recorded_as_diverged(load_small):
    # A ReLU LeNet without batch norm at lr=1000 overflows within the first epoch
    runner = Runner(load_small, num_epochs=2, verbose=False)
    result = runner.run('relu, no BN', 1000, bn=None, activation='relu')
    assert result.diverged and result.diverged_epoch == 1
    assert 'Training stopped' in result.error
    assert len(result.history) == 0 and math.isnan(result.final('test_acc'))
    assert result.status() == 'NaN'
    assert 'diverged' in result.summary()


def test_repeating_a_run_gives_the_same_numbers_so_the_runner_reuses_it(load_small, capsys):
    histories = []
    for _ in range(2):   # two runners: nothing shared but the settings
        runner = Runner(load_small, num_epochs=2)
        histories.append(runner.run('BN', 0.5, bn='gluon').history)
    numbers = [[(row['train_loss'], row['train_acc'], row['test_acc']) for row in h.epochs]
               for h in histories]
    assert len(numbers[0]) == 2 and numbers[0] == numbers[1]

    first = runner.run('BN', 0.5, bn='gluon')
    again = runner.run('BN again', 0.5, bn='gluon')
    assert again is first and len(runner.results) == 1
    assert "same run as 'BN': reused" in capsys.readouterr().out
    other = runner.run('BN', 0.25, bn='gluon')
    assert other is not first and len(runner.results) == 2


def test_variants_start_from_the_same_weights(load_small):
    runner = Runner(load_small, num_epochs=1, verbose=False)
    with_bias, without_bias = runner.build(bn='gluon'), runner.build(bn='gluon', use_bias=False)
    conv_a, conv_b = with_bias[0], without_bias[0]
    assert np.array_equal(conv_a.weight.data().asnumpy(), conv_b.weight.data().asnumpy())
    assert conv_b.bias is None


def test_parameters_frozen_by_prepare_do_not_change(load_small):
    def freeze_gamma_beta(net):
        net.collect_params('.*gamma|.*beta').setattr('grad_req', 'null')

    runner = Runner(load_small, num_epochs=1, verbose=False)
    result = runner.run('frozen', 1.0, prepare=freeze_gamma_beta, bn='gluon')
    gammas = [p.data().asnumpy() for p in result.net.collect_params('.*gamma').values()]
    assert len(gammas) == 4 and all((g == 1).all() for g in gammas)
    # the conv weights did train
    start = runner.build(bn='gluon')
    assert not np.array_equal(start[0].weight.data().asnumpy(),
                              result.net[0].weight.data().asnumpy())


def test_count_parameters_matches_lenet_counted_by_hand(load_small):
    runner = Runner(load_small, num_epochs=1, verbose=False)
    # conv 6*1*5*5+6, conv 16*6*5*5+16, dense 120*256+120, 84*120+84, 10*84+10
    plain = 156 + 2416 + 30840 + 10164 + 850
    assert count_parameters(runner.build(bn=None)) == (plain, 0)
    bn_features = 6 + 16 + 120 + 84
    # each BN layer: gamma, beta learned; running mean, var not
    assert count_parameters(runner.build(bn='gluon')) == (plain + 2 * bn_features,
                                                         2 * bn_features)
    assert count_parameters(runner.build(bn='gluon', use_bias=False)) == (
        plain + bn_features, 2 * bn_features)   # one bias per BN layer's feature is gone


def test_status_tells_blown_up_from_chance_from_training():
    assert made_up('a', 1, [0.5, 0.8], [1.0, 0.5]).status() == 'trains'
    assert made_up('b', 1, [0.1, 0.1], [2.31, 2.30]).status() == 'chance'
    assert made_up('c', 1, [0.1, 0.1], [40.0, 30.0]).status() == 'blew up'
    assert made_up('d', 1, [], [], diverged_epoch=1).status() == 'NaN'


def test_one_chance_threshold_decides_the_status_the_table_and_the_plot_line():
    below, above = CHANCE_ACC - 0.01, CHANCE_ACC + 0.01
    assert UNIFORM_GUESS_ACC < below   # the uniform guess itself is below the threshold
    sweep = {1.0: made_up('x', 1.0, [below], [2.0]), 3.0: made_up('x', 3.0, [above], [2.0])}
    assert [r.status() for r in sweep.values()] == ['chance', 'trains']
    table = sweep_table({'x': sweep}).splitlines()
    assert '(chance)' in table[1] and '(trains)' in table[2]
    ax_acc, _ = plot_lr_sweep({'x': sweep})
    guess = [line for line in ax_acc.get_lines() if line.get_label().startswith('uniform guess')]
    assert len(guess) == 1 and list(guess[0].get_ydata()) == [UNIFORM_GUESS_ACC] * 2


class PoisonedFromEpoch:
    """The batches of an ArrayDataIter, every input value scaled by 1e38 from epoch ``bad`` on
    (a ReLU LeNet's loss then overflows to NaN in the first such batch)."""

    def __init__(self, data_iter, bad):
        self.data_iter, self.bad, self.epoch = data_iter, bad, 0
        self.batch_size, self.num_examples = data_iter.batch_size, data_iter.num_examples

    def __len__(self):
        return len(self.data_iter)

    def __iter__(self):
        self.epoch += 1
        for X, y in self.data_iter:
            yield (X * 1e38 if self.epoch >= self.bad else X), y


def test_a_run_that_diverges_in_a_later_epoch_keeps_the_earlier_ones_and_names_that_epoch(
        load_small):
    train_iter, test_iter = load_small()
    set_seed(0)
    net = lenet(activation='relu')
    net.initialize(init.Xavier())
    result = fit(net, PoisonedFromEpoch(train_iter, bad=2), test_iter, 0.5, 3, name='late')
    assert result.diverged_epoch == 2 and result.history.column('epoch') == [1]
    assert 'at epoch 2, batch 1 of 8' in result.error   # train() counted from epoch 2


def test_lr_range_table_and_plot_summarize_a_sweep():
    sweep = {0.1: made_up('BN', 0.1, [0.7], [0.6]), 1.0: made_up('BN', 1.0, [0.8], [0.4]),
             10.0: made_up('BN', 10.0, [0.1], [50.0]), 100.0: made_up('BN', 100.0, [], [], 1)}
    assert lr_range(sweep) == (0.1, 1.0)
    assert lr_range(sweep, ok=lambda r: r.final('test_acc') > 0.9) is None

    table = sweep_table({'BN': sweep}).splitlines()
    assert len(table) == 5 and 'BN' in table[0]
    assert '0.800 (trains)' in table[2] and 'blew up' in table[3] and 'NaN in epoch 1' in table[4]

    ax_acc, ax_loss = plot_lr_sweep({'BN': sweep}, title='test sweep')
    assert ax_acc.get_xscale() == 'log' and ax_loss.get_yscale() == 'log'
    lines = {line.get_label(): line for line in ax_acc.get_lines()}
    assert list(lines['BN'].get_xdata()) == [0.1, 1.0, 10.0]
    assert list(lines['BN: NaN loss'].get_xdata()) == [100.0]


@pytest.mark.parametrize('bad, message', [(0, 'positive'), (-1.0, 'positive'), ('1', 'positive'),
                                          (True, 'positive')])
def test_a_learning_rate_that_is_not_a_positive_number_is_refused(load_small, bad, message):
    with pytest.raises(ValueError, match=message):
        Runner(load_small, 1, verbose=False).run('x', bad)


def test_bad_runner_arguments_say_what_to_pass(load_small):
    with pytest.raises(TypeError, match='load_data must be a function'):
        Runner(load_small(), 1)
    with pytest.raises(ValueError, match='num_epochs'):
        Runner(load_small, 0)
    with pytest.raises(ValueError, match='lrs is empty'):
        Runner(load_small, 1).sweep('x', [])
    train_iter, test_iter = load_small()
    with pytest.raises(ValueError, match='num_epochs'):
        fit(lenet(), train_iter, test_iter, 1.0, 1.5)
    with pytest.raises(ValueError, match='no sweeps'):
        plot_lr_sweep({})


def test_a_bn_callable_with_use_global_stats_is_a_valid_variant(load_small):
    runner = Runner(load_small, num_epochs=1, verbose=False)
    result = runner.run('global', 1.0, bn=lambda n, d: nn.BatchNorm(use_global_stats=True))
    means = [p.data().asnumpy() for p in result.net.collect_params('.*running_mean').values()]
    assert len(means) == 4 and all((m == 0).all() for m in means)   # never updated
