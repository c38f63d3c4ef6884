"""Run a distributed MXNet job (scheduler, servers, workers) on this machine, over loopback.

MXNet's distributed key-value store (``mx.kv.create('dist_sync')``, the ps-lite parameter
server) has three roles: one scheduler that introduces the nodes to each other, servers that
hold and add up the values, and workers that run the training script. Every process learns its
role and where the scheduler listens from ``DMLC_*`` environment variables; importing mxnet
with ``DMLC_ROLE=scheduler`` or ``server`` runs that role and exits. MXNet's own launcher
(``mxnet/tools/launch.py`` over the ``dmlc_tracker`` package) sets these variables and starts
the processes: ``--launcher local`` on this machine, ``ssh`` with a host file on real machines.

``launch_local`` uses that same protocol (the variables ``dmlc_tracker`` sets, the scheduler
and servers being mxnet itself) but starts the processes itself, because ``dmlc_tracker``'s
local mode does not fit a notebook: it binds the scheduler to the machine's network address
(``tracker.get_host_ip`` picks a non-loopback one), lets every process write to the same
terminal, retries failed workers, and runs them from daemon threads that nothing stops when
one fails. Here every address is 127.0.0.1, each worker's output is kept apart and returned,
a failure names the worker, and every process (with its children: each runs in its own
process group) is ended when one fails, when the time limit passes, or on a KeyboardInterrupt.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from ..support.validation import is_integer, require_positive_int

__all__ = ['DistributedRunError', 'PortInUseError', 'launch_local', 'free_port']

LOOPBACK = '127.0.0.1'   # the only address any process listens on or connects to
STDERR_TAIL_LINES = 15   # lines of a failed process's stderr quoted in the error
EXIT_GRACE = 10          # seconds the scheduler and servers get to exit after the workers
POLL_SECONDS = 0.05
# A worker that raises prints its traceback and then hangs: at exit MXNet's store waits for the
# other nodes. A traceback followed by this many seconds with the process alive is a failure.
TRACEBACK_GRACE = 5
TRACEBACK = 'Traceback (most recent call last):'
WORKER_ID = re.compile(r'W\[(\d+)\] is connected to others')   # ps-lite's log, PS_VERBOSE=1
FIRST_WORKER_ID = 9   # ps-lite's node id of worker rank 0 (then 11, 13, ...)


class DistributedRunError(RuntimeError):
    """A process of a ``launch_local`` job failed or did not finish in time.

    Attributes: ``process`` (e.g. 'worker 1', 'scheduler'), ``returncode`` (None if it was
    still running), ``stderr`` (its whole standard error).
    """

    def __init__(self, message, process, returncode, stderr):
        super().__init__(message)
        self.process, self.returncode, self.stderr = process, returncode, stderr


class PortInUseError(OSError):
    """The scheduler's port on 127.0.0.1 is already taken."""


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (the system picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def validate_port_free(port):
    """Raise PortInUseError if ``port`` on 127.0.0.1 cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as error:
            raise PortInUseError(
                f'launch_local: port {port} on {LOOPBACK} is already in use ({error.strerror}), '
                f'so the scheduler cannot listen there. Pass another port, or port=None to '
                f'let launch_local choose a free one.') from None


def validate_port(port):
    if not (is_integer(port) and 1024 <= port <= 65535):
        raise ValueError(f'launch_local: port must be an integer in [1024, 65535] (a port that '
                         f'needs no root); got {port!r}. Or pass port=None to let launch_local '
                         f'choose a free one.')


def python_command(script, args):
    """[python, script, *args] for a file, or [python, -m, module, *args] for a module name."""
    if script.endswith('.py') or os.sep in script:
        if not os.path.isfile(script):
            raise FileNotFoundError(f'launch_local: script {script!r} is not a file. Pass the '
                                    f'path of a Python file, or a module name such as '
                                    f'\'d2l_utils.experiments.distributed_lenet\'.')
        return [sys.executable, script, *args]
    return [sys.executable, '-m', script, *args]


class Process:
    """One started process of the job: its role, its output files, its Popen.

    A worker's rank is not known when it starts: the scheduler gives ranks in the order of the
    ports the workers happen to listen on. With PS_VERBOSE=1 ps-lite logs the node id it got
    ('W[9] is connected to others'); worker ids are 9, 11, 13, ... for ranks 0, 1, 2, ...
    """

    def __init__(self, role, index, command, env, folder):
        self.role, self.index = role, index
        stem = f'{role}{"" if index is None else index}'
        self.stdout_path = os.path.join(folder, stem + '.out')
        self.stderr_path = os.path.join(folder, stem + '.err')
        with open(self.stdout_path, 'w') as out, open(self.stderr_path, 'w') as err:
            # its own session and process group: killpg later reaches its children too
            self.popen = subprocess.Popen(command, env=env, stdout=out, stderr=err,
                                          stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def rank(self):
        """The worker's rank once the scheduler has given it one, else None."""
        found = WORKER_ID.search(self.read('stderr')) if self.role == 'worker' else None
        return (int(found.group(1)) - FIRST_WORKER_ID) // 2 if found else None

    @property
    def name(self):
        """'scheduler', 'server 0', 'worker 1' (its rank), or 'worker started 2nd (no rank
        yet)' for a worker the scheduler has not given a rank."""
        if self.role != 'worker':
            return self.role if self.index is None else f'{self.role} {self.index}'
        rank = self.rank
        if rank is not None:
            return f'worker {rank}'
        nth = self.index + 1
        suffix = {1: 'st', 2: 'nd', 3: 'rd'}.get(nth if nth < 20 else nth % 10, 'th')
        return f'worker started {nth}{suffix} (no rank yet)'

    def read(self, which='stdout'):
        with open(self.stdout_path if which == 'stdout' else self.stderr_path,
                  errors='replace') as f:
            return f.read()

    def stderr_tail(self):
        lines = [line for line in self.read('stderr').rstrip().splitlines()
                 if 'ps-lite' not in line][-STDERR_TAIL_LINES:]
        return '\n'.join('    ' + line for line in lines) or '    (nothing on stderr)'

    def end(self):
        """Kill the process group (the process and anything it started), then reap it."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass   # the group is already gone
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def launch_local(script, *args, num_workers=2, num_servers=1, time_limit=300, port=None,
                 env=None):
    """Run ``script`` as the workers of a ``dist_sync`` job on this machine; return their output.

    script: the path of a Python file, or a module name run with ``python -m``; args: its
        command-line arguments (str), the same for every worker. The script creates
        ``mx.kv.create('dist_sync')`` (or a Trainer with ``kvstore='dist_sync'``) and learns
        its rank from ``kv.rank``.
    num_workers, num_servers: how many workers and servers (each a process); one scheduler.
    time_limit: seconds for the whole job; then every process is ended and an error raised.
    port: the scheduler's port on 127.0.0.1; None chooses a free one.
    env: extra environment variables (str -> str) for every process, e.g.
        ``{'OMP_NUM_THREADS': '1'}``.

    Returns a list of num_workers strings: the standard output of the workers in the order
    of their ``kv.rank`` (0, 1, ...; the scheduler assigns the ranks). Raises
    DistributedRunError naming the process (with the end of its stderr) when one exits with an
    error or the time limit passes, PortInUseError when ``port`` is taken. Every process is
    ended before this returns or raises, also after a KeyboardInterrupt.
    """
    require_positive_int(num_workers, 'num_workers', 'launch_local', 'worker processes, e.g. 2')
    require_positive_int(num_servers, 'num_servers', 'launch_local', 'server processes, e.g. 1')
    if not (isinstance(time_limit, (int, float)) and not isinstance(time_limit, bool)
            and time_limit > 0):
        raise ValueError(f'launch_local: time_limit must be a positive number of seconds; '
                         f'got {time_limit!r}.')
    bad = [a for a in args if not isinstance(a, str)]
    if bad:
        raise TypeError(f'launch_local: the script\'s arguments must be strings (as on a '
                        f'command line); got {bad[0]!r}. Pass str(value).')
    worker_command = python_command(script, args)
    if port is None:
        port = free_port()
    else:
        validate_port(port)
        validate_port_free(port)
    common = dict(os.environ, **(env or {}))
    for name in [k for k in common if k.startswith('DMLC_')]:
        del common[name]   # a DMLC_* variable left in the notebook's environment must not leak in
    common.update(DMLC_PS_ROOT_URI=LOOPBACK, DMLC_PS_ROOT_PORT=str(port),
                  DMLC_NODE_HOST=LOOPBACK, DMLC_NUM_SERVER=str(num_servers),
                  DMLC_NUM_WORKER=str(num_workers))
    mxnet_itself = [sys.executable, '-c', 'import mxnet']   # runs a scheduler or server, exits
    roles = ([('scheduler', None, mxnet_itself)]
             + [('server', k, mxnet_itself) for k in range(num_servers)]
             + [('worker', k, worker_command) for k in range(num_workers)])
    processes = []
    with tempfile.TemporaryDirectory(prefix='launch_local_') as folder:
        try:
            for role, index, command in roles:
                role_env = dict(common, DMLC_ROLE=role)
                if role == 'worker':
                    role_env['PS_VERBOSE'] = '1'   # logs the worker's id, hence its rank
                processes.append(Process(role, index, command, role_env, folder))
            wait_for_job(processes, num_workers, time_limit)
            workers = processes[-num_workers:]
            ranks = [w.rank for w in workers]
            if sorted(ranks) != list(range(num_workers)):
                raise DistributedRunError(
                    f'launch_local: the workers finished but their ranks {ranks} are not 0 to '
                    f'{num_workers - 1}: did the script create a dist kvstore '
                    f'(mx.kv.create(\'dist_sync\'))?', 'worker', 0, workers[0].read('stderr'))
            return [w.read() for w in sorted(workers, key=lambda w: w.rank)]
        finally:
            for p in processes:
                p.end()


def wait_for_job(processes, num_workers, time_limit):
    """Return when every worker has exited with 0 (the others get EXIT_GRACE seconds more);
    raise DistributedRunError at the first failure or when time_limit passes."""
    start = time.monotonic()
    workers = processes[-num_workers:]
    ended_early = {}   # scheduler or server that exited with 0 while workers ran -> when
    raised_at = {}     # worker whose stderr shows a traceback while it still runs -> when
    workers_done_at = None
    while True:
        now = time.monotonic()
        for p in processes:
            code = p.popen.poll()
            if code not in (None, 0):
                what = (f'exited with code {code}' if code > 0
                        else f'was killed by signal {-code}')
                raise failure(p, f'{what} after {now - start:.1f} s')
            if code == 0 and p not in workers and workers_done_at is None:
                ended_early.setdefault(p, now)
                if now - ended_early[p] > EXIT_GRACE:
                    raise failure(p, 'exited before the workers had finished')
            if code is None and p in workers and (p in raised_at or TRACEBACK in p.read('stderr')):
                raised_at.setdefault(p, now)
                if now - raised_at[p] > TRACEBACK_GRACE:
                    raise failure(p, 'raised an exception and did not exit (MXNet\'s store waits '
                                     'for the other workers at exit)')
        if workers_done_at is None and all(w.popen.poll() == 0 for w in workers):
            workers_done_at = now
        if workers_done_at is not None and (
                all(p.popen.poll() is not None for p in processes)
                or now - workers_done_at > EXIT_GRACE):
            return   # the scheduler and servers normally exit with the workers
        if now - start > time_limit:
            running = [p for p in processes if p.popen.poll() is None]
            raise failure(running[0], f'had not finished when time_limit={time_limit} s passed '
                                      f'(still running: {", ".join(p.name for p in running)})')
        time.sleep(POLL_SECONDS)


def failure(process, what):
    """The DistributedRunError for ``process``, which ``what`` (e.g. 'exited with code 1')."""
    return DistributedRunError(
        f'launch_local: {process.name} {what}; every process of the job was ended. The end of '
        f'{process.name}\'s stderr:\n{process.stderr_tail()}',
        process.name, process.popen.poll(), process.read('stderr'))
