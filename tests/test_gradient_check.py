"""The float64 gradient check (d2l_utils.checks.gradient_check) against analytic derivatives."""
import numpy as np
import pytest
from mxnet import nd

from d2l_utils import numerical_gradient, relative_error


def test_numerical_gradient_matches_the_analytic_derivative_in_float64():
    x = nd.array(np.random.RandomState(0).randn(3, 4), dtype='float64')
    grad = numerical_gradient(lambda: (x ** 3).sum().asscalar(), x)
    assert relative_error(grad, 3 * x.asnumpy() ** 2) < 1e-8
    with pytest.raises(TypeError, match='float64'):
        numerical_gradient(lambda: 0.0, x.astype('float32'))


def test_relative_error_is_zero_for_equal_arrays_and_refuses_different_shapes():
    a = np.arange(6.0).reshape(2, 3)
    assert relative_error(a, a) == 0
    assert relative_error(a, -a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match='shapes differ'):
        relative_error(a, a.T)



def test_relative_error_is_the_maximum_difference_over_the_sum_of_maximum_magnitudes():
    # the one definition of the course: max |a - b| / (max |a| + max |b|)
    a, b = np.array([1.0, -4.0, 2.0]), np.array([1.5, -4.0, 1.0])
    assert relative_error(a, b) == pytest.approx(1.0 / (4.0 + 4.0))
    assert relative_error(np.zeros(3), np.zeros(3)) == 0
