"""Choose the device to train on: a GPU only if MXNet can really run a kernel on it.

``try_gpu`` and ``try_all_gpus`` keep the book's names and return types. The book checks a GPU
with ``nd.array([0], ctx=mx.gpu())``, which only copies memory: it passes on a GPU this MXNet
build has no kernels for (MXNet 1.9.1's CUDA 11.7 wheels carry machine code for compute
capability 5.0-8.6, which also runs on 8.9, and no PTX, so nothing runs on Hopper 9.0 and
newer), and training then crashes at its first operator. Here a GPU counts only if a small
elementwise kernel runs on it and returns the right numbers. The probe runs once per GPU per
process; when the answer is "use the CPU" the reason is printed once on stderr, one line
starting ``NoUsableGPUWarning:``. ``as_ctx_list`` turns a ``ctx`` argument (None, a device or
a list of devices) into the list of devices that training and evaluation use.
"""
import collections
import os
import shutil
import subprocess
import sys

import numpy as np
import mxnet as mx
from mxnet import nd

from .support.errors import short_message

__all__ = ['NoUsableGPUWarning', 'as_ctx_list', 'build_features', 'gpu_status', 'no_gpu_reason',
           'nvidia_smi_gpus', 'try_all_gpus', 'try_gpu']

README_HINT = "see README 'GPUs'"
SUPPORTED_COMPUTE_CAPABILITY = '5.0-8.9'   # 8.6 machine code runs on 8.9 (same major version)

# Probe input and expected output: (x + 1) * 2 on a tiny array
_PROBE_INPUT = (1.0, 2.0, 3.0)
_PROBE_EXPECTED = np.array([4.0, 6.0, 8.0], dtype=np.float32)


class NoUsableGPUWarning(UserWarning):
    """A requested GPU cannot be used, so the CPU (or fewer GPUs) will be used instead: the
    name of the one-line advice ``try_gpu`` prints on stderr (once per process)."""


GpuStatus = collections.namedtuple('GpuStatus', ['index', 'usable', 'reason'])
GpuStatus.__doc__ = """One GPU as MXNet sees it.

index: MXNet's device number (``mx.gpu(index)``); usable: True if a test kernel ran on it and
returned the right values; reason: why it is (not) usable, one line.
"""

# Per-process caches, cleared by reset_gpu_cache()
_count = None        # (number of GPUs MXNet sees, reason when it is 0 or None)
_status = {}         # GPU index -> GpuStatus
_reported = set()    # fallback messages already shown
_features = None     # mx.runtime.Features(), read once
_advised = None      # no_gpu_reason()'s text, with advice that fits nvidia-smi's GPUs


def build_features(names=('CUDA', 'CUDNN', 'NCCL', 'MKLDNN')):
    """Which optional parts this MXNet build was compiled with, e.g. {'CUDA': False, ...}.

    The plain ``mxnet`` wheel has no CUDA; ``mxnet-cu117`` has CUDA, cuDNN and NCCL.
    """
    global _features
    if _features is None:
        _features = mx.runtime.Features()
    return {name: bool(_features.is_enabled(name)) for name in names}


def _count_gpus():
    """(number of GPUs MXNet sees, reason when that number is 0, else None); cached."""
    global _count
    if _count is None:
        try:
            n = int(mx.context.num_gpus())
        except Exception as err:   # a CUDA build raises MXNetError when the driver is missing/old
            _count = (0, 'no GPU visible to MXNet: counting GPUs failed with "%s". Check the '
                         'NVIDIA driver with nvidia-smi (CUDA 11.7 needs driver 515 or newer); '
                         '%s' % (short_message(err), README_HINT))
        else:
            if n > 0:
                _count = (n, None)
            elif not build_features(('CUDA',))['CUDA']:
                _count = (0, 'no GPU visible to MXNet (this mxnet build has no CUDA; for a GPU, '
                             'install mxnet-cu117 instead of mxnet, %s)' % README_HINT)
            else:
                _count = (0, 'no GPU visible to MXNet (this mxnet build has CUDA, but CUDA '
                             'reports no device: check nvidia-smi and CUDA_VISIBLE_DEVICES)')
    return _count


def num_gpus():
    """How many GPUs MXNet sees (0 on a CPU-only build or when CUDA cannot be queried)."""
    return _count_gpus()[0]


def no_gpu_reason():
    """Why MXNet sees no GPU at all (one line), or None if it sees at least one.

    The one source of that advice (try_gpu, the loader, train and ``python -m d2l_utils`` all
    print it): on the CPU wheel it fits the GPUs nvidia-smi lists (``mxnet-cu117`` only for
    compute capability 5.0-8.9). nvidia-smi is asked once per process.
    """
    global _advised
    reason = _count_gpus()[1]
    if reason is not None and _advised is None:
        _advised = _advice_for_cpu_build(reason)
    return _advised if reason is not None else None


def run_test_kernel(ctx):
    """Run (x + 1) * 2 on ``ctx`` and return the result as numpy, shape (3,).

    ``asnumpy`` waits for the kernel, so a missing kernel image raises here and not later in
    the learner's training loop.
    """
    x = nd.array(_PROBE_INPUT, ctx=ctx)
    return ((x + 1) * 2).asnumpy()


