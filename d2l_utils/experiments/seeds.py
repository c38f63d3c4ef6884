"""Run one setting with several seeds: the spread a difference must beat to mean something.

One pair of runs is not a noise estimate: two seeds can agree by luck. ``over_seeds`` trains the
same setting once per seed (at least 3) and keeps every seed's numbers; ``SeedSpread`` gives their
mean, their spread (largest minus smallest) and, for two settings, whether their seed ranges are
apart (``established``)::

    def run(seed):
        history = train_lenet(seed)                        # anything that depends on the seed
        return {'train_loss': history.last['train_loss']}
    bn = over_seeds(run, seeds=(0, 1, 2), name='BN')
    bn.mean('train_loss'), bn.spread('train_loss'), bn.values['train_loss']
"""
import math
import numbers

__all__ = ['MIN_SEEDS', 'SeedSpread', 'over_seeds']

MIN_SEEDS = 3   # fewer gives no spread worth the name: two runs can agree by luck


class SeedSpread:
    """The numbers of one setting over several seeds.

    name: what was run. seeds: the seeds, in order. values: {metric: [value per seed]}.
    """

    def __init__(self, name, seeds, values):
        self.name, self.seeds, self.values = name, list(seeds), values

    def _column(self, metric):
        if metric not in self.values:
            raise KeyError('%s: no metric %r; the runs returned %s'
                           % (self.name or 'SeedSpread', metric, sorted(self.values)))
        return self.values[metric]

    def mean(self, metric):
        """The mean over the seeds."""
        column = self._column(metric)
        return sum(column) / len(column)

    def spread(self, metric):
        """Largest minus smallest value over the seeds (the range)."""
        column = self._column(metric)
        return max(column) - min(column)

    def std(self, metric):
        """Sample standard deviation over the seeds (n - 1 in the denominator)."""
        column, mean = self._column(metric), self.mean(metric)
        return math.sqrt(sum((v - mean) ** 2 for v in column) / (len(column) - 1))

    def established(self, other, metric):
        """True if the two settings' seed ranges of ``metric`` do not overlap: every seed of
        one is above every seed of the other. A difference inside the ranges is not
        established by these seeds."""
        mine, theirs = self._column(metric), other.values[metric]
        return min(mine) > max(theirs) or min(theirs) > max(mine)

    def summary(self, metric, digits=3):
        """'mean 0.812 (0.801 to 0.823, spread 0.022, 3 seeds)'."""
        column = self._column(metric)
        return ('mean %.*f (%.*f to %.*f, spread %.*f, %d seeds)'
                % (digits, self.mean(metric), digits, min(column), digits, max(column),
                   digits, self.spread(metric), len(column)))

    def __repr__(self):
        return 'SeedSpread(%r, seeds=%s, metrics=%s)' % (self.name, self.seeds,
                                                         sorted(self.values))


def over_seeds(run, seeds=(0, 1, 2), name=''):
    """Call ``run(seed)`` for each seed; return a ``SeedSpread`` of what the calls returned.

    run: a function seed -> {metric: number} (or one number, kept as metric 'value'); it must
    seed everything that varies (``set_seed(seed)``, the data order), so each seed reproduces
    itself on the CPU. seeds: at least ``MIN_SEEDS`` distinct integers, or their number (3 means
    0, 1, 2).
    """
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    seeds = list(seeds)
    if len(seeds) < MIN_SEEDS or len(set(seeds)) != len(seeds):
        raise ValueError('over_seeds needs at least %d distinct seeds to measure a spread (one '
                         'pair can agree by luck); got %r. Pass seeds=(0, 1, 2) or seeds=3.'
                         % (MIN_SEEDS, seeds))
    if not callable(run):
        raise TypeError('over_seeds expects run, a function seed -> {metric: number}; got %r'
                        % (run,))
    values = {}
    for seed in seeds:
        result = run(seed)
        if isinstance(result, numbers.Real):
            result = {'value': result}
        if not isinstance(result, dict) or not result:
            raise TypeError('over_seeds: run(%d) returned %r; it must return {metric: number}, '
                            'e.g. {"train_loss": 0.41}' % (seed, result))
        if values and set(result) != set(values):
            raise ValueError('over_seeds: run(%d) returned metrics %s, the first seed %s; every '
                             'seed must return the same metrics'
                             % (seed, sorted(result), sorted(values)))
        for metric, value in result.items():
            values.setdefault(metric, []).append(float(value))
    return SeedSpread(name, seeds, values)
