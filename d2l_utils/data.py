"""Fashion-MNIST as in-memory NDArrays, batched by slicing a shuffled index.

The book's loader decodes every image through a per-sample Python transform on each epoch;
here the IDX files are decoded once, scaled to float32 in [0, 1] once, kept in memory (on the
training device if asked), and a batch is one ``take`` of a shuffled index.
"""
import copy
import math
import numbers
import os

import numpy as np
import mxnet as mx
from mxnet import nd

from . import device
from .support import fashion_mnist_files as files
from .support.validation import is_integer, require_positive_int

__all__ = ['CHANCE_LOSS', 'NUM_CLASSES', 'TEXT_LABELS', 'UNIFORM_GUESS_ACC', 'ArrayDataIter',
           'BatchCount', 'epoch_order', 'fashion_mnist_arrays', 'get_fashion_mnist_labels',
           'load_data_fashion_mnist']

TEXT_LABELS = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat',
               'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot')
NUM_CLASSES = len(TEXT_LABELS)
# What a net that learned nothing scores: the uniform guess over the classes
CHANCE_LOSS = math.log(NUM_CLASSES)    # its cross-entropy, ln 10 = 2.303
UNIFORM_GUESS_ACC = 1 / NUM_CLASSES    # its accuracy

# (train, root, $FASHION_MNIST_DIR) -> (images, labels, sources): each split is decoded once per
# process. Public so tests can empty it and put it back (tests/conftest.py).
DECODED_CACHE = {}


# The largest side ``resize`` accepts: far above the book's largest input (224 for AlexNet and
# VGG), and small enough that a typo (100000) fails here instead of overflowing inside MXNet.
MAX_RESIZE = 4096
# MXNet 1.9.1's wheels index a tensor with 32-bit integers: a batch holding more values fails
MAX_BATCH_VALUES = 2 ** 31 - 1


def get_fashion_mnist_labels(labels):
    """Text labels for class indices 0-9: a list of str, one per label.

    labels: shape (N,), an NDArray, a numpy array or any sequence of numbers; whole-number
    floats count (the loader's labels are float32). Raises TypeError for a single label
    instead of a sequence and ValueError for a label that is not a whole number 0-9.
    """
    if isinstance(labels, nd.NDArray):
        labels = labels.asnumpy()
    if (isinstance(labels, (str, bytes)) or not hasattr(labels, '__iter__')
            or isinstance(labels, np.ndarray) and labels.ndim == 0):
        raise TypeError('get_fashion_mnist_labels expects a sequence of class indices, e.g. [3] '
                        'or y (an NDArray of shape (N,)); got %r (of type %s).'
                        % (labels, type(labels).__name__))
    return [TEXT_LABELS[_class_index(label, position)] for position, label in enumerate(labels)]


def _class_index(label, position):
    """``label`` as an int 0-9, or ValueError naming its position."""
    value = label
    if isinstance(value, nd.NDArray) and value.size == 1:
        value = value.asscalar()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    whole = (is_integer(value) or isinstance(value, numbers.Real) and not isinstance(
        value, (bool, np.bool_)) and float(value).is_integer())
    if not whole or not 0 <= value <= 9:
        raise ValueError('get_fashion_mnist_labels expects class indices 0-9 (whole numbers, '
                         'e.g. the labels y of a batch); got %r at position %d. The 10 classes '
                         'are %s.' % (label, position, ', '.join(
                             '%d %s' % pair for pair in enumerate(TEXT_LABELS))))
    return int(value)


def fashion_mnist_arrays(train=True, root=None, **fetch_kwargs):
    """Return (images uint8 (N, 28, 28), labels uint8 (N,), sources), decoded once per process."""
    key = (bool(train), None if root is None else os.path.abspath(os.path.expanduser(str(root))),
           os.environ.get(files.ENV_VAR))
    if key not in DECODED_CACHE:
        DECODED_CACHE[key] = files.load_arrays(train, root, **fetch_kwargs)
    return DECODED_CACHE[key]


