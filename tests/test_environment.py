"""Importing d2l_utils where MXNet 1.9.1 cannot work fails fast, with a way out."""
import os
import subprocess
import sys

import pytest

from d2l_utils.support.environment import UnsupportedEnvironmentError, check_environment


def test_supported_versions_pass():
    check_environment((3, 11), '1.23.5')
    check_environment((3, 8), '1.19.0')


@pytest.mark.parametrize('python, numpy, complaint', [
    ((3, 12), '1.23.5', 'Python 3.12 is too new'),
    ((3, 11), '1.24.0', 'numpy 1.24.0 is too new'),
    ((3, 11), '2.4.6', 'numpy 2.4.6 is too new'),
    ((3, 13), '2.1.0rc1', 'numpy 2.1.0rc1 is too new'),
])
def test_too_new_versions_are_named_with_the_way_out(python, numpy, complaint):
    with pytest.raises(UnsupportedEnvironmentError) as caught:
        check_environment(python, numpy)
    message = str(caught.value)
    assert complaint in message
    assert 'numpy==1.23.5' in message and 'Python 3.11' in message and 'venv' in message


def test_import_fails_before_mxnet_is_imported_when_numpy_is_too_new():
    # Pretend the installed numpy is 1.26 (installing one here would break this environment).
    code = (
        "import importlib.metadata as m, sys\n"
        "real = m.version\n"
        "m.version = lambda name: '1.26.0' if name == 'numpy' else real(name)\n"
        "try:\n"
        "    import d2l_utils\n"
        "except ImportError as err:\n"
        "    print(type(err).__name__, 'mxnet' in sys.modules)\n"
        "    print(err)\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    first, _, message = out.stdout.partition('\n')
    assert first == 'UnsupportedEnvironmentError False', out.stdout + out.stderr
    assert 'numpy 1.26.0 is too new' in message and 'np.bool' in message


@pytest.mark.parametrize('variable, value, fact', [
    ('OMP_NUM_THREADS', '2.0', 'OMP_NUM_THREADS=2'),   # before: SIGABRT inside import mxnet
    ('OMP_NUM_THREADS', 'abc', 'OMP_NUM_THREADS=2'),
    ('MPLBACKEND', 'agg2', 'MPLBACKEND=Agg'),          # before: matplotlib's ValueError
])
def test_a_variable_that_would_break_the_import_is_named_with_its_fix(variable, value, fact):
    env = dict(os.environ, **{variable: value})
    run = subprocess.run([sys.executable, '-c', 'import d2l_utils'], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, (run.returncode, run.stderr[-500:])   # an exception, not an abort
    assert 'UnsupportedEnvironmentError' in run.stderr
    assert '%s=%r' % (variable, value) in run.stderr and fact in run.stderr


def test_warnings_as_errors_do_not_break_the_import():
    # before: mxnet's own DeprecationWarning (np.bool) ended the import under -W error
    env = dict(os.environ, PYTHONWARNINGS='error')
    run = subprocess.run([sys.executable, '-c', 'import d2l_utils; print(d2l_utils.lenet)'],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-1500:]
