"""A one-line progress display that works in Jupyter and in a terminal, and can be turned off."""
import sys
import time

__all__ = ['Progress']


def _in_notebook():
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == 'ZMQInteractiveShell'


class Progress:
    """Show "label: done/total" on one line, rewritten at most every ``interval`` seconds.

    enabled: True, False, or None for "on in Jupyter or an interactive terminal, off in logs".
    In Jupyter the line is an updatable display (no pile of output); in a terminal it is
    rewritten with a carriage return on stderr.
    """

    def __init__(self, enabled=None, interval=0.25):
        self.notebook = _in_notebook()
        if enabled is None:
            enabled = self.notebook or sys.stderr.isatty()
        self.enabled, self.interval = enabled, interval
        self._handle, self._last = None, 0.0
        # for the time left in the current bar: when and at which count it started, last count
        self._start, self._first, self._previous = None, 0, 0

    def update(self, label, done, total):
        if not self.enabled:
            return
        now = time.monotonic()
        if self._start is None or done < self._previous:   # a new bar (e.g. the next epoch)
            self._start, self._first = now, done
        self._previous = done
        if done < total and now - self._last < self.interval:
            return
        self._last = now
        width = 30
        filled = width * done // max(total, 1)
        text = f"{label} [{'=' * filled}{' ' * (width - filled)}] {done}/{total}"
        if self._first < done < total:   # the rate so far gives the time left
            left = (now - self._start) / (done - self._first) * (total - done)
            text += f', about {left:.0f} s left'
        self._show(text)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()   # also when training stops with an error: no half-drawn bar stays

    def close(self):
        """Remove the line (the per-epoch summary lines are what stays)."""
        if self.enabled:
            self._show('')
            if not self.notebook:
                sys.stderr.write('\r')
            self._handle = None

    def _show(self, text):
        if self.notebook:
            from IPython.display import display
            if self._handle is None:
                self._handle = display({'text/plain': text}, raw=True, display_id=True)
            else:
                self._handle.update({'text/plain': text}, raw=True)
        else:
            sys.stderr.write('\r' + text.ljust(70))
            sys.stderr.flush()
