"""What a grader needs on top of the checkers: scores, pass/fail per property, graded checks.

The exercise edition (``exercises/``, an nbgrader course) grades a learner's code with the
checkers of ``d2l_utils.checks`` and this module. Every graded cell calls ``grade``, which runs
the checker once per version of the learner's code (later cells reuse the report), prints
``PASS name: what it means`` or raises ``GradingFailure`` whose message is the checker's
diagnosis (what was expected, what came, the likely cause). Every call of the learner's code
runs under the checkers' time limit (``runner``), and code that is the package's own or the
book's (imported or pasted, see ``integrity``) scores 0 with a message saying so. In Jupyter the
failure is shown as that message alone, without a traceback; nbgrader still sees an error and
gives the cell no points. Code still holding nbgrader's ``raise NotImplementedError()`` stub is
reported once as "not implemented yet"; the later graded cells of the same code say one line
each.

- ``property_results(report)``, ``score(report, points)``, ``raise_for_failures(report)``: a
  ``CheckReport`` as a grader reads it;
- ``check(target)`` / ``grade(target, name)``: the learner's check as they go / one graded
  property;
- ``check_batch_norm_backward(fn)`` (from ``backward``): a checker for a closed-form backward
  pass, against autograd and float64 numerical gradients;
- ``check_lenet``, ``grade_lenet_training``: a LeNet built
  with the learner's layer, trained in a short fixed budget and graded on its recalibrated
  test accuracy (``LENET_BUDGET``, ``LENET_THRESHOLD``).
"""
import textwrap
from collections import OrderedDict, namedtuple

from mxnet import gluon, init, nd
from mxnet.gluon import nn

from . import (BLOCK_PROPERTIES, FUNCTION_PROPERTIES, CheckReport, CheckResult,
               check_batch_norm, check_batch_norm_block)
from .backward import BACKWARD_PROPERTIES, check_batch_norm_backward
from .integrity import dependencies, from_package, provenance_problem
from .runner import (call_with_time_limit, default_time_limit, did_not_finish, exit_guard,
                     learner_location, target_name)
from ..data import load_data_fashion_mnist
from ..models import lenet
from ..recalibration import recalibrate_batch_norm
from ..nan_guard import NonFiniteLossError
from ..support.errors import short_message
from ..training import evaluate_accuracy, set_seed, train
from .harness import exception_cause

__all__ = ['GradingFailure', 'NotImplementedYet', 'Score', 'property_results', 'score',
           'raise_for_failures', 'check', 'grade', 'check_batch_norm_backward',
           'BACKWARD_PROPERTIES', 'check_lenet', 'checker_for', 'integrity_report',
           'grade_lenet_training', 'LENET_BUDGET', 'LENET_THRESHOLD', 'LENET_TIME_LIMIT', 'build',
           'run_learner_code',
           'ReportCache', 'expect', 'not_implemented_message', 'report_cache', 'require_names',
           'same_snapshot', 'snapshot']


# ----------------------------------------------------------------------------- failures

class GradingFailure(AssertionError):
    """A graded check failed; the message is the diagnosis shown to the learner.

    An AssertionError, so test runners count it as a failed check; in IPython it is displayed
    as its message only (the traceback would point into this module, not at the mistake).
    """

    def _render_traceback_(self):   # IPython's hook: these lines replace the traceback
        return ['%s: %s' % (type(self).__name__, line) if i == 0 else line
                for i, line in enumerate(str(self).splitlines())]


class NotImplementedYet(GradingFailure):
    """The learner's code still raises nbgrader's ``NotImplementedError`` stub."""


# ----------------------------------------------------------------------------- reading a report

Score = namedtuple('Score', 'earned possible')
Score.__doc__ = 'Points earned and points possible (floats).'


def property_results(report):
    """{property name: True if it passed}, in the report's order."""
    return OrderedDict((r.name, bool(r.passed)) for r in report.results)


def score(report, points=None):
    """The points a report earns: ``Score(earned, possible)``.

    points: {property name: points}; default one point per property. A property missing from
    ``points`` counts 0 (it is checked but not graded); a name in ``points`` that the report
    does not have is a ValueError (a typo in the grading scheme).
    """
    passed = property_results(report)
    points = points if points is not None else {name: 1 for name in passed}
    unknown = sorted(set(points) - set(passed))
    if unknown:
        raise ValueError('score: the report %s has no propert%s %s; its properties are %s.'
                         % (report.title, 'y' if len(unknown) == 1 else 'ies',
                            ', '.join(unknown), ', '.join(passed)))
    earned = sum(float(p) for name, p in points.items() if passed[name])
    return Score(earned, float(sum(points.values())))