class BatchCount:
    """``num_examples`` and ``len()`` (batches per epoch, a last partial batch included) of a
    data iterator holding labels ``y`` (N,) and a ``batch_size``; shared with
    ``d2l_utils.pytorch.TorchDataIter``."""

    @property
    def num_examples(self):
        return self.y.shape[0]

    def __len__(self):
        return -(-self.num_examples // self.batch_size)


class ArrayDataIter(BatchCount):
    """Mini-batches of (X, y) from arrays held in memory.

    X: float32 NDArray (N, 1, 28, 28) in [0, 1]; y: float32 NDArray (N,) of class indices.
    Each ``iter()`` is one epoch; with ``shuffle`` the order is a fresh permutation drawn from
    ``seed`` (a fixed sequence of permutations) or, if ``seed`` is None, from numpy's global
    RNG (so ``set_seed`` makes it repeatable). The last partial batch is kept, like the book's
    DataLoader. With ``resize`` each batch is resized on its device as it is served (resizing
    all 60,000 images up front to 224x224 would need 12 GB).
    """

    def __init__(self, X, y, batch_size, shuffle=False, seed=None, resize=None):
        _check_examples(X, y)
        self.X, self.y = X, y
        self.batch_size = _check_batch_size(batch_size)
        self.shuffle = _check_shuffle(shuffle, 'ArrayDataIter')
        self.resize = _as_size(resize)
        # one served example's shape, e.g. (1, 28, 28): train compares its two iterators'
        self.example_shape = X.shape[1:] if self.resize is None else X.shape[1:-2] + self.resize
        _check_batch_values(self.batch_size, self.example_shape)
        seed = None if seed is None else _check_seed(seed, 'ArrayDataIter')
        self._rng = np.random.RandomState(seed) if seed is not None else None
        self._index = nd.arange(len(y), dtype='int64', ctx=X.context)

    def in_order(self):
        """The same examples and batch size, unshuffled: every ``iter()`` gives the same batches.

        Shares the arrays (no copy) and draws nothing from this iterator's random generator, so
        using it (e.g. to recalibrate BN statistics) does not change this iterator's next
        shuffle.
        """
        return ArrayDataIter(self.X, self.y, self.batch_size, shuffle=False, resize=self.resize)

    def rng_copy(self):
        """A copy of the generator this iterator's next shuffles are drawn from, to replay them.

        Returns a numpy RandomState in its current state (None when the iterator draws from
        numpy's global generator, ``seed=None``). ``epoch_order(self.num_examples, copy)``
        called once per epoch then gives the orders of this iterator's next epochs, in turn;
        the iterator itself is not advanced (``d2l_utils.pytorch.as_torch_iter`` uses this).
        """
        return copy.deepcopy(self._rng)

    def __iter__(self):
        n = self.num_examples
        if self.shuffle:
            order = nd.array(epoch_order(n, self._rng), ctx=self.X.context, dtype='int64')
        else:
            order = self._index
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            X = nd.take(self.X, idx) if self.shuffle else self.X[start:start + self.batch_size]
            y = nd.take(self.y, idx) if self.shuffle else self.y[start:start + self.batch_size]
            if self.resize:
                # align_corners=False: pixel centres at half-pixel positions, as the book's
                # transforms.Resize (OpenCV's bilinear) places them; the default (True) stretches
                # the corner pixels and serves other pixel values than the book's loader
                X = nd.contrib.BilinearResize2D(X, height=self.resize[0], width=self.resize[1],
                                                align_corners=False)
            yield X, y


def epoch_order(num_examples, rng=None):
    """One epoch's shuffled order: a permutation of 0..num_examples-1 (numpy int64, shape (N,)),
    drawn from ``rng`` (a numpy RandomState), or from numpy's global generator if rng is None.
    The one permutation code of ``ArrayDataIter`` and ``d2l_utils.pytorch.TorchDataIter``."""
    return (np.random if rng is None else rng).permutation(num_examples)


def _check_batch_size(batch_size):
    # numpy integers count (a batch size computed with numpy is still a batch size); bools don't
    require_positive_int(batch_size, 'batch_size', 'ArrayDataIter',
                         'examples per mini-batch, e.g. 256')
    return int(batch_size)


def _as_size(resize):
    """None, an int or an (height, width) pair -> None or (height, width) of positive ints."""
    if resize is None:
        return None
    pair = (resize, resize) if is_integer(resize) else resize
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(is_integer(v) and v >= 1 for v in pair)):
        raise ValueError('resize must be a positive int or a (height, width) pair of positive '
                         'ints, e.g. 224 or (32, 32); got %r' % (resize,))
    if max(pair) > MAX_RESIZE:
        raise ValueError('resize must be at most %d per side (the book resizes to 224 at most); '
                         'got %r. Pass the height and width in pixels, e.g. resize=224 or '
                         '(32, 32).' % (MAX_RESIZE, resize))
    return tuple(int(v) for v in pair)


