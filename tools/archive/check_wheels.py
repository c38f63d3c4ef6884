"""Ask the package index which platforms can install the course's pinned requirements.

Archived: MXNet 1.9.1 is the last MXNet release, so the table this prints cannot change. Its
last output is check_wheels_output.md, next to this file. Kept for the record; not tested, not
linted, not maintained.

    python tools/archive/check_wheels.py            # print a markdown table (about 2 minutes)
    python tools/archive/check_wheels.py --out /tmp/wheels.md
    python tools/archive/check_wheels.py --no-resolve   # skip the full dependency resolution

A maintainer's script: it needs the package index (PyPI by default), so it is not part of the
offline test suite. For each platform and each ``name==version`` line of requirements.txt it
runs

    pip download --only-binary=:all: --platform TAG --python-version 3.11 --no-deps -d DIR name==version

and reports the wheel pip picked. pip reads only the index given here: the local pip
configuration (extra indexes, find-links folders, constraints) is switched off, so a wheel that
sits only on this machine cannot make a platform look supported.

For an mxnet wheel it also lists the shared libraries the wheel's binaries load that neither the
wheel nor the platform's baseline provides (for Linux, the manylinux2014 policy of PEP 599): a
wheel that exists but cannot be imported is not a route. Where the pinned version has no wheel it
names the newest version that has one, and says when that wheel is labelled for any platform but
holds binaries for one. Then it resolves the whole pinned set with its dependencies as wheels
(``pip install --dry-run --ignore-installed --report``, metadata only, nothing installed).
"""
import argparse
import datetime
import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]   # the repository (this file: tools/archive/)
PYTHON_VERSION = '3.11'
DEFAULT_INDEX = 'https://pypi.org/simple'

# glibc 2.36 is Debian 12's (the container and CI); pip expands manylinux2014 to 2010 and 1 itself.
GLIBC_MINORS = range(17, 37)


def _linux_tags(arch):
    return ['manylinux2014_%s' % arch] + ['manylinux_2_%d_%s' % (m, arch) for m in GLIBC_MINORS]


# (label, the --platform tags pip may pick from). pip expands a macOS tag to every older version.
PLATFORMS = (
    ('Linux x86-64', _linux_tags('x86_64')),
    ('Linux aarch64', _linux_tags('aarch64')),
    ('macOS Intel', ['macosx_15_0_x86_64']),
    ('macOS Apple Silicon', ['macosx_15_0_arm64']),
    ('Windows x86-64', ['win_amd64']),
    ('Windows on Arm', ['win_arm64']),
)
# Packages whose binaries are checked for shared libraries the system must provide.
INSPECT = ('mxnet',)

# PEP 599 (manylinux2014): the libraries a manylinux wheel may expect on the system.
MANYLINUX2014_LIBS = {
    'libgcc_s.so.1', 'libstdc++.so.6', 'libm.so.6', 'libdl.so.2', 'librt.so.1', 'libc.so.6',
    'libnsl.so.1', 'libutil.so.1', 'libpthread.so.0', 'libresolv.so.2', 'libX11.so.6',
    'libXext.so.6', 'libXrender.so.1', 'libICE.so.6', 'libSM.so.6', 'libGL.so.1',
    'libgobject-2.0.so.0', 'libgthread-2.0.so.0', 'libglib-2.0.so.0'}
ELF_MACHINES = {0x03: 'x86', 0x3E: 'x86-64', 0xB7: 'aarch64', 0x28: 'arm'}
MACHO_CPUS = {0x01000007: 'x86-64', 0x0100000C: 'arm64'}
COMPILED_SOURCES = ('.c', '.cc', '.cpp', '.cxx', '.pyx', '.f', '.f90', '.cu', '.rs')
# pip settings that would add indexes, local wheels or constraints to what the index offers
PIP_ENV_DROPPED = ('PIP_INDEX_URL', 'PIP_EXTRA_INDEX_URL', 'PIP_FIND_LINKS', 'PIP_NO_INDEX',
                   'PIP_CONSTRAINT', 'PIP_REQUIREMENT', 'PIP_ONLY_BINARY', 'PIP_NO_BINARY',
                   'PIP_PREFER_BINARY', 'PIP_PRE')


class PipFailed(Exception):
    """pip exited non-zero; the message is pip's own last error line."""


class PipTimedOut(PipFailed):
    """pip gave no answer within the time limit (slow index, or a long dependency search)."""


