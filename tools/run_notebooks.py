"""Execute notebooks top to bottom in a fresh kernel, in full or quick mode.

    python tools/run_notebooks.py                 # full run of every notebook, saved in place
    python tools/run_notebooks.py --quick -o DIR  # quick run (what the tests do), copies in DIR
    python tools/run_notebooks.py notebooks/1_batch_norm_scratch.ipynb   # just one
    python tools/run_notebooks.py --timeout 300 ...   # per-cell limit in seconds (default 900)

A notebook is written only when its whole run finished without error, and atomically (a temp
file in the same folder, then ``os.replace``): a failing cell or Ctrl-C leaves the file as it
was, and the message says which cell failed. The file keeps its permissions; a read-only
notebook is refused (write the run elsewhere with -o). Each notebook's time is printed with the
machine's load average before and after it, so a timing taken on a busy machine shows as such;
a cell that runs long prints a progress line every PROGRESS_EVERY seconds.

Quick mode follows papermill's convention: after the cell tagged ``parameters`` it inserts a
cell (tagged ``injected-parameters``) that overrides the knobs named in ``QUICK_PARAMETERS``,
if that parameters cell defines them. Every notebook names its knobs the same way.
"""
import argparse
import ast
import asyncio
import inspect
import os
import pathlib
import signal
import stat
import sys
import tempfile
import threading
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / 'notebooks'

# The kernel the install provides (ipykernel's python3). A notebook saved with another display
# name is rewritten by Jupyter on opening, which marks it modified: every run writes this one.
KERNELSPEC = {'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'}

# The knobs a quick run turns, shared by all notebooks: small real subsets, one epoch.
QUICK_PARAMETERS = {
    'NUM_EPOCHS': 1,
    'TRAIN_SUBSET': 2048,
    'TEST_SUBSET': 1024,
    'QUICK': True,
}


# The per-cell time limit. The longest cell of the course (the book's full experiment in
# notebook 3) is budgeted at 9 minutes on 2 idle cores; a cell past 15 minutes is stuck.
DEFAULT_TIMEOUT = 900
PROGRESS_EVERY = 60     # seconds between "still running" lines of one cell

# Set by the SIGINT handler of main(): tells a Ctrl-C apart from a KeyboardInterrupt that a
# cell raised itself (both reach this runner as a cell error named KeyboardInterrupt).
INTERRUPTED = threading.Event()


class NotebookRunError(Exception):
    """A cell of a notebook failed; the notebook file was left unchanged.

    path: the notebook; cell_index: 0-based index of the failing cell in the notebook file
    (not counting a quick run's injected cell), or None if no cell holds the error;
    ename, evalue: the exception's name and message inside the kernel.
    """

    def __init__(self, path, cell_index, ename, evalue, source_line=''):
        self.path, self.cell_index, self.ename, self.evalue = path, cell_index, ename, evalue
        where = ('cell %d (%s)' % (cell_index, source_line) if cell_index is not None
                 else 'a cell')
        super().__init__('%s: %s failed with %s: %s. The notebook file was left unchanged.'
                         % (path, where, ename, evalue))


class NotebookFileError(ValueError):
    """A notebook file cannot be run as asked (not valid JSON, read-only, no parameters cell)."""


def read_notebook(path):
    """The notebook at ``path`` (nbformat 4), or NotebookFileError naming it and the cause."""
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as err:   # nbformat's NotJSONError, JSONDecodeError, validation errors
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise NotebookFileError(
            f'{path} is not a readable notebook ({first}). Restore it from git '
            f'(git checkout -- {path}) or open and re-save it in Jupyter.') from None


def check_writable(path):
    """NotebookFileError if a full run could not write ``path`` back (read-only for its owner,
    or for this user)."""
    mode = os.stat(path).st_mode
    if not mode & stat.S_IWUSR or not os.access(path, os.W_OK):
        raise NotebookFileError(
            f'{path} is read-only (mode {stat.S_IMODE(mode):04o}), so a full run would not '
            f'write it back: make it writable (chmod u+w {path}) or write the executed copy '
            f'elsewhere with -o DIR.')


def notebooks(paths=()):
    """The notebooks to run: the given paths, or every notebook in notebooks/ in name order.

    Raises FileNotFoundError (saying what exists) for a path that is not a notebook file.
    """
    if not paths:
        return sorted(NOTEBOOK_DIR.glob('*.ipynb'))
    found = []
    for p in paths:
        path = pathlib.Path(p).resolve()
        if not path.is_file() or path.suffix != '.ipynb':
            problem = 'is not an .ipynb file' if path.exists() else 'does not exist'
            raise FileNotFoundError(
                'run_notebooks: %s %s. Give paths of notebooks, e.g. notebooks/%s, or no path '
                'to run every notebook in %s.'
                % (p, problem, next((n.name for n in sorted(NOTEBOOK_DIR.glob('*.ipynb'))),
                                    '1_batch_norm_scratch.ipynb'), NOTEBOOK_DIR))
        found.append(path)
    return found


