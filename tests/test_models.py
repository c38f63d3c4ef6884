"""LeNet variants: shapes, where the BN layers go, parameter counts, and argument errors."""
import pytest
from mxnet import autograd, init, nd
from mxnet.gluon import nn

from d2l_utils.layers import BatchNorm
from d2l_utils.models import lenet

BN_TYPES = (BatchNorm, nn.BatchNorm)


def book_lenet():
    """The LeNet chapter's net, as the book writes it: the oracle for lenet()."""
    net = nn.Sequential()
    net.add(nn.Conv2D(channels=6, kernel_size=5, activation='sigmoid'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Conv2D(channels=16, kernel_size=5, activation='sigmoid'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Dense(120, activation='sigmoid'),
            nn.Dense(84, activation='sigmoid'),
            nn.Dense(10))
    return net


def initialized(net):
    net.initialize(init.Xavier())
    net(nd.zeros((2, 1, 28, 28)))   # complete deferred initialization
    return net


def layout(net):
    """Layer kinds in order: 'conv', 'dense', 'bn', 'act', 'pool'."""
    kinds = []
    for layer in net:
        if isinstance(layer, BN_TYPES):
            kinds.append('bn')
        elif isinstance(layer, nn.Conv2D):
            kinds.append('conv')
        elif isinstance(layer, nn.Dense):
            kinds.append('dense')
        elif isinstance(layer, nn.Activation):
            kinds.append('act')
        elif isinstance(layer, nn.MaxPool2D):
            kinds.append('pool')
        else:
            kinds.append(type(layer).__name__)
    return kinds


def param_count(net, learnable):
    return sum(p.data().size for p in net.collect_params().values()
               if (p.grad_req != 'null') == learnable)


BOOK_BN_LAYOUT = ['conv', 'bn', 'act', 'pool', 'conv', 'bn', 'act', 'pool',
                  'dense', 'bn', 'act', 'dense', 'bn', 'act', 'dense']


@pytest.mark.parametrize('kwargs', [
    {}, {'bn': 'scratch'}, {'bn': 'gluon'},
    {'bn': lambda num_features, num_dims: nn.BatchNorm()},
    {'bn': 'scratch', 'bn_position': 'after_activation', 'activation': 'relu'},
    {'bn': 'gluon', 'bn_in': 'dense', 'use_bias': False},
], ids=['plain', 'scratch', 'gluon', 'callable', 'after_activation', 'dense_only'])
def test_every_variant_outputs_ten_scores_per_image(kwargs):
    net = lenet(**kwargs)
    net.initialize()
    X = nd.random.uniform(shape=(4, 1, 28, 28))
    assert net(X).shape == (4, 10)
    with autograd.record():          # training mode: BN uses batch statistics
        assert net(X).shape == (4, 10)


@pytest.mark.parametrize('bn', ['scratch', 'gluon'])
def test_bn_variants_put_bn_between_each_hidden_layer_and_its_activation(bn):
    assert layout(lenet(bn=bn)) == BOOK_BN_LAYOUT


def test_scratch_and_gluon_variants_have_the_same_parameter_counts():
    scratch, gluon = initialized(lenet(bn='scratch')), initialized(lenet(bn='gluon'))
    assert param_count(scratch, learnable=True) == param_count(gluon, learnable=True)
    # moving mean and variance: 2 * (6 + 16 + 120 + 84) values, stored but not learned
    assert param_count(scratch, learnable=False) == param_count(gluon, learnable=False) == 452


def test_plain_lenet_has_no_bn_layer_and_the_books_parameter_count():
    net = initialized(lenet())
    assert 'bn' not in layout(net)
    assert layout(net) == ['conv', 'pool', 'conv', 'pool', 'dense', 'dense', 'dense']
    book = initialized(book_lenet())
    assert param_count(net, learnable=True) == param_count(book, learnable=True)


def test_bn_after_activation_follows_each_activation():
    assert layout(lenet(bn='gluon', bn_position='after_activation')) == [
        'conv', 'act', 'bn', 'pool', 'conv', 'act', 'bn', 'pool',
        'dense', 'act', 'bn', 'dense', 'act', 'bn', 'dense']


def test_bn_in_conv_only_leaves_dense_layers_plain():
    net = lenet(bn='scratch', bn_in=('conv',))
    assert layout(net) == ['conv', 'bn', 'act', 'pool', 'conv', 'bn', 'act', 'pool',
                           'dense', 'dense', 'dense']
    assert net[8].act is not None   # the plain Dense layers keep their built-in activation


def test_use_bias_false_drops_the_bias_only_of_layers_followed_by_bn():
    net = lenet(bn='gluon', bn_in=('conv',), use_bias=False)
    affine = [layer for layer in net if isinstance(layer, (nn.Conv2D, nn.Dense))]
    assert [layer.bias is None for layer in affine] == [True, True, False, False, False]


def test_callable_bn_gets_each_layers_size_and_input_dims():
    calls = []

    def bn(num_features, num_dims):
        calls.append((num_features, num_dims))
        return BatchNorm(num_features, num_dims)

    net = lenet(bn=bn)
    assert calls == [(6, 4), (16, 4), (120, 2), (84, 2)]
    assert layout(net) == BOOK_BN_LAYOUT


def test_unknown_bn_error_lists_the_choices():
    with pytest.raises(ValueError, match=r"None, 'scratch', 'gluon' or a callable.*'batchnorm'"):
        lenet(bn='batchnorm')


def test_unknown_bn_position_or_part_is_rejected():
    with pytest.raises(ValueError, match="'before_activation', 'after_activation'"):
        lenet(bn='gluon', bn_position='before')
    with pytest.raises(ValueError, match="'conv', 'dense'"):
        lenet(bn='gluon', bn_in=('conv', 'pool'))


def test_lenet_refuses_a_misspelt_activation_when_built_not_at_the_first_forward():
    # issue 17, reliability.md row 3.25
    with pytest.raises(ValueError, match=r"activation must be one of .*'sigmoid'.*got 'sigmod'"):
        lenet(activation='sigmod')
