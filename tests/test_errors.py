"""short_message: the line of an error a learner needs, from MXNet's format and from others."""
import pytest
import mxnet as mx
from mxnet import nd

from d2l_utils.support.errors import short_message


def test_mxnet_error_gives_its_message_line_not_the_traceback_header():
    with pytest.raises(mx.base.MXNetError) as error:
        (nd.ones((2, 3)) + nd.ones((4, 5))).asnumpy()
    assert str(error.value).splitlines()[0].startswith('Traceback')   # MXNet's format
    assert short_message(error.value) == ('Check failed: l == 1 || r == 1: operands could not be '
                                          'broadcast together with shapes [2,3] [4,5]')


def test_other_errors_give_their_first_line_without_the_log_prefix_and_final_period():
    text = ('[12:00:00] src/operator/tensor/op.h:264: Check failed: no kernel image.\n'
            'Stack trace:\n  [bt] (0) libmxnet.so')
    assert short_message(text) == 'src/operator/tensor/op.h:264: Check failed: no kernel image'
    assert short_message(ValueError('first line.\nsecond line')) == 'first line'


def test_long_lines_are_cut_and_empty_messages_name_the_exception():
    assert short_message('x' * 50, limit=10) == 'xxxxxxx...'
    assert short_message(KeyboardInterrupt()) == 'KeyboardInterrupt'
    assert short_message('') == ''
