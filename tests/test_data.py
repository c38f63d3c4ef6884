"""load_data_fashion_mnist on the real Fashion-MNIST: batches as in the book, sizes, subsets, seeds,
argument errors, and where the arrays come from.

The oracle is an independent decode of Debian's files (gzip + numpy). Most tests pass
``root=`` explicitly and take small subsets: the decoded arrays are then cached per process,
and only one test converts the full training set.
"""
import functools
import gzip
import os
import shutil

import numpy as np
import pytest
import mxnet as mx
from mxnet import nd

from d2l_utils import (ArrayDataIter, data, device,
                       get_fashion_mnist_labels, load_data_fashion_mnist)
from d2l_utils.support import fashion_mnist_files as fmf
from d2l_utils.support.fashion_mnist_files import DataUnavailableError


@functools.lru_cache(maxsize=None)
def real_split(folder, train):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) read by hand from Debian's files."""
    prefix = 'train' if train else 't10k'
    with gzip.open(os.path.join(folder, prefix + '-images-idx3-ubyte.gz')) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(folder, prefix + '-labels-idx1-ubyte.gz')) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def epoch(data_iter):
    """One pass: (X numpy (N, 1, h, w), y numpy (N,), list of batch sizes)."""
    Xs, ys = [], []
    for X, y in data_iter:
        Xs.append(X.asnumpy())
        ys.append(y.asnumpy())
    return np.concatenate(Xs), np.concatenate(ys), [len(y) for y in ys]


def as_uint8(X):
    """Undo the /255 scaling exactly (float32 k/255 * 255 rounds back to k)."""
    return np.rint(X * 255).astype(np.uint8)


def check_batch(X, y, batch, size=(28, 28)):
    assert X.shape == (batch, 1) + size and X.dtype == np.float32
    assert y.shape == (batch,) and y.dtype == np.float32
    assert X.min() >= 0 and X.max() <= 1
    assert set(np.unique(y)) <= set(range(10))


# ---------------------------------------------------------------- batches

def test_full_training_set_batches_like_the_book(fashion_mnist_dir):
    train_iter, _ = load_data_fashion_mnist(256, root=fashion_mnist_dir, test_subset=10, seed=0)
    assert len(train_iter) == 235   # ceil(60000 / 256)
    sizes, pixel_sum, counts = [], 0.0, np.zeros(10, int)
    for X, y in train_iter:
        X, y = X.asnumpy(), y.asnumpy()
        check_batch(X, y, len(y))
        sizes.append(len(y))
        pixel_sum += X.sum(dtype=np.float64)
        counts += np.bincount(y.astype(int), minlength=10)
    assert sizes == [256] * 234 + [96]   # the last partial batch is kept
    # one epoch serves every example once: 6000 per class, and the known mean pixel 0.2860
    assert counts.tolist() == [6000] * 10
    images, _ = real_split(fashion_mnist_dir, True)
    assert pixel_sum / images.size == pytest.approx(images.mean() / 255, rel=1e-6)
    assert pixel_sum / images.size == pytest.approx(0.2860, abs=1e-4)


def test_test_set_is_served_in_file_order_every_epoch(fashion_mnist_dir):
    _, test_iter = load_data_fashion_mnist(256, root=fashion_mnist_dir, train_subset=10, seed=0,
                                           shuffle=True)
    assert len(test_iter) == 40   # ceil(10000 / 256)
    images, labels = real_split(fashion_mnist_dir, False)
    first = epoch(test_iter)
    X, y, sizes = first
    assert sizes == [256] * 39 + [16]
    check_batch(X, y, 10000)
    np.testing.assert_allclose(X[:, 0], images.astype(np.float32) / 255, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(y, labels)
    X2, y2, _ = epoch(test_iter)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize('resize, size', [(32, (32, 32)), ((20, 36), (20, 36)),
                                          ([14, 14], (14, 14))])
def test_resize_serves_the_requested_height_and_width(fashion_mnist_dir, resize, size):
    train_iter, test_iter = load_data_fashion_mnist(4, resize=resize, root=fashion_mnist_dir,
                                                    train_subset=10, test_subset=6, seed=0)
    for data_iter, n in ((train_iter, 10), (test_iter, 6)):
        X, y, sizes = epoch(data_iter)
        check_batch(X, y, n, size)
        assert sizes == [4] * (n // 4) + [n % 4]


@pytest.mark.parametrize('size', [96, 224])
def test_resize_serves_the_pixels_of_the_books_loader(fashion_mnist_dir, size):
    """The oracle is d2lzh's own pipeline (transforms.Resize, then ToTensor, in a DataLoader) on
    the same 64 test images; the book resizes uint8 images, so values may differ by a rounding
    step (1/255)."""
    from mxnet.gluon import data as gdata
    from mxnet.gluon.data.vision import transforms
    images, labels, _ = data.fashion_mnist_arrays(train=False, root=fashion_mnist_dir)
    book_set = gdata.ArrayDataset(nd.array(images[:64, :, :, None], dtype='uint8'),
                                  nd.array(labels[:64]))
    transformer = transforms.Compose([transforms.Resize(size), transforms.ToTensor()])
    book_X, _ = next(iter(gdata.DataLoader(book_set.transform_first(transformer), 64)))
    _, test_iter = load_data_fashion_mnist(64, resize=size, root=fashion_mnist_dir)
    ours, _ = next(iter(test_iter))
    # before: up to 0.36-0.44 apart (align_corners=True), mean brightness 0.236 against 0.247
    assert ours.shape == book_X.shape == (64, 1, size, size)
    assert np.abs(ours.asnumpy() - book_X.asnumpy()).max() < 0.01
    assert abs(ours.mean().asscalar() - book_X.mean().asscalar()) < 0.001


def test_resize_to_28_leaves_the_images_unchanged(fashion_mnist_dir):
    kwargs = dict(root=fashion_mnist_dir, train_subset=10, test_subset=20, seed=0)
    X, _, _ = epoch(load_data_fashion_mnist(8, **kwargs)[1])
    X28, _, _ = epoch(load_data_fashion_mnist(8, resize=28, **kwargs)[1])
    np.testing.assert_allclose(X28, X, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- subsets and seeds

def test_subsets_have_the_stated_size_and_hold_real_examples(fashion_mnist_dir):
    train_iter, test_iter = load_data_fashion_mnist(128, root=fashion_mnist_dir,
                                                    train_subset=500, test_subset=300, seed=3)
    assert (len(train_iter), len(test_iter)) == (4, 3)
    for data_iter, train, n in ((train_iter, True, 500), (test_iter, False, 300)):
        X, y, sizes = epoch(data_iter)
        assert sizes[-1] == n - 128 * (len(sizes) - 1)
        check_batch(X, y, n)
        # every served (image, label) pair is a pair of the real split (its images are unique)
        images, labels = real_split(fashion_mnist_dir, train)
        label_of = {image.tobytes(): label for image, label in zip(images, labels)}
        served = [image.tobytes() for image in as_uint8(X[:, 0])]
        assert len(set(served)) == n   # n different examples
        assert [label_of[image] for image in served] == y.astype(np.uint8).tolist()


def test_test_subset_keeps_file_order(fashion_mnist_dir):
    _, test_iter = load_data_fashion_mnist(50, root=fashion_mnist_dir, train_subset=10,
                                           test_subset=200, seed=5)
    images, _ = real_split(fashion_mnist_dir, False)
    index_of = {image.tobytes(): i for i, image in enumerate(images)}
    X, _, _ = epoch(test_iter)
    positions = [index_of[image.tobytes()] for image in as_uint8(X[:, 0])]
    assert positions == sorted(positions)


def two_epochs(seed, **kwargs):
    train_iter, test_iter = load_data_fashion_mnist(64, train_subset=300, test_subset=100,
                                                    seed=seed, **kwargs)
    return epoch(train_iter)[:2], epoch(train_iter)[:2], epoch(test_iter)[:2]


def same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def examples(X):
    return sorted(image.tobytes() for image in as_uint8(X[:, 0]))


def test_seed_repeats_subset_and_shuffle_order_and_other_seeds_differ(fashion_mnist_dir):
    first, second, test = two_epochs(0, root=fashion_mnist_dir)
    again = two_epochs(0, root=fashion_mnist_dir)
    assert same(first, again[0]) and same(second, again[1]) and same(test, again[2])
    # each epoch is a fresh order of the same examples
    assert not same(first, second)
    assert examples(first[0]) == examples(second[0])

    other_first, _, other_test = two_epochs(1, root=fashion_mnist_dir)
    assert examples(other_first[0]) != examples(first[0])   # another training subset
    assert examples(other_test[0]) != examples(test[0])     # another test subset


def test_without_seed_numpy_global_seed_repeats_subset_and_order(fashion_mnist_dir):
    state = np.random.get_state()
    try:
        runs = []
        for _ in range(2):
            np.random.seed(7)
            runs.append(two_epochs(None, root=fashion_mnist_dir))
        np.random.seed(8)
        runs.append(two_epochs(None, root=fashion_mnist_dir))
    finally:
        np.random.set_state(state)
    assert all(same(a, b) for a, b in zip(runs[0], runs[1]))
    assert examples(runs[2][0][0]) != examples(runs[0][0][0])


def test_no_shuffle_serves_the_training_subset_in_file_order(fashion_mnist_dir):
    train_iter, _ = load_data_fashion_mnist(64, root=fashion_mnist_dir, train_subset=200,
                                            test_subset=10, seed=0, shuffle=False)
    images, _ = real_split(fashion_mnist_dir, True)
    index_of = {image.tobytes(): i for i, image in enumerate(images)}
    X, _, _ = epoch(train_iter)
    positions = [index_of[image.tobytes()] for image in as_uint8(X[:, 0])]
    assert positions == sorted(positions)


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize('kwargs, message', [
    (dict(batch_size=0), 'batch_size must be a positive integer (examples per mini-batch, e.g. '
                         '256); got 0'),
    (dict(batch_size=-5), 'got -5'),
    (dict(batch_size=2.5), 'got 2.5'),
    (dict(batch_size=True), 'got True'),
    (dict(resize=0), 'resize must be a positive int or a (height, width) pair of positive ints'),
    (dict(resize=(28,)), 'got (28,)'),
    (dict(resize=(32, -1)), 'got (32, -1)'),
    (dict(resize='ab'), "got 'ab'"),
    (dict(resize=32.0), 'got 32.0'),
    # before: accepted, then MXNet's int overflow "dim_size >= -1 (-31072 vs. -1)" at batch 1
    (dict(resize=100000), 'resize must be at most 4096 per side'),
    (dict(resize=(28, 5000)), 'got (28, 5000)'),
    (dict(batch_size=256, resize=4096), 'holds 4294967296 values, more than MXNet 1.9.1 can '
                                        'index (2**31 - 1); use a smaller batch_size (at most '
                                        '127 here)'),
])
def test_bad_batch_size_or_resize_fails_at_once_without_loading(no_local_sources, kwargs,
                                                                message):
    # no source is reachable here: a late check would raise DataUnavailableError instead
    kwargs = dict(dict(batch_size=8), **kwargs)
    with pytest.raises(ValueError) as err:
        load_data_fashion_mnist(**kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize('kwargs, message', [
    (dict(train_subset=60001), 'train_subset must be an integer between 1 and 60000 (the size of '
                               'the set), got 60001'),
    (dict(train_subset=0), 'got 0'),
    (dict(test_subset=10001), 'test_subset must be an integer between 1 and 10000'),
    (dict(test_subset=-1), 'got -1'),
    (dict(test_subset=0.5), 'got 0.5'),
])
def test_subset_out_of_range_raises_a_clear_value_error(fashion_mnist_dir, kwargs, message):
    with pytest.raises(ValueError) as err:
        load_data_fashion_mnist(8, root=fashion_mnist_dir, **kwargs)
    assert message in str(err.value)


def test_numpy_integers_are_accepted_as_sizes(fashion_mnist_dir):
    train_iter, test_iter = load_data_fashion_mnist(
        np.int64(4), resize=np.int32(30), root=fashion_mnist_dir, train_subset=np.int64(10),
        test_subset=np.int64(6), seed=0)
    X, y, sizes = epoch(train_iter)
    check_batch(X, y, 10, (30, 30))
    assert sizes == [4, 4, 2]


# ---------------------------------------------------------------- where the arrays come from

def put_test_split(real_dir, folder, decompressed):
    folder.mkdir()
    for name in ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'):
        if decompressed:
            with gzip.open(os.path.join(real_dir, name)) as src, \
                    open(folder / name[:-len('.gz')], 'xb') as dest:
                dest.write(src.read())
        else:
            shutil.copyfile(os.path.join(real_dir, name), folder / name)


@pytest.mark.parametrize('decompressed', [False, True], ids=['gz', 'decompressed'])
def test_loader_reads_FASHION_MNIST_DIR(fashion_mnist_dir, isolated_sources, tmp_path,
                                        monkeypatch, decompressed):
    folder = tmp_path / 'env'
    put_test_split(fashion_mnist_dir, folder, decompressed)
    monkeypatch.setenv(fmf.ENV_VAR, str(folder))
    images, labels, sources = data.fashion_mnist_arrays(train=False, mirrors=())
    assert [os.path.dirname(s) for s in sources] == [str(folder)] * 2
    real_images, real_labels = real_split(fashion_mnist_dir, False)
    np.testing.assert_array_equal(images, real_images)
    np.testing.assert_array_equal(labels, real_labels)


def test_decoded_cache_does_not_outlive_a_change_of_FASHION_MNIST_DIR(
        fashion_mnist_dir, no_local_sources, tmp_path, monkeypatch):
    good, empty = tmp_path / 'good', tmp_path / 'empty'
    put_test_split(fashion_mnist_dir, good, decompressed=False)
    empty.mkdir()
    monkeypatch.setenv(fmf.ENV_VAR, str(good))
    first = data.fashion_mnist_arrays(train=False, mirrors=())

    monkeypatch.setenv(fmf.ENV_VAR, str(empty))
    with pytest.raises(DataUnavailableError) as err:
        data.fashion_mnist_arrays(train=False, mirrors=())
    assert str(empty) in str(err.value)

    # back to the first folder: served from memory, even once its files are gone
    for name in os.listdir(good):
        os.remove(good / name)
    monkeypatch.setenv(fmf.ENV_VAR, str(good))
    assert data.fashion_mnist_arrays(train=False, mirrors=()) is first


@pytest.mark.parametrize('ctx, error, message', [
    ('cpu', TypeError, "load_data_fashion_mnist: ctx must be a device such as mx.cpu() or "
                       "mx.gpu(0), e.g. ctx=try_gpu(); got 'cpu' (of type str)."),
    ([mx.cpu()], TypeError, 'load_data_fashion_mnist keeps the data on one device; got the list '
                            '[cpu(0)]. Pass one device, e.g. ctx=try_gpu(); to train on several '
                            'devices, keep the data on the CPU'),
    ((mx.cpu(),), TypeError, 'got the list [cpu(0)]'),
    (0, TypeError, 'got 0 (of type int)'),
])
def test_ctx_that_is_not_one_device_fails_before_loading(no_local_sources, ctx, error, message):
    # no source is reachable: before the check, 'cpu' and lists failed deep inside MXNet, and
    # here the load itself would raise DataUnavailableError first
    with pytest.raises(error) as err:
        load_data_fashion_mnist(8, ctx=ctx, train_subset=8, test_subset=8, seed=0)
    assert message in str(err.value)


@pytest.mark.skipif(device.num_gpus() > 0, reason='needs a machine where MXNet sees no GPU')
@pytest.mark.parametrize('ctx', [mx.gpu(0), mx.gpu(2)])
def test_gpu_ctx_that_cannot_run_fails_before_loading_and_points_to_try_gpu(no_local_sources,
                                                                              ctx):
    # a real unusable GPU request: this machine has no GPU (before: MXNet's C++ trace
    # "Compile with USE_CUDA=1" from storage.cc)
    device.reset_gpu_cache()
    with pytest.raises(ValueError) as err:
        load_data_fashion_mnist(8, ctx=ctx, train_subset=8, test_subset=8, seed=0)
    message = str(err.value)
    assert 'ctx=%s, but this GPU cannot be used: no GPU visible to MXNet' % ctx in message
    assert 'Use ctx=try_gpu(), which falls back to the CPU.' in message


@pytest.mark.parametrize('seed', [-1, 2 ** 32, 1.5, 'a', True])
def test_seed_outside_numpy_range_or_not_an_integer_fails_at_once(no_local_sources, seed):
    with pytest.raises(ValueError) as err:
        load_data_fashion_mnist(8, seed=seed, train_subset=8, test_subset=8)
    assert ('load_data_fashion_mnist: seed must be None or an integer from 0 to 2**32 - 1 '
            "(numpy's range), e.g. seed=0; got %r" % (seed,)) in str(err.value)


@pytest.mark.parametrize('seed', [0, 5, 2 ** 32 - 1])
def test_every_seed_numpy_accepts_works_and_shuffles_from_seed_plus_one(fashion_mnist_dir, seed):
    """seed=2**32-1 used to fail (the shuffle was seeded with seed + 1); the shuffle stream is
    now (seed + 1) mod 2**32, so the order for every other seed is the one it always was."""
    train_iter, _ = load_data_fashion_mnist(16, root=fashion_mnist_dir, train_subset=40,
                                            test_subset=8, seed=seed)
    X_in_order, y_in_order, _ = epoch(train_iter.in_order())
    X, y, sizes = epoch(train_iter)
    assert sizes == [16, 16, 8]
    # oracle: numpy's own permutation from the documented stream
    order = np.random.RandomState((seed + 1) % 2 ** 32).permutation(40)
    np.testing.assert_array_equal(X, X_in_order[order])
    np.testing.assert_array_equal(y, y_in_order[order])


@pytest.mark.parametrize('shuffle', ['no', 'False', 0, 1, None])
def test_shuffle_must_be_true_or_false(no_local_sources, shuffle):
    # before: 'no' was accepted and, being a non-empty string, shuffled
    with pytest.raises(TypeError) as err:
        load_data_fashion_mnist(8, shuffle=shuffle, train_subset=8, test_subset=8, seed=0)
    assert 'load_data_fashion_mnist: shuffle must be True or False; got %r' % (shuffle,) \
        in str(err.value)


def test_numpy_bool_is_accepted_as_shuffle(fashion_mnist_dir):
    train_iter, _ = load_data_fashion_mnist(8, root=fashion_mnist_dir, train_subset=16,
                                            test_subset=8, seed=0, shuffle=np.bool_(False))
    assert train_iter.shuffle is False
    same_order = epoch(train_iter.in_order())[1]
    np.testing.assert_array_equal(epoch(train_iter)[1], same_order)


# ---------------------------------------------------------------- text labels

def test_text_labels_of_real_labels_follow_the_dataset_classes(fashion_mnist_dir):
    _, test_iter = load_data_fashion_mnist(10, root=fashion_mnist_dir, train_subset=8,
                                           test_subset=10, seed=0)
    _, y = next(iter(test_iter))                      # float32 NDArray, as the loader serves
    texts = get_fashion_mnist_labels(y)
    # oracle: Zalando's class list, indexed by the integer labels
    classes = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker',
               'bag', 'ankle boot']
    assert texts == [classes[int(k)] for k in y.asnumpy()]
    assert get_fashion_mnist_labels(np.array([0, 9], dtype=np.uint8)) == ['t-shirt', 'ankle boot']
    assert get_fashion_mnist_labels([2.0, np.int64(1)]) == ['pullover', 'trouser']


@pytest.mark.parametrize('labels, bad', [
    ([-1], '-1'),                    # before: 'ankle boot' (negative indexing)
    ([3, 10], '10 at position 1'),   # before: IndexError 'tuple index out of range'
    ([2.7], '2.7'),                  # before: 'pullover' (int() truncates)
    (nd.array([1, 2.5]), '2.5 at position 1'),
    ([float('nan')], 'nan'),
    ([True], 'True'),
])
def test_labels_outside_the_ten_classes_are_refused(labels, bad):
    with pytest.raises(ValueError) as err:
        get_fashion_mnist_labels(labels)
    message = str(err.value)
    assert 'get_fashion_mnist_labels expects class indices 0-9' in message
    assert 'got %s' % bad in message and '9 ankle boot' in message


@pytest.mark.parametrize('labels', [3, 'coat', np.array(4)])
def test_a_single_label_instead_of_a_sequence_is_refused(labels):
    with pytest.raises(TypeError, match='expects a sequence of class indices, e.g. \\[3\\]'):
        get_fashion_mnist_labels(labels)


# ---------------------------------------------------------------- ArrayDataIter arguments

@pytest.mark.parametrize('X, y, error, message', [
    # before: accepted, and the 2 images without a label were dropped silently
    (nd.zeros((10, 1, 28, 28)), nd.zeros((8,)), ValueError,
     'X has 10 examples (shape (10, 1, 28, 28)) but y has 8 labels (shape (8,))'),
    (nd.zeros((8, 1, 28, 28)), nd.zeros((10,)), ValueError, 'X has 8 examples'),
    (np.zeros((8, 1, 28, 28)), nd.zeros((8,)), TypeError,
     'ArrayDataIter expects X and y as NDArrays; got X of type ndarray'),
    (nd.zeros((8, 1, 28, 28)), [0] * 8, TypeError, 'got y of type list'),
    (nd.zeros((8, 1, 28, 28)), nd.zeros((8, 10)), ValueError,
     'expects y of shape (N,), one class index per example; got shape (8, 10)'),
    (nd.zeros((8, 1, 28, 28)), nd.zeros((8,), ctx=mx.cpu(1)), ValueError,
     'expects X and y on one device; got X on cpu(0) and y on cpu(1)'),
])
def test_array_data_iter_refuses_examples_and_labels_that_do_not_pair_up(X, y, error, message):
    with pytest.raises(error) as err:
        ArrayDataIter(X, y, 4)
    assert message in str(err.value)


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(shuffle='no'), TypeError, 'ArrayDataIter: shuffle must be True or False'),
    (dict(shuffle=True, seed=-1), ValueError, 'ArrayDataIter: seed must be None or an integer'),
    (dict(resize=100000), ValueError, 'resize must be at most 4096 per side'),
])
def test_array_data_iter_checks_shuffle_seed_and_resize(kwargs, error, message):
    with pytest.raises(error) as err:
        ArrayDataIter(nd.zeros((8, 1, 28, 28)), nd.zeros((8,)), 4, **kwargs)
    assert message in str(err.value)


def test_rng_copy_replays_the_next_epochs_orders_without_advancing_the_iterator():
    train_iter, _ = load_data_fashion_mnist(64, train_subset=200, test_subset=10, seed=3)
    next(iter(train_iter))   # one epoch drawn already: the copy starts from the next one
    rng = train_iter.rng_copy()
    replayed = [data.epoch_order(train_iter.num_examples, rng) for _ in range(2)]
    served = [np.concatenate([y.asnumpy() for _, y in train_iter]) for _ in range(2)]
    labels = train_iter.y.asnumpy()
    for order, epoch in zip(replayed, served):
        np.testing.assert_array_equal(labels[order], epoch)
    assert not np.array_equal(replayed[0], replayed[1])
    unseeded = data.ArrayDataIter(train_iter.X, train_iter.y, 64, shuffle=True)
    assert unseeded.rng_copy() is None   # it draws from numpy's global generator
