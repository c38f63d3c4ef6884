"""Plots with the book's names, working on current IPython, plus training curves and sweeps.

``d2lzh.use_svg_display`` calls ``IPython.display.set_matplotlib_formats``, which IPython 9
removed; its replacement lives in ``matplotlib_inline.backend_inline``. Figures are emitted as
PNG beside SVG: Jupyter does not render SVG from a notebook the user has not trusted (a fresh
clone), and falls back to the PNG.

One colour per method across the course: ``METHOD_COLORS`` (``method_color``). In
``plot_history`` runs differ by colour and metrics by line style, with one legend for the figure.
"""
import numbers
import sys

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.ticker import MaxNLocator

from .data import CHANCE_LOSS, UNIFORM_GUESS_ACC

__all__ = ['FIGURE_FORMATS', 'METHOD_COLORS', 'METRICS', 'PANEL_YLABELS', 'legend_below',
           'method_color', 'plot_history', 'plot_lr_sweep', 'set_figsize', 'show_fashion_mnist',
           'show_images', 'use_svg_display']

# metric key -> (legend text, which panel it goes on)
METRICS = {
    'train_loss': ('train loss', 'loss'),
    'train_acc': ('train acc', 'accuracy'),
    'test_acc': ('test acc', 'accuracy'),
    'test_acc_recalibrated': ('test acc (recalibrated BN)', 'accuracy'),
    'seconds': ('seconds per epoch', 'seconds'),
    'examples_per_sec': ('training speed', 'speed'),
}
# panel -> y-axis label (with units)
PANEL_YLABELS = {
    'loss': 'loss per example',
    'accuracy': 'accuracy (fraction)',
    'seconds': 'time per epoch (s)',
    'speed': 'training speed (examples/s)',
}
_LINESTYLES = ('-', '--', ':', '-.')

# One colour per method, in every notebook: a run named after a method gets its colour.
METHOD_COLORS = {
    'scratch BN': 'tab:blue',        # the scratch BatchNorm of notebooks 1-3
    'nn.BatchNorm': 'tab:green',     # Gluon's layer (notebooks 4, 5: 'BN' there)
    'BN': 'tab:green',
    'no BN': 'tab:orange',
    'plain': 'tab:orange',           # 'plain LeNet' = no BN
    'FastBatchNorm': 'tab:cyan',     # the scratch layer with a hand-written backward
    'layer norm': 'tab:purple',
    'group norm': 'tab:brown',
    'instance norm': 'tab:pink',
    'PyTorch': 'tab:red',
    'noisy BN': 'tab:gray',          # notebook 6: BN followed by random noise
    'mean only': 'tab:olive',        # notebook 6: the half batch norms
    'variance only': 'black',
}
# Runs that are not methods (learning rates, placements) take these, in order: viridis-like
# shades, so they are never mistaken for a method's tab10 colour, and read as an ordered series
_OTHER_COLORS = ('#440154', '#3b528b', '#21918c', '#5ec962', '#b8860b', '#8b0a50', '#555555')
# What the notebooks emit: PNG for an untrusted notebook, SVG (sharp) for a trusted one
FIGURE_FORMATS = ('png', 'svg')


def method_color(name, index=0):
    """The course's colour for a run named ``name``: METHOD_COLORS[name] if it names a
    method (also as the text before ':', ',' or ' ('), else the index-th of a fixed cycle."""
    text = str(name)
    for key in (text, text.split(':')[0].strip(), text.split(',')[0].strip(),
                text.split(' (')[0].strip()):
        if key in METHOD_COLORS:
            return METHOD_COLORS[key]
    return _OTHER_COLORS[index % len(_OTHER_COLORS)]


def legend_below(fig, axes=None, ncol=4):
    """One legend for a figure of several panels, under them (outside every axes).

    Takes the labelled lines of ``axes`` (default: all of the figure's axes) in order; a label
    that several panels share (the same run drawn in each) is listed once. Returns the legend.
    Jupyter saves inline figures with a tight bounding box, so the legend is not cut off."""
    handles, labels = [], []
    for ax in (fig.axes if axes is None else np.ravel(axes)):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if not labels:
        raise ValueError('legend_below: no labelled line in these axes; give the lines a '
                         'label=... when you plot them')
    return fig.legend(handles, labels, loc='upper center', bbox_to_anchor=(0.5, 0.0),
                      ncol=min(ncol, len(labels)), fontsize='small', frameon=False)


def use_svg_display():
    """Show plots in Jupyter as SVG (sharp at any zoom), as the book does, with a PNG beside it.

    Jupyter renders SVG only from a trusted notebook; a notebook a learner has just cloned is
    not trusted, and shows the PNG instead (``FIGURE_FORMATS``). Works on IPython 9
    (``matplotlib_inline``) and older IPython (``IPython.display``); outside IPython (a script,
    pytest) it does nothing.
    """
    # Not imported by anyone means not running under IPython; importing it here would be slow
    if 'IPython' not in sys.modules:
        return
    from IPython import get_ipython
    if get_ipython() is None:   # IPython installed and imported, but this is a plain Python
        return
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:         # IPython < 7.23 has no matplotlib_inline
        from IPython.display import set_matplotlib_formats
    set_matplotlib_formats(*FIGURE_FORMATS)


def set_figsize(figsize=(3.5, 2.5)):
    """Use SVG display and set the default figure size (width, height) in inches."""
    try:
        width, height = (float(v) for v in figsize)
    except (TypeError, ValueError):
        raise TypeError('set_figsize expects (width, height) in inches, e.g. (6, 4); got %r.'
                        % (figsize,)) from None
    if not (width > 0 and height > 0):
        raise ValueError('set_figsize: width and height must be positive inches; got %r.'
                         % (figsize,))
    use_svg_display()
    plt.rcParams['figure.figsize'] = (width, height)


def _images_as_numpy(imgs):
    """Images as a numpy array (N, H, W), from NDArray/numpy/list of shape (N, H, W),
    (N, 1, H, W) (channels first, as batches are) or (N, H, W, 1) (as Gluon datasets give)."""
    if isinstance(imgs, (list, tuple)):
        imgs = [img.asnumpy() if hasattr(img, 'asnumpy') else np.asarray(img) for img in imgs]
        arr = np.stack(imgs) if imgs else np.zeros((0, 0, 0))
    else:
        arr = imgs.asnumpy() if hasattr(imgs, 'asnumpy') else np.asarray(imgs)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(
            'show_images expects grayscale images of shape (N, H, W), (N, 1, H, W) or '
            '(N, H, W, 1); got shape %s. For one image add a batch axis (img[None]); for '
            'flattened images (N, 784) reshape to (N, 28, 28).' % (arr.shape,))
    return arr


def show_images(imgs, num_rows, num_cols, scale=2, *, titles=None):
    """Plot grayscale images in a num_rows x num_cols grid; return the axes, flattened.

    The book's signature ``show_images(imgs, num_rows, num_cols, scale=2)``, plus titles.
    imgs: NDArray or numpy array (N, H, W), (N, 1, H, W) or (N, H, W, 1), e.g. a
    Fashion-MNIST batch (N, 1, 28, 28); the first num_rows * num_cols are shown.
    scale: inches per image. titles (keyword only): optional list of N strings.
    Returns a numpy array of num_rows * num_cols Axes (unused ones are blank). In a notebook end
    the call with ';' to hide the returned value.
    """
    for name, value in (('num_rows', num_rows), ('num_cols', num_cols)):
        if not (isinstance(value, numbers.Integral) and value >= 1):
            raise ValueError('show_images: %s must be a positive integer (the grid is num_rows x '
                             'num_cols images); got %r.' % (name, value))
    arr = _images_as_numpy(imgs)
    use_svg_display()
    _, axes = plt.subplots(num_rows, num_cols, figsize=(num_cols * scale, num_rows * scale),
                           squeeze=False)
    axes = axes.flatten()
    for i, ax in enumerate(axes):
        ax.axis('off')    # also blanks the cells beyond the last image
        if i < len(arr):
            ax.imshow(arr[i], cmap='gray')
            if titles is not None and i < len(titles):
                ax.set_title(str(titles[i]))
    return axes


def show_fashion_mnist(images, labels):
    """Plot Fashion-MNIST images in one row with their text labels, like the book.

    images: N images, (N, 28, 28), (N, 1, 28, 28) or (N, 28, 28, 1), NDArray or numpy;
    labels: N strings, e.g. from ``get_fashion_mnist_labels(y)``.
    """
    n = len(images)
    # the book's row is 12 inches wide; one column per image
    show_images(images, 1, n, titles=labels, scale=min(12.0 / max(n, 1), 1.5))


def _runs(histories):
    """[(run name, history), ...] from one history, a dict {name: history} or a list."""
    if hasattr(histories, 'epochs'):
        histories = [histories]
    if histories is None or isinstance(histories, str) or not hasattr(histories, '__iter__'):
        raise TypeError('plot_history expects a History returned by train(), a dict {name: '
                        'History} or a list of them; got %r (a %s). Keep the value train() '
                        'returns: history = train(...).' % (histories, type(histories).__name__))
    if isinstance(histories, dict):
        runs = list(histories.items())
    else:
        runs = [(getattr(h, 'name', '') or 'run %d' % (i + 1), h) for i, h in enumerate(histories)]
    for name, h in runs:
        if not hasattr(h, 'epochs'):
            raise TypeError('plot_history expects histories returned by train() (objects with '
                            '.name and .epochs); run %r is a %s' % (name, type(h).__name__))
        if not h.epochs:
            raise ValueError('plot_history: run %r has no epochs yet; train it first' % (name,))
    if not runs:
        raise ValueError('plot_history got no histories to plot')
    return runs


def plot_history(histories, metrics=('train_loss', 'train_acc', 'test_acc'), title=None,
                 faint=()):
    """Training curves of one or several runs, one panel per kind of metric.

    histories: a History from ``train`` (``.name``, ``.epochs`` = list of dicts with 'epoch'
    and the metrics), a dict {run name: History} or a list of Histories.
    metrics: keys of the epoch dicts. Losses share one panel, accuracies another; 'seconds'
    and 'examples_per_sec' get a panel each. Each run has one colour (``method_color``: the
    course's colour if the run is named after a method), each metric a line style; one legend
    for the figure, on the right, lists the runs (colours) and the metrics (styles).
    faint: metrics drawn faint, for a number shown but not to be compared on (e.g. the
    prediction-mode 'test_acc' of BN nets at lr 1, whose moving averages lag).
    Returns the list of Axes, one per panel. In a notebook end the call with ';' to hide it.
    """
    from matplotlib.lines import Line2D
    runs = _runs(histories)
    for name, value in (('metrics', metrics), ('faint', faint)):
        if isinstance(value, str):
            raise TypeError(f'plot_history: {name} must be a list or tuple of metric names; got '
                            f'the string {value!r}, whose characters would be read as names. '
                            f'Write {name}=({value!r},).')
    if not metrics:
        raise ValueError('plot_history: metrics is empty, so there is nothing to plot; name at '
                         "least one, e.g. metrics=('train_loss', 'test_acc').")
    unknown = [key for key in faint if key not in metrics]
    if unknown:
        raise ValueError('plot_history: faint=%r names metrics not in metrics=%r; a faint metric '
                         'must also be plotted' % (tuple(unknown), tuple(metrics)))
    panels = []   # panel names in first-use order
    for key in metrics:
        panel = METRICS.get(key, (key, key))[1]
        if panel not in panels:
            panels.append(panel)
    use_svg_display()
    entries = len(runs) + len(metrics) + 2            # two legend headings
    height = max(3.4, 0.8 + 0.2 * entries)            # grow the figure when the legend is tall
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 2.4, height),
                             squeeze=False, layout='constrained')
    axes = list(axes[0])
    colors = [method_color(name, r) for r, (name, _) in enumerate(runs)]
    for r, (name, history) in enumerate(runs):
        epochs = [row['epoch'] for row in history.epochs]
        for m, key in enumerate(metrics):
            missing = [row['epoch'] for row in history.epochs if key not in row]
            if missing:
                raise KeyError('plot_history: run %r has no %r in epoch %d; its metrics are %s'
                               % (name, key, missing[0], sorted(history.epochs[0])))
            label, panel = METRICS.get(key, (key, key))
            axes[panels.index(panel)].plot(
                epochs, [row[key] for row in history.epochs], color=colors[r],
                linestyle=_LINESTYLES[m % len(_LINESTYLES)], marker='o', markersize=3,
                alpha=0.3 if key in faint else 1.0, linewidth=1.0 if key in faint else 1.6,
                label='%s: %s' % (name, label) if name else label)
    for panel, ax in zip(panels, axes):
        ax.set_xlabel('epoch')
        ax.set_ylabel(PANEL_YLABELS.get(panel, panel))
        ax.set_title(panel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    # one legend for the figure: colour = run, line style = metric (not every pair)
    handles = [Line2D([], [], color='none', label='runs (colour)')]
    handles += [Line2D([], [], color=colors[r], linewidth=2, label=name or 'run')
                for r, (name, _) in enumerate(runs)]
    handles.append(Line2D([], [], color='none', label='metrics (line style)'))
    for m, key in enumerate(metrics):
        label = METRICS.get(key, (key, key))[0] + (' (faint)' if key in faint else '')
        handles.append(Line2D([], [], color='black', linestyle=_LINESTYLES[m % len(_LINESTYLES)],
                              alpha=0.3 if key in faint else 1.0, label=label))
    fig.legend(handles=handles, loc='outside right center', fontsize='small', frameon=False)
    if title is None:
        title = 'Training curves' + (': ' + runs[0][0] if len(runs) == 1 and runs[0][0] else '')
    fig.suptitle(title)
    return axes


def _positive_lrs(sweeps):
    """The sweeps without runs at a learning rate <= 0, which a log axis cannot show; a
    UserWarning names each one left out (so no run vanishes from the figure without a word)."""
    import warnings
    kept = {}
    for variant, sweep in sweeps.items():
        dropped = sorted(lr for lr in sweep if not lr > 0)
        if dropped:
            warnings.warn(f'plot_lr_sweep: the {variant!r} run(s) at learning rate '
                          f'{", ".join(map(repr, dropped))} cannot be drawn on the log axis and '
                          'are left out of the figure; print them instead (their Result).',
                          UserWarning, stacklevel=3)
        kept[variant] = {lr: result for lr, result in sweep.items() if lr > 0}
    return kept


def plot_lr_sweep(sweeps, title='Learning-rate sweep', accuracy=None,
                  accuracy_label='test accuracy'):
    """Final test accuracy and final training loss against the learning rate (log axis).

    sweeps: {variant: {lr: Result}}, e.g. {'BN': runner.sweep(...), 'no BN': ...}. A run whose
    loss became NaN is marked with an x at the bottom of both panels. The dotted lines are a
    uniform guess over the 10 classes: accuracy 0.1 and loss ln 10.
    accuracy: optional function Result -> the accuracy to compare on (e.g. recalibrated test
    accuracy); it is the main series, and the prediction-mode test accuracy is drawn faint.
    A run at a learning rate <= 0 cannot be placed on the log axis: it is left out, with a
    UserWarning naming it.
    Returns the two Axes.
    """
    from matplotlib.lines import Line2D
    if not sweeps:
        raise ValueError('plot_lr_sweep got no sweeps; pass {variant name: {lr: Result}}')
    empty = [variant for variant, sweep in sweeps.items() if not sweep]
    if empty:
        raise ValueError(f'plot_lr_sweep: variant {empty[0]!r} has no runs (an empty dict); '
                         'pass {variant name: {lr: Result}} with at least one run, or leave the '
                         'variant out.')
    sweeps = _positive_lrs(sweeps)
    use_svg_display()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.8), layout='constrained')
    handles = []
    for i, (variant, sweep) in enumerate(sweeps.items()):
        color = method_color(variant, i)
        lrs = sorted(sweep)
        ok = [lr for lr in lrs if not sweep[lr].diverged]
        main = [accuracy(sweep[lr]) if accuracy else sweep[lr].final('test_acc') for lr in ok]
        ax_acc.plot(ok, main, 'o-', color=color, label=variant)
        if accuracy:
            ax_acc.plot(ok, [sweep[lr].final('test_acc') for lr in ok], 'o:', color=color,
                        alpha=0.3, markersize=4, label='%s: prediction mode' % variant)
        ax_loss.plot(ok, [sweep[lr].final('train_loss') for lr in ok], 'o-', color=color,
                     label=variant)
        handles.append(Line2D([], [], color=color, marker='o', label=variant))
        bad = [lr for lr in lrs if sweep[lr].diverged]
        if bad:   # at the bottom edge: x in data units, y in axes units (0 = bottom)
            for ax in (ax_acc, ax_loss):
                ax.plot(bad, [0.0] * len(bad), 'x', color=color, markersize=9, mew=2,
                        clip_on=False, transform=ax.get_xaxis_transform(),
                        label='%s: NaN loss' % variant)
            handles.append(Line2D([], [], color=color, marker='x', linestyle='none', mew=2,
                                  label='%s: NaN loss' % variant))
    if accuracy:
        handles.append(Line2D([], [], color='black', marker='o', linestyle=':', alpha=0.3,
                              label='prediction-mode test acc (faint)'))
    ax_acc.axhline(UNIFORM_GUESS_ACC, color='gray', linestyle=':',
                   label='uniform guess (%.1f)' % UNIFORM_GUESS_ACC)
    ax_loss.axhline(CHANCE_LOSS, color='gray', linestyle=':', label='uniform guess (ln 10)')
    handles.append(Line2D([], [], color='gray', linestyle=':',
                          label='uniform guess (acc %.1f, loss ln 10)' % UNIFORM_GUESS_ACC))
    ax_acc.set_ylim(0, 1)
    ax_acc.set_ylabel('%s (fraction)' % accuracy_label)
    ax_acc.set_title('%s after the budget' % accuracy_label)
    ax_loss.set_yscale('log')
    ax_loss.set_ylabel('train loss (log scale)')
    ax_loss.set_title('training loss in the last epoch')
    for ax in (ax_acc, ax_loss):
        ax.set_xscale('log')
        ax.set_xlabel('learning rate (log scale)')
        ax.grid(True, which='both', alpha=0.3)
    fig.legend(handles=handles, loc='outside right center', fontsize='small', frameon=False)
    fig.suptitle(title)
    return ax_acc, ax_loss
