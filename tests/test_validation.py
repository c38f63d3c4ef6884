"""The one rule for "a positive integer" (d2l_utils.support.validation), which train, the data
loaders, recalibration, the normalizations and the experiments all call."""
import numpy as np
import pytest

from d2l_utils import lenet, recalibrate_batch_norm
from d2l_utils.support.validation import is_integer, require_positive_int


@pytest.mark.parametrize('value', [1, 7, np.int64(3), np.int32(1)])
def test_python_and_numpy_integers_from_one_up_pass(value):
    assert is_integer(value)
    require_positive_int(value, 'num_epochs', 'train', 'how many passes, e.g. 5')


@pytest.mark.parametrize('value', [0, -2, 2.0, 2.5, '3', None, True, False, np.bool_(True)])
def test_everything_else_is_refused_with_the_caller_the_argument_and_the_value(value):
    with pytest.raises(ValueError) as caught:
        require_positive_int(value, 'num_epochs', 'train', 'how many passes, e.g. 5')
    message = str(caught.value)
    assert message.startswith('train: num_epochs must be a positive integer')
    assert 'how many passes, e.g. 5' in message and repr(value) in message


def test_bools_are_not_integers_here():
    assert not is_integer(True) and not is_integer(False) and not is_integer(2.0)


def test_callers_use_it_so_true_is_refused_everywhere():
    # recalibrate_batch_norm used to accept True as one batch
    net = lenet(bn='gluon')
    with pytest.raises(ValueError, match=r'num_batches must be a positive integer.*got True'):
        recalibrate_batch_norm(net, [], num_batches=True)
