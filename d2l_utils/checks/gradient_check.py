"""Gradient checking: the float64 oracle for a hand-written backward pass (CS231n's
``gradient_check.py``).

``numerical_gradient(f, x)`` differentiates a scalar function by central differences;
``relative_error(a, b)`` compares two arrays on a scale that does not depend on their size, the
one definition of relative error used by every notebook and test of the course.
"""
import numpy as np

__all__ = ['numerical_gradient', 'relative_error']


def numerical_gradient(f, x, h=1e-6):
    """Central differences (f(x + h) - f(x - h)) / 2h of the scalar f() w.r.t. each entry of x.

    x: a float64 NDArray that f reads; it is changed in place one entry at a time and restored.
    Returns a numpy array of x's shape. In float64 the error is ~1e-9 relative for h=1e-6.
    """
    if x.dtype != np.float64:
        raise TypeError('numerical_gradient needs a float64 NDArray (float32 rounding swamps the '
                        'differences); got %s. Use x.astype(\'float64\').' % np.dtype(x.dtype).name)
    grad = np.zeros(x.shape)
    values = x.asnumpy()
    for index in np.ndindex(*x.shape):
        original = values[index]
        values[index] = original + h
        x[:] = values
        plus = f()
        values[index] = original - h
        x[:] = values
        minus = f()
        values[index] = original
        x[:] = values
        grad[index] = (plus - minus) / (2 * h)
    return grad


def relative_error(a, b):
    """max |a - b| / (max |a| + max |b|): 0 for equal arrays, ~1 for unrelated ones."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError('relative_error: shapes differ, %s and %s' % (a.shape, b.shape))
    return float(np.abs(a - b).max() / max(np.abs(a).max() + np.abs(b).max(), 1e-300))
