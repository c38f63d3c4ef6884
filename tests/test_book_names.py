"""The book's names: docs/d2lzh_names.md against d2lzh 1.0 and d2l_utils, and the chapter's own
code run with ``import d2l_utils as d2l`` (what a learner does), on real Fashion-MNIST."""
import re
import types
from pathlib import Path

import d2lzh
import mxnet as mx
import pytest
from matplotlib import pyplot
from mxnet import gluon, nd
from mxnet.gluon import nn

import d2l_utils
from d2l_utils.support.d2lzh_names import NOT_PROVIDED

ROOT = Path(__file__).resolve().parents[1]


def table():
    """[(name, status)] of every row of docs/d2lzh_names.md's tables."""
    text = (ROOT / 'docs' / 'd2lzh_names.md').read_text()
    return re.findall(r'^\| `(\w+)` \| (provided[^|]*|not provided) \|', text, re.M)


def d2lzh_public_names():
    """What ``import d2lzh as d2l`` offers as ``d2l.x``: the functions and classes d2lzh defines,
    its constants (VOC_CLASSES, ...) and ``plt``, the book's most used name (not the modules it
    merely imports, such as nd or np)."""
    names = {'plt'}
    for name, value in vars(d2lzh).items():
        if name.startswith('_') or isinstance(value, types.ModuleType):
            continue
        if getattr(value, '__module__', '').startswith('d2lzh') or isinstance(
                value, (list, tuple, dict, str, int, float)):
            names.add(name)
    return names


def test_every_public_name_of_d2lzh_is_in_the_table_once():
    names = [name for name, _ in table()]
    public = d2lzh_public_names()
    assert len(public) >= 53   # d2lzh 1.0 defines 53 functions and classes
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
    assert sorted(set(names) ^ public) == []


def test_every_provided_name_exists_in_d2l_utils():
    provided = [name for name, status in table() if status.startswith('provided')]
    assert len(provided) >= 12
    assert [name for name in provided if not hasattr(d2l_utils, name)] == []
    assert d2l_utils.plt is pyplot   # d2l.plt, as the book uses it


def test_the_not_provided_rows_are_the_packages_list_with_the_same_chapters():
    text = (ROOT / 'docs' / 'd2lzh_names.md').read_text()
    rows = dict(re.findall(r'^\| `(\w+)` \| not provided \| (.+?) \|$', text, re.M))
    assert rows == NOT_PROVIDED


@pytest.mark.parametrize('name', sorted(NOT_PROVIDED))
def test_a_name_of_another_chapter_says_it_is_d2lzhs_and_what_to_import(name):
    number = NOT_PROVIDED[name].split()[0]
    with pytest.raises(AttributeError, match=r"no attribute '%s': %s is a name of the book's "
                                             r"package d2lzh, used in chapter %s .*"
                                             r"`import d2lzh as d2l`" % (name, name, number)):
        getattr(d2l_utils, name)
    assert not hasattr(d2l_utils, name)


@pytest.fixture(scope='module')
def small_data(fashion_mnist_dir):
    return d2l_utils.load_data_fashion_mnist(64, train_subset=512, test_subset=256, seed=0)


def test_evaluate_accuracy_takes_a_plain_function_net_as_d2lzh_does(small_data):
    """Chapter 3's softmax regression: net(X) is a plain function of global W and b."""
    _, test_iter = small_data
    mx.random.seed(0)
    W = nd.random.normal(scale=0.01, shape=(784, 10))
    b = nd.zeros(10)
    W[:, 0] += 0.05   # so the predictions are not all one class

    def net(X):
        scores = nd.dot(X.reshape((-1, 784)), W) + b
        return scores.softmax()

    ours = d2l_utils.evaluate_accuracy(test_iter, net)
    assert ours == pytest.approx(d2lzh.evaluate_accuracy(test_iter, net), abs=1e-7)
    assert 0 < ours < 1


def test_train_called_with_the_chapter_9_signature_names_both_signatures(small_data):
    train_iter, test_iter = small_data
    net = d2l_utils.lenet()
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    with pytest.raises(TypeError, match=r'd2l_utils.train\(net, train_iter, test_iter, trainer.*'
                                        r'chapter-9 train\(train_iter, test_iter, net, loss, '
                                        r'trainer, ctx, num_epochs\)'):
        d2l_utils.train(train_iter, test_iter, net, loss, trainer, mx.cpu(), 1)