def nvidia_smi_gpus(timeout=10):
    """GPUs as the NVIDIA driver lists them: (list of (name, compute capability), problem).

    Each entry is e.g. ``('NVIDIA H100 80GB HBM3', '9.0')``; the capability is '' if the driver
    is too old to report it. ``problem`` is None, or one line saying why the list is empty
    (nvidia-smi missing, timed out or failed). The order is nvidia-smi's, which need not be
    MXNet's (CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER change CUDA's numbering).
    """
    exe = shutil.which('nvidia-smi')
    if exe is None:
        return [], 'nvidia-smi not found on PATH'
    # drivers older than 510 do not know the compute_cap field: ask again for names only
    for fields in ('name,compute_cap', 'name'):
        try:
            out = subprocess.run([exe, '--query-gpu=' + fields, '--format=csv,noheader'],
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return [], 'nvidia-smi did not answer within %d s' % timeout
        except OSError as err:
            return [], 'nvidia-smi could not be run: %s' % err
        if out.returncode == 0:
            gpus = []
            for line in out.stdout.splitlines():
                if line.strip():
                    parts = [p.strip() for p in line.split(',')]
                    gpus.append((parts[0], parts[1] if len(parts) > 1 else ''))
            return gpus, None
    problem = short_message(out.stderr or out.stdout or 'no output')
    return [], 'nvidia-smi exited with status %d: %s' % (out.returncode, problem)


def _gpu_label(index, count):
    """' (name, compute capability X)' for MXNet's GPU ``index`` when that is certain, else ''.

    nvidia-smi numbers GPUs by PCI bus; CUDA (and so MXNet) by default fastest first, and
    CUDA_VISIBLE_DEVICES renumbers them. The name is given only when the two cannot disagree.
    """
    gpus, _ = nvidia_smi_gpus()
    if os.environ.get('CUDA_VISIBLE_DEVICES') is not None or len(gpus) != count:
        return ''
    if len(set(gpus)) > 1 and os.environ.get('CUDA_DEVICE_ORDER') != 'PCI_BUS_ID':
        return ''
    name, capability = gpus[index]
    return ' (%s, compute capability %s)' % (name, capability) if capability else ' (%s)' % name


def _probe(index):
    """GpuStatus of MXNet's GPU ``index`` (which must exist); cached per process."""
    if index not in _status:
        try:
            result = run_test_kernel(mx.gpu(index))
        except Exception as err:   # MXNetError for a missing kernel; anything from a broken runtime
            # MXNet also keeps an operator's error for the next nd.waitall(); take it now so it
            # cannot resurface later in the learner's CPU training
            try:
                nd.waitall()
            except Exception:
                pass
            reason = ('GPU %d%s is visible but MXNet cannot run a kernel on it: %s. MXNet 1.9.1 '
                      'GPU wheels support compute capability %s; %s'
                      % (index, _gpu_label(index, num_gpus()), short_message(err),
                         SUPPORTED_COMPUTE_CAPABILITY, README_HINT))
            _status[index] = GpuStatus(index, False, reason)
        else:
            if np.array_equal(np.asarray(result), _PROBE_EXPECTED):
                _status[index] = GpuStatus(index, True, 'a test kernel ran and returned the '
                                                        'right values')
            else:
                _status[index] = GpuStatus(
                    index, False, 'GPU %d%s ran a test kernel but returned %s instead of %s; '
                    '%s' % (index, _gpu_label(index, num_gpus()), np.asarray(result).tolist(),
                            _PROBE_EXPECTED.tolist(), README_HINT))
    return _status[index]


def gpu_status():
    """A GpuStatus (index, usable, reason) for every GPU MXNet sees; [] if it sees none.

    Probes each GPU once per process; emits no warning (``no_gpu_reason`` says why the list
    is empty).
    """
    return [_probe(i) for i in range(num_gpus())]


def _report_once(message):
    if message not in _reported:
        _reported.add(message)
        # Advice for the learner, not a bug report: one line on stderr, without the file and
        # line of the code that asked (in Jupyter an ipykernel temporary path). Printed, not
        # warned: formatting it as one line would mean changing warnings.formatwarning for the
        # whole process.
        print(f'{NoUsableGPUWarning.__name__}: {message}', file=sys.stderr)


def _advice_for_cpu_build(reason):
    """``reason`` (MXNet sees no GPU), with advice that fits the GPUs nvidia-smi lists.

    The CPU wheel's reason advises mxnet-cu117; that is right only for a GPU of compute
    capability 5.0-8.9. For other GPUs (Hopper and newer) it would be a large install that
    cannot work, so the advice says so instead.
    """
    if build_features(('CUDA',))['CUDA'] or 'install mxnet-cu117' not in reason:
        return reason   # not the CPU wheel's advice (e.g. counting GPUs failed): keep it
    gpus, _ = nvidia_smi_gpus()
    if not gpus:   # no NVIDIA driver (or nvidia-smi) here: the generic advice stands
        return reason
    low, high = (tuple(int(p) for p in end.split('.'))
                 for end in SUPPORTED_COMPUTE_CAPABILITY.split('-'))

    def capability(cap):
        try:
            return tuple(int(p) for p in cap.split('.'))
        except ValueError:   # '' from a driver older than 510
            return None

    listed = ', '.join('%s (compute capability %s)' % (name, cap or 'unknown')
                       for name, cap in gpus)
    caps = [capability(cap) for _, cap in gpus]
    if any(cap is not None and low <= cap <= high for cap in caps):
        return ('no GPU visible to MXNet: this mxnet build has no CUDA. nvidia-smi lists %s; '
                'for a GPU of compute capability %s, install mxnet-cu117 instead of mxnet, %s'
                % (listed, SUPPORTED_COMPUTE_CAPABILITY, README_HINT))
    if all(cap is not None for cap in caps):
        return ('no GPU visible to MXNet: this mxnet build has no CUDA, and installing '
                'mxnet-cu117 would not help: nvidia-smi lists %s, and MXNet 1.9.1 GPU wheels '
                'run only on compute capability %s. No MXNet 1.9.1 build runs on %s: train '
                'on the CPU, or use the PyTorch appendix (notebook A), %s'
                % (listed, SUPPORTED_COMPUTE_CAPABILITY,
                   'this GPU' if len(gpus) == 1 else 'these GPUs', README_HINT))
    return ('no GPU visible to MXNet: this mxnet build has no CUDA. nvidia-smi lists %s; '
            'mxnet-cu117 runs only on compute capability %s (and needs driver 515 or newer), so '
            'look the capability up before installing it, %s'
            % (listed, SUPPORTED_COMPUTE_CAPABILITY, README_HINT))


def try_gpu(i=0):
    """Return ``mx.gpu(i)`` if MXNet can run a kernel on GPU i, else ``mx.cpu()``.

    Like the book's ``try_gpu``, but a GPU that only accepts memory copies does not count.
    When it returns the CPU it says why, once per process (a NoUsableGPUWarning line on
    stderr).
    """
    count = num_gpus()
    if count == 0:
        _report_once('Using the CPU: ' + no_gpu_reason() + '.')
        return mx.cpu()
    if not 0 <= i < count:
        _report_once('Using the CPU: GPU %d was asked for, but MXNet sees %d GPU(s), numbered '
                     '0 to %d.' % (i, count, count - 1))
        return mx.cpu()
    status = _probe(i)
    if status.usable:
        return mx.gpu(i)
    _report_once('Using the CPU: ' + status.reason + '.')
    return mx.cpu()


def try_all_gpus():
    """Return ``[mx.gpu(i), ...]`` for every GPU MXNet can run a kernel on, else ``[mx.cpu()]``.

    GPUs that fail the test kernel are left out, and said so once per process.
    """
    if num_gpus() == 0:
        _report_once('Using the CPU: ' + no_gpu_reason() + '.')
        return [mx.cpu()]
    statuses = gpu_status()
    usable = [mx.gpu(s.index) for s in statuses if s.usable]
    for s in statuses:
        if not s.usable:
            _report_once(('Leaving out GPU %d: ' % s.index if usable else 'Using the CPU: ')
                         + s.reason + '.')
    return usable or [mx.cpu()]


def reset_gpu_cache():
    """Forget the probe results and which messages were shown (for tests)."""
    global _count, _features, _advised
    _count, _features, _advised = None, None, None
    _status.clear()
    _reported.clear()


def as_ctx_list(ctx, caller='train'):
    """The devices to use, as a list: None -> [mx.cpu()], a device -> [device], a list -> itself.

    Raises TypeError for anything that is not an ``mx.Context`` (or a list of them) and
    ValueError for an empty list or a device listed twice; ``caller`` names the function in
    the message.
    """
    if ctx is None:
        return [mx.cpu()]
    if isinstance(ctx, mx.Context):
        return [ctx]
    if not isinstance(ctx, (list, tuple)):
        raise TypeError('%s: ctx must be a device such as mx.cpu() or mx.gpu(0), or a list of '
                        'devices such as [mx.cpu(0), mx.cpu(1)]; got %r (a %s).'
                        % (caller, ctx, type(ctx).__name__))
    ctx = list(ctx)
    if not ctx:
        raise ValueError('%s: ctx is an empty list of devices; give at least one, e.g. '
                         '[mx.cpu()] or d2l_utils.try_all_gpus().' % caller)
    for c in ctx:
        if not isinstance(c, mx.Context):
            raise TypeError('%s: every entry of ctx must be a device such as mx.cpu(1) or '
                            'mx.gpu(0); got %r (a %s) in %r.'
                            % (caller, c, type(c).__name__, ctx))
    repeated = sorted({str(c) for c in ctx if ctx.count(c) > 1})
    if repeated:
        raise ValueError('%s: ctx lists %s more than once (%r); each device takes one part of '
                         'the batch, so list each device once, e.g. [mx.cpu(0), mx.cpu(1)].'
                         % (caller, ', '.join(repeated), ctx))
    return ctx
