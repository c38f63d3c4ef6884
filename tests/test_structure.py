"""The package's shape: the folders by audience, the import direction, the taught code that reads
like the book, one idea of "a batch-norm layer", and the table of names in docs/package.md.

Read from the source files (ast), except where importing is the point (what ``import d2l_utils``
loads, which runs in a fresh interpreter)."""
import ast
import importlib
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import d2l_utils

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'd2l_utils'
FOLDERS = ('checks', 'experiments', 'support')


def top_level_entries():
    return sorted(p.name for p in PACKAGE.iterdir()
                  if p.name != '__pycache__' and (p.suffix == '.py' or p.is_dir()))


def parse(path):
    return ast.parse(path.read_text(), str(path))


def function(path, name):
    """The ast node of the top-level function ``name`` in ``path``."""
    [node] = [n for n in parse(path).body if isinstance(n, ast.FunctionDef) and n.name == name]
    return node


def part_of(module):
    """'top', 'checks', 'experiments' or 'support' for a dotted module name in d2l_utils."""
    parts = module.split('.')
    return parts[1] if len(parts) > 2 and parts[1] in FOLDERS else 'top'


def module_name(path):
    return '.'.join(('d2l_utils',) + path.relative_to(PACKAGE).with_suffix('').parts)


def imported_modules(path):
    """Every d2l_utils module that ``path`` imports, anywhere in the file (functions too)."""
    package = module_name(path).split('.')[:-1]   # x/__init__.py and x/y.py: package x
    found = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = '.'.join(base + (node.module.split('.') if node.module else []))
            else:
                target = node.module or ''
            if target.startswith('d2l_utils'):
                # "from . import data" names a module too
                for alias in node.names:
                    candidate = f'{target}.{alias.name}'
                    exists = PACKAGE.joinpath(*candidate.split('.')[1:]).with_suffix('.py')
                    found.add(candidate if exists.exists() else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith('d2l_utils')}
    return found


def package_files():
    return sorted(p for p in PACKAGE.rglob('*.py') if '__pycache__' not in p.parts)


def test_the_top_level_holds_at_most_16_entries_the_books_helpers_and_three_folders():
    entries = top_level_entries()
    assert len(entries) <= 16, entries
    assert set(FOLDERS) <= set(entries)
    for name in ('layers.py', 'book.py', 'models.py', 'data.py', 'training.py', 'nan_guard.py'):
        assert name in entries


def test_the_books_helpers_import_only_each_other_and_support():
    wrong = {}
    for path in package_files():
        module = module_name(path)
        if part_of(module) != 'top' or path.name == '__init__.py':
            continue
        if module == 'd2l_utils.pytorch':
            # the appendix (imported only by name) re-exports its PyTorch checkers, so that
            # notebook A imports one module; it imports no experiment
            assert not [m for m in imported_modules(path) if part_of(m) == 'experiments']
            continue
        bad = sorted(m for m in imported_modules(path) if part_of(m) in ('checks', 'experiments'))
        if bad:
            wrong[module] = bad
    assert wrong == {}


def test_support_imports_no_checks_and_no_experiments():
    wrong = {module_name(p): sorted(m for m in imported_modules(p)
                                    if part_of(m) in ('checks', 'experiments'))
             for p in (PACKAGE / 'support').rglob('*.py')}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_nothing_but_the_package_init_imports_the_experiments():
    wrong = {}
    for path in package_files():
        module = module_name(path)
        if path == PACKAGE / '__init__.py' or part_of(module) == 'experiments':
            continue
        bad = sorted(m for m in imported_modules(path) if part_of(m) == 'experiments')
        if bad:
            wrong[module] = bad
    assert wrong == {}


def test_the_import_checker_sees_relative_imports_from_a_folder():
    found = imported_modules(PACKAGE / 'experiments' / 'folding.py')
    assert 'd2l_utils.models' in found and 'd2l_utils.support.errors' in found


def test_importing_the_package_loads_no_checker_and_no_experiment():
    code = ('import sys, d2l_utils\n'
            'print(" ".join(m for m in sys.modules if m.startswith("d2l_utils.")))')
    loaded = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout.split()
    assert 'd2l_utils.training' in loaded   # the book's helpers are loaded
    assert [m for m in loaded if part_of(m) in ('checks', 'experiments')] == []


