"""Find, verify, download and decode the four Fashion-MNIST IDX files.

Sources are tried in a fixed order (see ``fetch_file``). Every file is verified by the
SHA-256 of its *decompressed* content: mirrors (and Debian's package) recompress the ``.gz``
files, so archive checksums differ between sources while the content does not.
No function here imports mxnet: the files are plain numpy arrays.

Downloads are written atomically (a hidden ``.part`` temp file beside the target, renamed once
verified) and have an overall deadline as well as a per-read timeout. A ``.part`` file left by
a killed download is removed by the next ``fetch_file``.
"""
import functools
import gzip
import hashlib
import http.client
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
import zlib

import numpy as np

__all__ = ['ENV_VAR', 'FILES', 'CorruptFileError', 'DataUnavailableError', 'candidate_dirs',
           'download', 'fetch_file', 'load_arrays', 'read_verified', 'search_local']

ENV_VAR = 'FASHION_MNIST_DIR'
DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'

# file name -> (SHA-256 of the decompressed IDX bytes, decompressed size in bytes)
FILES = {
    'train-images-idx3-ubyte.gz': (
        'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888', 47040016),
    'train-labels-idx1-ubyte.gz': (
        'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9', 60008),
    't10k-images-idx3-ubyte.gz': (
        '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b', 7840016),
    't10k-labels-idx1-ubyte.gz': (
        '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34', 10008),
}

MIRRORS = (
    # MXNet's own dataset repository (what gluon.data.vision.FashionMNIST downloads from)
    'https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/gluon/dataset/fashion-mnist/',
    # Zalando Research's original host
    'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
)

# Seconds one file's download may take in all (the 26 MB training images need about 3 minutes
# at 150 kB/s). A download that has not finished by then is given up: a mirror that trickles
# bytes would otherwise never trip the per-read timeout.
DOWNLOAD_DEADLINE = 900


class DataUnavailableError(RuntimeError):
    """No source gave a complete, verified copy of a Fashion-MNIST file."""


class CorruptFileError(ValueError):
    """A file exists but its content is not the expected Fashion-MNIST file."""


class CacheNotWritableError(OSError):
    """The download folder cannot be created or written (permissions, read-only, disk full)."""


def mxnet_cache_dir():
    """MXNet's dataset cache: ``$MXNET_HOME/datasets/fashion-mnist`` (default ``~/.mxnet``).

    An MXNET_HOME that is set but empty counts as unset: taken literally it would put the cache
    in whatever folder Python runs in (a download would land beside the notebooks).
    """
    home = os.environ.get('MXNET_HOME') or os.path.join('~', '.mxnet')
    return os.path.join(os.path.expanduser(home), 'datasets', 'fashion-mnist')


def candidate_dirs(root=None):
    """The local folders searched, in order, as (label, path) pairs."""
    dirs = []
    if root is not None:
        dirs.append(('root argument', os.path.expanduser(str(root))))
    if os.environ.get(ENV_VAR):
        dirs.append(('$' + ENV_VAR, os.path.expanduser(os.environ[ENV_VAR])))
    dirs.append(("MXNet's cache", mxnet_cache_dir()))
    dirs.append(("Debian's dataset-fashion-mnist", DEBIAN_DIR))
    return dirs


def read_verified(path, name):
    """Return the decompressed bytes of ``path`` if they are the expected content of ``name``.

    ``path`` may be gzip-compressed or already decompressed. Raises CorruptFileError (with
    what was expected and what was found) for a truncated, damaged or wrong file.
    """
    with open(path, 'rb') as f:
        raw = f.read()
    return _verified(raw, name, path,
                     'Delete it (or point %s elsewhere) and load again.' % ENV_VAR)


def _verified(raw, name, where, fix, misnamed_fix=None):
    """The decompressed ``raw`` if it is the content of ``name``, else CorruptFileError.

    ``where`` names the bytes in the message (a path, or a URL's download); ``fix`` ends it;
    ``misnamed_fix`` ends it when the bytes are another of the four files (default: rename).
    """
    expected_sha, expected_size = FILES[name]
    if raw[:2] == b'\x1f\x8b':
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise CorruptFileError('%s is not a complete gzip file (%s). %s'
                                   % (where, err, fix)) from None
    sha = hashlib.sha256(raw).hexdigest()
    if len(raw) != expected_size or sha != expected_sha:
        other = next((n for n, (s, size) in FILES.items() if (s, size) == (sha, len(raw))), None)
        if other is not None:   # an intact file under the wrong name: deleting it is wrong
            raise CorruptFileError(
                '%s holds the Fashion-MNIST file %s, not %s: the files are misnamed (or '
                'swapped). %s'
                % (where, other, name, misnamed_fix or 'Give each file its own name (the content '
                   'of %s is what %s expects).' % (other, other)))
        raise CorruptFileError(
            '%s does not hold the Fashion-MNIST file %s: expected %d bytes with SHA-256 %s..., '
            'got %d bytes with SHA-256 %s.... %s'
            % (where, name, expected_size, expected_sha[:12], len(raw), sha[:12], fix))
    return raw


