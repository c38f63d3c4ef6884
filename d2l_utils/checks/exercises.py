"""The measurement checks of assignment 5 (the book's five exercises): each asserts what the
experiment must show, so made-up numbers (all zeros, swapped keys, a copied constant) fail.

A graded cell calls ``grade_exercise(k, globals())``: it reads the variables exercise k stores
in the notebook, prints ``PASS: ...`` with the numbers or raises ``GradingFailure`` saying what
the experiment should have shown. ``check_exercises(globals())`` is the "check as you go" cell:
one line per exercise, never raising. The budget is read from the notebook's parameters
(``NUM_EPOCHS``, ``TRAIN_SUBSET``, ``BATCH_SIZE``); findings that need the assignment's full
budget (``FULL_BUDGET_UPDATES`` updates or more) are checked only then, and a quick run says so.

The bounds come from the assignment's reference run (80 updates, its source notebook's outputs)
and from notebook 5 (237 updates): a LeNet with BN at lr 1 ends near 0.75 there, far below
ln 10 = 2.303; without BN it stays on the ln 10 plateau for about 300 updates at any lr.
"""
import math

import numpy as np
from mxnet import gluon
from mxnet.gluon import nn

from ..models import is_batch_norm
from .grading import GradingFailure, NotImplementedYet, expect, require_names

__all__ = ['EXERCISE_VARIABLES', 'FULL_BUDGET_UPDATES', 'LN10', 'budget_updates',
           'check_exercises', 'grade_exercise']

LN10 = math.log(10)
FULL_BUDGET_UPDATES = 40   # the assignment's default gives 80; a quick run gives 8
WELL_BELOW = 0.8 * LN10    # 1.84: "well below ln 10", a net that learned
ON_PLATEAU = 0.9 * LN10    # 2.07: a net still at chance
LOWEST = 0.1               # no LeNet reaches a training loss this low in these budgets
EXERCISE_VARIABLES = {1: ('ratios',), 2: ('final_loss',), 3: ('placement_loss', 'placement_nets'),
                      4: ('frozen_net', 'frozen_loss'), 5: ('global_net', 'global_loss')}


def budget_updates(namespace):
    """Updates per LeNet run in the notebook's budget (TRAIN_SUBSET / BATCH_SIZE per epoch)."""
    subset = namespace.get('TRAIN_SUBSET') or 60000
    return math.ceil(subset / namespace.get('BATCH_SIZE', 256)) * namespace.get('NUM_EPOCHS', 1)


