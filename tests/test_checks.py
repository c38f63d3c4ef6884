"""The learner-facing batch-norm checkers: the reference passes, each real mistake fails exactly
its properties with its cause named, and the learner's exceptions never crash the checker."""
import ast
import functools
import inspect
import re
import sys
import textwrap
import threading
import time

import pytest
import mxnet as mx
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import (BatchNorm, BookBatchNorm, CheckReport, NonFiniteLossError, batch_norm,
                       book_batch_norm, check_batch_norm, check_batch_norm_block, lenet,
                       load_data_fashion_mnist, set_seed, train)
from d2l_utils.layers import BatchNormCalling
from d2l_utils.checks import mistakes as bn_mistakes
from d2l_utils.checks import BLOCK_PROPERTIES, FUNCTION_PROPERTIES

FUNCTION_NAMES = [name for name, _ in FUNCTION_PROPERTIES]
BLOCK_NAMES = [name for name, _ in BLOCK_PROPERTIES]
HAS_GPU = mx.context.num_gpus() > 0

# The book's layer (mistakes 4, 5 and 6 are made in it) also fails these two: its moving
# statistics are plain NDArrays starting at zero.
BOOK_LAYER = {'initial_moving_var', 'saved_with_parameters'}

# mistake -> (properties its function fails, properties its layer fails, {property: words the
# detail must contain, naming the cause})
EXPECTED = {
    1: ({'train_normalizes', 'finite_large_mean', 'moving_var_update', 'gradients'},
        {'train_normalizes', 'finite_large_mean', 'moving_var_update', 'gradients'},
        {'finite_large_mean': '(X - mean ** 2).mean()',
         'moving_var_update': '(X - mean ** 2).mean()',
         'train_normalizes': 'negative batch variance'}),
    2: ({'moving_mean_update'},
        {'moving_mean_update', 'updated_every_step'},
        {'moving_mean_update': 'computed from moving_mean itself',
         'updated_every_step': 'never changed'}),
    3: ({'moving_var_update'},
        {'moving_var_update'},
        {'moving_var_update': "'+' where '*' belongs"}),
    4: (None,
        {'moving_var_update'} | BOOK_LAYER,
        {'moving_var_update': 'stored in self.moving_varv, not in self.moving_var',
         'initial_moving_var': 'sqrt(1e-5)'}),
    6: (None,
        BOOK_LAYER,
        {'initial_moving_var': 'moving_var starts at 0',
         'saved_with_parameters': 'plain NDArray attributes, which save_parameters does not save'}),
    7: ({'mode_from_is_training'},
        {'mode_from_is_training'},
        {'mode_from_is_training': 'autograd.is_recording()'}),
}


def quiet_check(target, block):
    check = check_batch_norm_block if block else check_batch_norm
    return check(target, verbose=False)


def assert_fails_exactly(report, expected, causes):
    assert set(report.failed()) == expected, str(report)
    for name, words in causes.items():
        assert words in report[name].detail, report[name].detail


# --- the reference and the book pass

def test_reference_function_passes_every_property():
    report = quiet_check(batch_norm, block=False)
    assert report.passed, str(report)
    assert [r.name for r in report.results] == FUNCTION_NAMES


def test_reference_layer_passes_every_property():
    report = quiet_check(BatchNorm, block=True)
    assert report.passed, str(report)
    assert [r.name for r in report.results] == BLOCK_NAMES


def test_books_own_function_passes_every_property():
    report = quiet_check(book_batch_norm, block=False)
    assert report.passed, str(report)


def test_layer_that_mistakes_are_built_on_passes_with_the_reference_function():
    # BatchNormCalling copies d2l_utils.BatchNorm.forward; with batch_norm it must pass
    assert quiet_check(BatchNormCalling, block=True).passed


# --- each real mistake fails exactly its properties, naming its cause

@pytest.mark.parametrize('number', sorted(n for n, (fn, _, _) in EXPECTED.items() if fn))
def test_each_mistaken_function_fails_exactly_its_properties(number):
    expected, _, causes = EXPECTED[number]
    report = quiet_check(bn_mistakes.MISTAKES[number].function, block=False)
    assert_fails_exactly(report, expected, {k: v for k, v in causes.items() if k in expected})


@pytest.mark.parametrize('number', sorted(EXPECTED))
def test_each_mistaken_layer_fails_exactly_its_properties(number):
    _, expected, causes = EXPECTED[number]
    report = quiet_check(bn_mistakes.MISTAKES[number].layer, block=True)
    assert_fails_exactly(report, expected, causes)