def local_copies(folder, name):
    """Paths of ``name`` in ``folder`` that are there: the ``.gz``, then the decompressed file.

    Both are returned when both exist, so a damaged ``.gz`` cannot hide a good decompressed
    copy beside it. A name that is there but cannot be read (a broken link, no permission) is
    returned too: reading it then says why, instead of "no such file".
    """
    paths = [os.path.join(folder, candidate) for candidate in (name, name[:-len('.gz')])]
    return [path for path in paths if os.path.lexists(path)]


def folder_problem(folder):
    """Why ``folder`` cannot hold the files (a phrase), or None if it is a usable folder."""
    if os.path.isdir(folder):
        if not os.access(folder, os.R_OK | os.X_OK):
            return ('cannot be read (permissions): make it readable and searchable '
                    '(chmod u+rx), or point to another folder')
        return None
    if os.path.islink(folder):
        return 'is a broken symbolic link (or a loop of links): point it at a real folder'
    if os.path.exists(folder):
        return 'is a file, not a folder: point it at the folder that holds the four files'
    return 'no such folder'


def search_local(name, root=None):
    """Look for a verified copy of ``name`` in the local folders, in loading order.

    Returns ``(found, tried, skipped)``: ``found`` is (decompressed bytes, path) or None;
    ``tried`` one line per folder or copy that did not serve; ``skipped`` the lines of copies
    that are there but unusable (damaged, misnamed or unreadable), which loading warns about
    and ``python -m d2l_utils`` reports. Nothing is downloaded.
    """
    tried, skipped = [], []
    for label, folder in candidate_dirs(root):
        problem = folder_problem(folder)
        if problem is not None:
            tried.append('%s (%s): %s' % (label, folder, problem))
            if label in ('root argument', '$' + ENV_VAR) or os.path.lexists(folder):
                # the learner chose this path, or it is there but cannot serve: say so even
                # when a later source works
                skipped.append('%s (%s) %s' % (label, folder, problem))
            continue
        paths = local_copies(folder, name)
        if not paths:
            tried.append('%s (%s): no %s there' % (label, folder, name))
        for path in paths:
            try:
                return (read_verified(path, name), path), tried, skipped
            except CorruptFileError as err:
                tried.append('%s: %s' % (label, err))
                skipped.append(str(err))
            except OSError as err:   # unreadable: no permission, a broken link, an I/O error
                message = ('%s cannot be read (%s). Make it readable, or delete it, and load '
                           'again.' % (path, err.strerror or err))
                tried.append('%s: %s' % (label, message))
                skipped.append(message)
    return None, tried, skipped


def _part_prefix(name):
    # host and process id in the temp file's name let a later load tell the leftover of a
    # killed download from a download still running in another process
    return '.%s.%s-%d.' % (name, socket.gethostname(), os.getpid())


def _process_alive(pid):
    if os.name == 'nt':   # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:       # PermissionError: it runs, as another user
        return True
    return True


def remove_stale_parts(folder, max_age=None):
    """Remove the ``.part`` files that killed downloads left in ``folder``; return their paths.

    A part file is stale when the process named in its file name no longer runs on this host,
    or when it was last written more than ``max_age`` seconds ago (default twice
    DOWNLOAD_DEADLINE, longer than any download lives). Part files of running downloads and
    all other files are left alone; a file that cannot be removed (a read-only cache) is left
    for a later load.
    """
    max_age = 2 * DOWNLOAD_DEADLINE if max_age is None else max_age
    try:
        entries = os.listdir(folder)
    except OSError:   # no cache folder yet, or not readable: nothing to clean
        return []
    host, now, removed = socket.gethostname(), time.time(), []
    for entry in entries:
        name = next((n for n in FILES if entry.startswith('.' + n + '.')), None)
        if name is None or not entry.endswith('.part'):
            continue
        path = os.path.join(folder, entry)
        # '<host>-<pid>.<random>' since this naming; older part files hold only '<random>'
        owner = entry[len(name) + 2:-len('.part')].rpartition('.')[0]
        owner_host, _, pid = owner.rpartition('-')
        try:
            dead = owner_host == host and pid.isdigit() and not _process_alive(int(pid))
            if dead or now - os.stat(path).st_mtime > max_age:
                os.remove(path)
                removed.append(path)
        except OSError:
            pass
    return removed


