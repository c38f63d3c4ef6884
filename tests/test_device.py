"""Device choice: the real CPU path of this machine, and mocked GPUs.

This machine has no GPU and a CPU-only mxnet, so every GPU test below replaces
``mx.context.num_gpus`` and the probe's kernel run with stand-ins; each says so.
"""
import contextlib
import io
import warnings

import numpy as np
import pytest
import mxnet as mx
from mxnet.base import MXNetError

from d2l_utils import device

# What MXNet 1.9.1 raises when its wheel has no machine code for the GPU (e.g. on an H100):
# the first line of a real report, apache/mxnet issue #21166.
MISSING_KERNEL = ('[12:00:00] src/operator/tensor/./elemwise_binary_scalar_op.h:264: Check failed: '
                  'err == cudaSuccess (209 vs. 0) : mxnet_generic_kernel ErrStr:no kernel image is '
                  'available for execution on the device\nStack trace:\n  [bt] (0) libmxnet.so')


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test probes afresh, and no mocked result leaks into other test modules."""
    device.reset_gpu_cache()
    yield
    device.reset_gpu_cache()


def fallback_messages(call, times=1):
    """Run ``call`` ``times`` times; return (last result, texts of the NoUsableGPUWarning lines
    it printed on stderr)."""
    label = f'{device.NoUsableGPUWarning.__name__}: '
    with contextlib.redirect_stderr(io.StringIO()) as err:
        for _ in range(times):
            result = call()
    return result, [line[len(label):] for line in err.getvalue().splitlines()
                    if line.startswith(label)]


def fake_gpus(monkeypatch, n, broken=()):
    """Stand in for ``n`` GPUs, which cannot exist on this machine; those in ``broken`` fail
    the test kernel the way a GPU without machine code in the wheel does. Returns the list of
    probed GPU indices, to count probes."""
    probed = []

    def run_test_kernel(ctx):
        assert ctx.device_type == 'gpu'
        probed.append(ctx.device_id)
        if ctx.device_id in broken:
            raise MXNetError(MISSING_KERNEL)
        return np.array([4.0, 6.0, 8.0], dtype=np.float32)

    monkeypatch.setattr(mx.context, 'num_gpus', lambda: n)
    monkeypatch.setattr(device, 'run_test_kernel', run_test_kernel)
    monkeypatch.setattr(device, 'nvidia_smi_gpus', lambda timeout=10: ([], 'stand-in'))
    return probed


def test_probe_kernel_computes_the_expected_values_on_a_real_device():
    """The probe itself, run for real on the CPU: (x + 1) * 2 of [1, 2, 3]."""
    np.testing.assert_array_equal(device.run_test_kernel(mx.cpu()), [4.0, 6.0, 8.0])


@pytest.mark.skipif(device.build_features(('CUDA',))['CUDA'],
                    reason='this mxnet build has CUDA; the CPU-only path needs the plain wheel')
def test_cpu_only_mxnet_falls_back_to_cpu_and_says_why_exactly_once():
    def calls():
        return device.try_gpu(), device.try_gpu(0), device.try_all_gpus()

    (one, again, every), messages = fallback_messages(calls, times=3)
    assert one == again == mx.cpu()
    assert every == [mx.cpu()]
    assert len(messages) == 1, messages
    assert 'no GPU visible to MXNet (this mxnet build has no CUDA' in messages[0]
    assert device.gpu_status() == []
    assert 'no CUDA' in device.no_gpu_reason()


def test_usable_gpu_is_returned_without_a_message(monkeypatch):
    """A GPU that runs the test kernel (a stand-in: no GPU can exist on this machine)."""
    fake_gpus(monkeypatch, 1)
    ctx, messages = fallback_messages(device.try_gpu)
    assert ctx == mx.gpu(0)
    assert messages == []
    [status] = device.gpu_status()
    assert (status.index, status.usable) == (0, True)


def test_gpu_without_kernels_falls_back_to_cpu_with_the_reason(monkeypatch):
    """A GPU that accepts memory but fails the test kernel, like an H100 under MXNet 1.9.1
    (a stand-in: no GPU can exist on this machine)."""
    fake_gpus(monkeypatch, 1, broken={0})
    ctx, messages = fallback_messages(device.try_gpu, times=2)
    assert ctx == mx.cpu()
    assert len(messages) == 1, messages
    message = messages[0]
    assert 'GPU 0 is visible but MXNet cannot run a kernel on it' in message
    assert 'no kernel image is available for execution on the device' in message
    assert 'Stack trace' not in message            # only the first line of MXNet's error
    assert 'compute capability 5.0-8.9' in message and "README 'GPUs'" in message
    [status] = device.gpu_status()
    assert (status.index, status.usable) == (0, False)
    assert 'no kernel image' in status.reason


def test_unusable_gpu_is_named_when_nvidia_smi_identifies_it(monkeypatch):
    """Stand-ins for one H100 and its nvidia-smi line (neither exists on this machine)."""
    fake_gpus(monkeypatch, 1, broken={0})
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    monkeypatch.setattr(device, 'nvidia_smi_gpus',
                        lambda timeout=10: ([('NVIDIA H100 80GB HBM3', '9.0')], None))
    _, [message] = fallback_messages(device.try_gpu)
    assert 'GPU 0 (NVIDIA H100 80GB HBM3, compute capability 9.0) is visible' in message


def test_try_all_gpus_lists_only_usable_gpus(monkeypatch):
    """Three stand-in GPUs, the middle one without kernels (none can exist on this machine)."""
    fake_gpus(monkeypatch, 3, broken={1})
    ctxs, messages = fallback_messages(device.try_all_gpus)
    assert ctxs == [mx.gpu(0), mx.gpu(2)]
    assert len(messages) == 1 and messages[0].startswith('Leaving out GPU 1:')
    assert [(s.index, s.usable) for s in device.gpu_status()] == [(0, True), (1, False),
                                                                  (2, True)]


def test_try_all_gpus_returns_the_cpu_when_no_gpu_runs_a_kernel(monkeypatch):
    """Two stand-in GPUs, both without kernels (neither can exist on this machine)."""
    fake_gpus(monkeypatch, 2, broken={0, 1})
    ctxs, messages = fallback_messages(device.try_all_gpus)
    assert ctxs == [mx.cpu()]
    assert [m.split(':')[0] for m in messages] == ['Using the CPU', 'Using the CPU']


def test_each_gpu_is_probed_once_per_process(monkeypatch):
    """Stand-in GPUs (none can exist on this machine): repeated calls reuse the probe."""
    probed = fake_gpus(monkeypatch, 2)
    for _ in range(3):
        device.try_gpu(0)
        device.try_all_gpus()
        device.gpu_status()
    assert sorted(probed) == [0, 1]
    device.reset_gpu_cache()
    device.try_gpu(0)
    assert sorted(probed) == [0, 0, 1]


def test_gpu_number_beyond_the_count_falls_back_to_cpu(monkeypatch):
    """One stand-in GPU (it cannot exist on this machine); GPU 1 was asked for."""
    fake_gpus(monkeypatch, 1)
    ctx, [message] = fallback_messages(lambda: device.try_gpu(1))
    assert ctx == mx.cpu()
    assert 'GPU 1 was asked for, but MXNet sees 1 GPU(s)' in message


def test_failure_to_count_gpus_is_reported_not_raised(monkeypatch):
    """Stand-in for a CUDA build whose driver is too old (no such build on this machine)."""
    def num_gpus():
        raise MXNetError('[12:00:00] src/base.cc:79: CUDA: CUDA driver version is insufficient '
                         'for CUDA runtime version\nStack trace: ...')

    monkeypatch.setattr(mx.context, 'num_gpus', num_gpus)
    ctx, [message] = fallback_messages(device.try_gpu)
    assert ctx == mx.cpu()
    assert 'counting GPUs failed' in message and 'driver version is insufficient' in message
    assert device.gpu_status() == []


def test_gpu_returning_wrong_numbers_is_not_usable(monkeypatch):
    """A stand-in GPU whose kernel runs but computes garbage (none can exist on this machine)."""
    fake_gpus(monkeypatch, 1)
    monkeypatch.setattr(device, 'run_test_kernel', lambda ctx: np.zeros(3, dtype=np.float32))
    ctx, [message] = fallback_messages(device.try_gpu)
    assert ctx == mx.cpu()
    assert 'returned [0.0, 0.0, 0.0] instead of [4.0, 6.0, 8.0]' in message


# ---------------------------------------------------------------- advice for the CPU wheel

cpu_wheel_only = pytest.mark.skipif(device.build_features(('CUDA',))['CUDA'],
                                    reason='the advice is for the plain (CPU-only) mxnet wheel')


def fake_nvidia_smi(monkeypatch, gpus):
    """Stand in for nvidia-smi listing ``gpus`` (no NVIDIA GPU or driver exists on this
    machine); the mxnet build is this machine's real CPU wheel. Returns the list of calls."""
    calls = []

    def nvidia_smi_gpus(timeout=10):
        calls.append(timeout)
        return list(gpus), None

    monkeypatch.setattr(device, 'nvidia_smi_gpus', nvidia_smi_gpus)
    return calls