# The chapter 批量归一化 of the v1 book (d2l-zh, branch v1, chapter_convolutional-neural-networks/
# batch-norm.md, compared line by line), its code blocks in order (comments
# translated); d2l_utils.book holds the same batch_norm and BatchNorm as book_batch_norm and
# BookBatchNorm. Only the imports differ: `import d2l_utils as d2l` in place of d2lzh.
CHAPTER = '''
import d2l_utils as d2l
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    # autograd tells whether we are training or predicting
    if not autograd.is_training():
        # prediction: use the moving averages passed in
        X_hat = (X - moving_mean) / nd.sqrt(moving_var + eps)
    else:
        assert len(X.shape) in (2, 4)
        if len(X.shape) == 2:
            # after a fully connected layer: mean and variance per feature
            mean = X.mean(axis=0)
            var = ((X - mean) ** 2).mean(axis=0)
        else:
            # after a 2-D convolution: per channel (axis=1), keeping X's shape to broadcast
            mean = X.mean(axis=(0, 2, 3), keepdims=True)
            var = ((X - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        # training: standardize with the current mean and variance
        X_hat = (X - mean) / nd.sqrt(var + eps)
        # update the moving averages
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta  # scale and shift
    return Y, moving_mean, moving_var

class BatchNorm(nn.Block):
    def __init__(self, num_features, num_dims, **kwargs):
        super(BatchNorm, self).__init__(**kwargs)
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        # scale and shift take part in gradients and updates: start at 1 and 0
        self.gamma = self.params.get('gamma', shape=shape, init=init.One())
        self.beta = self.params.get('beta', shape=shape, init=init.Zero())
        # take no part in gradients: start at 0, in main memory
        self.moving_mean = nd.zeros(shape)
        self.moving_var = nd.zeros(shape)

    def forward(self, X):
        # if X is not in main memory, copy moving_mean and moving_var to its device
        if self.moving_mean.context != X.context:
            self.moving_mean = self.moving_mean.copyto(X.context)
            self.moving_var = self.moving_var.copyto(X.context)
        # keep the updated moving_mean and moving_var
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma.data(), self.beta.data(), self.moving_mean,
            self.moving_var, eps=1e-5, momentum=0.9)
        return Y

net = nn.Sequential()
net.add(nn.Conv2D(6, kernel_size=5),
        BatchNorm(6, num_dims=4),
        nn.Activation('sigmoid'),
        nn.MaxPool2D(pool_size=2, strides=2),
        nn.Conv2D(16, kernel_size=5),
        BatchNorm(16, num_dims=4),
        nn.Activation('sigmoid'),
        nn.MaxPool2D(pool_size=2, strides=2),
        nn.Dense(120),
        BatchNorm(120, num_dims=2),
        nn.Activation('sigmoid'),
        nn.Dense(84),
        BatchNorm(84, num_dims=2),
        nn.Activation('sigmoid'),
        nn.Dense(10))

lr, num_epochs, batch_size, ctx = 1.0, 5, 256, d2l.try_gpu()
net.initialize(ctx=ctx, init=init.Xavier())
trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size)
d2l.train_ch5(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs)

gamma_beta = net[1].gamma.data().reshape((-1,)), net[1].beta.data().reshape((-1,))

net = nn.Sequential()
net.add(nn.Conv2D(6, kernel_size=5),
        nn.BatchNorm(),
        nn.Activation('sigmoid'),
        nn.MaxPool2D(pool_size=2, strides=2),
        nn.Conv2D(16, kernel_size=5),
        nn.BatchNorm(),
        nn.Activation('sigmoid'),
        nn.MaxPool2D(pool_size=2, strides=2),
        nn.Dense(120),
        nn.BatchNorm(),
        nn.Activation('sigmoid'),
        nn.Dense(84),
        nn.BatchNorm(),
        nn.Activation('sigmoid'),
        nn.Dense(10))

net.initialize(ctx=ctx, init=init.Xavier())
trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
d2l.train_ch5(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs)
'''
# A small real subset for one epoch instead of 60,000 images for 5 epochs: the only changes
SMALLER = {
    "lr, num_epochs, batch_size, ctx = 1.0, 5, 256, d2l.try_gpu()":
        "lr, num_epochs, batch_size, ctx = 1.0, 1, 256, d2l.try_gpu()",
    "train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size)":
        "train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size, train_subset=1024, "
        "test_subset=512, seed=0)",
}


@pytest.mark.usefixtures('fashion_mnist_dir')
def test_the_chapters_code_runs_with_d2l_utils_as_d2l(capsys):
    code = CHAPTER
    for book_line, small_line in SMALLER.items():
        assert code.count(book_line) == 1
        code = code.replace(book_line, small_line)
    namespace = {}
    exec(compile(code, 'batch-norm.md', 'exec'), namespace)
    assert namespace['d2l'] is d2l_utils
    printed = capsys.readouterr().out
    # train_ch5's lines, as the book prints them, once per net
    assert len(re.findall(r'^epoch 1, loss \d+\.\d{4}, train acc 0\.\d{3}, test acc 0\.\d{3}, '
                          r'time \d+\.\d sec$', printed, re.M)) == 2, printed
    gamma, beta = namespace['gamma_beta']
    assert gamma.shape == beta.shape == (6,)
    assert isinstance(namespace['net'][1], nn.BatchNorm)
