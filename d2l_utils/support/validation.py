"""Argument validation shared by the package: one rule for "a positive integer".

A validator raises an error a learner can act on (the caller, the argument, what it is for,
what came) and returns nothing. ``True`` and ``False`` are not integers here, although Python's
``bool`` is a subclass of ``int``: ``num_epochs=True`` is a mistake, not one epoch.
"""
import numbers

__all__ = ['is_integer', 'require_positive_int']


def is_integer(value):
    """True for Python and numpy integers, False for bools, floats and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require_positive_int(value, name, caller, meaning):
    """Raise ValueError unless ``value`` is an integer >= 1 (``is_integer``).

    name: the argument's name; caller: the function's name, e.g. 'train'; meaning: what the
    number is, with an example, e.g. 'how many passes over train_iter, e.g. 5'.
    """
    if not (is_integer(value) and value >= 1):
        raise ValueError(f'{caller}: {name} must be a positive integer ({meaning}); got '
                         f'{value!r} (a {type(value).__name__}).')
