"""The environment report (``python -m d2l_utils``)."""
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import mxnet as mx
import numpy as np

from d2l_utils import device
from d2l_utils.support import fashion_mnist_files as files
from d2l_utils.support import env_report as report_module
from d2l_utils.support.env_report import environment_report, platform_route

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_gpu_cache():
    device.reset_gpu_cache()
    yield
    device.reset_gpu_cache()


@pytest.mark.skipif(not os.path.isfile(os.path.join(files.DEBIAN_DIR,
                                                    'train-labels-idx1-ubyte.gz')),
                    reason='needs Debian\'s dataset-fashion-mnist package')
def test_python_m_d2l_utils_reports_versions_and_the_debian_data_folder(tmp_path):
    env = dict(os.environ, MXNET_HOME=str(tmp_path))   # an empty MXNet cache: Debian's is first
    env.pop(files.ENV_VAR, None)
    out = subprocess.run([sys.executable, '-m', 'd2l_utils'], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = out.stdout
    assert 'Python            %s' % platform.python_version() in report
    assert sys.executable in report
    assert 'mxnet             %s' % mx.__version__ in report
    assert 'numpy             %s' % np.__version__ in report
    assert 'matplotlib        %s' % metadata.version('matplotlib') in report
    assert 'd2lzh             %s' % metadata.version('d2lzh') in report
    assert 'MXNet build       CUDA ' in report
    for name in files.FILES:
        assert '%s: verified copy in %s' % (name, files.DEBIAN_DIR) in report


def test_report_says_when_no_folder_has_the_files_and_names_damaged_copies(tmp_path,
                                                                          monkeypatch):
    (tmp_path / 't10k-labels-idx1-ubyte.gz').write_bytes(b'not the labels')
    monkeypatch.setattr(files, 'candidate_dirs', lambda root=None: [('test folder',
                                                                     str(tmp_path))])
    report = environment_report()
    assert ('train-images-idx3-ubyte.gz: not found locally (would download on first use)'
            in report)
    assert 't10k-labels-idx1-ubyte.gz: not found locally' in report
    assert 'skipped when loading: %s' % (tmp_path / 't10k-labels-idx1-ubyte.gz') in report
    assert 'does not hold the Fashion-MNIST file t10k-labels-idx1-ubyte.gz' in report


def test_report_lists_gpus_from_mxnet_and_nvidia_smi(tmp_path, monkeypatch):
    """A fake nvidia-smi and a stand-in GPU without kernels: neither exists on this machine."""
    fake = tmp_path / 'nvidia-smi'
    fake.write_text('#!/bin/sh\necho "NVIDIA H100 80GB HBM3, 9.0"\n')
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', str(tmp_path) + os.pathsep + os.environ['PATH'])
    monkeypatch.setattr(mx.context, 'num_gpus', lambda: 1)

    def no_kernel_image(ctx):
        raise mx.base.MXNetError('Check failed: err == cudaSuccess (209 vs. 0) : '
                                 'mxnet_generic_kernel ErrStr:no kernel image is available '
                                 'for execution on the device')

    monkeypatch.setattr(device, 'run_test_kernel', no_kernel_image)
    monkeypatch.setattr(files, 'candidate_dirs', lambda root=None: [])   # skip data hashing
    report = environment_report()
    assert 'nvidia-smi GPU 0  NVIDIA H100 80GB HBM3, compute capability 9.0' in report
    assert 'MXNet GPU 0       NOT usable: GPU 0' in report
    assert 'no kernel image is available' in report


def test_nvidia_smi_of_an_old_driver_still_gives_the_names(tmp_path, monkeypatch):
    """A fake nvidia-smi from before driver 510, which rejects the compute_cap field."""
    fake = tmp_path / 'nvidia-smi'
    fake.write_text('#!/bin/sh\ncase "$1" in *compute_cap*) echo "Field \\"compute_cap\\" is '
                    'not a valid field to query." >&2; exit 2;; esac\n'
                    'echo "Tesla T4"\necho "Tesla T4"\n')
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', str(tmp_path) + os.pathsep + os.environ['PATH'])
    assert device.nvidia_smi_gpus() == ([('Tesla T4', ''), ('Tesla T4', '')], None)


def test_a_failing_section_is_reported_in_place(monkeypatch):
    def broken():
        raise RuntimeError('no permission')

    monkeypatch.setattr(files, 'candidate_dirs', lambda root=None: broken())
    report = environment_report()
    assert 'could not collect this section: RuntimeError: no permission' in report
    assert '== Environment variables ==' in report


def test_the_report_gives_this_linux_x86_64_machine_its_route(monkeypatch):
    monkeypatch.setattr(files, 'candidate_dirs', lambda root=None: [])   # skip data hashing
    report = environment_report()
    assert platform.system() == 'Linux' and platform.machine() == 'x86_64'   # CI's machine
    assert ('Route             Linux x86-64: PyPI has the mxnet 1.9.1 wheel; tools/install.sh '
            in report)
    assert 'WARNING' not in report


# The platforms below cannot exist on this Linux x86-64 machine, so they are passed in as
# platform.system() and platform.machine() would name them there.
@pytest.mark.parametrize('system, machine, has_wheel, route', [
    ('Linux', 'x86_64', True, 'tools/install.sh installs everything'),
    ('Linux', 'aarch64', True, 'tools/fix_mxnet_aarch64.sh'),
    ('Darwin', 'x86_64', True, 'macOS Intel: PyPI has the mxnet 1.9.1 wheel'),
    ('Darwin', 'arm64', False, 'docker build -t d2l-batch-norm .'),
    ('Windows', 'AMD64', False, 'Use WSL 2 with Ubuntu and follow the Linux instructions'),
    ('Windows', 'ARM64', False, 'WSL 2 (that is Linux aarch64'),
    ('Linux', 'ppc64le', False, 'Linux on ppc64le: PyPI has no mxnet 1.9.1 wheel'),
])
def test_each_platform_gets_the_route_its_wheels_allow(system, machine, has_wheel, route):
    found, advice = platform_route(system, machine)
    assert found is has_wheel
    assert route in advice, advice


def test_on_an_apple_silicon_mac_the_report_warns_and_points_to_the_container(monkeypatch):
    """A Mac cannot exist here: platform.system() and platform.machine() answer as on one."""
    monkeypatch.setattr(platform, 'system', lambda: 'Darwin')
    monkeypatch.setattr(platform, 'machine', lambda: 'arm64')
    monkeypatch.setattr(files, 'candidate_dirs', lambda root=None: [])
    report = environment_report()
    assert 'WARNING           macOS on Apple Silicon: PyPI has no mxnet 1.9.1 wheel' in report
    assert 'docker run --rm -it --init -p 8888:8888 d2l-batch-norm' in report


def test_an_mxnet_other_than_the_pinned_one_is_named_with_the_route(monkeypatch):
    """An old mxnet (Windows' newest wheel is 1.7.0.post2) cannot be installed beside 1.9.1 here,
    so the version mxnet reports is replaced, and Windows answers as platform.system()."""
    monkeypatch.setattr(mx, '__version__', '1.7.0.post2')
    monkeypatch.setattr(platform, 'system', lambda: 'Windows')
    monkeypatch.setattr(platform, 'machine', lambda: 'AMD64')
    monkeypatch.setattr(files, 'candidate_dirs', lambda root=None: [])
    report = environment_report()
    assert ('WARNING           this is mxnet 1.7.0.post2; the course pins mxnet %s'
            % report_module.COURSE_MXNET) in report
    assert 'Use WSL 2 with Ubuntu' in report


def test_the_pinned_mxnet_in_the_report_is_the_one_in_requirements_txt():
    pins = (REPO / 'requirements.txt').read_text().split()
    assert 'mxnet==%s' % report_module.COURSE_MXNET in pins


def test_wsl_2_is_named_in_the_platform_line(monkeypatch):
    """WSL 2's kernel release string, as Microsoft's kernel reports it; this machine is not WSL."""
    monkeypatch.setattr(platform, 'release', lambda: '5.15.153.1-microsoft-standard-WSL2')
    monkeypatch.setattr(files, 'candidate_dirs', lambda root=None: [])
    assert '(x86_64) (WSL 2)' in environment_report()
