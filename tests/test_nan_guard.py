"""NanGuard on its own: one read per batch, the loss checked before the update, the parameters'
flag of the previous update read with it, and messages that name where and what to check.

train's own NaN tests (tests/test_training.py) run the guard inside real training; these drive
its three calls directly on a small real net, so each path is shown by itself."""
import math

import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import NonFiniteLossError, NonFiniteParameterError, set_seed
from d2l_utils.nan_guard import NanGuard, first_nonfinite_parameter

CTX = [nd.array([0]).context]   # [cpu(0)]


def small_net():
    set_seed(0)
    net = nn.Sequential()
    net.add(nn.Dense(4, activation='tanh'), nn.Dense(3))   # tanh: NaN stays NaN (relu makes it 0)
    net.initialize(init.Xavier(), ctx=CTX)
    net(nd.ones((2, 5)))   # deferred initialization done
    return net


def losses_of(net, X, y):
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(X), y).sum()
    return [loss]


def batch():
    return nd.array(np.random.RandomState(0).rand(6, 5)), nd.array([0, 1, 2, 0, 1, 2])


def test_a_finite_step_passes_and_end_epoch_reads_the_sums():
    net = small_net()
    X, y = batch()
    guard = NanGuard(net, CTX, num_batches=1)
    losses = losses_of(net, X, y)
    guard.check(losses, [X], epoch=1, batch=1)
    guard.after_step(1, 1, X)
    loss_sum, count = guard.end_epoch(losses[0].reshape((1,)), nd.array([6]))
    assert loss_sum == pytest.approx(losses[0].asscalar()) and count == 6
    assert guard.last_step is None   # the flag was read with the sums


def test_a_nan_loss_names_epoch_batch_and_the_first_layer_whose_output_is_not_finite():
    net = small_net()
    net[1].weight.set_data(nd.full(net[1].weight.shape, math.nan))
    X, y = batch()
    guard = NanGuard(net, CTX, num_batches=7)
    with pytest.raises(NonFiniteLossError) as caught:
        guard.check(losses_of(net, X, y), [X], epoch=2, batch=3)
    message = str(caught.value)
    assert 'epoch 2, batch 3 of 7' in message
    assert f'{net[1].name} (Dense)' in message                 # the culprit
    assert 'learning rate' in message                           # a fix to try
    assert not isinstance(caught.value, NonFiniteParameterError)


def test_a_nan_input_is_blamed_on_the_input_not_a_layer():
    net = small_net()
    X, y = batch()
    X[0, 0] = math.nan
    with pytest.raises(NonFiniteLossError, match='the input batch itself has non-finite values'):
        NanGuard(net, CTX).check(losses_of(net, X, y), [X], epoch=1, batch=1)


def test_a_parameter_broken_by_an_update_is_caught_at_the_next_read_with_its_step():
    net = small_net()
    X, y = batch()
    guard = NanGuard(net, CTX, num_batches=4)
    guard.check(losses_of(net, X, y), [X], epoch=1, batch=1)
    # what a bad update does: the weights turn NaN while this batch's loss was finite
    net[0].bias.set_data(nd.full(net[0].bias.shape, math.nan))
    guard.after_step(1, 1, X)
    with pytest.raises(NonFiniteParameterError) as caught:
        guard.end_epoch(nd.zeros(1))
    message = str(caught.value)
    assert f'{net[0].bias.name} on cpu(0)' in message
    assert 'epoch 1, batch 1 of 4' in message and 'the input batch was finite' in message


def test_the_parameter_flag_is_read_together_with_the_next_batchs_loss():
    net = small_net()
    X, y = batch()
    guard = NanGuard(net, CTX)
    net[0].weight.set_data(nd.full(net[0].weight.shape, math.inf))
    guard.after_step(3, 9, X)
    finite_losses = [nd.array([1.0])]   # the next batch's loss, finite
    with pytest.raises(NonFiniteParameterError, match='after the update of epoch 3, batch 9'):
        guard.check(finite_losses, [X], epoch=3, batch=10)


def test_huge_finite_weights_overflow_the_flag_but_do_not_stop_training():
    net = small_net()
    X, _ = batch()
    net[0].weight.set_data(nd.full(net[0].weight.shape, 1e30))   # squares overflow float32
    guard = NanGuard(net, CTX)
    guard.after_step(1, 1, X)
    assert first_nonfinite_parameter(net) is None
    assert guard.end_epoch(nd.array([2.0])) == [2.0]


def test_a_disabled_guard_checks_nothing_and_still_reads_the_sums():
    net = small_net()
    X, _ = batch()
    guard = NanGuard(net, CTX, enabled=False)
    guard.check([nd.array([math.nan])], [X], epoch=1, batch=1)   # no error
    net[0].weight.set_data(nd.full(net[0].weight.shape, math.nan))
    guard.after_step(1, 1, X)
    assert guard.last_step is None
    assert guard.end_epoch(nd.array([5.0]), nd.array([3.0])) == [5.0, 3.0]
