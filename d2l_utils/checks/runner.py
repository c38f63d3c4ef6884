"""Running properties on a subject: each in isolation, its outcome a ``CheckResult``.

``run_property`` is the one place a property's code (and so the learner's code) runs: whatever
it raises (``SystemExit`` too) becomes a failed result, never a crash of the checker, and it
runs under a time limit. The limit needs a thread: the property runs in a daemon thread that
the checker waits for at most ``time_limit`` seconds. Python cannot stop a thread, so code that
never returns keeps running in the background (using a core) until the process or the Jupyter
kernel restarts; the report says so, and the remaining properties are not run (they would hang
too). A subprocess could be killed, but it would have to import MXNet again and could not run a
learner's function defined in a notebook cell.

A property that does not finish blocks only the mode it hung in: the learner's code sees two
modes (``autograd.is_training()`` true or false), so a function that loops only when predicting
still has its training-only properties checked, and at most two properties wait out the limit.
A hang while building a layer blocks everything (nothing can run without a layer).

``D2L_CHECK_TIME_LIMIT`` (seconds) in the environment replaces the default limit, e.g. a short
one for an autograding test of a looping submission.
"""
import contextlib
import copy
import os
import sys
import threading
import traceback

from ..support.errors import short_message
from .harness import Failure, exception_cause
from .properties import PROPERTIES
from .report import CheckReport, CheckResult

__all__ = ['TIME_LIMIT', 'call_with_time_limit', 'default_time_limit', 'did_not_finish',
           'exit_guard', 'learner_location', 'run_checks', 'run_property', 'target_name']

# seconds per property; every property of a correct batch norm finishes in well under a second
TIME_LIMIT = 60.0
TIME_LIMIT_VARIABLE = 'D2L_CHECK_TIME_LIMIT'


def default_time_limit(time_limit=None):
    """``time_limit`` if given, else ``D2L_CHECK_TIME_LIMIT`` from the environment, else
    ``TIME_LIMIT`` (60 s)."""
    if time_limit is not None:
        return float(time_limit)
    text = os.environ.get(TIME_LIMIT_VARIABLE, '').strip()
    if not text:
        return TIME_LIMIT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f'{TIME_LIMIT_VARIABLE} must be a positive number of seconds; got '
                         f'{text!r}. Unset it for the default of {TIME_LIMIT:g} s.')
    return value


def raise_system_exit(*args, **kwargs):
    """Stands in for IPython's ``ask_exit`` while learner code runs: ``exit()`` raises
    SystemExit (reported as a failure) instead of shutting the kernel down."""
    raise SystemExit('exit() called')


