"""The PyTorch checkers: a correct layer passes, every planted mistake fails the properties it
breaks and the report names its cause, learner code runs under the time limit.

Skipped as a whole when PyTorch is not installed (pip install -r requirements-torch.txt).
"""
import time

import pytest

torch = pytest.importorskip(
    'torch', reason='PyTorch is optional; install it with pip install -r requirements-torch.txt')

from torch import nn  # noqa: E402

from d2l_utils import pytorch as d2t  # noqa: E402
from d2l_utils.checks.torch_layer import (FUNCTION_PROPERTIES, MODULE_PROPERTIES,  # noqa: E402
                                          check_torch_batch_norm, check_torch_batch_norm_module)
from d2l_utils.checks.torch_mistakes import TORCH_MISTAKES  # noqa: E402

ALL = {name for name, _ in MODULE_PROPERTIES}
# mistake number -> (properties the function fails, the module fails, {property: words its
# detail must contain}); None: the mistake has no function
EXPECTED = {
    1: (set(), {'mode_from_self_training', 'eval_never_updates', 'saved_in_state_dict',
                'moved_by_to'},
        {'mode_from_self_training': 'torch.is_grad_enabled()',
         'eval_never_updates': 'eval() without torch.no_grad() still trains',
         'saved_in_state_dict': 'plain tensor attributes', 'moved_by_to': 'plain tensor'}),
    2: ({'train_output', 'moving_var_update', 'gradients'},
        {'train_output', 'moving_var_update', 'gradients'},
        {'train_output': 'unbiased batch variance', 'gradients': 'see train_output'}),
    3: ({'moving_mean_update', 'moving_var_update'}, {'moving_mean_update', 'moving_var_update'},
        {'moving_mean_update': "nn.BatchNorm2d's convention"}),
    4: ({'train_output', 'moving_mean_update', 'moving_var_update', 'gradients'}, ALL,
        {'builds': 'dims (0, 2, 3)'}),
    5: ({'gradients'}, {'gradients'}, {'gradients': 'hidden from autograd'}),
    6: ({'no_history'}, {'no_history'}, {'no_history': 'torch.no_grad()'}),
    7: ({'prediction_output'}, {'prediction_output', 'eval_never_updates'},
        {'prediction_output': 'outside the training branch',
         'eval_never_updates': 'whatever the mode'}),
    8: (None, {'initial_statistics'}, {'initial_statistics': 'starts at 0'}),
    9: (None, {'mode_from_self_training', 'eval_never_updates'},
        {'mode_from_self_training': 'torch.is_grad_enabled()'}),
    10: (None, {'saved_in_state_dict', 'moved_by_to'},
         {'saved_in_state_dict': 'plain tensor attributes'}),
    11: (None, {'saved_in_state_dict'}, {'saved_in_state_dict': 'persistent=False'}),
    12: (None, ALL, {'builds': 'eps=2'}),
}


def test_every_planted_mistake_has_its_expectation():
    assert sorted(EXPECTED) == sorted(TORCH_MISTAKES)


def test_the_package_layer_and_function_pass_every_property():
    assert check_torch_batch_norm(d2t.batch_norm, verbose=False).passed
    assert check_torch_batch_norm_module(d2t.BatchNorm, verbose=False).passed


def test_a_layer_following_the_book_passes_and_is_told_where_nn_batchnorm2d_differs():
    report = check_torch_batch_norm_module(d2t.BatchNorm, verbose=False)
    assert 'momentum=0.1' in report['moving_mean_update'].detail
    assert 'unbiased' in report['moving_var_update'].detail
    assert 'no GPU here' in report['moved_by_to'].detail


def test_the_books_function_passes_under_the_books_mode_convention():
    report = check_torch_batch_norm(TORCH_MISTAKES[1].function, verbose=False)
    assert report.passed, report


@pytest.mark.parametrize('number', sorted(TORCH_MISTAKES))
def test_each_planted_mistake_fails_its_properties_and_names_the_cause(number):
    mistake = TORCH_MISTAKES[number]
    function_fails, module_fails, words = EXPECTED[number]
    if mistake.function is not None:
        report = check_torch_batch_norm(mistake.function, verbose=False)
        assert set(report.failed()) == function_fails, report
    report = check_torch_batch_norm_module(mistake.layer, verbose=False)
    assert set(report.failed()) == module_fails, report
    for name, text in words.items():
        assert text in report[name].detail, report[name].detail


def test_every_property_is_failed_by_some_planted_mistake_that_gets_past_building():
    caught_in_functions, caught_in_modules = set(), set()
    for function_fails, module_fails, _ in EXPECTED.values():
        caught_in_functions |= function_fails or set()
        if module_fails != ALL:
            caught_in_modules |= module_fails
    assert caught_in_functions == {name for name, _ in FUNCTION_PROPERTIES}
    assert caught_in_modules == ALL - {'builds'}


def test_the_books_layer_defects_show_in_a_real_save_and_reload():
    """What saved_in_state_dict claims, seen directly: a reloaded book layer predicts with 0, 1."""
    book = TORCH_MISTAKES[1].layer
    layer = book(4, 2)
    for seed in range(3):
        layer(torch.randn(16, 4, generator=torch.Generator().manual_seed(seed)) * 3 + 5)
    reloaded = book(4, 2)
    reloaded.load_state_dict(layer.state_dict())
    assert set(layer.state_dict()) == {'gamma', 'beta'}
    assert torch.equal(reloaded.moving_var, torch.ones(1, 4))
    assert not torch.allclose(layer.moving_var, torch.ones(1, 4))


def looping_batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if not torch.is_grad_enabled():
        while True:   # hangs in prediction only
            time.sleep(0.01)
    return d2t.batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum, training=True)


def test_a_looping_function_returns_within_the_time_limit_with_a_fail_that_says_so():
    start = time.time()
    report = check_torch_batch_norm(looping_batch_norm, verbose=False, time_limit=1.0)
    assert time.time() - start < 10
    assert report['train_output'].passed   # what it would pass still scores
    assert report['prediction_output'].detail.startswith('did not finish within 1 s')
    assert report['moving_mean_update'].detail.startswith('not checked: prediction_output')


class ExitingBatchNorm(nn.Module):
    def __init__(self, num_features, num_dims):
        super().__init__()
        raise SystemExit(1)


def test_system_exit_in_learner_code_is_a_fail_not_a_crash():
    report = check_torch_batch_norm_module(ExitingBatchNorm, verbose=False)
    assert report.failed()[0] == 'builds'
    assert 'sys.exit()' in report['builds'].detail


def test_wrong_arguments_point_to_the_other_checker():
    with pytest.raises(TypeError, match='check_torch_batch_norm_module'):
        check_torch_batch_norm(d2t.BatchNorm)
    with pytest.raises(TypeError, match='not a module built from it'):
        check_torch_batch_norm_module(d2t.BatchNorm(3, 4))
    with pytest.raises(TypeError, match='check_torch_batch_norm'):
        check_torch_batch_norm_module(d2t.batch_norm)