def _check_batch_values(batch_size, example_shape):
    """A batch (batch_size,) + example_shape must fit MXNet's 32-bit indexing."""
    per_example = int(np.prod(example_shape, dtype=np.int64))
    if batch_size * per_example > MAX_BATCH_VALUES:
        raise ValueError('a batch of %d examples of shape %s holds %d values, more than MXNet '
                         '1.9.1 can index (2**31 - 1); use a smaller batch_size (at most %d '
                         'here) or a smaller resize.'
                         % (batch_size, tuple(example_shape), batch_size * per_example,
                            MAX_BATCH_VALUES // max(per_example, 1)))


def _check_seed(seed, caller):
    """``seed`` as an int numpy's RandomState accepts: 0 <= seed < 2**32."""
    if not is_integer(seed) or not 0 <= seed < 2 ** 32:
        raise ValueError('%s: seed must be None or an integer from 0 to 2**32 - 1 (numpy\'s '
                         'range), e.g. seed=0; got %r' % (caller, seed))
    return int(seed)


def _check_shuffle(shuffle, caller):
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError('%s: shuffle must be True or False; got %r (a %s). Note that any '
                        'non-empty string, even \'no\', would count as true.'
                        % (caller, shuffle, type(shuffle).__name__))
    return bool(shuffle)


def _check_examples(X, y):
    """X (N, ...) and y (N,) must be NDArrays on one device with one label per example."""
    for name, value in (('X', X), ('y', y)):
        if not isinstance(value, nd.NDArray):
            raise TypeError('ArrayDataIter expects X and y as NDArrays; got %s of type %s. '
                            'Convert it first, e.g. nd.array(%s).'
                            % (name, type(value).__name__, name))
    if y.ndim != 1:
        raise ValueError('ArrayDataIter expects y of shape (N,), one class index per example; '
                         'got shape %s.' % (y.shape,))
    if X.ndim == 0 or X.shape[0] != y.shape[0]:
        raise ValueError('ArrayDataIter expects one label per example: X has %s examples '
                         '(shape %s) but y has %d labels (shape %s). Pass the labels that belong '
                         'to these images.' % (X.shape[0] if X.ndim else 0, X.shape,
                                               y.shape[0], y.shape))
    if X.context != y.context:
        raise ValueError('ArrayDataIter expects X and y on one device; got X on %s and y on %s. '
                         'Move one, e.g. y.as_in_context(X.context).' % (X.context, y.context))


def _check_ctx(ctx):
    """The one device the loader puts its arrays on; a GPU must really run kernels."""
    if ctx is None:
        return mx.cpu()
    if isinstance(ctx, (list, tuple)):
        raise TypeError('load_data_fashion_mnist keeps the data on one device; got the list %r. '
                        'Pass one device, e.g. ctx=try_gpu(); to train on several devices, keep '
                        'the data on the CPU (the default) and pass the list to train(), which '
                        'splits each batch.' % (list(ctx),))
    if not isinstance(ctx, mx.Context):
        raise TypeError('load_data_fashion_mnist: ctx must be a device such as mx.cpu() or '
                        'mx.gpu(0), e.g. ctx=try_gpu(); got %r (of type %s).'
                        % (ctx, type(ctx).__name__))
    if ctx.device_type == 'gpu':
        statuses = device.gpu_status()
        if ctx.device_id >= len(statuses):
            why = device.no_gpu_reason() or 'MXNet sees %d GPU(s), numbered from 0' % len(
                statuses)
            raise ValueError('load_data_fashion_mnist: ctx=%s, but this GPU cannot be used: %s. '
                             'Use ctx=try_gpu(), which falls back to the CPU.' % (ctx, why))
        if not statuses[ctx.device_id].usable:
            raise ValueError('load_data_fashion_mnist: ctx=%s, but this GPU cannot be used: %s. '
                             'Use ctx=try_gpu(), which falls back to the CPU.'
                             % (ctx, statuses[ctx.device_id].reason))
    return ctx


def _to_ndarrays(images, labels, ctx):
    # one vectorized scale for the whole split instead of a ToTensor per sample per epoch
    X = nd.array(images, ctx=ctx, dtype='uint8').astype('float32') / 255
    return X.reshape((-1, 1, 28, 28)), nd.array(labels, ctx=ctx, dtype='float32')


def _subset(n_total, size, rng, name):
    if size is None:
        return None
    if not is_integer(size) or not 1 <= size <= n_total:
        raise ValueError('%s must be an integer between 1 and %d (the size of the set), got %r'
                         % (name, n_total, size))
    return np.sort(rng.choice(n_total, size, replace=False))


def load_data_fashion_mnist(batch_size, resize=None, root=None, ctx=None, train_subset=None,
                            test_subset=None, seed=None, shuffle=True):
    """Return (train_iter, test_iter) over Fashion-MNIST, with the book's first three arguments.

    Batches are (X, y): X float32 (batch, 1, 28, 28) in [0, 1] (or (batch, 1, h, w) with
    ``resize``), y float32 (batch,) of class indices 0-9.

    root: folder with the four files (``.gz`` or decompressed); if None, searched for in
        ``$FASHION_MNIST_DIR``, MXNet's cache, Debian's ``/usr/share/datasets/fashion-mnist``,
        then downloaded (see ``fashion_mnist_files.fetch_file``).
    ctx: device for the arrays (default the CPU); put them on the training GPU to avoid a
        host-to-device copy per batch.
    train_subset, test_subset: use a random subset of this many examples (chosen with
        ``seed``), for quick runs and tests.
    seed: an integer 0 to 2**32 - 1; fixes the subset choice and the training set's shuffle
        order; if None, both come from numpy's global RNG (so ``np.random.seed`` makes them
        repeatable).
    shuffle: True or False: shuffle the training set each epoch (the test set is never
        shuffled).
    """
    # check the arguments before the (slow) first load, so a typo fails at once
    _check_batch_size(batch_size)
    size = _as_size(resize)
    _check_batch_values(batch_size, (1,) + (size or (28, 28)))
    shuffle = _check_shuffle(shuffle, 'load_data_fashion_mnist')
    ctx = _check_ctx(ctx)
    if seed is not None:
        seed = _check_seed(seed, 'load_data_fashion_mnist')
    rng = np.random.RandomState(seed) if seed is not None else np.random
    splits = []
    for train, subset, name in ((True, train_subset, 'train_subset'),
                                (False, test_subset, 'test_subset')):
        images, labels, _ = fashion_mnist_arrays(train, root)
        keep = _subset(len(labels), subset, rng, name)
        if keep is not None:
            images, labels = images[keep], labels[keep]
        splits.append((train, images, labels))
    iters = []
    for train, images, labels in splits:
        X, y = _to_ndarrays(images, labels, ctx)
        # the shuffle draws from its own stream, seed + 1, wrapped into numpy's range
        iters.append(ArrayDataIter(X, y, batch_size, shuffle=train and shuffle,
                                   seed=None if seed is None else (seed + 1) % 2 ** 32,
                                   resize=size))
    return tuple(iters)