def test_layer_on_a_fixed_gpu_cannot_be_built_without_a_gpu_and_every_property_fails():
    report = quiet_check(bn_mistakes.FixedDeviceBatchNorm, block=True)   # mistake 5
    assert report.failed() == BLOCK_NAMES
    assert 'MXNetError' in report['builds'].detail
    if not HAS_GPU:
        assert 'not implemented for GPU' in report['builds'].detail
        assert 'ctx=mx.gpu()' in report['builds'].detail
    for name in BLOCK_NAMES[1:]:
        assert report[name].detail.startswith('not checked'), report[name].detail


def test_layer_on_a_fixed_cpu_keeps_its_moving_stats_off_the_networks_device():
    # Mistake 5 where it can run: the statistics stay on cpu(0) when the net is on cpu(1)
    layer = functools.partial(bn_mistakes.FixedDeviceBatchNorm, ctx=mx.cpu(0))
    report = quiet_check(layer, block=True)
    assert_fails_exactly(report, {'follows_device'} | BOOK_LAYER,
                         {'follows_device': 'it is on cpu(0)'})


def test_mode_from_a_training_flag_fails_only_prediction():
    # Mistake 7's other variant: always the batch's statistics, consistently in every context,
    # so it is prediction (not the mode signal) that fails.
    report = quiet_check(bn_mistakes.TrainingFlagBatchNorm, block=True)
    assert_fails_exactly(report, {'prediction_uses_moving_stats'},
                         {'prediction_uses_moving_stats': 'self.training flag'})


def code_lines(fn):
    """The source lines of fn's body after its docstring."""
    lines, first = inspect.getsourcelines(fn)
    body_start = ast.parse(textwrap.dedent(''.join(lines))).body[0].body[1].lineno
    return [line.rstrip() for line in lines[body_start - 1:]]


@pytest.mark.parametrize('number', [n for n, m in sorted(bn_mistakes.MISTAKES.items())
                                    if m.function])
def test_each_mistaken_function_is_the_reference_with_one_line_changed(number):
    # so the notebook can show the bug as a one-line diff, and the copies cannot drift
    reference, mistaken = code_lines(batch_norm), code_lines(bn_mistakes.MISTAKES[number].function)
    assert len(mistaken) == len(reference)
    changed = [new for old, new in zip(reference, mistaken) if old != new]
    assert len(changed) == 1 and '# BUG' in changed[0], changed


# --- other learner mistakes get a named cause

