"""Flag numbers a notebook's prose quotes that its outputs no longer show (after a re-run).

    python tools/stale_numbers.py notebooks/3_lenet_batch_norm.ipynb            # against git HEAD
    python tools/stale_numbers.py NOTEBOOK --old OLD.ipynb                      # against a file

Every number quoted in a markdown cell with a decimal point or two or more digits (0.853, 4.6,
12.5 in "12.5x", 1175) is looked up in the text outputs of the whole notebook (streams and
text/plain, text/markdown, text/html); a prose number that rounds an output (0.85 for 0.853)
counts as found. A number missing from the new outputs but present in the old notebook's is
probably stale: the re-run changed it and the prose did not follow. Those are printed, one line
each as ``cell N: number``; exit status 1 if there are any, 0 if none. Numbers found in neither
(constants, derived differences, sizes) are not reported: read the prose for claims that changed
without a number too.
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys

NUMBER = re.compile(r'(?<![\d.])(\d+\.\d+|\d{2,})(?!\d)')


def output_text(nb):
    """All text outputs of a notebook (a dict in nbformat 4), joined."""
    parts = []
    for cell in nb['cells']:
        for out in cell.get('outputs', []):
            parts.append(''.join(out.get('text', '')))
            data = out.get('data', {})
            for kind in ('text/plain', 'text/markdown', 'text/html'):
                parts.append(''.join(data.get(kind, '')))
    return '\n'.join(parts)


def numbers(text):
    return set(NUMBER.findall(text))


def shown(number, output_numbers):
    """True if ``number`` (a string) is among ``output_numbers`` or rounds one of them."""
    if number in output_numbers:
        return True
    if '.' not in number:
        return False
    digits = len(number.split('.')[1])
    return any('.' in out and round(float(out), digits) == float(number)
               for out in output_numbers)


def stale_numbers(new, old):
    """[(cell index, number)] quoted in ``new``'s markdown, missing from its outputs, shown in
    ``old``'s outputs (both notebooks as dicts)."""
    new_numbers, old_numbers = numbers(output_text(new)), numbers(output_text(old))
    found = []
    for index, cell in enumerate(new['cells']):
        if cell['cell_type'] != 'markdown':
            continue
        for number in sorted(numbers(''.join(cell['source']))):
            if not shown(number, new_numbers) and shown(number, old_numbers):
                found.append((index, number))
    return found


def committed_copy(path):
    """The notebook at ``path`` as git HEAD has it (a dict)."""
    path = pathlib.Path(path).resolve()
    try:
        text = subprocess.run(['git', 'show', 'HEAD:./' + path.name], cwd=path.parent,
                              capture_output=True, text=True, check=True, timeout=60).stdout
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        raise SystemExit('%s: no committed copy to compare with (%s); pass --old OLD.ipynb.'
                         % (path, (getattr(err, 'stderr', '') or str(err)).strip()))
    return json.loads(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('notebook')
    parser.add_argument('--old', help='the notebook before the re-run (default: git HEAD)')
    args = parser.parse_args(argv)
    new = json.loads(pathlib.Path(args.notebook).read_text(encoding='utf-8'))
    old = (json.loads(pathlib.Path(args.old).read_text(encoding='utf-8')) if args.old
           else committed_copy(args.notebook))
    found = stale_numbers(new, old)
    for index, number in found:
        print('cell %d: %s' % (index, number))
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
