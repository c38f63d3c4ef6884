"""An environment report a learner can paste into a question: ``python -m d2l_utils``.

It lists versions, the platform and the install route for it, what this MXNet build can do,
which GPUs MXNet can run on, and where the Fashion-MNIST files were found. It downloads nothing
and changes nothing.
"""
import os
import platform
import sys
from importlib import metadata

from .. import device
from . import fashion_mnist_files as files

__all__ = ['environment_report']

COURSE_MXNET = '1.9.1'   # the version requirements.txt pins and the notebooks were run with
CONTAINER = ('the container (README.md, "Which computers"): docker build -t d2l-batch-norm . '
             'then docker run --rm -it --init -p 8888:8888 d2l-batch-norm')
# (platform.system(), platform.machine()) -> (PyPI has an mxnet 1.9.1 wheel, what to do).
# tools/check_wheels.py re-checks the wheels; README.md says how each route was verified.
ROUTES = {
    ('Linux', 'x86_64'): (
        True, 'Linux x86-64: PyPI has the mxnet 1.9.1 wheel; tools/install.sh installs '
        'everything (it is what CI runs).'),
    ('Linux', 'aarch64'): (
        True, 'Linux aarch64: PyPI has the mxnet 1.9.1 wheel, but it needs Arm Performance '
        'Libraries that it does not ship; tools/install.sh installs OpenBLAS in their place '
        '(tools/fix_mxnet_aarch64.sh).'),
    ('Darwin', 'x86_64'): (
        True, 'macOS Intel: PyPI has the mxnet 1.9.1 wheel; install with tools/install.sh or '
        'the README\'s one-line command.'),
    ('Darwin', 'aarch64'): (
        False, 'macOS on Apple Silicon: PyPI has no mxnet 1.9.1 wheel for it (`pip install '
        'mxnet` finds only 1.6.0, whose binaries are Linux x86-64 ones that cannot load). Use '
        + CONTAINER + '; Docker Desktop runs it as linux/arm64.'),
    ('Windows', 'x86_64'): (
        False, 'Windows: PyPI has no mxnet 1.9.1 wheel for it (the newest is 1.7.0.post2). Use '
        'WSL 2 with Ubuntu and follow the Linux instructions inside it, or use '
        + CONTAINER + '.'),
    ('Windows', 'aarch64'): (
        False, 'Windows on Arm: PyPI has no mxnet 1.9.1 wheel for it. Use WSL 2 (that is Linux '
        'aarch64: follow the Linux instructions inside it), or use ' + CONTAINER + '.'),
}
# platform.machine() names one processor differently on each system (arm64 on macOS, ARM64 on
# Windows, aarch64 on Linux)
MACHINE_NAMES = {'x86_64': 'x86_64', 'amd64': 'x86_64', 'x64': 'x86_64',
                 'aarch64': 'aarch64', 'arm64': 'aarch64'}

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


def platform_route(system=None, machine=None):
    """(has_wheel, advice) for a platform, default this one.

    system, machine: as ``platform.system()`` and ``platform.machine()`` return them, e.g.
    ('Linux', 'x86_64'), ('Darwin', 'arm64'), ('Windows', 'AMD64').
    has_wheel: whether PyPI has an mxnet 1.9.1 wheel for Python 3.11 there; advice: one
    sentence saying what to do there.
    """
    system = platform.system() if system is None else system
    machine = platform.machine() if machine is None else machine
    key = (system, MACHINE_NAMES.get(machine.lower(), machine))
    if key in ROUTES:
        return ROUTES[key]
    return False, ('%s on %s: PyPI has no mxnet 1.9.1 wheel for it. Use %s, or a Linux x86-64 '
                   'machine.' % (system or 'this system', machine or 'this processor', CONTAINER))


def _where():
    """' (WSL 2)', ' (in a container)' or '': what the platform string alone does not say."""
    if platform.system() == 'Linux' and 'microsoft' in platform.release().lower():
        return ' (WSL 2)'
    if os.path.exists('/.dockerenv') or os.path.exists('/run/.containerenv'):
        return ' (in a container)'
    return ''


def _python_lines():
    has_wheel, advice = platform_route()
    return [_line('Python', '%s (%s) at %s' % (platform.python_version(),
                                               platform.python_implementation(), sys.executable)),
            _line('Platform', '%s (%s)%s' % (platform.platform(), platform.machine(), _where())),
            _line('Route' if has_wheel else 'WARNING', advice)]


def _package_lines():
    import mxnet as mx   # already imported by the package; here for its version and path
    dists = _mxnet_distributions()
    # the GPU wheel is the distribution mxnet-cu117, so ask the module for its version
    lines = [_line('mxnet', '%s (distribution %s) at %s'
                   % (mx.__version__, ', '.join(dists) or 'unknown', os.path.dirname(mx.__file__)))]
    if mx.__version__ != COURSE_MXNET:
        lines.append(_line('WARNING', 'this is mxnet %s; the course pins mxnet %s '
                           '(requirements.txt), and its notebooks and tests run with that. %s'
                           % (mx.__version__, COURSE_MXNET, platform_route()[1])))
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


def _data_lines():
    """For each Fashion-MNIST file: the first folder with a verified copy, and unusable copies.

    The same search as loading (``search_local``), so what this reports as skipped is what
    loading skips; nothing is downloaded.
    """
    lines = [_line('searched', '; '.join('%s (%s)' % pair for pair in files.candidate_dirs()))]
    for name in files.FILES:
        found, _, skipped = files.search_local(name)
        lines.append('%s: verified copy in %s' % (name, found[1]) if found else
                     '%s: not found locally (would download on first use)' % name)
        lines.extend('  skipped when loading: %s' % line for line in skipped)
    if 'MXNET_HOME' in os.environ and not os.environ['MXNET_HOME']:
        lines.append("  MXNET_HOME is set but empty: treated as unset (MXNet's cache is %s)"
                     % files.mxnet_cache_dir())
    return lines


def _env_lines():
    return ['%s=%s' % (var, os.environ[var]) for var in ENV_VARS if var in os.environ] or [
        '(none of %s is set)' % ', '.join(ENV_VARS)]


def environment_report():
    """The report as one string (sections of aligned lines); downloads nothing.

    A section that fails says so in place of its lines, so the rest of the report still helps.
    """
    from .. import __version__
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