def raise_for_failures(report):
    """Return None if every property passed; else raise GradingFailure with the whole table."""
    if report.passed:
        return None
    raise GradingFailure(report.format(failures_only=True))


# ----------------------------------------------------------------------------- graded checks

CHECKED_KIND = {check_batch_norm: 'function', check_batch_norm_block: 'block',
                check_batch_norm_backward: 'backward'}
PROPERTY_LISTS = {check_batch_norm: FUNCTION_PROPERTIES, check_batch_norm_block: BLOCK_PROPERTIES,
                  check_batch_norm_backward: BACKWARD_PROPERTIES}


def checker_for(target, checker):
    """The checker to run: ``checker`` if given, else by the target's type."""
    if checker is not None:
        return checker
    return check_batch_norm_block if isinstance(target, type) else check_batch_norm


def snapshot(target):
    """What a verdict on ``target`` depends on: the objects its code reaches (helpers, global
    values) and each function's code object. A helper redefined in a later cell is a new object,
    so the snapshot differs and the check runs again."""
    return [(obj, getattr(obj, '__code__', None)) for obj in dependencies(target)]


def same_snapshot(a, b):
    if len(a) != len(b):
        return False
    for (obj_a, code_a), (obj_b, code_b) in zip(a, b):
        if code_a is not code_b:
            return False
        if obj_a is obj_b:
            continue
        simple = (int, float, complex, str, bytes, bool, type(None))
        if not (isinstance(obj_a, simple) and type(obj_a) is type(obj_b) and obj_a == obj_b):
            return False
    return True


def integrity_report(target, checker, problem):
    """A report in which every property fails with ``problem`` (see ``integrity``)."""
    names = [name for name, _ in PROPERTY_LISTS[checker]]
    report = CheckReport('%s(%s)' % (checker.__name__, target_name(target)),
                         [CheckResult(name, False, problem) for name in names])
    report.integrity = problem
    return report


class ReportCache:
    """The last report per checker, the target and the snapshot of the code it belongs to, and
    the targets already told in full that they are not implemented yet."""

    def __init__(self):
        self.reports = {}
        self.announced = set()

    def report(self, target, checker):
        """The CheckReport for target (``report.not_implemented`` when it is still the stub)."""
        state = snapshot(target)
        cached = self.reports.get(checker)
        if cached is not None and cached[0] is target and same_snapshot(cached[1], state):
            return cached[2]
        problem = (provenance_problem(target, CHECKED_KIND[checker])
                   if checker in CHECKED_KIND else None)
        report = (integrity_report(target, checker, problem) if problem
                  else checker(target, verbose=False))
        self.reports[checker] = (target, state, report)
        return report


report_cache = ReportCache()


def not_implemented_message(target, checker):
    name = target_name(target)
    key = (checker, id(target))
    if key in report_cache.announced:
        return '%s is not implemented yet (see the first check of it above).' % name
    report_cache.announced.add(key)
    return ('%s is not implemented yet: calling it raises NotImplementedError, the placeholder '
            '`raise NotImplementedError()` still in the cell that defines it. Replace that line '
            'with your code, run the cell, then run the checks again. Until then every graded '
            'check of %s says only "not implemented yet".' % (name, name))


def check(target, checker=None):
    """Check the learner's code as they go: print the checker's whole table (or "not
    implemented yet", or why the code is not the learner's own) and return the CheckReport
    (None if not implemented).

    target: a function with the book's batch_norm signature (checked by check_batch_norm), a
    layer class (check_batch_norm_block), or anything ``checker`` takes (e.g.
    check_batch_norm_backward). Every call of the learner's code runs under the checkers' time
    limit. The report is kept, so the graded cells after this one do not run the checker again
    until the target, or a helper or global value its code uses, is redefined.
    """
    checker = checker_for(target, checker)
    report = report_cache.report(target, checker)
    if getattr(report, 'not_implemented', False):
        print(not_implemented_message(target, checker))
        return None
    if getattr(report, 'integrity', None):
        print('%s: every property scores 0\n%s' % (report.title, textwrap.fill(
            report.integrity, width=100)))
    else:
        print(report)
    return report


