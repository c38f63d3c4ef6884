"""An environment report a learner can paste into a question: ``python -m d2l_utils``.

It lists versions, what this MXNet build can do, which GPUs MXNet can run on, and where the
Fashion-MNIST files were found. It downloads nothing and changes nothing.
"""
import os
import platform
import sys
from importlib import metadata

from . import device
from . import fashion_mnist_files as files

# Distributions whose versions matter for the course (label, distribution name)
PACKAGES = (('numpy', 'numpy'), ('d2lzh', 'd2lzh'),
            ('matplotlib', 'matplotlib'), ('IPython', 'ipython'),
            ('matplotlib-inline', 'matplotlib-inline'))
# Environment variables that change where data, devices and libraries come from
ENV_VARS = ('FASHION_MNIST_DIR', 'MXNET_HOME', 'CUDA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER',
            'LD_LIBRARY_PATH', 'MPLBACKEND')


def _line(label, text):
    """One report line: the label in a fixed-width column, then the text."""
    return '%-17s %s' % (label, text)


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return 'not installed'


def _mxnet_distributions():
    """Installed distributions that provide the ``mxnet`` package: ['mxnet 1.9.1', ...].

    ``mxnet`` and ``mxnet-cu117`` overwrite each other's files; more than one means a broken
    install.
    """
    found = set()
    for dist in metadata.distributions():
        name = (dist.metadata['Name'] or '').lower().replace('_', '-')
        if name == 'mxnet' or name.startswith(('mxnet-cu', 'mxnet-mkl', 'mxnet-native')):
            found.add('%s %s' % (name, dist.version))
    return sorted(found)


def _python_lines():
    return [_line('Python', '%s (%s) at %s' % (platform.python_version(),
                                               platform.python_implementation(), sys.executable)),
            _line('Platform', '%s (%s)' % (platform.platform(), platform.machine()))]


def _package_lines():
    import mxnet as mx   # already imported by the package; here for its version and path
    dists = _mxnet_distributions()
    # the GPU wheel is the distribution mxnet-cu117, so ask the module for its version
    lines = [_line('mxnet', '%s (distribution %s) at %s'
                   % (mx.__version__, ', '.join(dists) or 'unknown', os.path.dirname(mx.__file__)))]
    if len(dists) > 1:
        lines.append(_line('WARNING', 'several MXNet distributions are installed (%s); they '
                           'overwrite each other. Uninstall all of them, then install one '
                           '(mxnet, or mxnet-cu117 for a GPU).' % ', '.join(dists)))
    lines.extend(_line(label, _version(dist)) for label, dist in PACKAGES)
    return lines


def _gpu_lines():
    features = device.build_features()
    yes_no = {True: 'yes', False: 'no'}
    lines = [_line('MXNet build', 'CUDA %s, cuDNN %s, NCCL %s, MKLDNN %s'
                   % tuple(yes_no[features[k]] for k in ('CUDA', 'CUDNN', 'NCCL', 'MKLDNN')))]
    statuses = device.gpu_status()
    if not statuses:
        lines.append(_line('MXNet GPUs', 'none: %s' % device.no_gpu_reason()))
    for s in statuses:
        lines.append(_line('MXNet GPU %d' % s.index,
                           ('usable: ' if s.usable else 'NOT usable: ') + s.reason))
    gpus, problem = device.nvidia_smi_gpus()
    if problem:
        lines.append(_line('NVIDIA driver', problem))
    for i, (name, capability) in enumerate(gpus):
        lines.append(_line('nvidia-smi GPU %d' % i, '%s, compute capability %s'
                           % (name, capability or 'not reported (driver older than 510)')))
    return lines


def _local_copies(folder, name):
    """Paths of ``name`` in ``folder``, gzip-compressed or not, that exist."""
    paths = [os.path.join(folder, n) for n in (name, name[:-len('.gz')])]
    return [p for p in paths if os.path.isfile(p)]


def _data_lines():
    """For each Fashion-MNIST file: the first folder with a verified copy, and bad copies.

    The folders are the ones loading searches, in its order; nothing is downloaded.
    """
    lines = [_line('searched', '; '.join('%s (%s)' % pair for pair in files.candidate_dirs()))]
    for name in files.FILES:
        found, bad = None, []
        for label, folder in files.candidate_dirs():
            for path in _local_copies(folder, name):
                try:
                    files.read_verified(path, name)
                except (files.CorruptFileError, OSError) as err:
                    bad.append('%s: %s' % (label, err))
                else:
                    found = '%s: verified copy in %s (%s)' % (name, folder, label)
                    break
            if found:
                break
        lines.append(found or '%s: not found locally (would download on first use)' % name)
        lines.extend('  damaged copy, skipped when loading: %s' % b for b in bad)
    return lines


def _env_lines():
    return ['%s=%s' % (var, os.environ[var]) for var in ENV_VARS if var in os.environ] or [
        '(none of %s is set)' % ', '.join(ENV_VARS)]


def environment_report():
    """The report as one string (sections of aligned lines); downloads nothing.

    A section that fails says so in place of its lines, so the rest of the report still helps.
    """
    from . import __version__
    sections = [('d2l_utils %s environment report' % __version__, _python_lines),
                ('Packages', _package_lines), ('GPUs', _gpu_lines),
                ('Fashion-MNIST files', _data_lines), ('Environment variables', _env_lines)]
    out = []
    for title, make_lines in sections:
        try:
            lines = make_lines()
        except Exception as err:   # a diagnostic tool should report its own failure, not stop
            lines = ['could not collect this section: %s: %s' % (type(err).__name__, err)]
        out.append('== %s ==' % title)
        out.extend('  ' + line for line in lines)
    return '\n'.join(out)
