"""Keep the code the notebooks teach and the package's copy one text.

A notebook cell whose first line is the marker

    # Saved in d2l_utils/<module>.py

teaches definitions the package exports: every top-level ``def``/``class`` in that cell must
be, character for character, the source of the object of the same name in that module.

    python tools/notebook_sync.py            # report drift (exit 1 if any)
    python tools/notebook_sync.py --write    # copy the notebook's version into the package

``--write`` replaces each definition in the module with the notebook's text, so a change made
while teaching (in the notebook) flows into the package in one command.
"""
import ast
import importlib
import inspect
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKER = re.compile(r'^# Saved in d2l_utils/(\w+)\.py\s*$')


def marked_definitions(notebook_path):
    """Yield (module name, definition name, source text) for each definition in marked cells."""
    nb = json.loads(pathlib.Path(notebook_path).read_text())
    for cell in nb['cells']:
        if cell['cell_type'] != 'code':
            continue
        source = ''.join(cell['source'])
        match = MARKER.match(source.splitlines()[0]) if source.strip() else None
        if not match:
            continue
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                yield match.group(1), node.name, ast.get_source_segment(source, node)


def package_source(module_name, name):
    module = importlib.import_module('d2l_utils.' + module_name)
    return inspect.getsource(getattr(module, name)).rstrip('\n')


def drift(notebook_paths):
    """List of (notebook, module, name) whose notebook text differs from the package's."""
    found = []
    for path in notebook_paths:
        for module_name, name, text in marked_definitions(path):
            if text.rstrip('\n') != package_source(module_name, name):
                found.append((pathlib.Path(path).name, module_name, name))
    return found


def write_back(notebook_paths):
    """Replace each drifted definition in its module file with the notebook's text."""
    for path in notebook_paths:
        for module_name, name, text in marked_definitions(path):
            current = package_source(module_name, name)
            if text.rstrip('\n') == current:
                continue
            module_file = ROOT / 'd2l_utils' / (module_name + '.py')
            content = module_file.read_text()
            if content.count(current) != 1:
                raise RuntimeError('cannot locate %s in %s unambiguously' % (name, module_file))
            module_file.write_text(content.replace(current, text.rstrip('\n')))
            print('updated %s.%s from %s' % (module_name, name, pathlib.Path(path).name))


def main(argv):
    sys.path.insert(0, str(ROOT))
    notebooks = sorted((ROOT / 'notebooks').glob('*.ipynb'))
    if '--write' in argv:
        write_back(notebooks)
        return 0
    problems = drift(notebooks)
    for nb_name, module_name, name in problems:
        print('%s: %s differs from d2l_utils/%s.py (run tools/notebook_sync.py --write, or '
              'edit the notebook)' % (nb_name, name, module_name))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
