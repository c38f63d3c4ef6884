"""Running properties on a subject: each in isolation, its outcome a ``CheckResult``.

``run_property`` is the one place a property's code (and so the learner's code) runs: whatever
it raises becomes a failed result, never a crash of the checker. A time limit per property, or
catching more than ``Exception``, belongs there.
"""
from ..errors import short_message
from .harness import Failure, exception_cause
from .properties import PROPERTIES
from .report import CheckReport, CheckResult

__all__ = ['run_checks', 'run_property', 'target_name']


def run_property(name, subject):
    """Run the property ``name`` on ``subject``; return its ``CheckResult``."""
    prop = PROPERTIES[name]
    subject.where = ''
    try:
        prop.check(subject)
    except Failure as failure:
        return CheckResult(name, False, str(failure))
    except Exception as exc:   # the learner's code raised: report it, never crash
        where = subject.where or 'running this property'
        return CheckResult(name, False, '%s: raised %s: %s. Likely cause: %s'
                           % (where, type(exc).__name__, short_message(exc, 200),
                              exception_cause(exc)))
    return CheckResult(name, True, prop.meaning)


def run_checks(subject, properties, title, verbose):
    """Run ``properties`` ((name, meaning) pairs) in order on ``subject``; return a CheckReport,
    printed first if ``verbose``. When a layer cannot be built ('builds' fails), the other
    properties are reported as not checked."""
    results = []
    blocked = None   # set when the layer cannot be built: the other properties cannot run
    for name, _ in properties:
        if blocked:
            results.append(CheckResult(name, False, 'not checked: %s (see builds).' % blocked))
            continue
        results.append(run_property(name, subject))
        if name == 'builds' and not results[-1].passed:
            blocked = 'the layer could not be built and run'
    report = CheckReport(title, results)
    if verbose:
        print(report)
    return report


def target_name(target):
    """The name a report gives a function or class (also a functools.partial of one)."""
    name = getattr(target, '__name__', None)
    if name is None and hasattr(target, 'func'):   # functools.partial
        name = getattr(target.func, '__name__', repr(target.func))
    return name or repr(target)
