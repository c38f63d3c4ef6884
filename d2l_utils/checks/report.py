"""The result of a check: one ``CheckResult`` per property, gathered in a ``CheckReport``."""
import textwrap
from collections import namedtuple

__all__ = ['CheckReport', 'CheckResult']

CheckResult = namedtuple('CheckResult', 'name passed detail')
CheckResult.__doc__ = """One property's outcome: its name, whether it passed, and the detail
(what a PASS means, or what was expected, what came and the likely cause)."""


class CheckReport:
    """The outcome of a check: ``.passed``, ``.results`` (CheckResult(name, passed, detail)),
    ``.failed()`` (names of failed properties) and ``report['name']`` for one result.

    ``str(report)`` is the printed table (``report.format(failures_only=True)`` leaves out the PASS
    lines); ``repr`` is a one-line summary, so a notebook cell ending in a check shows the table
    once (printed) and the summary under it.
    """

    def __init__(self, title, results):
        self.title, self.results = title, list(results)

    @property
    def passed(self):
        return all(r.passed for r in self.results)

    def failed(self):
        return [r.name for r in self.results if not r.passed]

    def __getitem__(self, name):
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError('no property %r; the properties are %s'
                       % (name, ', '.join(r.name for r in self.results)))

    def __str__(self):
        return self.format()

    def format(self, failures_only=False):
        """The table: a summary line, then one line per property (a FAIL's detail wrapped under
        it). failures_only: leave out the PASS lines, e.g. to compare several mistakes."""
        width = max(len(r.name) for r in self.results) + 2
        lines = ['%s: %s' % (self.title, self._summary())]
        for r in self.results:
            if failures_only and r.passed:
                continue
            head = '%s  %s' % ('PASS' if r.passed else 'FAIL', r.name.ljust(width))
            lines.append(textwrap.fill(r.detail, width=100, initial_indent=head,
                                       subsequent_indent=' ' * len(head)))
        return '\n'.join(lines)

    def _summary(self):
        failed = self.failed()
        if not failed:
            return 'all %d properties pass' % len(self.results)
        return '%d of %d properties FAIL (%s)' % (len(failed), len(self.results), ', '.join(failed))

    def __repr__(self):
        return '<CheckReport %s: %s>' % (self.title, self._summary())