def number(value, what):
    """value as a float, or GradingFailure naming ``what``."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise GradingFailure('%s should be a number; got %r' % (what, value)) from None


def a_training_loss(value, what):
    """A final training loss: finite, above LOWEST (a LeNet cannot reach 0 in this budget)."""
    value = number(value, what)
    expect(np.isfinite(value) and value > LOWEST,
           '%s = %r is not a training loss a LeNet reaches in this budget (finite and above %g; '
           'a net that learned ends between about 0.4 and 1.8, one at chance near ln 10 = 2.30). '
           'Likely cause: a value typed in or taken from the wrong run; store '
           'history.epochs[-1][\'train_loss\'].' % (what, value, LOWEST))
    return value


def exercise_1(ns, full):
    ratios = ns['ratios']
    expect(isinstance(ratios, dict) and sorted(ratios) == ['float32', 'float64']
           and all(len(v) == 4 for v in ratios.values()),
           "ratios should map 'float32' and 'float64' to the 4 hidden layers' ratios; got %r"
           % (ratios,))
    f32 = [number(v, 'ratios[float32]') for v in ratios['float32']]
    f64 = [number(v, 'ratios[float64]') for v in ratios['float64']]
    expect(all(v > 0 for v in f32 + f64),
           'every ratio should be a small positive number (rounding error), not exactly 0: '
           'float32 %s, float64 %s. Likely cause: values typed in, or |bias grad| of a layer '
           'that has none.' % (f32, f64))
    expect(max(f64) < 1e-8,
           'in float64 the bias gradients before BN should vanish (ratio < 1e-8); the largest '
           'ratio is %.2g. Likely cause: the bias of a layer that is not followed by BN, a float32 '
           'input, or the keys swapped.' % max(f64))
    expect(min(f32) > max(f64),
           'float32 ratios (rounding error of float32, about 1e-7 to 1e-4) should all exceed the '
           'float64 ones (about 1e-16 to 1e-13); got float32 %s, float64 %s. Likely cause: the '
           'keys swapped, or the net not cast to float64.' % (f32, f64))
    expect(len(set(f64)) > 1 and len(set(f32)) > 1,
           'four identical ratios per dtype (%s, %s) cannot come from four different layers. '
           'Likely cause: one value copied.' % (f32, f64))
    return 'float64 ratios at most %.1e, float32 at most %.1e' % (max(f64), max(f32))


def exercise_2(ns, full):
    final_loss = ns['final_loss']
    wanted = {(name, lr) for name in ('BN', 'no BN') for lr in (0.1, 1.0, 10.0)}
    expect(isinstance(final_loss, dict) and wanted <= set(final_loss),
           'final_loss is missing %s' % sorted(wanted - set(final_loss or {})))
    loss = {}
    for key in sorted(wanted):
        value = number(final_loss[key], 'final_loss[%r]' % (key,))
        expect(not np.isnan(value), "final_loss[%r] is NaN; store float('inf') for a run that "
                                    'diverged' % (key,))
        loss[key] = value if np.isinf(value) else a_training_loss(value, 'final_loss[%r]' % (key,))
    expect(loss[('BN', 1.0)] < loss[('no BN', 1.0)] - 0.1,
           'at lr 1 the net with BN should end clearly below the net without (BN learns from the '
           'first updates); got BN %.3f, no BN %.3f. Likely cause: the keys swapped, or one value '
           'copied into both.' % (loss[('BN', 1.0)], loss[('no BN', 1.0)]))
    plateau = [lr for lr in (0.1, 1.0, 10.0) if loss[('no BN', lr)] < ON_PLATEAU]
    expect(not plateau,
           'without BN the LeNet should still be on its ln 10 = 2.30 plateau at every lr in this '
           'budget (it needs about 300 updates at lr 1, notebook 5); got a loss below %.2f at lr '
           '%s. Likely cause: the keys swapped or a longer budget.' % (ON_PLATEAU, plateau))
    if full:
        expect(loss[('BN', 1.0)] < WELL_BELOW,
               'with BN at lr 1 the loss should end well below ln 10 = 2.30 (below %.2f) in %d '
               'updates; got %.3f. Likely cause: the BN net not built with bn=\'gluon\', or the '
               'value of another run.' % (WELL_BELOW, budget_updates(ns), loss[('BN', 1.0)]))
    return ', '.join('%s lr %g: %.3f' % (k[0], k[1], v) for k, v in sorted(loss.items()))


def placement_of(net):
    """'before' if each BN follows a Conv2D/Dense directly, 'after' if it follows an activation."""
    layers = list(net) if isinstance(net, nn.Sequential) else []
    before = [type(layers[i - 1]).__name__ for i, layer in enumerate(layers)
              if is_batch_norm(layer) and i > 0]
    if before and all(name in ('Conv2D', 'Dense') for name in before):
        return 'before'
    if before and all(name == 'Activation' for name in before):
        return 'after'
    return 'neither (BN after %s)' % ', '.join(before) if before else 'without BN'


def exercise_3(ns, full):
    placement_loss, nets = ns['placement_loss'], ns['placement_nets']
    for name, value in (('placement_loss', placement_loss), ('placement_nets', nets)):
        expect(isinstance(value, dict) and {'before', 'after'} <= set(value),
               "%s needs the keys 'before' and 'after'; got %r" % (name, value))
    for key in ('before', 'after'):
        where = placement_of(nets[key])
        expect(where == key, "placement_nets['%s'] should have BN %s the activation; its BN "
                             'layers come %s. Likely cause: the keys swapped.'
               % (key, key, where))
    before = a_training_loss(placement_loss['before'], "placement_loss['before']")
    after = a_training_loss(placement_loss['after'], "placement_loss['after']")
    expect(before != after, 'both placements report exactly %r: two different nets do not end '
                            'on the same loss. Likely cause: one value copied.' % before)
    if full:
        expect(max(before, after) < WELL_BELOW,
               'both placements should train at lr 1 (loss well below ln 10, under %.2f); got '
               'before %.3f, after %.3f.' % (WELL_BELOW, before, after))
    return 'train loss before activation %.3f, after %.3f' % (before, after)


def exercise_4(ns, full):
    frozen_net, frozen_loss = ns['frozen_net'], ns['frozen_loss']
    expect(isinstance(frozen_net, gluon.Block), 'frozen_net should be the trained net; got %r'
           % (frozen_net,))
    gammas = [p.data().asnumpy() for p in frozen_net.collect_params('.*gamma').values()]
    betas = [p.data().asnumpy() for p in frozen_net.collect_params('.*beta').values()]
    expect(len(gammas) == 4 and all((g == 1).all() for g in gammas)
           and all((b == 0).all() for b in betas),
           'after training every BN gamma of frozen_net should still be exactly 1 and beta 0 (not '
           'learned); found %d gamma parameters, %d of them changed, %d betas changed'
           % (len(gammas), sum((g != 1).any() for g in gammas),
              sum((b != 0).any() for b in betas)))
    loss = a_training_loss(frozen_loss, 'frozen_loss')
    learned = (ns.get('final_loss') or {}).get(('BN', 1.0))
    expect(learned is None or loss != learned,
           'frozen_loss equals the learned net\'s final_loss[(\'BN\', 1.0)] exactly (%r); a net '
           'with gamma and beta fixed trains differently. Likely cause: the value copied.' % loss)
    if full:
        expect(loss < WELL_BELOW, 'the frozen net should still train (loss well below ln 10, '
                                  'under %.2f); got %.3f' % (WELL_BELOW, loss))
    return 'gamma stayed 1 and beta 0 in all 4 BN layers; train loss %.3f' % loss


def exercise_5(ns, full):
    global_net, global_loss = ns['global_net'], ns['global_loss']
    expect(isinstance(global_net, gluon.Block), 'global_net should be the trained net; got %r'
           % (global_net,))
    means = [p.data().asnumpy() for p in global_net.collect_params('.*running_mean').values()]
    variances = [p.data().asnumpy() for p in global_net.collect_params('.*running_var').values()]
    expect(len(means) == 4 and all((m == 0).all() for m in means)
           and all((v == 1).all() for v in variances),
           'with use_global_stats=True from the start the running statistics should stay at 0 and '
           '1 (nothing updates them); found %d running means' % len(means))
    loss = a_training_loss(global_loss, 'global_loss')
    if full:
        expect(loss > ON_PLATEAU,
               'a LeNet whose BN layers use the (initial) global statistics normalizes nothing: '
               'like the net without BN it should still be on the ln 10 = 2.30 plateau in %d '
               'updates (loss above %.2f); got %.3f. Likely cause: the value of another run.'
               % (budget_updates(ns), ON_PLATEAU, loss))
    return 'running means all 0, running variances all 1 after training; train loss %.3f' % loss


def grade_exercise(exercise, namespace, prefix='PASS: '):
    """The graded check of ``exercise`` (1 to 5) on the notebook's variables (``globals()``):
    print prefix + what passed, or raise GradingFailure (NotImplementedYet while its variables
    are missing)."""
    require_names(namespace, *EXERCISE_VARIABLES[exercise])
    full = budget_updates(namespace) >= FULL_BUDGET_UPDATES
    check = {1: exercise_1, 2: exercise_2, 3: exercise_3, 4: exercise_4, 5: exercise_5}[exercise]
    text = check(namespace, full)
    note = '' if full or exercise == 1 else (' (a quick run of %d updates: the finding itself is '
                                             'checked from %d updates on)'
                                             % (budget_updates(namespace), FULL_BUDGET_UPDATES))
    print(prefix + text + note)


def check_exercises(namespace):
    """Check as you go: one line per exercise (PASS, FAIL with the reason, or not run yet)."""
    for k in sorted(EXERCISE_VARIABLES):
        try:
            grade_exercise(k, namespace, prefix='exercise %d: PASS ' % k)
        except NotImplementedYet:
            print('exercise %d: not run yet (%s)' % (k, ', '.join(EXERCISE_VARIABLES[k])))
        except GradingFailure as failure:
            print('exercise %d: FAIL %s' % (k, failure))
