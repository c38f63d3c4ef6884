"""fashion_mnist_files on the real Fashion-MNIST files: decoding, the order of local sources,
rejecting damaged copies, and downloads from an HTTP server on 127.0.0.1 (never the internet).

The oracle for content is an independent decode of Debian's files (gzip + numpy), not the
module's own reader. Copies are hard links where possible; a damaged copy is always a new file
(exclusive create), so no test can write through a link into Debian's folder.
"""
import functools
import gzip
import http.server
import inspect
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numpy as np
import pytest

from d2l_utils.support import fashion_mnist_files as fmf
from d2l_utils.support.fashion_mnist_files import CorruptFileError, DataUnavailableError

TRAIN_LABELS = 'train-labels-idx1-ubyte.gz'
TEST_LABELS = 't10k-labels-idx1-ubyte.gz'
TEST_IMAGES = 't10k-images-idx3-ubyte.gz'
TIMEOUT = 5   # seconds per socket operation; loopback answers in milliseconds
DEADLINE = 1  # seconds for a whole download in the deadline tests (the default is 15 minutes)
TRICKLE_LIMIT = 20   # a trickling response ends after this many bytes (seconds)


# ---------------------------------------------------------------- helpers

@functools.lru_cache(maxsize=None)
def real_gz(folder, name):
    with open(os.path.join(folder, name), 'rb') as f:
        return f.read()


@functools.lru_cache(maxsize=None)
def real_content(folder, name):
    """The decompressed IDX bytes of Debian's copy: the oracle."""
    return gzip.decompress(real_gz(folder, name))


def link_or_copy(src, dest):
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def write_new(path, content):
    with open(path, 'xb') as f:   # never overwrite (a hard link would write into the original)
        f.write(content)


def put_copy(real_dir, folder, name, decompressed=False):
    """Put an intact copy of ``name`` into ``folder`` (created); return its path."""
    os.makedirs(folder, exist_ok=True)
    if decompressed:
        path = os.path.join(str(folder), name[:-len('.gz')])
        write_new(path, real_content(real_dir, name))
    else:
        path = os.path.join(str(folder), name)
        link_or_copy(os.path.join(real_dir, name), path)
    return path


def flipped(content, position=1000):
    damaged = bytearray(content)
    damaged[position] ^= 0xFF
    return bytes(damaged)


def snapshot(folder):
    """Names, sizes and modification times of everything under ``folder``."""
    return sorted((os.path.relpath(os.path.join(d, n), folder), os.stat(os.path.join(d, n)).st_size,
                   os.stat(os.path.join(d, n)).st_mtime_ns)
                  for d, _, names in os.walk(folder) for n in names)


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


# ---------------------------------------------------------------- decoding

