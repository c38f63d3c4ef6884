"""Helpers shared by the test modules: random batch-norm inputs, MXNet's operator as the oracle,
one recorded training step, small nets, and the moving statistics of any BN layer.

``conftest.py`` puts this folder on ``sys.path``, so ``from helpers import ...`` works under
every pytest import mode (test modules never import each other).
"""
import numpy as np
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import nn

from d2l_utils import batch_norm_layers, lenet, set_seed
from d2l_utils.layers import param_shape

EPS, MOMENTUM = 1e-5, 0.9
# float32 agreement with MXNet's fused operator: measured max abs difference ~1e-6 on these sizes
RTOL, ATOL = 1e-4, 1e-5
SHAPES = {'dense': (16, 5), 'conv': (8, 3, 5, 5)}


def params_shape_of(x_shape):
    """The shape of gamma, beta and the moving statistics for an input of shape x_shape."""
    return param_shape(x_shape[1], len(x_shape))


def random_input(shape, seed=0):
    """X with a mean and a scale far from 0 and 1, so normalizing it changes it."""
    rng = np.random.RandomState(seed)
    return nd.array(3.0 + 2.5 * rng.randn(*shape))


def random_params(x_shape, seed=1):
    """gamma, beta, moving_mean, moving_var (positive) of the shape batch_norm expects."""
    rng = np.random.RandomState(seed)
    shape = params_shape_of(x_shape)
    return (nd.array(1 + 0.5 * rng.randn(*shape)), nd.array(rng.randn(*shape)),
            nd.array(rng.randn(*shape)), nd.array(0.5 + rng.rand(*shape)))


def flat(a):
    """An NDArray as a flat numpy array."""
    return a.asnumpy().reshape(-1)


def mxnet_op(X, gamma, beta, moving_mean, moving_var, use_global_stats):
    """MXNet's fused BatchNorm operator on copies (it updates moving statistics in place)."""
    # nd.BatchNorm's own defaults differ from nn.BatchNorm's: eps=1e-3 and fix_gamma=True.
    return nd.BatchNorm(X, gamma.reshape(-1), beta.reshape(-1), moving_mean.reshape(-1).copy(),
                        moving_var.reshape(-1).copy(), eps=EPS, momentum=MOMENTUM,
                        fix_gamma=False, use_global_stats=use_global_stats)


def train_step(layer, X, head):
    """One recorded forward and backward; returns (Y, dX). head weights Y so grads are not 0."""
    X = X.copy()
    X.attach_grad()
    with autograd.record():
        Y = layer(X)
        loss = (Y * head).sum()
    loss.backward()
    return Y, X.grad


def tiny_net(layer):
    """Dense(8) -> layer -> Dense(3), initialized (Xavier): a net around one BN layer."""
    net = nn.Sequential()
    net.add(nn.Dense(8), layer, nn.Dense(3))
    net.initialize(init.Xavier())
    return net


def train_a_little(net, steps=3):
    """A few SGD steps of a tiny_net on random (16, 4) batches."""
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    for step in range(steps):
        X = random_input((16, 4), seed=step)
        with autograd.record():
            loss = net(X).square().mean()
        loss.backward()
        trainer.step(16)   # the Trainer skips moving_mean/moving_var (grad_req='null')


def moving_stats(net):
    """[(mean, var), ...] as flat numpy arrays, for every BN layer of ``net`` (a layer or a net)
    in order: the scratch layers' moving statistics, nn.BatchNorm's running statistics."""
    return [(flat(mean.data()), flat(var.data())) for _, mean, var in batch_norm_layers(net)]


def halves_that_differ(shape, seed=0):
    """A numpy batch whose first half has mean 0 and scale 1, second half mean 3 and scale 2."""
    rng = np.random.RandomState(seed)
    x = rng.randn(*shape)
    x[shape[0] // 2:] = 3 + 2 * x[shape[0] // 2:]
    return x


def fresh_lenet(bn, X):
    """lenet(bn=bn), seeded (0), initialized (Xavier) and run once on X (deferred init done)."""
    set_seed(0)
    net = lenet(bn=bn)
    net.initialize(init.Xavier())
    net(X)   # finishes deferred initialization
    return net


def moving_statistics(net):
    """Copies (numpy) of every Parameter of net that is not learned (grad_req 'null')."""
    return [p.data().asnumpy().copy() for p in net.collect_params().values()
            if p.grad_req == 'null']
