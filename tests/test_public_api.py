"""The public API: one top-level namespace holding every name the notebooks use, __all__ in every
module, and the version written once."""
import importlib
import pathlib
import re

import pytest

import d2l_utils

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = sorted('d2l_utils.' + '.'.join(p.relative_to(ROOT / 'd2l_utils').with_suffix('').parts)
                 for p in (ROOT / 'd2l_utils').rglob('*.py')
                 if p.name not in ('__init__.py', '__main__.py'))
MODULES += ['d2l_utils.checks']
# Modules owned by other work in progress; each must still lack __all__ (remove when added)
KNOWN_WITHOUT_ALL = set()
# What d2l_utils exported before the names were sorted into modules (issue 16): all kept
EARLIER_NAMES = (
    'BatchNorm batch_norm CheckReport check_batch_norm check_batch_norm_block ArrayDataIter '
    'get_fashion_mnist_labels load_data_fashion_mnist try_all_gpus try_gpu FastBatchNorm '
    'CorruptFileError DataUnavailableError FASHION_MNIST_ENV_VAR lenet CrossDeviceBatchNorm '
    'plot_history set_figsize show_fashion_mnist show_images use_svg_display '
    'recalibrate_batch_norm History NonFiniteLossError evaluate_accuracy recalibrated_accuracy '
    'set_seed train train_ch5 check_environment').split()


def test_every_earlier_top_level_name_is_still_exported():
    assert [name for name in EARLIER_NAMES if name not in d2l_utils.__all__] == []


def test_every_exported_name_exists_and_is_listed_once():
    assert [name for name in d2l_utils.__all__ if not hasattr(d2l_utils, name)] == []
    assert len(d2l_utils.__all__) == len(set(d2l_utils.__all__))


@pytest.mark.parametrize('name', MODULES)
def test_every_module_declares_its_public_names(name):
    if name in ('d2l_utils.pytorch', 'd2l_utils.checks.torch_layer',
                'd2l_utils.checks.torch_mistakes'):
        pytest.importorskip('torch', reason='PyTorch is optional')
    module = importlib.import_module(name)
    if name in KNOWN_WITHOUT_ALL:
        assert not hasattr(module, '__all__'), 'has __all__ now: remove it from KNOWN_WITHOUT_ALL'
        return
    assert hasattr(module, '__all__'), '%s has no __all__' % name
    assert [n for n in module.__all__ if not hasattr(module, n)] == []
    assert not [n for n in module.__all__ if n.startswith('_')]


def test_the_version_is_written_once_and_pyproject_reads_it():
    pyproject = (ROOT / 'pyproject.toml').read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert 'version = {attr = "d2l_utils.__version__"}' in pyproject
    assert not re.search(r'^version = "', pyproject, re.M)
    assert re.fullmatch(r'\d+\.\d+\.\d+', d2l_utils.__version__)


def test_the_pytorch_modules_first_line_says_importing_it_resets_torchs_thread_count():
    import ast   # read, not imported: the statement must hold without torch too
    first = ast.get_docstring(ast.parse((ROOT / 'd2l_utils' / 'pytorch.py').read_text()))
    assert re.search(r"[Ii]mporting this module resets torch's .*thread count",
                     first.splitlines()[0])
