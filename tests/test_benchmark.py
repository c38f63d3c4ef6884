"""The benchmark script runs end to end on a tiny configuration, so it cannot rot.

No timing is asserted: speed is compared in benchmarks/RESULTS.md, never in tests.
"""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_benchmark_runs_on_a_tiny_configuration_and_writes_its_tables(tmp_path):
    out = tmp_path / 'results.md'
    configs = ['book path, nn.BatchNorm', 'd2l_utils, scratch BatchNorm', 'd2l_utils, nn.BatchNorm']
    subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'bench_epoch.py'),
                    '--train-subset', '512', '--test-subset', '256', '--epochs', '1',
                    '--layer-repeats', '1', '--out', str(out), '--configs'] + configs,
                   check=True, timeout=600)
    text = out.read_text()
    for name in configs:
        assert '| %s |' % name in text
    assert 'book path, nn.BatchNorm / d2l_utils, nn.BatchNorm' in text
    assert '| 256x6x24x24 |' in text and 'nd.BatchNorm' in text