def grade(target, name, checker=None):
    """One graded property: print ``PASS name: ...`` or raise GradingFailure with the diagnosis.

    target, checker: as in ``check``. name: a property of that checker (e.g.
    'moving_mean_update'). A target still raising NotImplementedError raises NotImplementedYet.
    """
    checker = checker_for(target, checker)
    report = report_cache.report(target, checker)
    if getattr(report, 'not_implemented', False):
        raise NotImplementedYet(not_implemented_message(target, checker))
    result = report[name]
    if result.passed:
        print('PASS %s: %s' % (name, result.detail))
        return None
    others = [n for n in report.failed() if n != name]
    tail = ('\nOther properties failing: %s; run check(%s) for the whole table.'
            % (', '.join(others), target_name(target))
            if others and not getattr(report, 'integrity', None) else '')
    raise GradingFailure('FAIL %s\n%s%s' % (
        name, textwrap.fill(result.detail, width=100), tail))


def expect(condition, message):
    """A graded cell's own test: raise GradingFailure(message) unless condition is true."""
    if not condition:
        raise GradingFailure(message)


def require_names(namespace, *names):
    """Raise NotImplementedYet unless every name is defined in namespace (e.g. globals()).

    For graded cells that read what a learner's cell computes: a cell still holding the
    ``raise NotImplementedError()`` stub defines nothing, and this says so in one line instead
    of a NameError traceback.
    """
    missing = [name for name in names if name not in namespace]
    if missing:
        raise NotImplementedYet('%s %s not defined yet: complete the experiment cell above (it '
                                'still raises NotImplementedError) and run it.'
                                % (', '.join(missing), 'is' if len(missing) == 1 else 'are'))


# ----------------------------------------------------------------------------- LeNet training

LENET_BUDGET = dict(train_subset=2000, test_subset=1000, batch_size=100, num_epochs=2, lr=1.0,
                    recalibrate_batches=20, seed=0)
"""The fixed budget of assignment 3: 40 updates on 2,000 real training images (chosen with
``seed``), the book's learning rate, then moving statistics recalibrated over 20 batches and the
test accuracy measured on 1,000 test images."""

LENET_THRESHOLD = 0.5
"""The recalibrated test accuracy a correct layer must reach in ``LENET_BUDGET``. The reference
``d2l_utils.BatchNorm`` reached 0.646 to 0.782 (mean 0.695, standard deviation about 0.05) over
six seeds 0-5 of the subset and the initialization, so the threshold sits 0.15 below the worst
seed; LeNet without normalization stays at chance (0.088 and 0.099 for seeds 0, 1)."""


LENET_TIME_LIMIT = 300.0
"""Seconds the graded training of assignment 3 may take (at least the checkers' limit); it
takes well under a minute with a correct layer on a 2-core CPU."""


def run_learner_code(function, what, time_limit=None):
    """function() under the checkers' time limit (and exit guard); its value, or
    GradingFailure / NotImplementedYet saying what went wrong while running ``what``."""
    time_limit = default_time_limit(time_limit)
    out = []
    with exit_guard():
        finished, exc = call_with_time_limit(lambda: out.append(function()), time_limit, what)
    if not finished:
        raise GradingFailure(did_not_finish(time_limit, what))
    if isinstance(exc, NotImplementedError):
        raise NotImplementedYet(not_implemented_message(function, None)) from None
    if exc is not None:
        raise GradingFailure('%s raised %s: %s%s. Likely cause: %s'
                             % (what, type(exc).__name__, short_message(exc, 200),
                                learner_location(exc), exception_cause(exc)))
    return out[0]


def build(build_lenet, bn_class):
    """build_lenet(), after the layer's check: NotImplementedYet while the layer or build_lenet
    is still the stub, GradingFailure if the layer is not the learner's own, did not finish,
    or build_lenet is the package's lenet."""
    report = report_cache.report(bn_class, check_batch_norm_block)
    if getattr(report, 'not_implemented', False):
        raise NotImplementedYet(not_implemented_message(bn_class, check_batch_norm_block))
    if getattr(report, 'integrity', None):
        raise GradingFailure(report.integrity)
    hung = [r.detail for r in report.results if r.detail.startswith('did not finish')]
    if hung:
        raise GradingFailure('%s (in check_batch_norm_block(%s)); the net is not built or '
                             'trained.' % (hung[0], bn_class.__name__))
    if from_package(build_lenet) or any(obj is lenet for obj in dependencies(build_lenet)):
        raise GradingFailure('build_lenet uses d2l_utils.lenet, the package\'s own LeNet, instead '
                             'of building the net itself. Integrity: this part scores 0.')
    return run_learner_code(build_lenet, 'build_lenet()')