def parameters_cell_index(nb):
    """Index of the cell tagged ``parameters``; ValueError if there is none or more than one."""
    found = [i for i, cell in enumerate(nb.cells)
             if 'parameters' in cell.get('metadata', {}).get('tags', [])]
    if len(found) != 1:
        raise NotebookFileError(
            f'expected exactly one cell tagged "parameters" (the knobs a quick run turns, e.g. '
            f'NUM_EPOCHS), found {len(found)}: tag that cell (in Jupyter: View > Cell Toolbar '
            f'> Tags, or the property inspector)')
    return found[0]


def defined_names(source):
    """Names assigned at the top level of a cell's source."""
    names = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def inject_quick_parameters(nb, overrides=None):
    """Insert the quick-mode overrides after the parameters cell; returns the values injected."""
    overrides = dict(QUICK_PARAMETERS, **(overrides or {}))
    index = parameters_cell_index(nb)
    names = defined_names(nb.cells[index].source)
    values = {k: v for k, v in overrides.items() if k in names}
    source = '# Injected by tools/run_notebooks.py --quick\n' + ''.join(
        '%s = %r\n' % item for item in sorted(values.items()))
    cell = nbformat.v4.new_code_cell(source, metadata={'tags': ['injected-parameters']})
    nb.cells.insert(index + 1, cell)
    return values


def write_atomically(nb, path):
    """Write ``nb`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = pathlib.Path(path)
    # mkstemp creates the file 0600: give the result the mode the notebook had (or a new file's
    # usual mode), so other users of a shared course folder can still read it
    mode = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(prefix='.' + path.name + '.', suffix='.tmp', dir=str(path.parent))
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            nbformat.write(nb, f)
        os.chmod(tmp, mode)
        os.replace(tmp, str(path))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def where(nb, index, injected_at):
    """(index in the notebook file, first source line) of the run's cell ``index``: a quick
    run's injected cell is not counted."""
    file_index = index - 1 if injected_at is not None and index > injected_at else index
    first = next((line for line in nb.cells[index].source.splitlines() if line.strip()), '')
    return file_index, first.strip()[:60]


def failed_cell(nb, injected_at):
    """(index in the notebook file, first source line) of the cell holding an error output."""
    for i, cell in enumerate(nb.cells):
        if any(out.get('output_type') == 'error' for out in cell.get('outputs', [])):
            return where(nb, i, injected_at)
    return None, ''


def run_in_worker(client):
    """``client.execute()`` in a worker thread, so that Ctrl-C reaches this thread.

    In the main thread nbclient takes SIGINT over itself (it shuts the kernel down and the run
    then fails with an unrelated error). Here Ctrl-C raises KeyboardInterrupt in the main
    thread; the kernel is interrupted (shut down if that does not end the run) before it is
    re-raised. An exception of the run itself is re-raised here.
    """
    outcome = []

    def work():
        try:
            client.execute(env=kernel_environment())
        except BaseException as err:   # handed to the main thread
            outcome.append(err)

    worker = threading.Thread(target=work, name='run_notebooks-kernel', daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
            report_progress(client)
    except KeyboardInterrupt:
        stop_kernel(client, worker)
        raise
    if outcome:
        raise outcome[0]


class CellClock:
    """Which cell a run is in and since when; the hooks nbclient calls keep it current."""

    def __init__(self, nb, injected_at):
        self.nb, self.injected_at = nb, injected_at
        self.index, self.started, self.reported = None, None, 0.0

    def on_cell_execute(self, cell, cell_index, **_):
        self.index, self.started, self.reported = cell_index, time.time(), 0.0

    def where(self):
        """(index in the notebook file, first source line) of the running cell."""
        return where(self.nb, self.index, self.injected_at)

    def describe(self):
        return 'cell %d (%s)' % self.where()


def report_progress(client):
    """Print a line when the current cell has run another PROGRESS_EVERY seconds."""
    clock = getattr(client, 'cell_clock', None)
    if clock is None or clock.started is None:
        return
    running = time.time() - clock.started
    if running - clock.reported >= PROGRESS_EVERY:
        clock.reported = running
        print(f'  ... {clock.describe()} running for {running:.0f} s (limit {client.timeout:g} s)',
              flush=True)


def kernel_environment():
    """The environment the kernel starts with: ours without MPLBACKEND. A non-interactive
    backend there (MPLBACKEND=Agg, as the tests set) would replace the inline backend and the
    notebook would be saved without its figures."""
    return {name: value for name, value in os.environ.items() if name != 'MPLBACKEND'}


def call(method):
    """Call a kernel-manager method that may be a coroutine function (jupyter_client >= 7)."""
    result = method()
    if inspect.isawaitable(result):
        asyncio.run(result)


def stop_kernel(client, worker, wait=30):
    """Interrupt the kernel of a run, then shut it down if the run has not ended."""
    if client.km is not None:
        try:
            call(client.km.interrupt_kernel)
        except Exception:   # the kernel may already be gone
            pass
    worker.join(wait)
    if worker.is_alive() and client.km is not None:
        try:
            call(lambda: client.km.shutdown_kernel(now=True))
        except Exception:
            pass
        worker.join(wait)


def execute(path, quick=False, output=None, timeout=DEFAULT_TIMEOUT):
    """Run one notebook in a fresh kernel (cwd: its folder); returns the seconds it took.

    The executed notebook goes to ``output``, or back to ``path`` for a full run, or nowhere
    for a quick run without ``output``; it is written only if every cell ran without error,
    atomically, keeping the file's mode. ``timeout``: seconds per cell. A failing or timed-out
    cell raises NotebookRunError naming it; an unreadable, read-only (full run in place) or
    untagged (quick run) notebook raises NotebookFileError before any cell runs; Ctrl-C
    (KeyboardInterrupt) propagates; in every case nothing is written.
    """
    path = pathlib.Path(path)
    nb = read_notebook(path)
    target = output if output is not None else (None if quick else path)
    if target is not None and pathlib.Path(target).exists():
        check_writable(target)
    injected_at = None
    if quick:
        injected_at = parameters_cell_index(nb) + 1
        inject_quick_parameters(nb)
    clock = CellClock(nb, injected_at)
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3',
                            resources={'metadata': {'path': str(path.parent)}},
                            on_cell_execute=clock.on_cell_execute)
    client.cell_clock = clock
    start = time.time()
    try:
        run_in_worker(client)
    except KeyboardInterrupt:
        raise KeyboardInterrupt('run of %s interrupted' % path.name) from None
    except Exception as err:
        if getattr(err, 'ename', '') == 'KeyboardInterrupt' and (
                INTERRUPTED.is_set() or INTERRUPTED.wait(1.0)):
            # Ctrl-C reached the kernel too (a cell that raises KeyboardInterrupt itself, with
            # no Ctrl-C, is a failing cell like any other)
            raise KeyboardInterrupt('run of %s interrupted' % path.name) from None
        index, line = failed_cell(nb, injected_at)
        if isinstance(err, CellExecutionError):
            ename, evalue = err.ename, err.evalue
        else:   # a timeout or a dead kernel: no error output in any cell
            ename, evalue = type(err).__name__, (str(err).strip().splitlines() or [''])[0]
            if clock.index is not None:   # the cell that was running
                index, line = clock.where()
                if 'timed out' in evalue.lower() or 'Timeout' in ename:
                    evalue += f' (the limit is {timeout:g} s per cell: --timeout SECONDS)'
        raise NotebookRunError(path, index, ename, evalue, line) from None
    seconds = time.time() - start
    if target is not None:
        nb.metadata['kernelspec'] = dict(KERNELSPEC)
        write_atomically(nb, target)
    return seconds


