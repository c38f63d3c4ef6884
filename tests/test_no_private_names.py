"""No underscore name crosses a module boundary: not in the package, the tests, the tools, the
benchmarks or the notebooks' code cells.

A name with one leading underscore is private to the module (or class) that defines it. Code
elsewhere that imports one (``from d2l_utils.layers import _check``), reads one as an attribute
(``net._children``, ``data_iter._rng``), or names one in ``getattr``/``setattr``/
``monkeypatch.setattr`` breaks when that module changes its insides, and in a notebook it
teaches learners to do the same. ``self._x`` and ``cls._x`` inside a class are that class's own.
"""
import ast
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
OWN = {'self', 'cls'}   # a class reading its own private attributes
# documented public APIs whose names start with one underscore (os._exit: exit a forked child
# without running cleanup handlers)
PUBLIC = {('os', '_exit')}


def is_private(name):
    return name.startswith('_') and not (name.startswith('__') and name.endswith('__'))


def private_uses(tree):
    """[(line, name, how)] for every underscore name of another module that the code uses."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if is_private(alias.name):
                    found.append((node.lineno, alias.name, 'imported from %s' % node.module))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                last = alias.name.split('.')[-1]
                if is_private(last):
                    found.append((node.lineno, last, 'imported module'))
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner not in OWN and (owner, node.attr) not in PUBLIC:
                found.append((node.lineno, node.attr, 'attribute'))
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
            if called in ('getattr', 'setattr', 'hasattr', 'delattr') and len(node.args) >= 2:
                target, name = node.args[0], node.args[1]
                if (isinstance(name, ast.Constant) and isinstance(name.value, str)
                        and is_private(name.value)
                        and not (isinstance(target, ast.Name) and target.id in OWN)):
                    found.append((node.lineno, name.value, '%s by name' % called))
    return found


def python_files():
    files = []
    for folder in ('d2l_utils', 'tests', 'tools', 'benchmarks'):
        files += sorted((ROOT / folder).rglob('*.py'))
    return files


MAGIC = re.compile(r'^\s*(%%?|!)[A-Za-z]')   # %time, %%capture, !pip: IPython, not Python


def notebook_cells(path):
    """[(cell number, source)] of the notebook's code cells, IPython magic lines left out."""
    cells = json.loads(path.read_text())['cells']
    return [(number, '\n'.join(line for line in ''.join(cell['source']).splitlines()
                               if not MAGIC.match(line)))
            for number, cell in enumerate(cells) if cell['cell_type'] == 'code']


def read_python(path):
    return [('', path.read_text())]


SOURCES = [(p.relative_to(ROOT).as_posix(), (lambda p=p: read_python(p))) for p in python_files()]
SOURCES += [(p.relative_to(ROOT).as_posix(), (lambda p=p: notebook_cells(p)))
            for p in sorted((ROOT / 'notebooks').glob('*.ipynb'))]


def uses_in(rel, read):
    """[(where, name, how)] in one file (a notebook: every code cell)."""
    found = []
    for cell, code in read():
        for line, name, how in private_uses(ast.parse(code, rel)):
            where = 'line %d' % line if cell == '' else 'cell %d line %d' % (cell, line)
            found.append((where, name, how))
    return found


@pytest.mark.parametrize('rel, read', SOURCES, ids=[rel for rel, _ in SOURCES])
def test_no_underscore_name_of_another_module_is_used(rel, read):
    uses = uses_in(rel, read)
    assert not uses, '%s uses private names of other modules: %s' % (
        rel, '; '.join('%s: %s (%s)' % use for use in uses))


def test_the_checker_sees_each_kind_of_private_use():
    code = ('from d2l_utils.layers import _check\nimport mod._hidden\nnet._children\n'
            'setattr(device, "_run", f)\nmonkeypatch.setattr(device, "_run", f)\n'
            'self._rng\ngetattr(self, "_own")\nx.__class__\nfrom a import b\nos._exit(0)\n'
            'child._exit\n')
    names = [(line, name) for line, name, _ in private_uses(ast.parse(code))]
    assert names == [(1, '_check'), (2, '_hidden'), (3, '_children'), (4, '_run'), (5, '_run'),
                     (11, '_exit')]
