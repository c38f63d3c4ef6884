"""Assignment 5's measurement checks (d2l_utils.checks.exercises) pass the real measurements
and fail made-up ones: all zeros, swapped keys, a copied constant.

The real numbers are the assignment's reference run (80 updates per LeNet), read from the
committed outputs of exercises/source/5_book_exercises (its check-as-you-go cell prints every
measurement), and, for exercise 1, measured here on a real Fashion-MNIST batch. The nets are
real LeNets built as the exercises build them.
"""
import json
import pathlib
import re

import pytest
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import lenet, load_data_fashion_mnist, set_seed
from d2l_utils.checks.exercises import check_exercises, grade_exercise
from d2l_utils.checks.grading import GradingFailure, NotImplementedYet

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = ROOT / 'exercises' / 'source' / '5_book_exercises' / 'book_exercises.ipynb'
FULL = dict(NUM_EPOCHS=2, TRAIN_SUBSET=10000, BATCH_SIZE=256)   # the assignment's budget
QUICK = dict(NUM_EPOCHS=1, TRAIN_SUBSET=2048, BATCH_SIZE=256)   # tools/run_notebooks.py --quick


def reference_output():
    """The printed lines of the reference run's check-as-you-go cell."""
    nb = json.loads(REFERENCE.read_text())
    cell = next(c for c in nb['cells']
                if ''.join(c['source']).endswith('check_exercises(globals())'))
    return ''.join(''.join(o.get('text', '')) for o in cell['outputs'])


def reference_numbers():
    text = reference_output()
    final_loss = {(name, float(lr)): float(v) for name, lr, v in
                  re.findall(r'(no BN|BN) lr ([\d.]+): ([\d.]+)', text)}
    before, after = map(float, re.search(r'before activation ([\d.]+), after ([\d.]+)',
                                         text).groups())
    frozen = float(re.search(r'exercise 4: PASS .* train loss ([\d.]+)', text).group(1))
    global_ = float(re.search(r'exercise 5: PASS .* train loss ([\d.]+)', text).group(1))
    return final_loss, {'before': before, 'after': after}, frozen, global_


def built(**kwargs):
    set_seed(0)
    net = lenet(**kwargs)
    net.initialize(init.Xavier())
    net(nd.zeros((2, 1, 28, 28)))
    return net


@pytest.fixture(scope='module')
def measured(fashion_mnist_dir):
    """A namespace as the reference solution leaves it: real ratios (exercise 1) measured here,
    the losses of the reference run, and real nets of the right construction."""
    X, y = next(iter(load_data_fashion_mnist(256, train_subset=512, test_subset=64, seed=0)[0]))
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    ratios = {}
    for dtype in ('float32', 'float64'):
        net = built(bn='gluon')
        net.cast(dtype)
        with autograd.record():
            loss = loss_fn(net(X.astype(dtype)), y.astype(dtype)).mean()
        loss.backward()
        hidden = [layer for layer in net if isinstance(layer, (nn.Conv2D, nn.Dense))][:4]
        ratios[dtype] = [(nd.abs(layer.bias.grad()).max() / nd.abs(layer.weight.grad()).max())
                         .asscalar() for layer in hidden]
    final_loss, placement_loss, frozen_loss, global_loss = reference_numbers()
    frozen_net = built(bn='gluon')
    frozen_net.collect_params('.*gamma|.*beta').setattr('grad_req', 'null')
    return dict(FULL, ratios=ratios, final_loss=final_loss, placement_loss=placement_loss,
                placement_nets={'before': built(bn='gluon', bn_position='before_activation'),
                                'after': built(bn='gluon', bn_position='after_activation')},
                frozen_net=frozen_net, frozen_loss=frozen_loss,
                global_net=built(bn=lambda num_features, num_dims:
                                 nn.BatchNorm(use_global_stats=True)),
                global_loss=global_loss)


def fails(exercise, namespace, match):
    with pytest.raises(GradingFailure, match=match):
        grade_exercise(exercise, namespace)


@pytest.mark.parametrize('exercise', [1, 2, 3, 4, 5])
def test_the_real_measurements_pass(measured, exercise, capsys):
    grade_exercise(exercise, measured)
    assert capsys.readouterr().out.startswith('PASS: ')


def test_made_up_bias_ratios_fail(measured):
    ns = dict(measured)
    ns['ratios'] = {'float32': [0.0] * 4, 'float64': [0.0] * 4}
    fails(1, ns, 'not exactly 0')
    ns['ratios'] = {'float32': measured['ratios']['float64'],
                    'float64': measured['ratios']['float32']}
    fails(1, ns, 'keys swapped')
    ns['ratios'] = {'float32': [1e-5] * 4, 'float64': [1e-15] * 4}
    fails(1, ns, 'one value copied')


def test_made_up_learning_rate_losses_fail(measured):
    ns = dict(measured)
    ns['final_loss'] = {key: 0.0 for key in measured['final_loss']}
    fails(2, ns, 'is not a training loss')
    swapped = {('no BN' if name == 'BN' else 'BN', lr): v
               for (name, lr), v in measured['final_loss'].items()}
    fails(2, dict(ns, final_loss=swapped), 'keys swapped')
    copied = {key: measured['final_loss'][('BN', 1.0)] for key in measured['final_loss']}
    fails(2, dict(ns, final_loss=copied), 'copied')


def test_bn_at_lr_1_must_end_well_below_ln_10_in_the_full_budget(measured, capsys):
    loss = dict(measured['final_loss'])
    loss[('BN', 1.0)] = 2.0   # learned a little, not enough
    fails(2, dict(measured, final_loss=loss), 'well below ln 10')
    grade_exercise(2, dict(measured, final_loss=loss, **QUICK))   # 8 updates: not asserted
    assert 'a quick run of 8 updates' in capsys.readouterr().out


def test_made_up_placement_measurements_fail(measured):
    ns = dict(measured)
    fails(3, dict(ns, placement_loss={'before': 0.0, 'after': 0.0}), 'is not a training loss')
    nets = measured['placement_nets']
    fails(3, dict(ns, placement_nets={'before': nets['after'], 'after': nets['before']}),
          'keys swapped')
    value = measured['placement_loss']['before']
    fails(3, dict(ns, placement_loss={'before': value, 'after': value}), 'one value copied')


def test_made_up_frozen_and_global_losses_fail(measured):
    fails(4, dict(measured, frozen_loss=0.0), 'is not a training loss')
    fails(4, dict(measured, frozen_loss=measured['final_loss'][('BN', 1.0)]), 'value copied')
    fails(5, dict(measured, global_loss=0.0), 'is not a training loss')
    fails(5, dict(measured, global_loss=measured['final_loss'][('BN', 1.0)]), 'plateau')
    fails(4, dict(measured, frozen_loss=2.25), 'should still train')


def test_check_as_you_go_reports_each_exercise_without_raising(measured, capsys):
    ns = dict(measured)
    del ns['global_net']
    ns['final_loss'] = {key: 0.0 for key in measured['final_loss']}
    check_exercises(ns)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('exercise 1: PASS')
    assert lines[1].startswith('exercise 2: FAIL')
    assert lines[-1].startswith('exercise 5: not run yet')
    with pytest.raises(NotImplementedYet):
        grade_exercise(5, ns)