@cpu_wheel_only
@pytest.mark.parametrize('call', [device.try_gpu, device.try_all_gpus])
def test_cpu_wheel_on_a_hopper_gpu_does_not_advise_mxnet_cu117(monkeypatch, call):
    """The CPU wheel on a machine with an H200 (compute capability 9.0; a stand-in)."""
    fake_nvidia_smi(monkeypatch, [('NVIDIA H200', '9.0')])
    result, [message] = fallback_messages(call)
    assert result in (mx.cpu(), [mx.cpu()])
    # before: "for a GPU, install mxnet-cu117 instead of mxnet", which cannot run on 9.0
    assert 'install mxnet-cu117 instead' not in message
    assert 'installing mxnet-cu117 would not help' in message
    assert 'NVIDIA H200 (compute capability 9.0)' in message
    assert 'compute capability 5.0-8.9' in message and "README 'GPUs'" in message


@cpu_wheel_only
def test_cpu_wheel_beside_a_supported_gpu_advises_mxnet_cu117_and_names_the_gpu(monkeypatch):
    """The CPU wheel on a machine with an RTX 3090 (8.6, which mxnet-cu117 runs on; a
    stand-in) and an H100 (9.0)."""
    fake_nvidia_smi(monkeypatch, [('NVIDIA GeForce RTX 3090', '8.6'),
                                  ('NVIDIA H100 80GB HBM3', '9.0')])
    _, [message] = fallback_messages(device.try_gpu)
    assert 'NVIDIA GeForce RTX 3090 (compute capability 8.6)' in message
    assert 'install mxnet-cu117 instead of mxnet' in message


