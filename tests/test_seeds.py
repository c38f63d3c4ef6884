"""over_seeds: a real short LeNet run per seed; the seeds differ (a spread above 0), each seed
reproduces itself exactly on the CPU, and too few seeds or malformed runs are refused."""
import pytest
from mxnet import gluon, init

from d2l_utils import (MIN_SEEDS, SeedSpread, lenet, load_data_fashion_mnist, over_seeds,
                       set_seed, train)


def short_run(seed):
    """LeNet with nn.BatchNorm, 8 updates of 64 real images at lr 1, seeded init and order."""
    set_seed(seed)
    net = lenet(bn='gluon')
    net.initialize(init=init.Xavier())
    train_iter, test_iter = load_data_fashion_mnist(64, train_subset=512, test_subset=256,
                                                    seed=seed)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 1.0})
    history = train(net, train_iter, test_iter, trainer, num_epochs=1, progress=False,
                    verbose=False)
    return {'train_loss': history.last['train_loss'], 'test_acc': history.last['test_acc']}


def test_three_seeds_of_a_real_run_spread_and_each_seed_reproduces_itself(fashion_mnist_dir):
    runs = over_seeds(short_run, seeds=3, name='BN')
    assert runs.seeds == [0, 1, 2]
    losses = runs.values['train_loss']
    assert len(losses) == 3 and len(set(losses)) == 3     # different seeds, different runs
    assert runs.spread('train_loss') == max(losses) - min(losses) > 0
    assert runs.mean('train_loss') == pytest.approx(sum(losses) / 3)
    assert runs.std('train_loss') > 0
    # the same seed again gives exactly the same numbers on the CPU
    again = over_seeds(short_run, seeds=(2, 0, 1))
    assert again.values['train_loss'] == [losses[2], losses[0], losses[1]]
    assert again.values['test_acc'] == [runs.values['test_acc'][i] for i in (2, 0, 1)]
    assert 'spread' in runs.summary('train_loss') and '3 seeds' in runs.summary('train_loss')


def test_established_means_the_seed_ranges_do_not_overlap():
    low = SeedSpread('a', [0, 1, 2], {'loss': [0.40, 0.42, 0.45]})
    high = SeedSpread('b', [0, 1, 2], {'loss': [0.50, 0.47, 0.52]})
    inside = SeedSpread('c', [0, 1, 2], {'loss': [0.44, 0.46, 0.48]})
    assert low.established(high, 'loss') and high.established(low, 'loss')
    assert not low.established(inside, 'loss')
    assert low.spread('loss') == pytest.approx(0.05)


@pytest.mark.parametrize('seeds', [(0, 1), (0, 0, 1), 2])
def test_fewer_than_three_distinct_seeds_are_refused(seeds):
    with pytest.raises(ValueError, match='at least %d distinct seeds' % MIN_SEEDS):
        over_seeds(lambda seed: 1.0, seeds=seeds)


def test_a_run_returning_nothing_useful_or_other_metrics_is_explained():
    with pytest.raises(TypeError, match=r'run\(0\) returned None'):
        over_seeds(lambda seed: None)
    with pytest.raises(ValueError, match='every seed must return the same metrics'):
        over_seeds(lambda seed: {'loss': 1.0} if seed == 0 else {'acc': 0.5})
    spread = over_seeds(lambda seed: float(seed))
    assert spread.values == {'value': [0.0, 1.0, 2.0]}
    with pytest.raises(KeyError, match="no metric 'acc'"):
        spread.mean('acc')
