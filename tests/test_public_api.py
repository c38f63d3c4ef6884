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


def names_the_course_imports():
    """{name: [files]} of every name the notebooks and the exercise edition import from
    d2l_utils itself (``from d2l_utils import x`` or ``d2l_utils.x``), read from their code."""
    import ast
    import json
    from IPython.core.inputtransformer2 import TransformerManager
    found = {}
    paths = sorted(ROOT.glob('notebooks/*.ipynb')) + sorted(ROOT.glob('exercises/**/*.ipynb'))
    for path in paths:
        for cell in json.loads(path.read_text())['cells']:
            if cell['cell_type'] != 'code':
                continue
            tree = ast.parse(TransformerManager().transform_cell(''.join(cell['source'])))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module == 'd2l_utils':
                    names = [alias.name for alias in node.names]
                elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                      and node.value.id == 'd2l_utils'):
                    names = [node.attr]
                for name in names:
                    found.setdefault(name, []).append(path.name)
    return found


SUBPACKAGES = {'pytorch', 'checks', 'experiments', 'support'}   # imported as modules


def test_every_name_the_notebooks_and_exercises_import_is_exported():
    used = names_the_course_imports()
    assert len(used) > 40   # the scan reads the notebooks (a broken scan finds nothing)
    missing = {name: files for name, files in used.items()
               if name not in d2l_utils.__all__ and name not in SUBPACKAGES}
    assert missing == {}


def test_every_exported_name_exists_and_is_listed_once():
    assert [name for name in d2l_utils.__all__ if not hasattr(d2l_utils, name)] == []
    assert len(d2l_utils.__all__) == len(set(d2l_utils.__all__))
    assert set(d2l_utils.__all__) <= set(dir(d2l_utils))   # lazily imported names too


@pytest.mark.parametrize('name', MODULES)
def test_every_module_declares_its_public_names(name):
    if name in ('d2l_utils.pytorch', 'd2l_utils.checks.torch_layer',
                'd2l_utils.checks.torch_mistakes'):
        pytest.importorskip('torch', reason='PyTorch is optional')
    module = importlib.import_module(name)
    assert hasattr(module, '__all__'), f'{name} has no __all__'
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
