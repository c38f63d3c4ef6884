"""Every number the exercise edition's markdown quotes is shown in the outputs it names.

Assignment 5's written reference answers (10 of its 15 points are graded by hand against them)
quote notebook 5 and the assignment's own reference run (the committed outputs of
exercises/source/5_book_exercises). After notebook 5 or that reference run is re-run, this test
says which quoted number no longer appears, so the answers cannot go stale silently.

A number in a markdown cell (with a decimal point, or in scientific notation such as 3e-07) must
round one printed in: the outputs of the same source notebook, the outputs of each notebook the
cell names ("notebook 5", "notebook 3", ...), or, for assignment 3, the grading module that fixes
its budget and threshold (d2l_utils/checks/grading.py). Constants the text states as such
(ln 10 = 2.30, the 1e-8 and 1e-6 thresholds, momentum 0.9, learning rates) are listed below.
"""
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / 'exercises' / 'source'
NOTEBOOKS = ROOT / 'notebooks'
# stated constants, not measurements: ln 10, thresholds, learning rates, momentum, eps, 1 - momentum
CONSTANTS = {'2.30', '2.303', '1e-8', '1e-6', '1e-5', '0.1', '1.0', '0.5', '0.9', '0.2'}
QUOTED = re.compile(r'(?<![\w.])(\d+(?:\.\d+)?e[-+]?\d+|\d+\.\d+)(?![\w.])')
NAMED = re.compile(r'notebook ([0-9A-Z])\b')


def output_text(nb):
    parts = []
    for cell in nb['cells']:
        for out in cell.get('outputs', []):
            parts.append(''.join(out.get('text', '')))
            for kind in ('text/plain', 'text/markdown'):
                parts.append(''.join(out.get('data', {}).get(kind, '')))
    return '\n'.join(parts)


def printed_numbers(text):
    return set(re.findall(r'(?<![\w.])(\d+(?:\.\d+)?(?:e[-+]?\d+)?)', text))


def rounds(quoted, printed):
    """True if the quoted number (a string) is one of ``printed`` or rounds one of them."""
    if quoted in printed:
        return True
    value = float(quoted)
    if 'e' in quoted:
        digits = len(quoted.split('e')[0].replace('.', '')) - 1
        return any(float(p) != 0 and '%.*e' % (digits, float(p)) == '%.*e' % (digits, value)
                   for p in printed)
    decimals = len(quoted.split('.')[1])
    return any(round(float(p), decimals) == value for p in printed)


def notebook_named(key):
    matches = sorted(NOTEBOOKS.glob('%s_*.ipynb' % key))
    assert matches, 'markdown names notebook %s, which does not exist' % key
    return json.loads(matches[0].read_text())


def unquoted_numbers(path):
    """[(cell index, number)] quoted in the notebook's markdown but printed nowhere it names."""
    nb = json.loads(path.read_text())
    own = printed_numbers(output_text(nb))
    if path.parent.name == '3_lenet':
        own |= printed_numbers((ROOT / 'd2l_utils' / 'checks' / 'grading.py').read_text())
    missing = []
    for index, cell in enumerate(nb['cells']):
        if cell['cell_type'] != 'markdown':
            continue
        text = ''.join(cell['source'])
        printed = set(own)
        for key in set(NAMED.findall(text)):
            printed |= printed_numbers(output_text(notebook_named(key)))
        for number in QUOTED.findall(text):
            if number not in CONSTANTS and not rounds(number, printed):
                missing.append((index, number))
    return missing


@pytest.mark.parametrize('path', sorted(SOURCE.glob('*/*.ipynb')), ids=lambda p: p.parent.name)
def test_every_number_the_exercise_markdown_quotes_is_in_the_outputs_it_names(path):
    missing = unquoted_numbers(path)
    assert not missing, ('%s quotes numbers that neither its own outputs nor the notebooks it '
                         'names show (re-read them from the current outputs): %s'
                         % (path.relative_to(ROOT), missing))


def test_the_check_fails_for_a_number_that_is_not_shown(tmp_path):
    nb = {'cells': [{'cell_type': 'markdown', 'source': ['notebook 5 measured 0.367 here']}]}
    folder = tmp_path / '5_book_exercises'
    folder.mkdir()
    (folder / 'book_exercises.ipynb').write_text(json.dumps(nb))
    assert unquoted_numbers(folder / 'book_exercises.ipynb') == [(0, '0.367')]
    # a number notebook 5's outputs show (read, not pinned: a re-run moves it)
    shown = re.search(r'\b0\.\d{3}\b', output_text(json.loads(
        (NOTEBOOKS / '5_exercises.ipynb').read_text()))).group()
    nb['cells'][0]['source'] = [f'notebook 5 measured {shown} here (1.3e-03)']
    (folder / 'book_exercises.ipynb').write_text(json.dumps(nb))
    assert unquoted_numbers(folder / 'book_exercises.ipynb') == []