def test_a_lazily_imported_name_is_listed_and_loads_on_first_use():
    assert set(d2l_utils.LAZY_NAMES) <= set(d2l_utils.__all__) <= set(dir(d2l_utils))
    for name, module in d2l_utils.LAZY_NAMES.items():
        assert getattr(d2l_utils, name) is getattr(
            importlib.import_module(f'd2l_utils.{module}'), name)
    with pytest.raises(AttributeError, match='no_such_name'):
        d2l_utils.no_such_name


def test_train_reads_like_the_books_loop():
    node = function(PACKAGE / 'training.py', 'train')
    assert node.end_lineno - node.lineno + 1 <= 65   # d2lzh's train_ch5 is 22 lines
    body = ast.unparse(node)
    for step in ('autograd.record()', 'backward(', 'trainer.step(', 'evaluate_accuracy('):
        assert step in body
    # the NaN guard is its own unit: three named calls, no bookkeeping in the loop
    assert [c for c in ('guard.check(', 'guard.after_step(', 'guard.end_epoch(') if c in body] \
        == ['guard.check(', 'guard.after_step(', 'guard.end_epoch(']
    assert 'first_nonfinite' not in body and 'np.isfinite' not in body


def test_train_is_the_first_definition_of_its_module():
    tree = parse(PACKAGE / 'training.py')
    first = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)))
    assert first.name == 'train'


def test_the_taught_batch_norm_computes_x_hat_as_the_book_does():
    tree = parse(PACKAGE / 'layers.py')
    definitions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert definitions[:2] == ['batch_norm', 'BatchNorm']
    source = ast.unparse(function(PACKAGE / 'layers.py', 'batch_norm'))
    assert 'X_hat = (X - mean) / nd.sqrt(var + eps)' in source
    assert 'Y = gamma * X_hat + beta' in source


def test_a_batch_norm_layer_is_defined_once_in_models():
    definers = {}
    for path in package_files():
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.FunctionDef) and (
                    node.name in ('is_batch_norm', 'batch_norm_layers', '_is_running_stat')):
                definers.setdefault(node.name, []).append(module_name(path))
            # Gluon's nn.BatchNorm is tested for (isinstance) in one place; building one or
            # subclassing it is not a second definition
            if (isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'isinstance'
                    and path.name != 'models.py'
                    and any(isinstance(sub, ast.Attribute) and sub.attr == 'BatchNorm'
                            for arg in node.args[1:] for sub in ast.walk(arg))):
                definers.setdefault('isinstance(..., BatchNorm)', []).append(module_name(path))
    assert definers == {'is_batch_norm': ['d2l_utils.models'],
                        'batch_norm_layers': ['d2l_utils.models']}


def test_argument_validators_are_not_named_check():
    # "check" means judging a learner's code (checks/); validators are validate_/require_
    wrong = []
    for path in package_files():
        if part_of(module_name(path)) == 'checks':
            continue
        for node in parse(path).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith('check_'):
                wrong.append(f'{module_name(path)}.{node.name}')
    assert wrong == ['d2l_utils.support.environment.check_environment']   # the import gate


def docs_table():
    """{name: module} from the tables of docs/package.md."""
    rows = re.findall(r'^\| `(\w+)` \| `([\w.]+)` \|', (ROOT / 'docs' / 'package.md').read_text(),
                      re.M)
    return dict(rows)


def test_the_docs_table_lists_exactly_the_exported_names_each_in_its_module():
    table = docs_table()
    assert sorted(table) == sorted(d2l_utils.__all__)
    wrong = {name: module for name, module in table.items()
             if not hasattr(importlib.import_module(f'd2l_utils.{module}'), name)}
    assert wrong == {}


def ruff_command():
    try:
        import ruff  # noqa: F401   the pinned wheel of requirements-dev.txt
        return [sys.executable, '-m', 'ruff']
    except ImportError:
        found = shutil.which('ruff')
        if found is None:
            pytest.skip('ruff is not installed: pip install -r requirements-dev.txt')
        return [found]


def test_ruff_finds_nothing():
    # .ci/run runs the same check before the tests; this keeps a local `pytest` honest too
    out = subprocess.run(ruff_command() + ['check', '--output-format', 'concise', '.'],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout
