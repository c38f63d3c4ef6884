"""Many short trainings under one budget, compared: the experiments behind the exercises.

Each exercise of the chapter asks a "what if": another learning rate, batch norm elsewhere, no
bias, frozen ``gamma`` and ``beta``. The answer is a LeNet trained under the same budget (the
same images in the same order, epochs, batch size and initial weights) as the runs it is compared
with. ``fit`` trains one net through ``d2l_utils.train`` and records a run whose loss becomes NaN
as diverged instead of stopping the notebook; ``Runner`` builds and trains LeNet variants under
one budget and remembers them, so a run two exercises share is trained once. ``lr_range`` and
``sweep_table`` summarize a learning-rate sweep (``d2l_utils.plot_lr_sweep`` plots it).
"""
import numbers

from mxnet import gluon, init

from ..data import CHANCE_LOSS, UNIFORM_GUESS_ACC
from ..models import lenet
from ..nan_guard import NonFiniteLossError
from ..support.validation import require_positive_int
from ..training import History, set_seed, train

__all__ = ['CHANCE_ACC', 'CHANCE_LOSS', 'UNIFORM_GUESS_ACC', 'Result', 'Runner', 'fit',
           'lr_range', 'sweep_table']

# The one "chance" threshold: a run whose final test accuracy is below it learned (almost)
# nothing. Twice the uniform guess, so that a net a few points above 0.1 by luck still counts.
CHANCE_ACC = 2 * UNIFORM_GUESS_ACC


class Result:
    """One training run.

    name, lr: what was trained and with which learning rate.
    history: a ``History`` of the epochs that finished (all of them unless the run diverged).
    net: the trained net (as it was when training stopped).
    diverged_epoch, error: the epoch in which the loss became NaN or infinite and the message of
    the ``NonFiniteLossError``; both None if the run finished.
    """

    def __init__(self, name, lr, history, net, diverged_epoch=None, error=None):
        self.name, self.lr, self.history, self.net = name, lr, history, net
        self.diverged_epoch, self.error = diverged_epoch, error

    @property
    def diverged(self):
        """True if training stopped because the loss became NaN or infinite."""
        return self.diverged_epoch is not None

    def final(self, key='test_acc'):
        """The last epoch's value of a History metric; NaN if the run diverged."""
        if self.diverged or not self.history.epochs:
            return float('nan')
        return self.history.last[key]

    def best(self, key='test_acc'):
        """The highest value of a metric over the finished epochs; NaN if there are none."""
        values = self.history.column(key)
        return max(values) if values else float('nan')

    @property
    def seconds(self):
        """Training plus evaluation time of the finished epochs."""
        return sum(self.history.column('seconds'))

    def status(self, chance_acc=CHANCE_ACC):
        """One word for the outcome: 'NaN', 'blew up', 'chance' or 'trains'.

        'NaN': the loss became NaN or infinite (``diverged``). 'blew up': the final training loss
        is above 1.1 * ln 10, worse than the uniform guess an untrained net makes (the sigmoid
        bounds the hidden activations, so a too large learning rate makes the loss large, not
        NaN). 'chance': the final test accuracy is below ``chance_acc``. 'trains': otherwise.
        """
        if self.diverged:
            return 'NaN'
        if self.final('train_loss') > 1.1 * CHANCE_LOSS:
            return 'blew up'
        if self.final('test_acc') < chance_acc:
            return 'chance'
        return 'trains'

    def summary(self):
        """One line: name, learning rate, and the outcome."""
        head = '%-30s lr %-6g' % (self.name, self.lr)
        if self.diverged:
            return '%s diverged: NaN/inf loss in epoch %d' % (head, self.diverged_epoch)
        return ('%s test acc %.3f (best %.3f), train loss %.3g  [%s, %.0f s]'
                % (head, self.final('test_acc'), self.best('test_acc'),
                   self.final('train_loss'), self.status(), self.seconds))

    def __repr__(self):
        return 'Result(%s)' % self.summary()


def _check_lr(lr):
    if not isinstance(lr, numbers.Real) or isinstance(lr, bool) or not lr > 0:
        raise ValueError('the learning rate must be a positive number, e.g. 1.0; got %r' % (lr,))
    return float(lr)


def fit(net, train_iter, test_iter, lr, num_epochs, ctx=None, name=''):
    """Train an initialized ``net`` with SGD at learning rate ``lr``; return a ``Result``.

    train_iter/test_iter yield (X, y), X (batch, 1, 28, 28) and y (batch,). Each epoch is one
    call of ``d2l_utils.train``. If the loss becomes NaN or infinite (``NonFiniteLossError``)
    the run stops and the Result records the epoch and the message instead of raising.
    Parameters with grad_req='null' are not updated.
    """
    lr = _check_lr(lr)
    require_positive_int(num_epochs, 'num_epochs', 'fit', 'how many epochs to train, e.g. 5')
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': lr})
    history = History(name)
    for epoch in range(1, num_epochs + 1):
        # one call per epoch, so the epochs that finished are kept when the loss becomes NaN
        try:
            one = train(net, train_iter, test_iter, trainer, ctx, 1, name=name, progress=False,
                        verbose=False, first_epoch=epoch)
        except NonFiniteLossError as error:
            return Result(name, lr, history, net, diverged_epoch=epoch, error=str(error))
        history.epochs.extend(one.epochs)
    return Result(name, lr, history, net)