@cpu_wheel_only
def test_cpu_wheel_with_a_driver_that_hides_the_capability_says_to_look_it_up(monkeypatch):
    """A stand-in driver older than 510: nvidia-smi gives the name but no compute capability."""
    fake_nvidia_smi(monkeypatch, [('Tesla K80', '')])
    _, [message] = fallback_messages(device.try_gpu)
    assert 'Tesla K80 (compute capability unknown)' in message
    assert 'look the capability up before installing it' in message


@cpu_wheel_only
def test_nvidia_smi_is_asked_once_however_often_try_gpu_runs(monkeypatch):
    calls = fake_nvidia_smi(monkeypatch, [('NVIDIA H200', '9.0')])
    _, messages = fallback_messages(lambda: (device.try_gpu(), device.try_all_gpus()), times=4)
    assert len(messages) == 1 and len(calls) == 1


@cpu_wheel_only
def test_the_gpu_fallback_is_one_line_on_stderr_and_the_warning_format_is_left_alone():
    # advice, not a warning: no file path (in Jupyter an ipykernel temporary file), and the
    # process's warnings.formatwarning stays Python's own
    with contextlib.redirect_stderr(io.StringIO()) as err:
        device.try_gpu()
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith('NoUsableGPUWarning: Using the CPU')
    assert warnings.formatwarning.__module__ == 'warnings'


def advice_everywhere():
    """The no-GPU advice as each place that gives it says it: (where, text)."""
    from mxnet import gluon

    from d2l_utils import evaluate_accuracy, load_data_fashion_mnist, train
    from d2l_utils.support.env_report import environment_report

    found = [('try_gpu', fallback_messages(device.try_gpu)[1][0])]
    report = environment_report()
    found.append(('python -m d2l_utils', next(line for line in report.splitlines()
                                              if 'MXNet GPUs' in line)))
    with pytest.raises(ValueError) as loader:
        load_data_fashion_mnist(16, ctx=mx.gpu(0), train_subset=32, test_subset=32, seed=0)
    found.append(('load_data_fashion_mnist', str(loader.value)))
    train_iter, test_iter = load_data_fashion_mnist(16, train_subset=32, test_subset=32, seed=0)
    net = gluon.nn.Dense(10)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    for name, call in [('train', lambda ctx: train(net, train_iter, test_iter, trainer, ctx, 1,
                                                  progress=False)),
                       ('evaluate_accuracy', lambda ctx: evaluate_accuracy(test_iter, net, ctx))]:
        with pytest.raises(ValueError) as error:
            call([mx.cpu(), mx.gpu(0)])
        found.append((name, str(error.value)))
    return found


@cpu_wheel_only
def test_every_place_gives_the_hopper_advice_not_mxnet_cu117(monkeypatch, fashion_mnist_dir):
    """Part 1's row 6.2: the CPU wheel on a machine with an H200 (compute capability 9.0).
    No GPU exists here: only nvidia-smi's answer is a stand-in; MXNet's GPU count is real."""
    fake_nvidia_smi(monkeypatch, [('NVIDIA H200', '9.0')])
    for where, text in advice_everywhere():
        assert 'installing mxnet-cu117 would not help' in text, where
        assert 'install mxnet-cu117 instead' not in text, where
        assert 'NVIDIA H200 (compute capability 9.0)' in text, where


@cpu_wheel_only
def test_every_place_advises_mxnet_cu117_beside_a_supported_gpu(monkeypatch, fashion_mnist_dir):
    """The same with a stand-in RTX 3090 (8.6), for which mxnet-cu117 is the right advice."""
    fake_nvidia_smi(monkeypatch, [('NVIDIA GeForce RTX 3090', '8.6')])
    for where, text in advice_everywhere():
        assert 'install mxnet-cu117 instead of mxnet' in text, where
        assert 'NVIDIA GeForce RTX 3090 (compute capability 8.6)' in text, where