def check_lenet(build_lenet, bn_class):
    """Print what build_lenet() builds, or raise GradingFailure saying what is wrong.

    Expected: a net that maps (N, 1, 28, 28) to (N, 10) with four ``bn_class`` layers, each
    directly after a Conv2D or Dense layer (the book's LeNet with batch normalization).
    """
    net = build(build_lenet, bn_class)
    if not isinstance(net, gluon.Block):
        raise GradingFailure('build_lenet() should return a Gluon Block (an nn.Sequential); got '
                             '%s. Likely cause: a missing return net.' % type(net).__name__)
    children = list(net) if isinstance(net, nn.Sequential) else []
    bn_positions = [i for i, b in enumerate(children) if isinstance(b, bn_class)]
    if len(bn_positions) != 4:
        raise GradingFailure('expected 4 %s layers in the net (after the 2 Conv2D and the 2 '
                             'hidden Dense layers); found %d in its %d layers. Likely cause: '
                             'a BN layer missing, or nn.BatchNorm used instead of your class.'
                             % (bn_class.__name__, len(bn_positions), len(children)))
    misplaced = [i for i in bn_positions
                 if not isinstance(children[i - 1], (nn.Conv2D, nn.Dense))]
    if misplaced:
        raise GradingFailure('expected every %s layer directly after a Conv2D or Dense layer '
                             '(before its activation); layer %d comes after a %s.'
                             % (bn_class.__name__, misplaced[0],
                                type(children[misplaced[0] - 1]).__name__))

    def run_once():
        net.initialize(init.Xavier())
        return net(nd.zeros((2, 1, 28, 28)))

    out = run_learner_code(run_once, 'the net on a (2, 1, 28, 28) input')
    if out.shape != (2, 10):
        raise GradingFailure('expected the net to map (2, 1, 28, 28) to (2, 10) class scores; '
                             'got %s. Likely cause: the last layer is not Dense(10).'
                             % (out.shape,))
    print('PASS lenet: %d layers, %s after layers %s, output (N, 10)'
          % (len(children), bn_class.__name__, ', '.join(str(i - 1) for i in bn_positions)))


def grade_lenet_training(build_lenet, bn_class, threshold=LENET_THRESHOLD, budget=None):
    """Train build_lenet() in the fixed budget and grade its recalibrated test accuracy.

    Prints each epoch and the accuracy; returns None if it reaches ``threshold``, else raises
    GradingFailure with the accuracy and the failures of check_batch_norm_block(bn_class),
    the likely cause.
    """
    budget = dict(LENET_BUDGET, **(budget or {}))
    build(build_lenet, bn_class)   # says "not implemented yet" before loading any data
    train_iter, test_iter = load_data_fashion_mnist(
        budget['batch_size'], train_subset=budget['train_subset'],
        test_subset=budget['test_subset'], seed=budget['seed'])
    set_seed(budget['seed'])
    net = build(build_lenet, bn_class)

    def train_and_measure():
        net.initialize(init.Xavier())
        trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': budget['lr']})
        try:
            train(net, train_iter, test_iter, trainer, num_epochs=budget['num_epochs'],
                  progress=False)
        except NonFiniteLossError as error:
            return None, str(error).split('\n')[0]   # 'Training stopped: the loss is nan at ...'
        recalibrate_batch_norm(net, train_iter.in_order(), budget['recalibrate_batches'])
        return evaluate_accuracy(test_iter, net), None

    accuracy, diagnosis = run_learner_code(train_and_measure, 'training the LeNet',
                                           max(LENET_TIME_LIMIT, default_time_limit()))
    if diagnosis is None:
        print('recalibrated test accuracy %.3f (threshold %.2f)' % (accuracy, threshold))
        if accuracy >= threshold:
            return None   # no value: nbgrader would read a number as the cell's partial score
        diagnosis = ('expected a recalibrated test accuracy of at least %.2f (a correct layer '
                     'reaches 0.65 to 0.78 in this budget); got %.3f.' % (threshold, accuracy))
    report = report_cache.report(bn_class, check_batch_norm_block)
    cause = ('\nLikely cause, from check_batch_norm_block(%s):\n%s'
             % (bn_class.__name__, report.format(failures_only=True)) if not report.passed
             else '\ncheck_batch_norm_block(%s) passes: look at how the net is built '
                  '(check_lenet) and trained.' % bn_class.__name__)
    raise GradingFailure(diagnosis + cause)
