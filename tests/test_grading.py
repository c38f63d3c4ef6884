"""d2l_utils.checks.grading: scores, graded checks and their messages; the backward checker;
recalibration."""
import threading
import time

import pytest
from mxnet import autograd, gluon, init, nd

from d2l_utils import (BatchNorm, batch_norm, check_batch_norm, lenet)
from d2l_utils.checks import grading
from d2l_utils.checks import mistakes as bn_mistakes
from d2l_utils.checks.grading import (GradingFailure, NotImplementedYet, check_batch_norm_backward,
                                      check, grade, property_results, raise_for_failures, score)

import learner_code
from learner_code import as_learner_code


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
    pasted = as_learner_code(bn_mistakes.batch_norm_var_plus)
    grade(pasted, 'gradients')
    assert capsys.readouterr().out.startswith('PASS gradients: ')
    with pytest.raises(GradingFailure) as failure:
        grade(pasted, 'moving_var_update')
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
    assert first.detail.startswith('did not finish within 0.5 s on the 2-D input (8, 5) calling '
                                   'hangs'), first.detail
    assert all(r.detail.startswith('not checked: the code did not finish (see shapes)')
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
        grading.check_lenet(lambda: gluon.nn.Sequential(), learner_code.BatchNorm)
    with pytest.raises(GradingFailure, match='should return a Gluon Block'):
        grading.check_lenet(lambda: None, learner_code.BatchNorm)
    with pytest.raises(GradingFailure, match="d2l_utils.layers.BatchNorm, the package's own"):
        grading.check_lenet(lambda: lenet(bn=BatchNorm), BatchNorm)
    with pytest.raises(GradingFailure, match="uses d2l_utils.lenet"):
        grading.check_lenet(lambda: lenet(bn=learner_code.BatchNorm), learner_code.BatchNorm)
    nn = gluon.nn

    def build_lenet():
        net = nn.Sequential()
        for layer in (nn.Conv2D(6, kernel_size=5), learner_code.BatchNorm(6, 4),
                      nn.Activation('sigmoid'), nn.MaxPool2D(pool_size=2, strides=2),
                      nn.Conv2D(16, kernel_size=5), learner_code.BatchNorm(16, 4),
                      nn.Activation('sigmoid'), nn.MaxPool2D(pool_size=2, strides=2),
                      nn.Dense(120), learner_code.BatchNorm(120, 2), nn.Activation('sigmoid'),
                      nn.Dense(84), learner_code.BatchNorm(84, 2), nn.Activation('sigmoid'),
                      nn.Dense(10)):
            net.add(layer)
        return net

    grading.check_lenet(build_lenet, learner_code.BatchNorm)


# --- no hang, no crash, no stale verdict (issue 27 item 3)

def loops_until(stop):
    """A learner's batch_norm, layer and backward that loop until ``stop`` is set."""
    def batch_norm_loops(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        while not stop.is_set():
            time.sleep(0.01)

    class LoopingBatchNorm(learner_code.BatchNorm):
        def forward(self, X):
            while not stop.is_set():
                time.sleep(0.01)

    def backward_loops(dY, X, gamma, eps):
        while not stop.is_set():
            time.sleep(0.01)

    return batch_norm_loops, LoopingBatchNorm, backward_loops


@pytest.mark.parametrize('which', ['function', 'block', 'backward'])
def test_a_looping_learner_function_returns_from_check_within_the_limit(which, monkeypatch,
                                                                        capsys):
    monkeypatch.setenv('D2L_CHECK_TIME_LIMIT', '0.5')
    stop = threading.Event()
    function, layer, backward_fn = loops_until(stop)
    target, checker = {'function': (function, None), 'block': (layer, None),
                       'backward': (backward_fn, check_batch_norm_backward)}[which]
    start = time.time()
    try:
        report = check(target, checker)
        with pytest.raises(GradingFailure, match='did not finish within 0.5 s|not checked'):
            grade(target, report.results[-1].name, checker)
    finally:
        stop.set()
    assert time.time() - start < 30
    assert not report.passed and 'did not finish within 0.5 s' in capsys.readouterr().out


def test_a_looping_layer_fails_the_lenet_checks_without_training(monkeypatch):
    monkeypatch.setenv('D2L_CHECK_TIME_LIMIT', '0.5')
    stop = threading.Event()
    _, layer, _ = loops_until(stop)
    try:
        with pytest.raises(GradingFailure, match='did not finish within 0.5 s'):
            grading.check_lenet(lambda: None, layer)
        with pytest.raises(GradingFailure, match='did not finish within 0.5 s'):
            grading.grade_lenet_training(lambda: None, layer)
    finally:
        stop.set()


def test_a_looping_build_lenet_fails_within_the_limit(monkeypatch):
    monkeypatch.setenv('D2L_CHECK_TIME_LIMIT', '0.5')
    stop = threading.Event()

    def build_lenet():
        while not stop.is_set():
            time.sleep(0.01)

    try:
        with pytest.raises(GradingFailure, match=r'did not finish within 0.5 s build_lenet\(\)'):
            grading.check_lenet(build_lenet, learner_code.BatchNorm)
    finally:
        stop.set()


LEARNER_CELLS = """
from mxnet import autograd, nd

def variance(X, axes):
    return ((X - X.mean(axis=axes, keepdims=True)) ** 2).sum(axis=axes, keepdims=True)

def my_bn(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if autograd.is_training():
        axes = 0 if X.ndim == 2 else (0, 2, 3)
        mean, var = X.mean(axis=axes, keepdims=True), variance(X, axes)
        moving_mean = momentum * moving_mean + (1 - momentum) * mean
        moving_var = momentum * moving_var + (1 - momentum) * var
    else:
        mean, var = moving_mean, moving_var
    return gamma * (X - mean) / nd.sqrt(var + eps) + beta, moving_mean, moving_var
"""
FIXED_HELPER = """
def variance(X, axes):
    return ((X - X.mean(axis=axes, keepdims=True)) ** 2).mean(axis=axes, keepdims=True)
"""


def test_check_runs_again_after_a_helper_of_the_function_is_fixed(capsys):
    namespace = {'__name__': '__main__'}
    exec(LEARNER_CELLS, namespace)   # the learner's cells, in a notebook's namespace
    assert 'moving_var_update' in check(namespace['my_bn']).failed()
    exec(FIXED_HELPER, namespace)    # a later cell fixes the helper; my_bn is the same object
    assert check(namespace['my_bn']).passed
    last = capsys.readouterr().out.split('check_batch_norm(my_bn): ')[-1]
    assert last.startswith('all 9 properties pass'), last


# --- integrity (issue 27 item 4)

def integrity_failure(target, name, checker=None):
    with pytest.raises(GradingFailure) as failure:
        grade(target, name, checker)
    return ' '.join(str(failure.value).split())


def test_the_packages_own_function_or_layer_scores_zero_and_says_why():
    from d2l_utils.book import BookBatchNorm
    text = integrity_failure(batch_norm, 'gradients')
    assert "d2l_utils.layers.batch_norm, the package's own code imported" in text
    assert 'Integrity: this part scores 0' in text
    assert "the package's own code imported" in integrity_failure(BatchNorm, 'builds')
    assert 'is a copy of d2l_utils.layers.batch_norm' in integrity_failure(
        as_learner_code(batch_norm), 'output_shape')
    import inspect
    namespace = {'__name__': '__main__'}   # pasted into a cell, local names changed
    exec('from d2l_utils.layers import validate_batch_norm_inputs\nfrom mxnet import autograd, nd\n'
         + inspect.getsource(batch_norm).replace('X_centered', 'centered'), namespace)
    assert 'is a copy of d2l_utils.layers.batch_norm' in integrity_failure(
        namespace['batch_norm'], 'output_shape')
    assert 'is a copy of d2l_utils.book.book_batch_norm' in integrity_failure(
        as_learner_code(bn_mistakes.book_batch_norm), 'output_shape')
    assert 'is a copy of d2l_utils.book.BookBatchNorm' in integrity_failure(
        as_learner_code(BookBatchNorm), 'builds')

    def wrapper(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        return batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum)

    assert "calls d2l_utils.layers.batch_norm, the package's own" in integrity_failure(
        wrapper, 'gradients')
    report = check(learner_code.batch_norm)
    assert report.passed   # the learner's own code is graded as before
    assert check(learner_code.BatchNorm).passed


def test_a_backward_computed_by_autograd_through_the_imported_function_scores_zero():
    def batch_norm_backward(dY, X, gamma, eps):
        X, gamma, beta = X.copy(), gamma.copy(), nd.zeros_like(gamma)
        for a in (X, gamma, beta):
            a.attach_grad()
        with autograd.record():
            Y, _, _ = batch_norm(X, gamma, beta, nd.zeros_like(gamma), nd.ones_like(gamma),
                                 eps, 0.9)
        Y.backward(dY)
        return X.grad, gamma.grad, beta.grad

    assert check_batch_norm_backward(batch_norm_backward, verbose=False).passed   # it is right
    text = integrity_failure(batch_norm_backward, 'dX_2d', check_batch_norm_backward)
    assert "calls d2l_utils.layers.batch_norm, the package's own implementation" in text
    assert check(learner_code.batch_norm_backward, check_batch_norm_backward).passed
