"""Committed figures a learner sees without running anything (issue 25).

Jupyter (JupyterLab 4, Notebook 7) does not render SVG from a notebook the user has not trusted,
and a freshly cloned notebook is not trusted: a figure saved as SVG only shows as
'<Figure size ... with 2 Axes>'. Every committed figure must carry a PNG (``use_svg_display``
emits PNG beside SVG). The notebooks' kernelspec must be the kernel the install provides, or
Jupyter rewrites it on opening and marks the notebook modified.
"""
import json
import pathlib
import re
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))
# what an untrusted notebook renders: images other than SVG, and plain text
UNTRUSTED_IMAGE_TYPES = ('image/png', 'image/jpeg', 'image/gif')
KERNELSPEC = {'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'}
# a code cell that draws: its committed outputs must hold the figure
DRAWS = re.compile(r'plt\.subplots\(|plt\.figure\(|\bplot_history\(|\bplot_lr_sweep\(|'
                   r'\bshow_images\(|\bshow_fashion_mnist\(')
sys.path.insert(0, str(ROOT / 'tools'))
import run_notebooks  # noqa: E402


def figure_outputs(nb):
    """(cell index, output) for every output that is a figure: an image or a matplotlib repr."""
    for index, cell in enumerate(nb['cells']):
        for out in cell.get('outputs', []):
            data = out.get('data', {})
            text = ''.join(data.get('text/plain', ''))
            if any(kind.startswith('image/') for kind in data) or text.startswith('<Figure size'):
                yield index, data


def test_there_are_committed_figures_to_check():
    assert sum(len(list(figure_outputs(json.loads(p.read_text(encoding='utf-8')))))
               for p in NOTEBOOKS) > 0


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_every_committed_figure_renders_in_an_untrusted_notebook(path):
    nb = json.loads(path.read_text(encoding='utf-8'))
    svg_only = [index for index, data in figure_outputs(nb)
                if not any(kind in data for kind in UNTRUSTED_IMAGE_TYPES)]
    assert not svg_only, (
        '%s: the figures of cells %s have no PNG, so a freshly cloned (untrusted) notebook shows '
        'text instead of them. Re-run the notebook with the current d2l_utils (use_svg_display '
        'emits PNG beside SVG): python tools/run_notebooks.py %s'
        % (path.name, svg_only, path.relative_to(ROOT)))


def test_the_check_fails_on_an_svg_only_figure_and_passes_with_a_png():
    svg_only = {'cells': [{'cell_type': 'code', 'outputs': [{
        'output_type': 'display_data',
        'data': {'image/svg+xml': '<svg/>', 'text/plain': '<Figure size 640x480 with 1 Axes>'}}]}]}
    [(_, data)] = figure_outputs(svg_only)
    assert not any(kind in data for kind in UNTRUSTED_IMAGE_TYPES)
    data['image/png'] = 'iVBORw0KGgo='
    assert any(kind in data for kind in UNTRUSTED_IMAGE_TYPES)
    # a figure that was never rendered at all (only its repr) counts as a figure without a PNG
    [(_, bare)] = figure_outputs({'cells': [{'cell_type': 'code', 'outputs': [{
        'output_type': 'display_data',
        'data': {'text/plain': '<Figure size 840x320 with 2 Axes>'}}]}]})
    assert not any(kind in bare for kind in UNTRUSTED_IMAGE_TYPES)


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_the_kernelspec_is_the_one_the_install_provides(path):
    nb = json.loads(path.read_text(encoding='utf-8'))
    assert nb['metadata'].get('kernelspec') == KERNELSPEC, (
        "%s: kernelspec %r; Jupyter would rewrite it to %r on opening and mark the notebook "
        "modified" % (path.name, nb['metadata'].get('kernelspec'), KERNELSPEC))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_that_draws_has_its_figure_in_the_committed_outputs(path):
    """A run whose kernel had a non-interactive backend (MPLBACKEND=Agg) saves no figure at all."""
    nb = json.loads(path.read_text(encoding='utf-8'))
    missing = [index for index, cell in enumerate(nb['cells'])
               if cell['cell_type'] == 'code' and DRAWS.search(''.join(cell['source']))
               and not any(kind.startswith('image/') for out in cell.get('outputs', [])
                           for kind in out.get('data', {}))]
    assert not missing, ('%s: cells %s draw a figure but their committed outputs hold none; '
                         're-run with python tools/run_notebooks.py %s'
                         % (path.name, missing, path.relative_to(ROOT)))


def test_a_run_with_mplbackend_agg_still_saves_png_figures_and_the_kernelspec(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv('MPLBACKEND', 'Agg')   # as the tests run: the kernel must not inherit it
    path = tmp_path / 'draws.ipynb'
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'from d2l_utils import use_svg_display\nfrom matplotlib import pyplot as plt\n'
        'use_svg_display()\nplt.plot([1, 2]);')])
    nb.metadata['kernelspec'] = {'display_name': 'Python 3', 'language': 'python',
                                 'name': 'python3'}
    nbformat.write(nb, str(path))
    run_notebooks.execute(path, timeout=300)
    saved = json.loads(path.read_text(encoding='utf-8'))
    [(_, data)] = figure_outputs(saved)
    assert 'image/png' in data and 'image/svg+xml' in data
    assert saved['metadata']['kernelspec'] == KERNELSPEC
