"""launch_local and the distributed LeNet workers: a real dist_sync job (scheduler, 1 server,
2 workers) on 127.0.0.1 with a small real Fashion-MNIST subset. Nothing is mocked."""
import os
import signal
import socket
import textwrap
import threading

import numpy as np
import psutil
import pytest
from mxnet import autograd, gluon, nd

from d2l_utils import launch_local, lenet
from d2l_utils.experiments.distributed import DistributedRunError, PortInUseError, free_port
from d2l_utils.experiments.distributed_lenet import (first_batch, moving_statistics,
                                                     one_process_statistics, read_records)

WORKER = 'd2l_utils.experiments.distributed_lenet'
STEPS = 4


def run_lenet(bn, folder, data_dir, max_steps=STEPS):
    outputs = launch_local(WORKER, '--bn', bn, '--out', str(folder), '--batch-size', '128',
                           '--train-subset', '1024', '--max-steps', str(max_steps),
                           num_workers=2, num_servers=1, time_limit=120,
                           env={'FASHION_MNIST_DIR': data_dir, 'OMP_NUM_THREADS': '1'})
    return read_records(outputs)


def job_processes(port):
    """Processes (any, still alive) started for the job whose scheduler uses ``port``."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get('DMLC_PS_ROOT_PORT') == str(port):
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


def saved(path):
    return {name: value.asnumpy() for name, value in nd.load(str(path)).items()}


def test_gradients_are_synchronized_but_moving_statistics_are_each_workers_own(
        tmp_path, fashion_mnist_dir):
    records = run_lenet('gluon', tmp_path, fashion_mnist_dir)
    assert [r['rank'] for r in records] == [0, 1]
    assert [r['steps'] for r in records] == [STEPS, STEPS]
    # after every step the learned parameters are bit-for-bit equal; the moving statistics
    # only after the first, when the Trainer broadcasts every parameter from worker 0
    assert records[0]['learned'] == records[1]['learned']
    moving = list(zip(records[0]['moving'], records[1]['moving']))
    assert moving[0][0] == moving[0][1]
    assert all(a != b for a, b in moving[1:])
    workers = [saved(tmp_path / f'worker{k}.params') for k in range(2)]
    learned = [n for n in workers[0] if not n.endswith(('running_mean', 'running_var'))]
    assert max(np.abs(workers[0][n] - workers[1][n]).max() for n in learned) <= 1e-6
    stats = [moving_statistics(str(tmp_path / f'worker{k}.params')) for k in range(2)]
    gap = max(np.abs(stats[0][layer][0] - stats[1][layer][0]).max() for layer in stats[0])
    assert gap > 1e-3, f'the workers\' moving means should differ, largest gap {gap:.2e}'


def test_synchronized_statistics_are_the_whole_batchs(tmp_path, fashion_mnist_dir):
    records = run_lenet('synced', tmp_path, fashion_mnist_dir, max_steps=1)
    X, y = first_batch(tmp_path, 2)
    assert X.shape[0] == 128
    expected = one_process_statistics(str(tmp_path / 'initial.params'), X)
    assert len(expected) == 4
    for record in records:
        for (mean, var), (worker_mean, worker_var) in zip(expected, record['batch_stats']):
            np.testing.assert_allclose(worker_mean, mean, rtol=0, atol=1e-5)
            np.testing.assert_allclose(worker_var, var, rtol=0, atol=1e-5)
    assert records[0]['moving'] == records[1]['moving']
    assert all(r['exchange_seconds'][0] > 0 for r in records)   # it did go through the store
    # the backward pass too: one step of one process on the whole batch gives the same weights
    net = lenet(bn='scratch')
    net.load_parameters(str(tmp_path / 'initial.params'))
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.3})
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(X), y).sum()
    loss.backward()
    trainer.step(X.shape[0])
    net.save_parameters(str(tmp_path / 'one_process.params'))
    one, distributed = saved(tmp_path / 'one_process.params'), saved(tmp_path / 'step1.params')
    assert max(np.abs(one[n] - distributed[n]).max() for n in one) < 1e-5


FAILING = textwrap.dedent('''
    import time
    import mxnet as mx
    kv = mx.kv.create('dist_sync')
    if kv.rank == 1:
        raise ValueError('worker one gives up')
    time.sleep(600)   # worker 0 would wait for ever
''')

SLEEPING = textwrap.dedent('''
    import time
    import mxnet as mx
    kv = mx.kv.create('dist_sync')
    print('rank', kv.rank, flush=True)
    time.sleep(600)
''')


def test_a_failing_worker_is_named_and_every_process_is_ended(tmp_path):
    script = tmp_path / 'failing.py'
    script.write_text(FAILING)
    port = free_port()
    with pytest.raises(DistributedRunError) as failed:
        launch_local(str(script), port=port, time_limit=60)
    assert failed.value.process == 'worker 1'
    # it raised, printed its traceback and then hung in MXNet's shutdown (or exited with 1)
    assert str(failed.value).startswith('launch_local: worker 1 ')
    assert 'ValueError: worker one gives up' in str(failed.value)
    assert job_processes(port) == []


def test_the_time_limit_ends_every_process(tmp_path):
    script = tmp_path / 'sleeping.py'
    script.write_text(SLEEPING)
    port = free_port()
    with pytest.raises(DistributedRunError, match='time_limit=8 s'):
        launch_local(str(script), port=port, time_limit=8)
    assert job_processes(port) == []


def test_a_keyboard_interrupt_ends_every_process(tmp_path):
    script = tmp_path / 'sleeping.py'
    script.write_text(SLEEPING)
    port = free_port()
    # Ctrl-C in the notebook, 4 s in: SIGINT raises KeyboardInterrupt in the main thread
    timer = threading.Timer(4, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            launch_local(str(script), port=port, time_limit=60)
    finally:
        timer.cancel()
    assert job_processes(port) == []


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f'port {port} on 127.0.0.1 is already in use'):
            launch_local('d2l_utils.experiments.distributed_lenet', port=port)


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='is not a file'):
        launch_local(str(tmp_path / 'missing.py'))
    with pytest.raises(ValueError, match=r'num_workers must be a positive integer.*got 0'):
        launch_local(WORKER, num_workers=0)
    with pytest.raises(TypeError, match='must be strings'):
        launch_local(WORKER, '--max-steps', 3)