def _hashable(value):
    """A dict key for a lenet() argument: lists become tuples; callables count by identity."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


class Runner:
    """Train LeNet variants under one budget and remember every run.

    load_data: a callable returning fresh (train_iter, test_iter) that replay the same batches
        in the same order on every call (``load_data_fashion_mnist(..., seed=0)`` does).
    num_epochs: epochs of every run. seed: set before each net is built, so every variant starts
        from the same random state (the same initial weights where the layers agree).
    verbose: print each run's ``Result.summary()``.

    ``run`` returns the stored Result when called again with the same learning rate, ``prepare``
    and ``lenet`` arguments: with the same seed and data order a second training gives the same
    numbers on a CPU (tests/test_sweeps.py checks this), so it is not trained twice.
    """

    def __init__(self, load_data, num_epochs, ctx=None, seed=0, verbose=True):
        if not callable(load_data):
            raise TypeError('Runner: load_data must be a function returning fresh (train_iter, '
                            'test_iter); got %s' % type(load_data).__name__)
        require_positive_int(num_epochs, 'num_epochs', 'Runner',
                             'how many epochs each run trains, e.g. 5')
        self.load_data, self.num_epochs = load_data, num_epochs
        self.ctx, self.seed, self.verbose = ctx, seed, verbose
        self.results = {}   # (lr, prepare, lenet arguments) -> Result

    def build(self, prepare=None, sample=None, **lenet_kwargs):
        """Seed, build ``lenet(**lenet_kwargs)``, initialize it (Xavier) and run it once in
        prediction mode (no statistics change) on ``sample`` (a batch (n, 1, 28, 28); default the
        first test image) so every parameter has its shape; then call ``prepare(net)`` if given
        (e.g. to freeze parameters). Returns the net."""
        if sample is None:
            sample = next(iter(self.load_data()[1]))[0][:1]
        set_seed(self.seed)
        net = lenet(**lenet_kwargs)
        net.initialize(init.Xavier(), ctx=self.ctx)
        net(sample if self.ctx is None else sample.as_in_context(self.ctx))
        if prepare is not None:
            prepare(net)
        return net

    def run(self, name, lr=1.0, prepare=None, **lenet_kwargs):
        """Train ``lenet(**lenet_kwargs)`` at learning rate ``lr``; return its ``Result``.

        prepare: optional function net -> None, called after initialization and before training.
        A run with the same lr, prepare and lenet arguments as an earlier one is not trained
        again: the earlier Result is returned (and its reuse printed).
        """
        lr = _check_lr(lr)
        key = (lr, prepare, tuple(sorted((k, _hashable(v)) for k, v in lenet_kwargs.items())))
        if key in self.results:
            result = self.results[key]
            if self.verbose:
                print('%-30s lr %-6g same run as %r: reused' % (name, lr, result.name))
            return result
        train_iter, test_iter = self.load_data()
        net = self.build(prepare, next(iter(test_iter))[0][:1], **lenet_kwargs)
        result = fit(net, train_iter, test_iter, lr, self.num_epochs, self.ctx, name)
        self.results[key] = result
        if self.verbose:
            print(result.summary())
        return result

    def sweep(self, name, lrs, prepare=None, **lenet_kwargs):
        """``run`` at each learning rate in ``lrs``; returns {lr: Result} in the order given."""
        lrs = list(lrs)
        if not lrs:
            raise ValueError('Runner.sweep: lrs is empty; give learning rates, e.g. '
                             '[0.1, 0.3, 1, 3, 10]')
        return {lr: self.run(name, lr, prepare, **lenet_kwargs) for lr in lrs}


def lr_range(sweep, ok=lambda result: result.status() == 'trains'):
    """(lowest, highest) learning rate of a sweep {lr: Result} whose Result satisfies ``ok``;
    None if none does. A gap inside the range is not reported: look at the table."""
    good = [lr for lr, result in sweep.items() if ok(result)]
    return (min(good), max(good)) if good else None


def sweep_table(sweeps, key='test_acc', chance_acc=CHANCE_ACC):
    """A text table of sweeps {variant: {lr: Result}}: one row per learning rate, one column per
    variant, each cell the final ``key`` (test accuracy by default) and the run's status."""
    lrs = sorted({lr for sweep in sweeps.values() for lr in sweep})
    width = max(22, max(len(v) for v in sweeps) + 2)
    lines = ['%8s' % 'lr' + ''.join('%*s' % (width, v) for v in sweeps)]
    for lr in lrs:
        cells = []
        for sweep in sweeps.values():
            result = sweep.get(lr)
            if result is None:
                cells.append('-')
            elif result.diverged:
                cells.append('NaN in epoch %d' % result.diverged_epoch)
            else:
                cells.append('%.3f (%s)' % (result.final(key), result.status(chance_acc)))
        lines.append('%8g' % lr + ''.join('%*s' % (width, c) for c in cells))
    return '\n'.join(lines)


