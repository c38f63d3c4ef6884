"""Fixtures shared by the test modules (plain helper functions live in ``helpers.py``).

Keep them generic: a fixture only one module needs lives in that module.
"""
import faulthandler
import ipaddress
import os
import socket
import sys

import pytest

# ``from helpers import ...`` in the test modules, whatever pytest's import mode
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from d2l_utils import data
from d2l_utils.support import fashion_mnist_files

# Captured at import, before any test monkeypatches the module constant.
REAL_FASHION_MNIST_DIR = fashion_mnist_files.DEBIAN_DIR


def _is_local(host):
    if host in (None, '', 'localhost'):   # None and '' are what servers bind to
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:   # a host name
        return False
    return address.is_loopback or address.is_unspecified


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Tests never contact the internet: resolving any non-loopback host fails at once.

    Every Python TCP client (urllib, http.client, socket.create_connection) resolves its host
    first, so a test that fell through to a real mirror fails fast and says why instead of
    hanging on a timeout. Loopback (the tests' own HTTP server) stays open.
    """
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if not _is_local(host):
            raise socket.gaierror('tests must not use the internet (tried to resolve %r)' % (host,))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, 'getaddrinfo', getaddrinfo)


@pytest.fixture(scope='session')
def fashion_mnist_dir():
    """The folder with the four real Fashion-MNIST .gz files (Debian's dataset-fashion-mnist)."""
    missing = [name for name in fashion_mnist_files.FILES
               if not os.path.isfile(os.path.join(REAL_FASHION_MNIST_DIR, name))]
    if missing:
        pytest.skip('real Fashion-MNIST not found in %s (missing %s); install it with '
                    'sudo apt-get install dataset-fashion-mnist'
                    % (REAL_FASHION_MNIST_DIR, ', '.join(missing)))
    return REAL_FASHION_MNIST_DIR


@pytest.fixture
def isolated_sources(monkeypatch, tmp_path):
    """Only Debian's folder is found by default: no $FASHION_MNIST_DIR, an empty MXNet cache,
    and an empty per-process cache of decoded arrays (restored afterwards, so later tests stay
    fast).

    Returns the empty MXNET_HOME folder.
    """
    mxnet_home = tmp_path / 'mxnet_home'
    mxnet_home.mkdir()
    monkeypatch.delenv(fashion_mnist_files.ENV_VAR, raising=False)
    monkeypatch.setenv('MXNET_HOME', str(mxnet_home))
    saved = dict(data.DECODED_CACHE)
    data.DECODED_CACHE.clear()
    yield mxnet_home
    data.DECODED_CACHE.clear()
    data.DECODED_CACHE.update(saved)


@pytest.fixture
def no_local_sources(isolated_sources, monkeypatch, tmp_path):
    """Like ``isolated_sources``, and this machine has no Debian package either: every local
    folder misses, so only ``root=``, $FASHION_MNIST_DIR or mirrors set by the test can serve."""
    monkeypatch.setattr(fashion_mnist_files, 'DEBIAN_DIR', str(tmp_path / 'no-debian-package'))
    return isolated_sources


@pytest.fixture
def fail_instead_of_hanging(capfd):
    """Exit with every thread's stack if the test runs over 120 s, instead of hanging.

    autograd.Function can deadlock MXNet 1.9.1 (apache/mxnet#15844): a backward that reads
    gamma, after a Trainer step wrote gamma, waits forever. What forward saves avoids it; this
    guards the tests that take Trainer steps against a regression hanging the whole run.
    """
    with capfd.disabled():   # the real stderr, not pytest's capture (lost when the run exits)
        stderr = os.fdopen(os.dup(2), 'w')
    faulthandler.dump_traceback_later(120, exit=True, file=stderr)
    yield
    faulthandler.cancel_dump_traceback_later()
    stderr.close()