class _SocketRecorder:
    """Mixin for an HTTP(S)Connection: appends its socket to the list ``sockets`` once connected
    (so a deadline can shut the socket down and wake a read that is stuck)."""

    def __init__(self, *args, sockets, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorded_sockets = sockets

    def connect(self):
        super().connect()
        self.recorded_sockets.append(self.sock)


class _RecordingHTTPConnection(_SocketRecorder, http.client.HTTPConnection):
    pass


class _RecordingHTTPSConnection(_SocketRecorder, http.client.HTTPSConnection):
    pass


def _open(url, timeout, sockets):
    """``urlopen(url, timeout=timeout)`` that appends each connection's socket to ``sockets``.

    A deadline can then shut those sockets down, which wakes a read blocked on them. Proxies
    and redirects work as with ``urlopen``.
    """
    context = ssl.create_default_context()

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(functools.partial(_RecordingHTTPConnection, sockets=sockets),
                                req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(functools.partial(_RecordingHTTPSConnection, sockets=sockets),
                                req, context=context)

    opener = urllib.request.build_opener(HTTPHandler(), HTTPSHandler(context=context))
    return opener.open(url, timeout=timeout)


def _not_writable(folder, err):
    return CacheNotWritableError('cannot write the download into %s (%s)'
                                 % (folder, err.strerror or err))


def download(url, dest, name, timeout=30, progress=True, deadline=DOWNLOAD_DEADLINE):
    """Download ``url`` to ``dest`` atomically: temp file in the same folder, verify, rename.

    Nothing is left at ``dest`` (or beside it) unless the content verified. Returns the
    decompressed bytes. ``timeout`` bounds each network operation and ``deadline`` the whole
    download, in seconds. Raises TimeoutError when the deadline passes, CacheNotWritableError
    when the folder cannot be created or written, other OSError/urllib errors (http.client
    errors for a broken HTTP response) for network trouble and CorruptFileError, naming
    ``url``, for bad content.
    """
    folder = os.path.dirname(dest)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_part_prefix(name), suffix='.part', dir=folder)
    except OSError as err:
        raise _not_writable(folder, err) from None
    sockets, expired = [], threading.Event()

    def cut_connections():   # at the deadline: shutting a socket down wakes a blocked read
        expired.set()
        for sock in list(sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(deadline, cut_connections)
    watchdog.daemon = True
    done, total, line_open = 0, 0, False
    out = os.fdopen(fd, 'wb')
    try:
        watchdog.start()
        try:
            with _open(url, min(timeout, deadline), sockets) as resp:
                total = int(resp.headers.get('Content-Length') or 0)
                last_report = 0.0
                while True:
                    chunk = resp.read1(1 << 20)   # read1: returns what arrived, however little
                    if not chunk or expired.is_set():
                        break
                    try:
                        out.write(chunk)
                    except OSError as err:
                        raise _not_writable(folder, err) from None
                    done += len(chunk)
                    # progress for the large image files only, at most twice a second
                    if progress and total > (4 << 20) and time.monotonic() - last_report > 0.5:
                        last_report, line_open = time.monotonic(), True
                        sys.stderr.write('\rdownloading %s: %5.1f%% of %.1f MB'
                                         % (name, 100.0 * done / total, total / 1e6))
                        sys.stderr.flush()
        except Exception:
            if not expired.is_set():
                raise
        finally:
            watchdog.cancel()
        if expired.is_set() and not (total and done == total):
            raise TimeoutError(
                '%s: the download did not finish within the deadline of %g s (%d of %s bytes '
                'arrived); nothing was saved. On a slow connection, download the file another '
                'way and set %s to its folder.'
                % (url, deadline, done, total or 'unknown', ENV_VAR))
        try:
            out.close()
        except OSError as err:   # the last buffered bytes did not fit (disk full, quota)
            raise _not_writable(folder, err) from None
        if total and done != total:
            raise CorruptFileError('%s: the connection closed after %d of %d bytes; nothing was '
                                   'saved.' % (url, done, total))
        if line_open:
            sys.stderr.write('\rdownloading %s: done (%.1f MB)%s\n' % (name, done / 1e6, ' ' * 10))
            line_open = False
        with open(tmp, 'rb') as f:
            content = _verified(f.read(), name, 'the download from ' + url, 'Nothing was saved.',
                                'The mirror serves the wrong file under this name; nothing was '
                                'saved. Another mirror, or the local ways below, can serve it.')
        try:
            os.chmod(tmp, 0o644)   # mkstemp makes 0600; a shared cache must be readable by all
        except OSError:            # a file system without modes (e.g. FAT): keep what it has
            pass
        try:
            os.replace(tmp, dest)
        except OSError as err:
            raise _not_writable(folder, err) from None
        return content
    finally:
        watchdog.cancel()
        if line_open:   # end the progress line, so the error does not start mid-line
            sys.stderr.write('\n')
        try:
            out.close()
        except OSError:
            pass
        if os.path.exists(tmp):
            os.remove(tmp)


def _unwritable(folder, name):
    """Why the download of ``name`` could not be saved in ``folder`` (a phrase), or None."""
    try:
        os.makedirs(folder, exist_ok=True)
        # named like a part file, so remove_stale_parts cleans it if this process dies here
        fd, probe = tempfile.mkstemp(prefix=_part_prefix(name), suffix='.part', dir=folder)
    except OSError as err:
        return str(_not_writable(folder, err))
    os.close(fd)
    os.remove(probe)
    return None


def fetch_file(name, root=None, mirrors=MIRRORS, cache_dir=None, timeout=30, progress=True,
               deadline=DOWNLOAD_DEADLINE):
    """Return (decompressed bytes, where they came from) for one of the four ``FILES``.

    Order: ``root``; ``$FASHION_MNIST_DIR``; MXNet's cache; Debian's folder; then each mirror
    (downloaded into ``cache_dir``, default MXNet's cache; ``timeout`` seconds per network
    operation, ``deadline`` seconds per download in all). A local copy that fails
    verification is reported and skipped, never used. Stale ``.part`` files of killed
    downloads are removed from ``cache_dir`` first. When all fail, DataUnavailableError lists
    every attempt and the ways out.
    """
    if name not in FILES:
        raise ValueError(f'unknown Fashion-MNIST file {name!r}; expected one of {sorted(FILES)}')
    if isinstance(mirrors, str):   # iterating it would try one 'mirror' per character
        raise TypeError('fetch_file: mirrors must be a sequence of base URLs, e.g. (%r,); got '
                        'the string %r' % (mirrors, mirrors))
    for label, seconds in (('timeout', timeout), ('deadline', deadline)):
        if (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
                or not 0 < seconds < float('inf')):
            raise ValueError('fetch_file: %s must be a positive number of seconds, e.g. %s=30; '
                             'got %r' % (label, label, seconds))
    given_cache_dir = cache_dir is not None
    cache_dir = str(cache_dir) if given_cache_dir else mxnet_cache_dir()
    remove_stale_parts(cache_dir)
    found, tried, skipped = search_local(name, root)
    for line in skipped:
        # reported even when a later source works: a damaged copy should not stay unnoticed
        warnings.warn('%s; skipped it for the next source.' % line.rstrip('.'), stacklevel=2)
    if found is not None:
        return found
    unwritable = _unwritable(cache_dir, name) if mirrors else None
    if unwritable:
        tried.append('downloads: not tried, because they could not be saved: %s' % unwritable)
    for mirror in () if unwritable else mirrors:
        url = mirror + name
        try:
            return download(url, os.path.join(cache_dir, name), name, timeout, progress,
                            deadline), url
        except CorruptFileError as err:   # its message names the URL
            tried.append(str(err))
        except CacheNotWritableError as err:   # e.g. the disk filled up: no mirror can help
            tried.append('%s: %s' % (url, err))
            unwritable = str(err)
            break
        except (OSError, urllib.error.URLError, http.client.HTTPException) as err:
            # HTTPException: e.g. IncompleteRead from a chunked response cut short
            tried.append('%s: %s' % (url, getattr(err, 'reason', None) or err))
    if unwritable:
        first_way = ('make %s writable (and free space there)%s, then load again'
                     % (cache_dir, '' if given_cache_dir else
                        ', or set MXNET_HOME to a folder you can write to (downloads go to '
                        '$MXNET_HOME/datasets/fashion-mnist)'))
    else:
        first_way = 'connect to the internet and load again (it downloads into %s)' % cache_dir
    raise DataUnavailableError(
        'Could not get the Fashion-MNIST file %s. Tried:\n  - %s\n'
        'Ways out:\n'
        '  1. %s;\n'
        '  2. on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist (files go to %s);\n'
        '  3. put the four files (%s) in a folder and set %s=/that/folder, or pass root=.'
        % (name, '\n  - '.join(tried), first_way, DEBIAN_DIR, ', '.join(sorted(FILES)),
           ENV_VAR))


def parse_idx(content, name):
    """Decode IDX bytes into a numpy uint8 array: images (N, 28, 28), labels (N,)."""
    magic = int.from_bytes(content[:4], 'big')
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise CorruptFileError('%s: not an IDX file of unsigned bytes (magic %#x)' % (name, magic))
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim))
    return np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_arrays(train, root=None, **fetch_kwargs):
    """Return (images uint8 (N, 28, 28), labels uint8 (N,), sources) for one split.

    ``sources`` is a list of the two paths/URLs the files came from.
    """
    prefix = 'train' if train else 't10k'
    images, src_x = fetch_file(prefix + '-images-idx3-ubyte.gz', root, **fetch_kwargs)
    labels, src_y = fetch_file(prefix + '-labels-idx1-ubyte.gz', root, **fetch_kwargs)
    return (parse_idx(images, 'images'), parse_idx(labels, 'labels'), [src_x, src_y])
