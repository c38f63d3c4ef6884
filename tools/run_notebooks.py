"""Execute notebooks top to bottom in a fresh kernel, in full or quick mode.

    python tools/run_notebooks.py                 # full run of every notebook, outputs saved in place
    python tools/run_notebooks.py --quick -o DIR  # quick run (what the tests do), copies in DIR
    python tools/run_notebooks.py notebooks/1_batch_norm_scratch.ipynb   # just one

Quick mode follows papermill's convention: after the cell tagged ``parameters`` it inserts a
cell (tagged ``injected-parameters``) that overrides the knobs named in ``QUICK_PARAMETERS``,
if that parameters cell defines them. Every notebook names its knobs the same way.
"""
import argparse
import ast
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / 'notebooks'

# The knobs a quick run turns, shared by all notebooks: small real subsets, one epoch.
QUICK_PARAMETERS = {
    'NUM_EPOCHS': 1,
    'TRAIN_SUBSET': 2048,
    'TEST_SUBSET': 1024,
    'QUICK': True,
}


def notebooks(paths=()):
    """The notebooks to run: the given paths, or every notebook in notebooks/ in name order."""
    if paths:
        return [pathlib.Path(p).resolve() for p in paths]
    return sorted(NOTEBOOK_DIR.glob('*.ipynb'))


def parameters_cell_index(nb):
    """Index of the cell tagged ``parameters``; ValueError if there is none or more than one."""
    found = [i for i, cell in enumerate(nb.cells)
             if 'parameters' in cell.get('metadata', {}).get('tags', [])]
    if len(found) != 1:
        raise ValueError('expected exactly one cell tagged "parameters", found %d' % len(found))
    return found[0]


def defined_names(source):
    """Names assigned at the top level of a cell's source."""
    names = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def inject_quick_parameters(nb, overrides=None):
    """Insert the quick-mode overrides after the parameters cell; returns the values injected."""
    overrides = dict(QUICK_PARAMETERS, **(overrides or {}))
    index = parameters_cell_index(nb)
    names = defined_names(nb.cells[index].source)
    values = {k: v for k, v in overrides.items() if k in names}
    source = '# Injected by tools/run_notebooks.py --quick\n' + ''.join(
        '%s = %r\n' % item for item in sorted(values.items()))
    cell = nbformat.v4.new_code_cell(source, metadata={'tags': ['injected-parameters']})
    nb.cells.insert(index + 1, cell)
    return values


def execute(path, quick=False, output=None, timeout=3600):
    """Run one notebook in a fresh kernel (cwd: its folder); write it to ``output`` or in place.

    Returns the seconds it took. Raises nbclient's CellExecutionError on the first failing cell.
    """
    nb = nbformat.read(str(path), as_version=4)
    if quick:
        inject_quick_parameters(nb)
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3',
                            resources={'metadata': {'path': str(path.parent)}})
    start = time.time()
    try:
        client.execute()
    finally:
        if output is not None or not quick:
            nbformat.write(nb, str(output or path))
    return time.time() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('paths', nargs='*', help='notebooks (default: all in notebooks/)')
    parser.add_argument('--quick', action='store_true', help='inject the quick parameters')
    parser.add_argument('-o', '--output-dir', help='write executed copies here (default: in '
                        'place for a full run; nowhere for a quick run)')
    args = parser.parse_args(argv)
    total = 0.0
    for path in notebooks(args.paths):
        output = pathlib.Path(args.output_dir) / path.name if args.output_dir else None
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
        seconds = execute(path, quick=args.quick, output=output)
        total += seconds
        print('%-45s %7.1f s' % (path.name, seconds), flush=True)
    print('%-45s %7.1f s' % ('total', total))
    return 0


if __name__ == '__main__':
    sys.exit(main())
