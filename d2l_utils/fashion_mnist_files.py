"""Find, verify, download and decode the four Fashion-MNIST IDX files.

Sources are tried in a fixed order (see ``find_fashion_mnist``). Every file is verified by the
SHA-256 of its *decompressed* content: mirrors (and Debian's package) recompress the ``.gz``
files, so archive checksums differ between sources while the content does not.
No function here imports mxnet: the files are plain numpy arrays.
"""
import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zlib

import numpy as np

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


class DataUnavailableError(RuntimeError):
    """No source gave a complete, verified copy of a Fashion-MNIST file."""


class CorruptFileError(ValueError):
    """A file exists but its content is not the expected Fashion-MNIST file."""


def mxnet_cache_dir():
    """MXNet's dataset cache: ``$MXNET_HOME/datasets/fashion-mnist`` (default ``~/.mxnet``)."""
    home = os.environ.get('MXNET_HOME', os.path.join('~', '.mxnet'))
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


def _verified(raw, name, where, fix):
    """The decompressed ``raw`` if it is the content of ``name``, else CorruptFileError.

    ``where`` names the bytes in the message (a path, or a URL's download); ``fix`` ends it.
    """
    expected_sha, expected_size = FILES[name]
    if raw[:2] == b'\x1f\x8b':
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise CorruptFileError('%s is not a complete gzip file (%s). %s'
                                   % (where, err, fix)) from None
    if len(raw) != expected_size or hashlib.sha256(raw).hexdigest() != expected_sha:
        raise CorruptFileError(
            '%s does not hold the Fashion-MNIST file %s: expected %d bytes with SHA-256 %s..., '
            'got %d bytes with SHA-256 %s.... %s'
            % (where, name, expected_size, expected_sha[:12], len(raw),
               hashlib.sha256(raw).hexdigest()[:12], fix))
    return raw


def _local_copy(folder, name):
    """The path of ``name`` in ``folder``, compressed or not, or None."""
    for candidate in (name, name[:-len('.gz')]):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def download(url, dest, name, timeout=30, progress=True):
    """Download ``url`` to ``dest`` atomically: temp file in the same folder, verify, rename.

    Nothing is left at ``dest`` (or beside it) unless the content verified. Returns the
    decompressed bytes. Raises OSError/urllib errors (http.client errors for a broken HTTP
    response) for network trouble and CorruptFileError, naming ``url``, for bad content.
    """
    folder = os.path.dirname(dest)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + name + '.', suffix='.part', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get('Content-Length') or 0)
            done, last_report = 0, 0.0
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                # report progress for the large image files only, at most twice a second
                if progress and total > (4 << 20) and time.monotonic() - last_report > 0.5:
                    last_report = time.monotonic()
                    sys.stderr.write('\rdownloading %s: %5.1f%% of %.1f MB'
                                     % (name, 100.0 * done / total, total / 1e6))
                    sys.stderr.flush()
        if total and done != total:
            raise CorruptFileError('%s: the connection closed after %d of %d bytes; nothing was '
                                   'saved.' % (url, done, total))
        if progress and total > (4 << 20):
            sys.stderr.write('\rdownloading %s: done (%.1f MB)%s\n' % (name, done / 1e6, ' ' * 10))
        with open(tmp, 'rb') as f:
            content = _verified(f.read(), name, 'the download from ' + url, 'Nothing was saved.')
        os.chmod(tmp, 0o644)   # mkstemp makes 0600; a shared cache must be readable by all
        os.replace(tmp, dest)
        return content
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch_file(name, root=None, mirrors=MIRRORS, cache_dir=None, timeout=30, progress=True):
    """Return (decompressed bytes, where they came from) for one of the four ``FILES``.

    Order: ``root``; ``$FASHION_MNIST_DIR``; MXNet's cache; Debian's folder; then each mirror
    (downloaded into ``cache_dir``, default MXNet's cache). A local copy that fails
    verification is reported and skipped, never used. When all fail, DataUnavailableError
    lists every attempt and the ways out.
    """
    if name not in FILES:
        raise ValueError('unknown Fashion-MNIST file %r; expected one of %s' % (name, sorted(FILES)))
    tried = []
    for label, folder in candidate_dirs(root):
        path = _local_copy(folder, name)
        if path is None:
            tried.append('%s (%s): no such file' % (label, folder))
            continue
        try:
            return read_verified(path, name), path
        except CorruptFileError as err:
            tried.append('%s: %s' % (label, err))
            # reported even when a later source works: a damaged copy should not stay unnoticed
            warnings.warn('%s; skipped it for the next source.' % err, stacklevel=2)
    cache_dir = cache_dir or mxnet_cache_dir()
    for mirror in mirrors:
        url = mirror + name
        try:
            return download(url, os.path.join(cache_dir, name), name, timeout, progress), url
        except CorruptFileError as err:   # its message names the URL
            tried.append(str(err))
        except (OSError, urllib.error.URLError, http.client.HTTPException) as err:
            # HTTPException: e.g. IncompleteRead from a chunked response cut short
            tried.append('%s: %s' % (url, getattr(err, 'reason', None) or err))
    raise DataUnavailableError(
        'Could not get the Fashion-MNIST file %s. Tried:\n  - %s\n'
        'Ways out:\n'
        '  1. connect to the internet and load again (it downloads into %s);\n'
        '  2. on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist (files go to %s);\n'
        '  3. put the four files (%s) in a folder and set %s=/that/folder, or pass root=.'
        % (name, '\n  - '.join(tried), cache_dir, DEBIAN_DIR, ', '.join(sorted(FILES)), ENV_VAR))


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
