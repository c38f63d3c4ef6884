"""Flag numbers a notebook's prose quotes that its outputs no longer show (after a re-run).

    python tools/stale_numbers.py notebooks/3_lenet_batch_norm.ipynb            # against git HEAD
    python tools/stale_numbers.py NOTEBOOK --old OLD.ipynb                      # against a file
    python tools/stale_numbers.py NOTEBOOK --sources                            # other sources

With ``--sources`` (no old copy needed) two more kinds of claims are checked against what the
sources show today. A number quoted in a sentence that names another notebook ("notebook 5")
or ``benchmarks/RESULTS.md`` must be in this notebook's outputs or in that source (outputs of
the other notebook; the text of RESULTS.md): only numbers with two or more decimals are
checked, so counts and constants are not flagged. A bound ("不超过 1.4e-10", "1e-6 以内",
"$1.4 \times 10^{-10}$") must be shown by an output of this notebook or of a notebook the same
sentence names: a bound no output supports was probably written from an older run.

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
# 1.4e-10, 2.0e-12, 1e-6; and LaTeX 1.4 \times 10^{-10}
SCIENTIFIC = re.compile(r'(?<![\w.])(\d+(?:\.\d+)?)(?:[eE]|\s*\\times\s*10\^\{?)([+-]?\d+)\}?')
# a bound: the words before the number (不超过 x) or after it (x 以内)
BOUND_BEFORE = re.compile(r'(?:不超过|不到|小于|低于|至多|最多|at most|below|under)\s*\$?\s*('
                          r'\d+(?:\.\d+)?(?:[eE][+-]?\d+|\s*\\times\s*10\^\{?[+-]?\d+\}?)?)')
BOUND_AFTER = re.compile(r'(\d+(?:\.\d+)?(?:[eE][+-]?\d+|\s*\\times\s*10\^\{?[+-]?\d+\}?)?)'
                         r'\s*\$?\s*(?:以内|以下)')
REFERENCE = re.compile(r'notebook\s*(\d+[ab]?|[A-C])\b|(RESULTS\.md)')
SENTENCE_END = re.compile(r'[。；;\n]')


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


def scientific_values(text):
    """[(mantissa string, exponent int)] of the numbers in scientific form in ``text``."""
    return [(m, int(e)) for m, e in SCIENTIFIC.findall(text)]


def bound_shown(bound, output_text_):
    """True if the bound ``bound`` (a string: '0.02', '1.4e-10', '1.4 \\times 10^{-10}') is shown
    by an output: the same value at the bound's precision, in plain or scientific form."""
    found = scientific_values(bound)
    if found:
        mantissa, exponent = found[0]
    else:
        mantissa, exponent = bound, 0
    digits = len(mantissa.split('.')[1]) if '.' in mantissa else 0
    target = round(float(mantissa), digits)
    for out_mantissa, out_exponent in scientific_values(output_text_):
        value = float(out_mantissa) * 10.0 ** (out_exponent - exponent)
        if round(value, digits) == target:
            return True
    return exponent == 0 and shown(bound, numbers(output_text_))


def shown_text(nb):
    """What a notebook shows a reader besides its prose: its outputs and its code (a constant
    defined in code, e.g. a tolerance, is shown there)."""
    code = [''.join(cell['source']) for cell in nb['cells'] if cell['cell_type'] == 'code']
    return output_text(nb) + '\n' + '\n'.join(code)


def sentences(text):
    return [part for part in SENTENCE_END.split(text) if part.strip()]


def referenced_sources(sentence, notebook_dir, results_path):
    """{name: output text} of the notebooks and RESULTS.md a sentence names."""
    sources = {}
    for number, results in REFERENCE.findall(sentence):
        if results:
            if results_path is not None and pathlib.Path(results_path).exists():
                sources['RESULTS.md'] = pathlib.Path(results_path).read_text(encoding='utf-8')
            continue
        for path in sorted(pathlib.Path(notebook_dir).glob('%s_*.ipynb' % number)):
            sources['notebook ' + number] = shown_text(
                json.loads(path.read_text(encoding='utf-8')))
    return sources


def unsupported_claims(nb, notebook_dir, results_path):
    """[(cell index, number, reason)]: numbers quoted from another notebook or RESULTS.md that
    neither this notebook's outputs nor that source show, and bounds no output supports."""
    own_text = shown_text(nb)
    own = numbers(own_text)
    found = []
    for index, cell in enumerate(nb['cells']):
        if cell['cell_type'] != 'markdown':
            continue
        for sentence in sentences(''.join(cell['source'])):
            sources = referenced_sources(sentence, notebook_dir, results_path)
            for bound in BOUND_BEFORE.findall(sentence) + BOUND_AFTER.findall(sentence):
                if not re.search(r'[.eE^]', bound):   # '小于 1': a plain count, not a measurement
                    continue
                if not any(bound_shown(bound, text) for text in [own_text, *sources.values()]):
                    found.append((index, bound, 'a bound no output shows'))
            if not sources:
                continue
            for number in sorted(numbers(sentence)):
                if '.' not in number or len(number.split('.')[1]) < 2 or shown(number, own):
                    continue
                if not any(shown(number, numbers(text)) for text in sources.values()):
                    found.append((index, number, 'not shown by %s' % ', '.join(sorted(sources))))
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
    parser.add_argument('--sources', action='store_true', help='check numbers quoted from other '
                        'notebooks and benchmarks/RESULTS.md, and bounds, instead')
    args = parser.parse_args(argv)
    new = json.loads(pathlib.Path(args.notebook).read_text(encoding='utf-8'))
    if args.sources:
        root = pathlib.Path(__file__).resolve().parents[1]
        claims = unsupported_claims(new, pathlib.Path(args.notebook).resolve().parent,
                                    root / 'benchmarks' / 'RESULTS.md')
        for index, number, reason in claims:
            print('cell %d: %s (%s)' % (index, number, reason))
        return 1 if claims else 0
    old = (json.loads(pathlib.Path(args.old).read_text(encoding='utf-8')) if args.old
           else committed_copy(args.notebook))
    found = stale_numbers(new, old)
    for index, number in found:
        print('cell %d: %s' % (index, number))
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