@contextlib.contextmanager
def exit_guard():
    """Inside a Jupyter kernel, make IPython's ``exit()``/``quit()`` raise SystemExit instead of
    shutting the kernel down after the cell (the checker reports SystemExit like any error).
    Outside IPython it does nothing: ``sys.exit()`` already raises SystemExit."""
    ipython = sys.modules.get('IPython')
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        yield
        return
    shell.ask_exit = raise_system_exit   # an instance attribute shadows the method
    try:
        yield
    finally:
        del shell.ask_exit

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def learner_location(exc):
    """' (at cell.py, line 3, in my_bn: var = ...)' for the innermost traceback frame outside
    MXNet and this package (the learner's line), or '' if there is none."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = os.path.abspath(frame.filename)
        if (frame.filename == '<string>'   # MXNet's generated operator functions
                or path.startswith(PACKAGE_DIR) or '%smxnet%s' % (os.sep, os.sep) in path):
            continue
        code = ': %s' % frame.line if frame.line else ''
        return ' (at %s, line %d, in %s%s)' % (os.path.basename(frame.filename), frame.lineno,
                                               frame.name, code)
    return ''


def call_with_time_limit(function, time_limit=TIME_LIMIT, name=''):
    """Call ``function()`` in a daemon thread (named 'check <name>', so a thread left running
    says which property it is) and wait at most ``time_limit`` seconds.

    Returns (finished, exc): finished False if it was still running at the limit (it goes on
    in the background; Python cannot stop a thread); exc what it raised (any BaseException,
    SystemExit from learner code too), or None if it returned.
    """
    outcome = []

    def target():
        try:
            function()
        except BaseException as exc:   # report, never crash the checker
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, name='check ' + name, daemon=True)
    thread.start()
    thread.join(time_limit)
    if thread.is_alive():
        return False, None
    return True, outcome[0]


def did_not_finish(time_limit, where):
    """The detail of a property that was still running after ``time_limit`` seconds."""
    return ('did not finish within %g s %s. Likely cause: a loop that never ends (while True, '
            'or a loop whose condition never changes). Python cannot stop it: it keeps running '
            'in the background until you restart the kernel.' % (time_limit, where))


def run_property(name, subject, time_limit=None, registry=None, outcome=None):
    """Run the property ``name`` of ``registry`` (default: the batch-norm ``PROPERTIES``) on
    ``subject`` in a thread, for at most ``time_limit`` seconds; return its ``CheckResult`` (a
    property that did not finish has a detail starting with 'did not finish').

    The property runs on its own copy of ``subject`` (sharing its ``hung`` set), so a property
    left running in the background cannot change what the next one reports. outcome: a list
    that receives the exception the learner's code raised (or None).
    """
    time_limit = default_time_limit(time_limit)
    prop = (registry if registry is not None else PROPERTIES)[name]
    subject = copy.copy(subject)
    subject.where, subject.phase = '', None
    finished, exc = call_with_time_limit(lambda: prop.check(subject), time_limit, name)
    if outcome is not None:
        outcome.append(exc if finished and not isinstance(exc, Failure) else None)
    if not finished:
        if subject.phase in ('training', 'prediction'):
            subject.hung[subject.phase] = name
        else:
            subject.hung['building'] = name
        return CheckResult(name, False, did_not_finish(time_limit,
                                                       subject.where or 'running this property'))
    if exc is None:
        return CheckResult(name, True, prop.meaning)
    if isinstance(exc, Failure):
        return CheckResult(name, False, str(exc))
    where = subject.where or 'running this property'
    return CheckResult(name, False, '%s: raised %s: %s%s. Likely cause: %s'
                       % (where, type(exc).__name__, short_message(exc, 200) or '(no message)',
                          learner_location(exc), exception_cause(exc)))


def run_checks(subject, properties, title, verbose, time_limit=None, registry=None):
    """Run ``properties`` ((name, meaning) pairs of ``registry``, default ``PROPERTIES``) in
    order on ``subject``; return a CheckReport, printed first if ``verbose``.

    When a layer cannot be built ('builds' fails, or building does not finish) the other
    properties are reported as not checked. When a property does not finish in ``time_limit``
    seconds in one mode (training or prediction), later runs in that mode are reported as not
    checked at once (``Subject.run``), and the properties that never enter it still run.
    ``report.not_implemented`` is True if every property that ran stopped on a
    ``NotImplementedError`` from the learner's code (nbgrader's stub still in place).
    """
    results, raised = [], []
    blocked = None   # why the remaining properties cannot run
    subject.hung = {}
    with exit_guard():
        for name, _ in properties:
            if blocked:
                results.append(CheckResult(name, False, 'not checked: %s.' % blocked))
                continue
            results.append(run_property(name, subject, time_limit, registry, raised))
            if 'building' in subject.hung or len(subject.hung) == 2 or (
                    name == 'builds' and results[-1].detail.startswith('did not finish')):
                blocked = '%s did not finish, and this code would not either' % name
            elif name == 'builds' and not results[-1].passed:
                blocked = 'the layer could not be built and run (see builds)'
    report = CheckReport(title, results)
    report.not_implemented = bool(raised) and all(isinstance(exc, NotImplementedError)
                                                  for exc in raised)
    if verbose:
        print(report)
    return report


def target_name(target):
    """The name a report gives a function or class (also a functools.partial of one)."""
    name = getattr(target, '__name__', None)
    if name is None and hasattr(target, 'func'):   # functools.partial
        name = getattr(target.func, '__name__', repr(target.func))
    return name or repr(target)