def load_average():
    """The 1-minute load average, or None where the OS does not report one (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def format_load(value):
    return 'n/a' if value is None else '%.2f' % value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('paths', nargs='*', help='notebooks (default: all in notebooks/)')
    parser.add_argument('--quick', action='store_true', help='inject the quick parameters')
    parser.add_argument('-o', '--output-dir', help='write executed copies here (default: in '
                        'place for a full run; nowhere for a quick run)')
    parser.add_argument('--timeout', type=positive_seconds, default=DEFAULT_TIMEOUT,
                        help=f'seconds one cell may run (default {DEFAULT_TIMEOUT})')
    args = parser.parse_args(argv)
    try:
        paths = notebooks(args.paths)
        for path in paths:   # every file readable before the first one runs
            read_notebook(path)
        if args.output_dir and os.path.exists(args.output_dir) \
                and not os.path.isdir(args.output_dir):
            raise NotebookFileError(f'-o {args.output_dir}: is a file; -o needs a folder '
                                    f'(it is created if missing)')
    except (FileNotFoundError, NotebookFileError) as err:
        print(err, file=sys.stderr)
        return 2
    INTERRUPTED.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_sigint)
    cores = os.cpu_count() or 1
    print('%-45s %9s   load average (1 min, %d cores) before -> after'
          % ('notebook', 'time', cores),
          flush=True)
    total = 0.0
    for path in paths:
        output = pathlib.Path(args.output_dir) / path.name if args.output_dir else None
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
        before = load_average()
        try:
            seconds = execute(path, quick=args.quick, output=output, timeout=args.timeout)
        except NotebookRunError as err:
            print(err, file=sys.stderr)
            return 1
        except NotebookFileError as err:
            print(f'{path}: {err}' if str(path) not in str(err) else err, file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print('\ninterrupted while running %s; the notebook file was left unchanged.'
                  % path.name, file=sys.stderr)
            return 130
        total += seconds
        print('%-45s %7.1f s   %s -> %s' % (path.name, seconds, format_load(before),
                                            format_load(load_average())), flush=True)
    print('%-45s %7.1f s' % ('total', total))
    return 0


def positive_seconds(text):
    """argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not 0 < value < float('inf'):
        raise argparse.ArgumentTypeError(f'expected a positive number of seconds, e.g. 600; '
                                         f'got {text!r}')
    return value


def on_sigint(signum, frame):
    INTERRUPTED.set()
    signal.default_int_handler(signum, frame)


if __name__ == '__main__':
    sys.exit(main())
