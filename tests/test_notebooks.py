"""Every notebook runs top to bottom in quick mode, and the committed copies are a clean full run."""
import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import notebook_sync  # noqa: E402
import run_notebooks  # noqa: E402

NOTEBOOKS = run_notebooks.notebooks()


def test_there_are_notebooks_to_test():
    assert NOTEBOOKS, 'no notebooks found in notebooks/'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_in_quick_mode(path, tmp_path):
    run_notebooks.execute(path, quick=True, output=tmp_path / path.name, timeout=900)
    executed = json.loads((tmp_path / path.name).read_text())
    injected = [c for c in executed['cells']
                if 'injected-parameters' in c['metadata'].get('tags', [])]
    assert len(injected) == 1 and 'NUM_EPOCHS = 1' in ''.join(injected[0]['source'])


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_one_clean_full_run(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb['cells'] if c['cell_type'] == 'code' and ''.join(c['source']).strip()]
    counts = [c['execution_count'] for c in code]
    assert counts == list(range(1, len(code) + 1)), 'cells not run once, in order: %s' % counts
    errors = [o for c in code for o in c['outputs'] if o['output_type'] == 'error']
    assert not errors, errors[0]['ename'] if errors else ''
    assert not any('injected-parameters' in c['metadata'].get('tags', []) for c in nb['cells']), \
        'the committed copy is a quick run; commit a full run'
    run_notebooks.parameters_cell_index(run_notebooks.nbformat.reads(path.read_text(), 4))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_opens_with_an_english_summary_and_ends_with_a_summary(path):
    nb = json.loads(path.read_text())
    first = ''.join(nb['cells'][0]['source'])
    assert first.startswith('# ') and ' / ' in first.splitlines()[0], 'bilingual title first'
    english = [line for line in first.splitlines()[1:] if line.strip()][:2]
    assert all(line.isascii() for line in english), 'two-line English summary after the title'
    last = ''.join(nb['cells'][-1]['source'])
    assert '小结' in last and 'Summary' in last



def test_code_the_notebooks_teach_is_the_package_code():
    taught = [(nb.name, module, name) for nb in NOTEBOOKS
              for module, name, _ in notebook_sync.marked_definitions(nb)]
    names = {name for _, _, name in taught}
    assert {'batch_norm', 'BatchNorm'} <= names, 'the scratch code must be taught: %s' % taught
    assert notebook_sync.drift(NOTEBOOKS) == []
