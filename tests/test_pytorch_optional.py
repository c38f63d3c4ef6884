"""PyTorch stays optional: without it, the module and the appendix stop with the install command.

These tests run whether or not torch is installed: each starts a Python in which ``import torch``
fails (``sys.modules['torch'] = None``, Python's own way to mark a module as unavailable).
"""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / 'notebooks' / 'A_pytorch.ipynb'
INSTALL = 'pip install -r requirements-torch.txt'
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None\n"


def run_without_torch(code):
    return subprocess.run([sys.executable, '-c', WITHOUT_TORCH + code], capture_output=True,
                          text=True, cwd=str(NOTEBOOK.parent))


def test_importing_the_module_without_torch_says_how_to_install_it():
    out = run_without_torch('import d2l_utils.pytorch')
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()
    assert any(line.startswith('ImportError: d2l_utils.pytorch needs PyTorch') for line in last)
    assert INSTALL in out.stderr


def test_the_rest_of_d2l_utils_does_not_need_torch():
    out = run_without_torch('import d2l_utils; print(d2l_utils.lenet(bn="gluon") is not None)')
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'True'


def test_the_mxnet_checkers_do_not_need_torch_and_the_torch_checker_says_how_to_install_it():
    out = run_without_torch('import d2l_utils.checks; print(d2l_utils.checks.check_batch_norm)')
    assert out.returncode == 0, out.stderr
    out = run_without_torch('import d2l_utils.checks.torch_layer')
    assert out.returncode != 0
    assert INSTALL in out.stderr.strip().splitlines()[-1]


def test_the_appendix_first_code_cell_stops_with_the_install_message_without_torch():
    cells = json.loads(NOTEBOOK.read_text())['cells']
    first = next(''.join(c['source']) for c in cells if c['cell_type'] == 'code')
    out = run_without_torch(first)
    assert out.returncode != 0
    assert INSTALL in out.stderr.strip().splitlines()[-1]


def test_installing_the_torch_requirements_would_not_change_numpy_or_mxnet():
    """pip's own resolver, without installing (--dry-run --report), as in a fresh environment
    (--ignore-installed: with torch already installed, pip would list nothing and prove nothing)."""
    out = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--quiet',
                          '--ignore-installed', '--report', '-',
                          '-r', str(ROOT / 'requirements-torch.txt')],
                         capture_output=True, text=True)
    if out.returncode != 0 and 'ResolutionImpossible' not in out.stderr:
        pytest.skip('pip could not look up the packages (offline?): %s' % out.stderr[-300:])
    assert out.returncode == 0, out.stderr[-2000:]
    names = {item['metadata']['name'].lower() for item in json.loads(out.stdout)['install']}
    assert 'torch' in names, names
    assert not {'numpy', 'mxnet', 'mxnet-cu117'} & names, names
