"""The benchmark script runs end to end on a tiny configuration, so it cannot rot.

No timing is asserted: speed is compared in benchmarks/RESULTS.md, never in tests.
"""
import importlib.util
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def bench_epoch_module():
    """benchmarks/bench_epoch.py as a module (it imports only the standard library at the top)."""
    spec = importlib.util.spec_from_file_location('bench_epoch',
                                                  ROOT / 'benchmarks' / 'bench_epoch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_on_a_tiny_configuration_and_writes_its_tables(tmp_path):
    out = tmp_path / 'results.md'
    # an earlier run's file with a hand-written analysis after the marker: it must survive
    marker = bench_epoch_module().ANALYSIS_MARKER
    analysis = '## Reading this table\n\n- written by hand, kept by the next run'
    out.write_text('# old tables, replaced\n\n%s\n%s\n' % (marker, analysis))
    configs = ['book path, nn.BatchNorm', 'd2l_utils, FastBatchNorm', 'd2l_utils, nn.BatchNorm']
    if importlib.util.find_spec('torch') is not None:   # optional: requirements-torch.txt
        configs.append('PyTorch, nn.BatchNorm2d/1d')
    subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_epoch.py'),
                    '--train-subset', '512', '--test-subset', '256', '--epochs', '1',
                    '--layer-repeats', '1', '--out', str(out), '--configs'] + configs,
                   check=True, timeout=600)
    text = out.read_text()
    assert '# old tables, replaced' not in text
    assert text.endswith('%s\n%s\n' % (marker, analysis))
    for name in configs:
        assert '| %s |' % name in text
    assert 'book path, nn.BatchNorm / d2l_utils, nn.BatchNorm' in text
    # every MXNet row has a recalibrated accuracy (a number), a PyTorch row says n/a
    header = next(line for line in text.splitlines() if line.startswith('| configuration'))
    column = header.split(' | ').index('test acc, recalibrated BN')
    for name in configs:
        row = next(line for line in text.splitlines() if line.startswith('| %s |' % name))
        value = row.split(' | ')[column]
        assert value == 'n/a' if name.startswith('PyTorch') else 0.0 <= float(value) <= 1.0
    assert '| 256x6x24x24 |' in text and 'nd.BatchNorm' in text and 'fast_batch_norm' in text


def test_profile_lists_the_operators_of_a_real_training_step():
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'profile_step.py'),
                          '--steps', '2', '--warmup', '1', '--top', '5'],
                         check=True, timeout=300, capture_output=True, text=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith('LeNet, bn=gluon, batch 256:') and 'ms per training step' in lines[0]
    operators = [line.split()[0] for line in lines[3:]]
    assert len(operators) == 5
    # a LeNet+BN training step runs these kernels; a profile without them measured nothing
    assert {'Convolution', '_backward_Convolution', 'BatchNorm'} & set(operators)


def test_profile_rejects_a_meaningless_step_count():
    out = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'profile_step.py'),
                          '--steps', '0'], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and '--steps and --top must be at least 1' in out.stderr