@pytest.mark.parametrize('train, n', [(True, 60000), (False, 10000)])
def test_both_splits_decode_to_uint8_images_and_balanced_labels(fashion_mnist_dir, train, n):
    images, labels, sources = fmf.load_arrays(train, root=fashion_mnist_dir)
    prefix = 'train' if train else 't10k'
    assert sources == [os.path.join(fashion_mnist_dir, prefix + '-images-idx3-ubyte.gz'),
                       os.path.join(fashion_mnist_dir, prefix + '-labels-idx1-ubyte.gz')]
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    # Fashion-MNIST has exactly n/10 examples of each of the 10 classes
    assert np.bincount(labels, minlength=10).tolist() == [n // 10] * 10
    # oracle: the IDX layout read by hand (16-byte image header, 8-byte label header)
    raw_images = real_content(fashion_mnist_dir, prefix + '-images-idx3-ubyte.gz')
    raw_labels = real_content(fashion_mnist_dir, prefix + '-labels-idx1-ubyte.gz')
    np.testing.assert_array_equal(images.reshape(n, -1),
                                  np.frombuffer(raw_images, np.uint8, offset=16).reshape(n, -1))
    np.testing.assert_array_equal(labels, np.frombuffer(raw_labels, np.uint8, offset=8))
    assert 0 < images.mean() < 255 and images.max() == 255


# ---------------------------------------------------------------- order of local sources

def test_explicit_root_wins_over_every_other_folder(fashion_mnist_dir, isolated_sources,
                                                    tmp_path, monkeypatch):
    root = put_copy(fashion_mnist_dir, tmp_path / 'root', TEST_LABELS)
    put_copy(fashion_mnist_dir, tmp_path / 'env', TEST_LABELS)
    put_copy(fashion_mnist_dir, fmf.mxnet_cache_dir(), TEST_LABELS)
    monkeypatch.setenv(fmf.ENV_VAR, str(tmp_path / 'env'))

    content, source = fmf.fetch_file(TEST_LABELS, root=tmp_path / 'root', mirrors=())
    assert source == root
    assert content == real_content(fashion_mnist_dir, TEST_LABELS)


@pytest.mark.parametrize('decompressed', [False, True], ids=['gz', 'decompressed'])
def test_FASHION_MNIST_DIR_wins_over_mxnet_cache_and_debian(fashion_mnist_dir, isolated_sources,
                                                            tmp_path, monkeypatch, decompressed):
    env_copy = put_copy(fashion_mnist_dir, tmp_path / 'env', TEST_LABELS, decompressed)
    put_copy(fashion_mnist_dir, fmf.mxnet_cache_dir(), TEST_LABELS)
    monkeypatch.setenv(fmf.ENV_VAR, str(tmp_path / 'env'))

    content, source = fmf.fetch_file(TEST_LABELS, mirrors=())
    assert source == env_copy
    assert content == real_content(fashion_mnist_dir, TEST_LABELS)


def test_mxnet_cache_under_MXNET_HOME_wins_over_debian(fashion_mnist_dir, isolated_sources):
    cached = put_copy(fashion_mnist_dir, isolated_sources / 'datasets' / 'fashion-mnist',
                      TEST_LABELS)
    content, source = fmf.fetch_file(TEST_LABELS, mirrors=())
    assert source == cached
    assert content == real_content(fashion_mnist_dir, TEST_LABELS)


def test_debian_folder_serves_when_root_and_caches_miss(fashion_mnist_dir, isolated_sources,
                                                        tmp_path):
    # a root without the file is not an error: the search goes on
    (tmp_path / 'empty-root').mkdir()
    content, source = fmf.fetch_file(TEST_LABELS, root=tmp_path / 'empty-root', mirrors=())
    assert source == os.path.join(fashion_mnist_dir, TEST_LABELS)
    assert content == real_content(fashion_mnist_dir, TEST_LABELS)


# ---------------------------------------------------------------- damaged local copies

def damage(real_dir, folder, kind):
    """Write a damaged copy of TEST_LABELS into ``folder``; return (path, expected reason)."""
    os.makedirs(folder, exist_ok=True)
    content = real_content(real_dir, TEST_LABELS)
    if kind == 'flipped byte, re-gzipped':
        path = os.path.join(str(folder), TEST_LABELS)
        write_new(path, gzip.compress(flipped(content)))
        return path, 'SHA-256'
    if kind == 'flipped byte, decompressed':
        path = os.path.join(str(folder), TEST_LABELS[:-len('.gz')])
        write_new(path, flipped(content))
        return path, 'SHA-256'
    path = os.path.join(str(folder), TEST_LABELS)
    gz = real_gz(real_dir, TEST_LABELS)
    write_new(path, gz[:len(gz) // 2])
    return path, 'not a complete gzip file'


DAMAGE = ['flipped byte, re-gzipped', 'flipped byte, decompressed', 'truncated gz']


@pytest.mark.parametrize('kind', DAMAGE)
def test_damaged_copy_is_named_skipped_for_the_next_source_and_left_alone(
        fashion_mnist_dir, isolated_sources, tmp_path, monkeypatch, kind):
    path, reason = damage(fashion_mnist_dir, tmp_path / 'env', kind)
    monkeypatch.setenv(fmf.ENV_VAR, str(tmp_path / 'env'))
    before = snapshot(tmp_path / 'env')

    with pytest.raises(CorruptFileError, match=reason) as err:
        fmf.read_verified(path, TEST_LABELS)
    assert path in str(err.value)

    with pytest.warns(UserWarning) as warned:
        content, source = fmf.fetch_file(TEST_LABELS, mirrors=())
    assert source == os.path.join(fashion_mnist_dir, TEST_LABELS)
    assert content == real_content(fashion_mnist_dir, TEST_LABELS)
    assert any(path in str(w.message) and reason in str(w.message) for w in warned)
    assert snapshot(tmp_path / 'env') == before


@pytest.mark.parametrize('kind', DAMAGE)
def test_damaged_only_copy_is_reported_in_the_final_error(fashion_mnist_dir, no_local_sources,
                                                         tmp_path, monkeypatch, kind):
    path, reason = damage(fashion_mnist_dir, tmp_path / 'env', kind)
    monkeypatch.setenv(fmf.ENV_VAR, str(tmp_path / 'env'))
    before = snapshot(tmp_path / 'env')

    with pytest.warns(UserWarning), pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TEST_LABELS, mirrors=())
    assert path in str(err.value) and reason in str(err.value)
    assert snapshot(tmp_path / 'env') == before


# ---------------------------------------------------------------- downloads from 127.0.0.1

class Handler(http.server.BaseHTTPRequestHandler):
    """GET /<behaviour>/<file name>; serves the real .gz from ``server.real_dir``.

    good: the file; wrong: a gzip of the content with one byte flipped; short: a Content-Length
    1000 bytes larger than the body, then the connection closes; cutgz: the first half of the
    gz with a matching Content-Length; chunkedcut: a chunked response that stops mid-chunk;
    missing: 404; trickle: the headers, then one byte of the body per second (a mirror that
    never trips a per-read timeout); trickleheaders: the status line itself, one byte per
    second. A trickle stops after TRICKLE_LIMIT bytes or when the client hangs up.
    """
    protocol_version = 'HTTP/1.0'   # one request per connection: the server closes it after

    def log_message(self, *args):   # keep the test output clean
        pass

    def send_body(self, body, length=None):
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        _, behaviour, name = self.path.split('/', 2)
        if behaviour == 'missing' or name not in fmf.FILES:
            self.send_error(404)
            return
        gz = real_gz(self.server.real_dir, name)
        if behaviour == 'good':
            self.send_body(gz)
        elif behaviour == 'swapped':   # another of the four files under this name
            other = TEST_LABELS if name != TEST_LABELS else TRAIN_LABELS
            self.send_body(real_gz(self.server.real_dir, other))
        elif behaviour == 'wrong':
            self.send_body(gzip.compress(flipped(real_content(self.server.real_dir, name))))
        elif behaviour == 'short':
            self.send_body(gz, length=len(gz) + 1000)
        elif behaviour == 'cutgz':
            self.send_body(gz[:len(gz) // 2])
        elif behaviour in ('trickle', 'trickleheaders'):
            if behaviour == 'trickle':
                self.send_response(200)
                self.send_header('Content-Length', str(len(gz)))
                self.end_headers()
                self.wfile.flush()
            head = gz if behaviour == 'trickle' else b'HTTP/1.0 200 OK\r\n'
            try:
                for byte in head[:TRICKLE_LIMIT]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:   # the client hung up: what a deadline should make it do
                pass
            self.close_connection = True
        elif behaviour == 'chunkedcut':
            self.protocol_version = 'HTTP/1.1'   # chunked encoding needs HTTP/1.1
            self.send_response(200)
            self.send_header('Transfer-Encoding', 'chunked')
            self.send_header('Connection', 'close')
            self.end_headers()
            self.wfile.write(b'%x\r\n' % len(gz) + gz[:len(gz) // 2])
            self.close_connection = True
        else:
            self.send_error(400)


@pytest.fixture(scope='module')
def server(fashion_mnist_dir):
    """Base URL of an HTTP server on 127.0.0.1 (ephemeral port), stopped and joined at teardown."""
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    httpd.daemon_threads = True
    httpd.real_dir = fashion_mnist_dir
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05},
                              daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d/' % httpd.server_port
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=TIMEOUT)
    assert not thread.is_alive()


def closed_port_url():
    """A loopback URL where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    return 'http://127.0.0.1:%d/' % port


def test_good_download_lands_verified_in_cache_dir(fashion_mnist_dir, no_local_sources, server,
                                                   tmp_path, capsys):
    cache = tmp_path / 'cache'
    content, source = fmf.fetch_file(TEST_LABELS, mirrors=(server + 'good/',), cache_dir=cache,
                                     timeout=TIMEOUT)
    assert source == server + 'good/' + TEST_LABELS
    assert content == real_content(fashion_mnist_dir, TEST_LABELS)
    assert listing(cache) == [TEST_LABELS]   # no .part file beside it
    assert fmf.read_verified(str(cache / TEST_LABELS), TEST_LABELS) == content
    assert capsys.readouterr().err == ''   # progress is for the large image files only


def test_download_goes_to_mxnet_cache_and_is_found_there_next_time(
        fashion_mnist_dir, no_local_sources, server):
    fmf.fetch_file(TEST_LABELS, mirrors=(server + 'good/',), timeout=TIMEOUT)
    cached = os.path.join(fmf.mxnet_cache_dir(), TEST_LABELS)
    assert cached.startswith(str(no_local_sources))
    content, source = fmf.fetch_file(TEST_LABELS, mirrors=())
    assert source == cached
    assert content == real_content(fashion_mnist_dir, TEST_LABELS)


@pytest.mark.parametrize('behaviour, reason', [
    ('wrong', 'SHA-256'),
    ('short', 'connection closed after'),
    ('cutgz', 'not a complete gzip file'),
    ('chunkedcut', 'IncompleteRead'),
    ('missing', 'Not Found'),
])
def test_bad_download_leaves_no_file_and_says_why(no_local_sources, server, tmp_path,
                                                  behaviour, reason):
    cache = tmp_path / 'cache'
    mirror = server + behaviour + '/'
    with pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TEST_LABELS, mirrors=(mirror,), cache_dir=cache, timeout=TIMEOUT)
    lines = [line for line in str(err.value).splitlines() if mirror + TEST_LABELS in line]
    assert lines and reason in lines[0]
    assert listing(cache) == []   # neither the file nor a .part temp file


@pytest.mark.parametrize('first', ['refused', 'wrong', 'chunkedcut'])
def test_second_mirror_serves_when_the_first_fails(fashion_mnist_dir, no_local_sources, server,
                                                   tmp_path, first):
    cache = tmp_path / 'cache'
    bad = closed_port_url() if first == 'refused' else server + first + '/'
    content, source = fmf.fetch_file(TRAIN_LABELS, mirrors=(bad, server + 'good/'),
                                     cache_dir=cache, timeout=TIMEOUT)
    assert source == server + 'good/' + TRAIN_LABELS
    assert content == real_content(fashion_mnist_dir, TRAIN_LABELS)
    assert listing(cache) == [TRAIN_LABELS]


def test_when_every_source_fails_the_error_lists_each_and_the_ways_out(
        no_local_sources, server, tmp_path, monkeypatch):
    root, env, cache = tmp_path / 'root', tmp_path / 'env', tmp_path / 'cache'
    root.mkdir()
    env.mkdir()
    monkeypatch.setenv(fmf.ENV_VAR, str(env))
    refused = closed_port_url()
    with pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TEST_LABELS, root=root, mirrors=(refused, server + 'missing/'),
                       cache_dir=cache, timeout=TIMEOUT)
    message = str(err.value)
    for source in (str(root), str(env), fmf.mxnet_cache_dir(), fmf.DEBIAN_DIR,
                   refused + TEST_LABELS, server + 'missing/' + TEST_LABELS):
        assert source in message
    assert 'refused' in message.lower()
    assert 'connect to the internet' in message
    assert 'apt-get install dataset-fashion-mnist' in message
    assert 'FASHION_MNIST_DIR=' in message
    assert listing(cache) == []


def test_default_mirrors_are_listed_and_the_internet_is_not_contacted(no_local_sources, tmp_path):
    # conftest's no_internet guard turns each real mirror into an immediate failure
    with pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TEST_LABELS, cache_dir=tmp_path / 'cache', timeout=TIMEOUT)
    for mirror in fmf.MIRRORS:
        assert mirror + TEST_LABELS in str(err.value)
    assert 'tests must not use the internet' in str(err.value)


def test_image_download_reports_progress_on_stderr(fashion_mnist_dir, no_local_sources, server,
                                                   tmp_path, capsys):
    cache = tmp_path / 'cache'
    content, _ = fmf.fetch_file(TEST_IMAGES, mirrors=(server + 'good/',), cache_dir=cache,
                                timeout=TIMEOUT)
    assert content == real_content(fashion_mnist_dir, TEST_IMAGES)
    err = capsys.readouterr().err
    assert 'downloading %s' % TEST_IMAGES in err and 'done' in err
    assert listing(cache) == [TEST_IMAGES]


# ---------------------------------------------------------------- faults: deadline, cache, folders

@pytest.mark.parametrize('behaviour', ['trickle', 'trickleheaders'])
def test_trickling_mirror_is_given_up_at_the_deadline(no_local_sources, server, tmp_path,
                                                      behaviour):
    """A mirror sending 1 byte/s never trips the 5 s per-read timeout; before the deadline
    existed the download ran on (the review stopped it after 25 s)."""
    cache = tmp_path / 'cache'
    mirror = server + behaviour + '/'
    with pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TEST_LABELS, mirrors=(mirror,), cache_dir=cache, timeout=TIMEOUT,
                       deadline=DEADLINE)
    [line] = [line for line in str(err.value).splitlines() if mirror + TEST_LABELS in line]
    assert 'the download did not finish within the deadline of 1 s' in line
    assert 'nothing was saved' in line and 'FASHION_MNIST_DIR' in line
    assert listing(cache) == []   # no .part file left behind


def test_default_deadline_is_long_enough_for_a_slow_connection():
    # 26.4 MB of training images at 50 kB/s take about 530 s
    assert fmf.DOWNLOAD_DEADLINE >= 600
    assert inspect.signature(fmf.fetch_file).parameters['deadline'].default == \
        fmf.DOWNLOAD_DEADLINE


def file_in_the_way(tmp_path):
    """A cache path that cannot be created: its parent is a regular file (this works as root
    too, where folder modes do not stop writes)."""
    blocker = tmp_path / 'not-a-folder'
    blocker.write_bytes(b'')
    return blocker / 'fashion-mnist'


def test_unwritable_cache_dir_is_named_and_the_advice_fits(no_local_sources, server, tmp_path):
    cache = file_in_the_way(tmp_path)
    with pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TEST_LABELS, mirrors=(server + 'good/',), cache_dir=cache,
                       timeout=TIMEOUT)
    message = str(err.value)
    assert 'downloads: not tried, because they could not be saved: cannot write the download ' \
           'into %s' % cache in message
    assert 'make %s writable (and free space there), then load again' % cache in message
    # before: "connect to the internet and load again (it downloads into <that folder>)"
    assert 'connect to the internet' not in message


def test_unwritable_mxnet_cache_advises_setting_MXNET_HOME(no_local_sources, server, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv('MXNET_HOME', str(file_in_the_way(tmp_path)))
    with pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TEST_LABELS, mirrors=(server + 'good/',), timeout=TIMEOUT)
    message = str(err.value)
    assert 'cannot write the download into %s' % fmf.mxnet_cache_dir() in message
    assert 'or set MXNET_HOME to a folder you can write to' in message
    assert 'connect to the internet' not in message


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0,
                    reason='folder modes do not stop root from writing')
def test_read_only_cache_folder_gets_the_cache_advice(no_local_sources, server, tmp_path):
    cache = tmp_path / 'cache'
    cache.mkdir()
    cache.chmod(0o555)
    try:
        with pytest.raises(DataUnavailableError) as err:
            fmf.fetch_file(TEST_LABELS, mirrors=(server + 'good/',), cache_dir=cache,
                           timeout=TIMEOUT)
    finally:
        cache.chmod(0o755)
    assert 'Permission denied' in str(err.value)
    assert 'connect to the internet' not in str(err.value)
    assert listing(cache) == []


def test_FASHION_MNIST_DIR_pointing_at_a_file_is_called_a_file(fashion_mnist_dir,
                                                               no_local_sources, tmp_path,
                                                               monkeypatch):
    a_file = put_copy(fashion_mnist_dir, tmp_path / 'env', TEST_LABELS)   # the .gz itself
    monkeypatch.setenv(fmf.ENV_VAR, a_file)
    with pytest.warns(UserWarning, match='is a file, not a folder'), \
            pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TEST_LABELS, mirrors=())
    # before: "$FASHION_MNIST_DIR (<the file>): no such file"
    assert '$FASHION_MNIST_DIR (%s): is a file, not a folder: point it at the folder that ' \
           'holds the four files' % a_file in str(err.value)


def test_FASHION_MNIST_DIR_pointing_at_a_file_warns_even_when_debian_serves(
        fashion_mnist_dir, isolated_sources, tmp_path, monkeypatch):
    a_file = put_copy(fashion_mnist_dir, tmp_path / 'env', TEST_LABELS)
    monkeypatch.setenv(fmf.ENV_VAR, a_file)
    with pytest.warns(UserWarning, match='is a file, not a folder'):
        _, source = fmf.fetch_file(TEST_LABELS, mirrors=())
    assert source == os.path.join(fashion_mnist_dir, TEST_LABELS)


def test_missing_folder_and_folder_without_the_file_are_told_apart(no_local_sources, tmp_path,
                                                                   monkeypatch):
    (tmp_path / 'empty').mkdir()
    monkeypatch.setenv(fmf.ENV_VAR, str(tmp_path / 'typo'))
    with pytest.warns(UserWarning, match='no such folder'), \
            pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TEST_LABELS, root=tmp_path / 'empty', mirrors=())
    message = str(err.value)
    assert 'root argument (%s): no %s there' % (tmp_path / 'empty', TEST_LABELS) in message
    assert '$FASHION_MNIST_DIR (%s): no such folder' % (tmp_path / 'typo') in message


def test_good_decompressed_copy_serves_when_the_gz_beside_it_is_truncated(
        fashion_mnist_dir, no_local_sources, tmp_path):
    folder = tmp_path / 'root'
    damaged, _ = damage(fashion_mnist_dir, folder, 'truncated gz')
    good = put_copy(fashion_mnist_dir, folder, TEST_LABELS, decompressed=True)
    # before: only the .gz was tried, so the load failed although a verified copy was there
    with pytest.warns(UserWarning, match='not a complete gzip file') as warned:
        content, source = fmf.fetch_file(TEST_LABELS, root=folder, mirrors=())
    assert source == good
    assert content == real_content(fashion_mnist_dir, TEST_LABELS)
    assert any(damaged in str(w.message) for w in warned)


def test_progress_line_is_ended_when_a_large_download_fails(no_local_sources, server, tmp_path,
                                                             capsys):
    with pytest.raises(DataUnavailableError):
        fmf.fetch_file(TEST_IMAGES, mirrors=(server + 'short/',), cache_dir=tmp_path / 'cache',
                       timeout=TIMEOUT)
    err = capsys.readouterr().err
    assert 'downloading %s' % TEST_IMAGES in err
    assert err.endswith('\n')   # before: the next output started on the progress line


# ---------------------------------------------------------------- part files of killed downloads

DOWNLOAD_IN_A_CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location('fmf', sys.argv[1])
fmf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fmf)
fmf.DEBIAN_DIR = sys.argv[2]   # no local copy: the child must download
fmf.fetch_file(sys.argv[3], mirrors=(sys.argv[4],), cache_dir=sys.argv[5], timeout=30)
"""


def test_part_file_of_a_killed_download_is_removed_by_the_next_load(
        fashion_mnist_dir, no_local_sources, server, tmp_path):
    cache = tmp_path / 'cache'
    child = subprocess.Popen(
        [sys.executable, '-c', DOWNLOAD_IN_A_CHILD, fmf.__file__, str(tmp_path / 'none'),
         TEST_LABELS, server + 'trickle/', str(cache)],
        env=dict(os.environ, MXNET_HOME=str(no_local_sources)))
    try:
        for _ in range(200):   # up to 20 s for the child to start and open its .part file
            if listing(cache) or child.poll() is not None:
                break
            time.sleep(0.1)
        time.sleep(0.5)   # past the child's write check, into the trickling download
    finally:
        child.kill()   # SIGKILL: no cleanup handler runs, as with kill -9
        child.wait()
    [part] = listing(cache)
    assert part.startswith('.' + TEST_LABELS + '.') and part.endswith('.part')

    content, source = fmf.fetch_file(TEST_LABELS, mirrors=(server + 'good/',), cache_dir=cache,
                                     timeout=TIMEOUT)
    assert source == server + 'good/' + TEST_LABELS
    assert content == real_content(fashion_mnist_dir, TEST_LABELS)
    # before: the killed download's hidden part file stayed beside the good file for good
    assert listing(cache) == [TEST_LABELS]


def test_only_stale_part_files_are_removed(tmp_path):
    folder = tmp_path / 'cache'
    folder.mkdir()
    host = socket.gethostname()
    live = '.%s.%s-%d.abc123.part' % (TEST_LABELS, host, os.getpid())   # a running download
    old_style = '.%s.z94w6_bm.part' % TEST_LABELS                    # older naming, no owner
    fresh_old_style = '.%s.q1w2e3r4.part' % TEST_LABELS
    other_host = '.%s.elsewhere-1.abc123.part' % TEST_LABELS          # its owner is not ours
    unrelated = ['notes.part', '.x.gz.z94w6_bm.part', TEST_LABELS]
    for name in [live, old_style, fresh_old_style, other_host] + unrelated:
        (folder / name).write_bytes(b'x')
    hour_ago = time.time() - 2 * fmf.DOWNLOAD_DEADLINE - 60
    os.utime(folder / old_style, (hour_ago, hour_ago))
    removed = fmf.remove_stale_parts(folder)
    assert removed == [str(folder / old_style)]
    assert listing(folder) == sorted([live, fresh_old_style, other_host] + unrelated)


def test_a_file_under_another_files_name_is_called_misnamed_not_damaged(
        fashion_mnist_dir, isolated_sources, tmp_path):
    folder = tmp_path / 'swapped'
    folder.mkdir()
    link_or_copy(os.path.join(fashion_mnist_dir, TEST_LABELS), str(folder / TRAIN_LABELS))
    with pytest.warns(UserWarning) as warned:
        _, source = fmf.fetch_file(TRAIN_LABELS, root=folder, mirrors=())
    assert source == os.path.join(fashion_mnist_dir, TRAIN_LABELS)
    [message] = [str(w.message) for w in warned if str(folder) in str(w.message)]
    # before: "expected 60008 bytes ..., got 10008 bytes ... Delete it", for an intact file
    assert 'holds the Fashion-MNIST file %s, not %s: the files are misnamed (or swapped)' \
        % (TEST_LABELS, TRAIN_LABELS) in message
    assert 'Delete it' not in message


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(mirrors='http://127.0.0.1:1/'), TypeError,
     "mirrors must be a sequence of base URLs, e.g. ('http://127.0.0.1:1/',)"),
    (dict(timeout=0), ValueError, 'timeout must be a positive number of seconds'),
    (dict(deadline=-1), ValueError, 'deadline must be a positive number of seconds'),
    (dict(deadline=float('inf')), ValueError, 'got inf'),
    (dict(timeout='30'), ValueError, "got '30'"),
])
def test_bad_download_settings_are_refused_before_anything_is_tried(no_local_sources, tmp_path,
                                                                   kwargs, error, message):
    with pytest.raises(error) as err:
        fmf.fetch_file(TEST_LABELS, cache_dir=tmp_path / 'cache', **kwargs)
    assert message in str(err.value)


# ---------------------------------------------------------------- unusable copies (round 3)

def unreadable_copy(folder, kind):
    """A copy of TEST_LABELS that is there but cannot be read, made for real: a symbolic link
    that loops, or a folder under the file's name (reading it fails with an OSError)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TEST_LABELS
    if kind == 'link loop':
        os.symlink(TEST_LABELS, str(path))
    else:
        path.mkdir()
    return str(path)


@pytest.mark.parametrize('kind', ['link loop', 'a folder under the name'])
def test_unreadable_copy_is_named_and_skipped_for_the_next_source(
        fashion_mnist_dir, isolated_sources, tmp_path, monkeypatch, kind):
    path = unreadable_copy(tmp_path / 'env', kind)
    monkeypatch.setenv(fmf.ENV_VAR, str(tmp_path / 'env'))
    with pytest.warns(UserWarning) as warned:
        content, source = fmf.fetch_file(TEST_LABELS, mirrors=())
    # before: a raw OSError (PermissionError for a mode-000 file), Debian's good copy never tried
    assert source == os.path.join(fashion_mnist_dir, TEST_LABELS)
    assert content == real_content(fashion_mnist_dir, TEST_LABELS)
    assert any(path in str(w.message) and 'cannot be read' in str(w.message) for w in warned)


def test_unreadable_only_copy_is_named_in_the_final_error(no_local_sources, tmp_path,
                                                          monkeypatch):
    path = unreadable_copy(tmp_path / 'env', 'link loop')
    monkeypatch.setenv(fmf.ENV_VAR, str(tmp_path / 'env'))
    with pytest.warns(UserWarning), pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TEST_LABELS, mirrors=())
    # before: "no t10k-labels-idx1-ubyte.gz there", for a file that is there
    assert '%s cannot be read' % path in str(err.value)


def test_FASHION_MNIST_DIR_that_is_a_link_loop_is_called_so_even_when_debian_serves(
        fashion_mnist_dir, isolated_sources, tmp_path, monkeypatch):
    loop = tmp_path / 'loopdir'
    os.symlink(str(loop), str(loop))
    monkeypatch.setenv(fmf.ENV_VAR, str(loop))
    # before: "no such folder" in the final error only; with Debian's copy, a silent fallback
    with pytest.warns(UserWarning, match='broken symbolic link'):
        _, source = fmf.fetch_file(TEST_LABELS, mirrors=())
    assert source == os.path.join(fashion_mnist_dir, TEST_LABELS)


def test_a_mode_000_copy_that_this_user_cannot_read_is_skipped_and_reported_alike(
        fashion_mnist_dir, isolated_sources, monkeypatch, request):
    """The reliability rows F5, F6 and H7 for real: a copy this user may not read (mode 000).
    Root reads any file, so as root the check runs in a forked child that has given up root
    (uid 65534, nobody) after the imports; as another user it runs in this process."""
    # a folder nobody can reach (pytest's own tmp folders are private to root), and a new file:
    # chmod on a hard link would change Debian's copy too
    folder = tempfile.mkdtemp(prefix='d2l-unreadable-')
    request.addfinalizer(lambda: shutil.rmtree(folder))
    os.chmod(folder, 0o755)
    path = os.path.join(folder, TEST_LABELS)
    write_new(path, real_gz(fashion_mnist_dir, TEST_LABELS))
    os.chmod(path, 0)
    monkeypatch.setenv(fmf.ENV_VAR, folder)

    def check():
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter('always')
            _, source = fmf.fetch_file(TEST_LABELS, mirrors=())
        _, _, skipped = fmf.search_local(TEST_LABELS)   # what `python -m d2l_utils` reports
        return (source == os.path.join(fashion_mnist_dir, TEST_LABELS),
                any('%s cannot be read' % path in str(w.message) for w in warned),
                any('%s cannot be read' % path in line for line in skipped))

    if os.geteuid() != 0:
        assert check() == (True, True, True)
        return
    parent_end, child_end = multiprocessing.Pipe()

    def as_nobody():   # runs in the forked child
        try:
            os.setgid(65534)
            os.setuid(65534)
            child_end.send(repr(check()))
        except BaseException as err:   # shown by the assertion below
            child_end.send(repr(err))

    child = multiprocessing.get_context('fork').Process(target=as_nobody)
    child.start()
    result = parent_end.recv() if parent_end.poll(120) else 'no answer within 120 s'
    child.join(10)
    assert result == repr((True, True, True)), result


def test_empty_MXNET_HOME_counts_as_unset(monkeypatch):
    monkeypatch.setenv('MXNET_HOME', '')
    # before: 'datasets/fashion-mnist', relative to wherever Python runs
    assert fmf.mxnet_cache_dir() == os.path.join(os.path.expanduser('~'), '.mxnet', 'datasets',
                                                 'fashion-mnist')


def test_a_mirror_serving_another_file_is_blamed_not_the_learner(no_local_sources, server,
                                                                tmp_path):
    with pytest.raises(DataUnavailableError) as err:
        fmf.fetch_file(TRAIN_LABELS, mirrors=(server + 'swapped/',), cache_dir=tmp_path / 'cache',
                       timeout=TIMEOUT)
    message = str(err.value)
    assert 'holds the Fashion-MNIST file %s, not %s' % (TEST_LABELS, TRAIN_LABELS) in message
    assert 'The mirror serves the wrong file under this name' in message
    assert 'Give each file its own name' not in message   # before: advice for local files
    assert not os.path.exists(str(tmp_path / 'cache' / TRAIN_LABELS))
