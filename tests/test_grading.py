"""d2l_utils.checks.grading: scores, graded checks and their messages; backward checker; recalibration."""
import threading
import time

import numpy as np
import pytest
from mxnet import autograd, gluon, init, nd

from d2l_utils import (BatchNorm, batch_norm, check_batch_norm, lenet,
                       recalibrate_batch_norm)
from d2l_utils.checks import grading
from d2l_utils.checks import mistakes as bn_mistakes
from d2l_utils.checks.grading import (GradingFailure, NotImplementedYet, check_batch_norm_backward,
                               grade, property_results, raise_for_failures, score)


def stub(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    raise NotImplementedError()


def backward(dY, X, gamma, eps):
    axes = 0 if X.ndim == 2 else (0, 2, 3)
    mean = X.mean(axis=axes, keepdims=True)
    std = nd.sqrt(nd.square(X - mean).mean(axis=axes, keepdims=True) + eps)
    X_hat = (X - mean) / std
    g = gamma * dY
    dX = (g - g.mean(axis=axes, keepdims=True)
          - X_hat * (g * X_hat).mean(axis=axes, keepdims=True)) / std
    return dX, (dY * X_hat).sum(axis=axes, keepdims=True), dY.sum(axis=axes, keepdims=True)


def test_score_counts_the_points_of_the_passed_properties():
    report = check_batch_norm(bn_mistakes.batch_norm_mean_from_itself, verbose=False)
    assert property_results(report)['moving_mean_update'] is False
    assert sum(property_results(report).values()) == 8
    assert score(report) == (8.0, 9.0)
    assert score(report, {'moving_mean_update': 3, 'gradients': 2}) == (2.0, 5.0)
    with pytest.raises(ValueError, match='no property moving_mean_updat;'):
        score(report, {'moving_mean_updat': 1})


def test_raise_for_failures_carries_the_whole_table():
    assert raise_for_failures(check_batch_norm(batch_norm, verbose=False)) is None
    report = check_batch_norm(bn_mistakes.batch_norm_negative_variance, verbose=False)
    with pytest.raises(GradingFailure) as failure:
        raise_for_failures(report)
    for name in report.failed():
        assert 'FAIL  ' + name in str(failure.value)


def test_a_graded_property_prints_pass_or_raises_the_diagnosis(capsys):
    grade(bn_mistakes.batch_norm_var_plus, 'gradients')
    assert capsys.readouterr().out.startswith('PASS gradients: ')
    with pytest.raises(GradingFailure) as failure:
        grade(bn_mistakes.batch_norm_var_plus, 'moving_var_update')
    text = str(failure.value)
    assert text.startswith('FAIL moving_var_update\n') and "Likely cause: '+' where '*'" in text


def test_code_still_raising_the_stub_is_not_implemented_yet_said_once_in_full():
    with pytest.raises(NotImplementedYet, match='calling it raises NotImplementedError'):
        grade(stub, 'output_shape')
    with pytest.raises(NotImplementedYet) as later:
        grade(stub, 'gradients')
    assert str(later.value) == 'stub is not implemented yet (see the first check of it above).'


def test_the_backward_checker_passes_the_closed_form_and_names_a_missing_term():
    assert check_batch_norm_backward(backward, verbose=False).passed

    def without_variance_term(dY, X, gamma, eps):
        axes = 0 if X.ndim == 2 else (0, 2, 3)
        dX, dgamma, dbeta = backward(dY, X, gamma, eps)
        std = nd.sqrt(nd.square(X - X.mean(axis=axes, keepdims=True)).mean(
            axis=axes, keepdims=True) + eps)
        g = gamma * dY
        return (g - g.mean(axis=axes, keepdims=True)) / std, dgamma, dbeta

    report = check_batch_norm_backward(without_variance_term, verbose=False)
    assert report.failed() == ['dX_2d', 'dX_4d', 'float64_numerical']
    assert "the variance's term is missing" in report['dX_2d'].detail


def test_a_backward_that_never_returns_is_reported_within_the_time_limit():
    stop = threading.Event()

    def hangs(dY, X, gamma, eps):
        while not stop.is_set():   # a loop whose condition never changes, until the test ends
            time.sleep(0.01)

    try:
        report = check_batch_norm_backward(hangs, verbose=False, time_limit=0.5)
    finally:
        stop.set()
    first = report.results[0]
    assert first.detail.startswith('did not finish within 0.5 s calling hangs')
    assert all(r.detail.startswith('not checked: %s did not finish' % first.name)
               for r in report.results[1:])
    assert report.failed() == [r.name for r in report.results]


def trained_lenet(bn, seed=0):
    """A LeNet trained 4 steps on real Fashion-MNIST images, and the batches it saw."""
    from d2l_utils import load_data_fashion_mnist, set_seed
    train_iter, _ = load_data_fashion_mnist(64, train_subset=256, test_subset=64, seed=seed)
    set_seed(seed)
    net = lenet(bn=bn)
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for X, y in train_iter:
        with autograd.record():
            value = loss(net(X), y).sum()
        value.backward()
        trainer.step(X.shape[0])
    return net, train_iter.in_order()


def test_check_lenet_says_what_is_missing():
    with pytest.raises(GradingFailure, match='expected 4 BatchNorm layers .* found 0'):
        grading.check_lenet(lambda: lenet(bn=None), BatchNorm)
    with pytest.raises(GradingFailure, match='should return a Gluon Block'):
        grading.check_lenet(lambda: None, BatchNorm)
    grading.check_lenet(lambda: lenet(bn=BatchNorm), BatchNorm)