def whole_tensor_statistics(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if not autograd.is_training():
        return gamma * (X - moving_mean) / nd.sqrt(moving_var + eps) + beta, moving_mean, moving_var
    mean = X.mean()   # over everything
    var = ((X - mean) ** 2).mean()
    return (gamma * (X - mean) / nd.sqrt(var + eps) + beta,
            momentum * moving_mean + (1 - momentum) * mean,
            momentum * moving_var + (1 - momentum) * var)


def make_function(axes_2d, axes_4d, ddof=0):
    def fn(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        if not autograd.is_training():
            Y = gamma * (X - moving_mean) / nd.sqrt(moving_var + eps) + beta
            return Y, moving_mean, moving_var
        axes = axes_2d if X.ndim == 2 else axes_4d
        mean = X.mean(axis=axes, keepdims=True)
        m = X.size // mean.size
        var = ((X - mean) ** 2).sum(axis=axes, keepdims=True) / (m - ddof)
        Y = gamma * (X - mean) / nd.sqrt(var + eps) + beta
        if mean.shape != moving_mean.shape:   # per-sample statistics: keep the update well-shaped
            mean, var = mean.mean(axis=0, keepdims=True), var.mean(axis=0, keepdims=True)
        return (Y, momentum * moving_mean + (1 - momentum) * mean,
                momentum * moving_var + (1 - momentum) * var)
    return fn


@pytest.mark.parametrize('fn, words', [
    (whole_tensor_statistics, 'statistics shared across features'),
    (make_function(1, (2, 3)), 'per example'),
    (make_function(0, 0), 'per position over axis 0 only'),
    (make_function(0, (2, 3)), 'per example (over axis (2, 3))'),
    (make_function(0, (1, 2, 3)), 'layer normalization'),
], ids=['whole tensor', 'per sample 2-D', 'per position 4-D', 'instance norm 4-D',
        'layer norm 4-D'])
def test_statistics_over_the_wrong_axes_are_named(fn, words):
    report = quiet_check(fn, block=False)
    assert not report['per_feature_stats'].passed
    assert words in report['per_feature_stats'].detail, report['per_feature_stats'].detail


def test_unbiased_variance_is_named():
    report = quiet_check(make_function(0, (0, 2, 3), ddof=1), block=False)
    assert 'unbiased' in report['train_normalizes'].detail
    assert 'unbiased' in report['moving_var_update'].detail


def test_learners_exceptions_become_failures_with_type_and_message():
    def broken(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        raise ValueError('my own bug')

    report = quiet_check(broken, block=False)
    assert report.failed() == FUNCTION_NAMES
    for result in report.results:
        assert 'raised ValueError: my own bug' in result.detail, result.detail


def test_function_returning_only_y_is_told_what_to_return():
    report = quiet_check(lambda *args: batch_norm(*args)[0], block=False)
    assert not report.passed
    assert '(Y, moving_mean, moving_var)' in report['output_shape'].detail


class RunningNamesBatchNorm(nn.Block):
    """A correct layer whose moving statistics are called running_mean/running_var."""

    def __init__(self, num_features, num_dims, **kwargs):
        super().__init__(**kwargs)
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = self.params.get('gamma', shape=shape, init=init.One())
        self.beta = self.params.get('beta', shape=shape, init=init.Zero())
        self.running_mean = self.params.get('running_mean', shape=shape, init=init.Zero(),
                                            grad_req='null')
        self.running_var = self.params.get('running_var', shape=shape, init=init.One(),
                                           grad_req='null')

    def forward(self, X):
        ctx = X.context
        Y, mean, var = batch_norm(X, self.gamma.data(ctx), self.beta.data(ctx),
                                  self.running_mean.data(ctx), self.running_var.data(ctx),
                                  1e-5, 0.9)
        if autograd.is_training():
            with autograd.pause():
                self.running_mean.data(ctx)[:] = mean
                self.running_var.data(ctx)[:] = var
        return Y


def test_layer_without_the_books_attribute_names_is_told_them():
    report = quiet_check(RunningNamesBatchNorm, block=True)
    assert report['builds'].passed
    assert "no attribute 'moving_mean'; expected the book's names" in \
        report['moving_mean_update'].detail


def test_checker_given_a_layer_instance_or_a_class_to_the_wrong_checker_says_which_to_use():
    with pytest.raises(TypeError, match='check_batch_norm_block'):
        check_batch_norm(BatchNorm)
    with pytest.raises(TypeError, match='not a layer built from it'):
        check_batch_norm_block(BatchNorm(3, 4))


# --- the report object

def test_report_prints_one_line_per_property_and_a_one_line_repr(capsys):
    report = check_batch_norm_block(BookBatchNorm)
    printed = capsys.readouterr().out
    assert printed.strip() == str(report)
    heads = [line.split()[:2] for line in printed.splitlines()[1:] if line[:4] in ('PASS', 'FAIL')]
    assert heads == [['FAIL' if name in BOOK_LAYER else 'PASS', name] for name in BLOCK_NAMES]
    assert isinstance(report, CheckReport) and not report.passed
    assert '\n' not in repr(report) and '2 of 14 properties FAIL' in repr(report)
    with pytest.raises(KeyError, match='the properties are'):
        report['no_such_property']


def test_report_can_leave_out_the_passing_properties():
    report = check_batch_norm_block(BookBatchNorm, verbose=False)
    lines = report.format(failures_only=True).splitlines()
    assert lines[0] == str(report).splitlines()[0]
    assert [line.split()[1] for line in lines[1:] if line.startswith('FAIL')] == \
        [name for name in BLOCK_NAMES if name in BOOK_LAYER]
    assert not any(line.startswith('PASS') for line in lines)


def test_quiet_check_prints_nothing(capsys):
    check_batch_norm(batch_norm, verbose=False)
    assert capsys.readouterr().out == ''


def test_checking_a_layer_leaves_gluons_layer_names_alone():
    before = BatchNorm(3, 4).name            # e.g. batchnorm7
    check_batch_norm_block(BatchNorm, verbose=False)
    after = BatchNorm(3, 4).name
    number = int(before[len('batchnorm'):])
    assert after == 'batchnorm%d' % (number + 1)


# --- the NaN guard of training points at mistake 1's layer

def test_nan_guard_names_the_batch_norm_layer_with_negative_variance(fashion_mnist_dir):
    train_iter, test_iter = load_data_fashion_mnist(256, root=fashion_mnist_dir,
                                                    train_subset=1024, test_subset=256, seed=0)
    set_seed(0)
    net = lenet(bn=bn_mistakes.NegativeVarianceBatchNorm)
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    with pytest.raises(NonFiniteLossError) as error:
        train(net, train_iter, test_iter, trainer, mx.cpu(), 1, progress=False, verbose=False)
    first_bn = net[1]   # Conv2D, then its batch norm
    assert isinstance(first_bn, bn_mistakes.NegativeVarianceBatchNorm)
    message = str(error.value)
    assert 'batch 1 of 4' in message
    assert ('the first layer whose output is not finite is %s (NegativeVarianceBatchNorm)'
            % first_bn.name) in message


# --- how the checker is built

def test_every_property_is_a_registered_function_of_its_own_name_in_the_printed_order():
    from d2l_utils.checks.properties import PROPERTIES
    assert list(PROPERTIES) == BLOCK_NAMES and BLOCK_NAMES[0] == 'builds'
    assert [name for name, p in PROPERTIES.items() if not p.block_only] == FUNCTION_NAMES
    assert all(p.check.__name__ == name for name, p in PROPERTIES.items())


def test_running_a_subject_for_gradients_in_a_mode_that_does_not_record_is_refused():
    from d2l_utils.checks.harness import FunctionInstance, cases, run
    case = cases()[0]
    with pytest.raises(ValueError, match='gradients need a mode that records'):
        run(FunctionInstance(batch_norm, case), case.x, 'prediction', head=case.head)
    Y, dX = run(FunctionInstance(batch_norm, case), case.x, 'record(train_mode=False)',
                head=case.head)
    assert Y.shape == dX.shape == case.shape


# --- learner code that hangs, exits, writes into its inputs, or is given to the wrong checker
# (issue 17; reliability.md rows 4.1, 4.4, 4.6-4.8, 4.10-4.12, 4.14, 4.16-4.18)

def test_a_function_that_never_returns_is_reported_as_not_finishing_and_the_rest_not_run():
    stop = threading.Event()

    def loops(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        while not stop.is_set():   # "forever" for the checker; the test ends it afterwards
            time.sleep(0.01)

    try:
        report = check_batch_norm(loops, verbose=False, time_limit=0.5)
    finally:
        stop.set()
    first = report['output_shape']
    assert first.detail.startswith('did not finish within 0.5 s on the 2-D input (8, 5) in '
                                   'training mode'), first.detail
    assert 'restart the kernel' in first.detail
    # one wait per mode the code can be in (training, prediction); then nothing more runs
    waited = [r.name for r in report.results if r.detail.startswith('did not finish')]
    assert waited == ['output_shape', 'prediction_uses_moving_stats'], waited
    for name in FUNCTION_NAMES[1:]:
        assert report[name].detail.startswith((
            'not checked: the code did not finish in training mode (see output_shape)',
            'did not finish', 'not checked: prediction_uses_moving_stats did not finish')), \
            report[name].detail


def test_a_function_that_hangs_only_when_predicting_still_scores_its_training_properties():
    stop = threading.Event()

    def hangs_in_prediction(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        while not autograd.is_training() and not stop.is_set():
            time.sleep(0.01)
        return batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum)

    try:
        report = check_batch_norm(hangs_in_prediction, verbose=False, time_limit=1.0)
    finally:
        stop.set()
    assert [r.name for r in report.results if r.passed] == [
        'train_normalizes', 'per_feature_stats', 'moving_mean_update', 'moving_var_update',
        'gradients']
    assert report['output_shape'].detail.startswith('did not finish within 1 s on the 2-D input '
                                                    '(8, 5) in prediction mode')
    assert report['mode_from_is_training'].detail.startswith(
        'not checked: the code did not finish in prediction mode (see output_shape)')


def test_sys_exit_in_the_learners_function_is_a_failure_not_the_end_of_the_program():
    def exits(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        sys.exit('bye')

    report = quiet_check(exits, block=False)   # returning at all is the first point
    assert report.failed() == FUNCTION_NAMES
    assert 'raised SystemExit: bye' in report['gradients'].detail
    assert 'sys.exit()' in report['gradients'].detail


def test_an_exception_names_the_line_of_the_learners_code():
    def broken(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        raise RuntimeError('oops, not implemented yet')

    detail = quiet_check(broken, block=False)['output_shape'].detail
    assert re.search(r"\(at test_checks\.py, line \d+, in broken: raise RuntimeError", detail), \
        detail


def zeroes_its_input(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    out = batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum)
    X[:] = 0
    return out


def doubles_gamma(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    gamma[:] = gamma * 2
    return batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum)


def centers_x_in_place(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if autograd.is_training():
        X -= X.mean(axis=0 if X.ndim == 2 else (0, 2, 3), keepdims=True)
    return batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum)


@pytest.mark.parametrize('fn, name', [(zeroes_its_input, 'X'), (doubles_gamma, 'gamma'),
                                      (centers_x_in_place, 'X')])
def test_a_function_that_writes_into_its_inputs_fails_saying_so(fn, name):
    report = quiet_check(fn, block=False)
    assert 'train_normalizes' in report.failed()
    assert 'changed its input %s in place' % name in report['train_normalizes'].detail


def test_a_float64_output_is_blamed_on_the_dtype_not_the_shapes():
    def float64_y(*args):
        Y, moving_mean, moving_var = batch_norm(*args)
        return Y.astype('float64'), moving_mean, moving_var

    detail = quiet_check(float64_y, block=False)['gradients'].detail
    assert 'the dtypes do not match' in detail and 'shapes do not fit' not in detail


def test_the_learners_training_mode_switch_does_not_leak_out_of_the_checker():
    def sets_training(*args):
        autograd.set_training(True)
        return batch_norm(*args)

    quiet_check(sets_training, block=False)
    assert not autograd.is_training()


def test_gluons_batch_norm_given_to_the_block_checker_is_told_why_it_cannot_be_checked():
    report = quiet_check(nn.BatchNorm, block=True)
    detail = report['builds'].detail
    assert "would mean axis=5, momentum=2" in detail and 'nn.BatchNorm' in detail
    assert report['output_shape'].detail.startswith('not checked')


class GluonWrapper(nn.BatchNorm):
    """Gluon's layer behind the checker's constructor: its parameters have shape (C,)."""

    def __init__(self, num_features, num_dims):
        super().__init__(in_channels=num_features)


def test_a_wrapper_of_gluons_batch_norm_is_told_the_parameter_shapes_differ():
    detail = quiet_check(GluonWrapper, block=True)['output_shape'].detail
    assert 'layer.gamma has shape (5,); the checker expects (1, 5)' in detail, detail


def test_a_layer_given_to_the_function_checker_and_a_function_to_the_block_checker_are_sent_on():
    with pytest.raises(TypeError, match=r'use check_batch_norm_block|check_batch_norm_block\('
                                        r'BatchNorm\)'):
        check_batch_norm(BatchNorm(3, 4))
    with pytest.raises(TypeError, match=r'use the other checker: check_batch_norm\(batch_norm\)'):
        check_batch_norm_block(batch_norm)


def test_moving_average_rows_point_at_wrong_batch_statistics_as_the_first_cause():
    def whole_tensor_stats(X, gamma, beta, moving_mean, moving_var, eps, momentum):
        if autograd.is_training():
            mean = X.mean()                      # over the whole tensor: the first cause
            var = ((X - mean) ** 2).mean()
            moving_mean = momentum * moving_mean + (1 - momentum) * mean   # formula is right
            moving_var = momentum * moving_var + (1 - momentum) * var
        else:
            mean, var = moving_mean, moving_var
        return gamma * (X - mean) / nd.sqrt(var + eps) + beta, moving_mean, moving_var

    report = check_batch_norm(whole_tensor_stats, verbose=False)
    assert {'per_feature_stats', 'moving_mean_update', 'moving_var_update'} <= set(report.failed())
    for name in ('moving_mean_update', 'moving_var_update'):
        detail = report[name].detail
        assert 'the update formula is right' in detail, detail
        assert 'follows from the batch statistics (see per_feature_stats)' in detail, detail


def test_ipython_exit_in_the_learners_function_does_not_shut_the_kernel_down():
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    try:
        exit_ = shell.exiter   # what `exit` is in a notebook's namespace

        def exits(X, gamma, beta, moving_mean, moving_var, eps, momentum):
            exit_()

        report = check_batch_norm(exits, verbose=False)
        assert not shell.exit_now   # the kernel would have shut down after the cell
        assert 'raised SystemExit: exit() called' in report['output_shape'].detail
        assert 'ask_exit' not in vars(shell)   # the guard is undone
    finally:
        InteractiveShell.clear_instance()