def pinned_requirements(path):
    """The ``name==version`` lines of a requirements file, in order: [('mxnet', '1.9.1'), ...]."""
    pins = []
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        match = re.fullmatch(r'([A-Za-z0-9_.-]+)==([^\s;]+)', line)
        if match:
            pins.append((match.group(1), match.group(2)))
    return pins


def pip_env():
    env = {k: v for k, v in os.environ.items() if k not in PIP_ENV_DROPPED}
    env['PIP_CONFIG_FILE'] = os.devnull     # pip then reads no configuration file at all
    env['PIP_DISABLE_PIP_VERSION_CHECK'] = '1'
    return env


def run_pip(args, timeout):
    """Run ``python -m pip ARGS``; return stdout, or raise PipFailed with pip's error line."""
    try:
        out = subprocess.run([sys.executable, '-m', 'pip'] + args, env=pip_env(),
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PipTimedOut('no answer within %d s (pip %s)' % (timeout, args[0])) from None
    if out.returncode != 0:
        errors = [l for l in out.stderr.splitlines() if l.startswith('ERROR:')]
        raise PipFailed(errors[-1][len('ERROR: '):] if errors else
                        (out.stderr.strip().splitlines() or ['pip exited %d' % out.returncode])[-1])
    return out.stdout


def target_args(tags):
    args = ['--only-binary=:all:', '--python-version', PYTHON_VERSION]
    for tag in tags:
        args += ['--platform', tag]
    return args


def download_wheel(spec, tags, dest, index, timeout):
    """Download the wheel pip picks for ``spec`` on ``tags``; return its path."""
    os.makedirs(dest, exist_ok=True)
    before = set(os.listdir(dest))
    run_pip(['download', '--no-deps', '-d', dest, '--index-url', index, spec]
            + target_args(tags), timeout)
    new = sorted(set(os.listdir(dest)) - before) or sorted(os.listdir(dest))
    wheels = [n for n in new if n.endswith('.whl')]
    if not wheels:
        raise PipFailed('pip reported success but saved no wheel in %s' % dest)
    return os.path.join(dest, wheels[0])


def newest_wheel_version(name, tags, index, timeout):
    """The newest version of ``name`` with a wheel for ``tags``, or None."""
    try:
        out = run_pip(['index', 'versions', name, '--index-url', index] + target_args(tags),
                      timeout)
    except PipFailed:
        return None
    match = re.search(r'Available versions: ([^\s,]+)', out)
    return match.group(1) if match else None


def wheel_tag(path):
    """'py3-none-manylinux2014_aarch64' from 'mxnet-1.9.1-py3-none-manylinux2014_aarch64.whl'."""
    return '-'.join(os.path.basename(path)[:-len('.whl')].split('-')[-3:])


# ---- what a binary loads -------------------------------------------------------------------

def elf_needed(data):
    """(machine, [DT_NEEDED names]) of a 64-bit little-endian ELF image, via program headers."""
    if data[4] != 2 or data[5] != 1:
        return 'ELF (not 64-bit little-endian)', []
    machine = ELF_MACHINES.get(struct.unpack_from('<H', data, 18)[0], 'unknown')
    phoff, = struct.unpack_from('<Q', data, 32)
    phentsize, phnum = struct.unpack_from('<HH', data, 54)
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
            '<IIQQQQ', data, phoff + i * phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_filesz, p_offset))
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return machine, []
    entries = [struct.unpack_from('<qQ', data, dynamic[0] + 16 * i)
               for i in range(dynamic[1] // 16)]
    strtab = next((v for tag, v in entries if tag == 5), None)      # DT_STRTAB
    if strtab is None:
        return machine, []
    base = next((off + strtab - va for va, size, off in loads if va <= strtab < va + size), None)
    needed = []
    for tag, value in entries:
        if tag == 1 and base is not None:                             # DT_NEEDED
            end = data.index(b'\0', base + value)
            needed.append(data[base + value:end].decode())
    return machine, needed


def macho_needed(data):
    """(cpu, [load-command dylib paths]) of a thin 64-bit little-endian Mach-O image."""
    cpu = MACHO_CPUS.get(struct.unpack_from('<i', data, 4)[0], 'unknown')
    ncmds, = struct.unpack_from('<I', data, 16)
    offset, needed = 32, []
    for _ in range(ncmds):
        cmd, size = struct.unpack_from('<II', data, offset)
        if cmd in (0xC, 0x18 | 0x80000000, 0x1F | 0x80000000):   # LOAD_DYLIB, WEAK, REEXPORT
            name_at, = struct.unpack_from('<I', data, offset + 8)
            needed.append(data[offset + name_at:offset + size].split(b'\0')[0].decode())
        offset += size
    return cpu, needed


def binaries(wheel):
    """For each ELF or Mach-O file in the wheel: (member name, format, arch, needed)."""
    found = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            with zf.open(info) as f:
                head = f.read(4)
            if head == b'\x7fELF':
                arch, needed = elf_needed(zf.read(info))
                found.append((info.filename, 'ELF', arch, needed))
            elif head == b'\xcf\xfa\xed\xfe':
                arch, needed = macho_needed(zf.read(info))
                found.append((info.filename, 'Mach-O', arch, needed))
    return found


def system_needs(found):
    """Shared libraries that neither the wheel nor the platform baseline provides."""
    inside = {os.path.basename(name) for name, _, _, _ in found}
    missing = set()
    for _, fmt, _, needed in found:
        for lib in needed:
            if fmt == 'ELF':
                if lib not in inside and lib not in MANYLINUX2014_LIBS \
                        and not lib.startswith('ld-linux'):
                    missing.add(lib)
            elif not lib.startswith(('/usr/lib/', '/System/Library/', '@')):
                missing.add(lib)
    return sorted(missing)


def describe_wheel(path, inspect):
    """A table cell for a wheel: its tag, and what its binaries need or betray."""
    tag = wheel_tag(path)
    text = '`%s`' % tag
    if not inspect and not tag.endswith('-any'):
        return text
    found = binaries(path)
    if tag.endswith('-any') and found:
        kinds = sorted({'%s %s' % (fmt, arch) for _, fmt, arch, _ in found})
        text += ', labelled for any platform but holds %s binaries' % ' and '.join(kinds)
    elif inspect and not found:
        text += '; its binaries were not inspected (only ELF and Mach-O are)'
    elif inspect:
        needs = system_needs(found)
        text += '; needs from the system: %s' % (', '.join('`%s`' % n for n in needs)
                                                 if needs else 'nothing beyond the OS baseline')
    return text


# ---- sdists and the full resolution --------------------------------------------------------

def describe_sdist(name, version, dest, index, timeout):
    """A note for a pin with no wheel anywhere: is its source distribution pure Python?"""
    os.makedirs(dest, exist_ok=True)
    try:
        run_pip(['download', '--no-deps', '--no-binary=:all:', '-d', dest, '--index-url', index,
                 '%s==%s' % (name, version)], timeout)
    except PipFailed as err:
        return '`%s==%s`: no wheel for any platform, and no source distribution either (%s)' % (
            name, version, err)
    archive = next(os.path.join(dest, n) for n in os.listdir(dest))
    with tarfile.open(archive) if archive.endswith(('.tar.gz', '.tgz')) else \
            zipfile.ZipFile(archive) as arc:
        names = arc.getnames() if isinstance(arc, tarfile.TarFile) else arc.namelist()
    compiled = [n for n in names if n.lower().endswith(COMPILED_SOURCES)]
    kind = ('holds compiled sources (%s), so it needs a compiler' % ', '.join(compiled[:3])
            if compiled else 'pure Python (no C, C++, Cython, Fortran or Rust sources), so pip '
            'builds it on any platform')
    return '`%s==%s` has no wheel, only a source distribution (`%s`): %s.' % (
        name, version, os.path.basename(archive), kind)


def resolve(specs, tags, workdir, index, timeout):
    """Resolve ``specs`` with their dependencies as wheels for ``tags``; a table cell."""
    req = os.path.join(workdir, 'requirements.txt')
    report = os.path.join(workdir, 'report.json')
    pathlib.Path(req).write_text('\n'.join(specs) + '\n')
    try:
        run_pip(['install', '--dry-run', '--ignore-installed', '--quiet', '--target',
                 os.path.join(workdir, 'target'), '--index-url', index, '--report', report,
                 '-r', req] + target_args(tags), timeout)
    except PipTimedOut as err:
        return 'not known: %s' % err
    except PipFailed as err:
        return 'fails: %s' % err
    count = len(json.loads(pathlib.Path(report).read_text())['install'])
    return 'yes: %d packages' % count


# ---- the table -----------------------------------------------------------------------------

def check(pins, platforms, index, timeout, resolve_all, workdir, log):
    """The markdown report as a string."""
    wheel_found = {}      # (platform label, name) -> True/False
    rows = []
    for label, tags in platforms:
        cells = []
        for name, version in pins:
            log('%s: %s==%s' % (label, name, version))
            dest = os.path.join(workdir, re.sub(r'\W+', '_', label), name)
            try:
                path = download_wheel('%s==%s' % (name, version), tags, dest, index, timeout)
            except PipFailed as err:
                wheel_found[label, name] = False
                newest = newest_wheel_version(name, tags, index, timeout)
                if newest is None:
                    cells.append('**none** (%s)' % err if 'No matching' not in err.args[0]
                                 else '**none**')
                    continue
                try:
                    old = describe_wheel(download_wheel('%s==%s' % (name, newest), tags,
                                                        dest + '_newest', index, timeout),
                                         name in INSPECT)
                except PipFailed as err2:
                    old = '(%s)' % err2
                cells.append('**none**; newest wheel: %s %s' % (newest, old))
            else:
                wheel_found[label, name] = True
                cells.append(describe_wheel(path, name in INSPECT))
        if resolve_all:
            specs = ['%s==%s' % p for p in pins if wheel_found[label, p[0]]]
            left_out = [p[0] for p in pins if not wheel_found[label, p[0]]]
            log('%s: resolving %s' % (label, ', '.join(specs)))
            rwork = os.path.join(workdir, re.sub(r'\W+', '_', label) + '_resolve')
            os.makedirs(rwork, exist_ok=True)
            cell = resolve(specs, tags, rwork, index, timeout)
            if left_out:
                cell += ' (without %s)' % ', '.join(left_out)
            cells.append(cell)
        rows.append((label, cells))

    no_wheel_anywhere = [(n, v) for n, v in pins
                         if not any(wheel_found[label, n] for label, _ in platforms)]
    notes = [describe_sdist(n, v, os.path.join(workdir, 'sdist', n), index, timeout)
             for n, v in no_wheel_anywhere]
    shown = [p for p in pins if p not in no_wheel_anywhere]
    header = ['platform'] + ['`%s==%s`' % p for p in shown]
    if resolve_all:
        header.append('all of these with their dependencies, as wheels')
    keep = [i for i, p in enumerate(pins) if p not in no_wheel_anywhere]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for label, cells in rows:
        picked = [cells[i] for i in keep] + (cells[len(pins):] if resolve_all else [])
        lines.append('| ' + ' | '.join([label] + picked) + ' |')

    pip_version = run_pip(['--version'], timeout).split()[1]
    when = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    intro = ('Wheels for Python %s on %s, checked %s with pip %s by `python tools/archive/check_wheels.py` '
             '(Linux: glibc up to 2.%d; macOS: 15 and older).'
             % (PYTHON_VERSION, 'PyPI' if index == DEFAULT_INDEX else index, when, pip_version,
                GLIBC_MINORS[-1]))
    return '\n'.join([intro, ''] + lines + [''] + notes) + '\n'


def write_atomically(path, text):
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.' + path.name + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--requirements', default=str(ROOT / 'requirements.txt'),
                        help='the file whose name==version lines are checked')
    parser.add_argument('--index-url', default=DEFAULT_INDEX, help='default: %(default)s')
    parser.add_argument('--timeout', type=int, default=180,
                        help='seconds each pip call may take (default: %(default)s)')
    parser.add_argument('--no-resolve', action='store_true',
                        help='skip resolving the whole set with its dependencies')
    parser.add_argument('--out', help='also write the table to this file (atomically)')
    args = parser.parse_args(argv)
    pins = pinned_requirements(args.requirements)
    if not pins:
        parser.error('%s has no name==version line to check' % args.requirements)
    if args.out and not pathlib.Path(args.out).resolve().parent.is_dir():
        parser.error('--out %s: the folder %s does not exist'
                     % (args.out, pathlib.Path(args.out).resolve().parent))

    def log(msg):
        print('...', msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix='check_wheels.') as workdir:
        table = check(pins, PLATFORMS, args.index_url, args.timeout, not args.no_resolve,
                      workdir, log)
    print(table, end='')
    if args.out:
        write_atomically(args.out, table)


if __name__ == '__main__':
    main()
