"""Plot helpers, drawn with the Agg backend (no display needed)."""
import matplotlib
matplotlib.use('Agg')

import numpy as np   # noqa: E402
import pytest   # noqa: E402
from matplotlib import pyplot as plt   # noqa: E402
from mxnet import nd   # noqa: E402

from d2l_utils import History, plot   # noqa: E402


def made_up(name, losses, train_accs, test_accs):
    """A real ``History`` (as ``train`` returns it) with the given per-epoch values."""
    run = History(name)
    for i, (loss, tr, te) in enumerate(zip(losses, train_accs, test_accs)):
        run.epochs.append({'epoch': i + 1, 'train_loss': loss, 'train_acc': tr, 'test_acc': te,
                           'seconds': 2.0 + i, 'examples_per_sec': 1000.0 * (i + 1)})
    return run


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close('all')


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_plot_history_draws_each_metric_of_one_run_with_labels():
    history = made_up('BN from scratch', [1.2, 0.6, 0.4], [0.55, 0.78, 0.84],
                          [0.60, 0.80, 0.83])
    loss_ax, acc_ax = plot.plot_history(history)

    loss_line = lines_by_label(loss_ax)['BN from scratch: train loss']
    assert list(loss_line.get_xdata()) == [1, 2, 3]
    assert list(loss_line.get_ydata()) == history.column('train_loss')
    acc_lines = lines_by_label(acc_ax)
    assert list(acc_lines['BN from scratch: train acc'].get_ydata()) == history.column('train_acc')
    assert list(acc_lines['BN from scratch: test acc'].get_ydata()) == history.column('test_acc')

    for ax in (loss_ax, acc_ax):
        assert ax.get_xlabel() == 'epoch'
        assert ax.get_legend() is None          # one legend for the whole figure instead
    assert len(loss_ax.figure.legends) == 1
    assert loss_ax.get_ylabel() == 'loss per example'
    assert acc_ax.get_ylabel() == 'accuracy (fraction)'
    assert loss_ax.figure.get_suptitle() == 'Training curves: BN from scratch'


def test_plot_history_puts_several_runs_on_one_figure_with_run_names():
    runs = {'no BN': made_up('', [2.3, 1.9], [0.10, 0.30], [0.10, 0.35]),
            'Gluon BN': made_up('', [1.0, 0.5], [0.60, 0.80], [0.65, 0.82])}
    axes = plot.plot_history(runs, metrics=('train_loss', 'test_acc'), title='BN vs none')

    assert len(axes) == 2 and axes[0].figure is axes[1].figure
    assert axes[0].figure.get_suptitle() == 'BN vs none'
    [legend] = axes[0].figure.legends
    # runs by colour, metrics by line style: 2 runs + 2 metrics + 2 headings, not 4 pairs
    assert [t.get_text() for t in legend.get_texts()] == [
        'runs (colour)', 'no BN', 'Gluon BN', 'metrics (line style)', 'train loss', 'test acc']
    lines = lines_by_label(axes[1])
    assert list(lines['no BN: test acc'].get_ydata()) == [0.10, 0.35]
    assert list(lines['Gluon BN: test acc'].get_ydata()) == [0.65, 0.82]
    # each run keeps one colour across panels
    assert (lines_by_label(axes[0])['Gluon BN: train loss'].get_color()
            == lines['Gluon BN: test acc'].get_color())


def test_plot_history_takes_a_list_and_names_runs_by_their_name():
    runs = [made_up('lr 0.1', [1.0], [0.5], [0.5]), made_up('lr 1.0', [0.8], [0.6], [0.6])]
    [acc_ax] = plot.plot_history(runs, metrics=('test_acc',))
    assert sorted(lines_by_label(acc_ax)) == ['lr 0.1: test acc', 'lr 1.0: test acc']


def test_plot_history_gives_timing_its_own_panel_with_units():
    axes = plot.plot_history(made_up('a', [1.0, 0.5], [0.5, 0.7], [0.5, 0.7]),
                             metrics=('test_acc', 'seconds', 'examples_per_sec'))
    assert [ax.get_ylabel() for ax in axes] == ['accuracy (fraction)',
                                                'time per epoch (s)',
                                                'training speed (examples/s)']


def test_plot_history_names_a_missing_metric_and_the_available_ones():
    with pytest.raises(KeyError, match="no 'val_acc' in epoch 1; its metrics are"):
        plot.plot_history(made_up('a', [1.0], [0.5], [0.5]), metrics=('val_acc',))


def test_plot_history_rejects_a_run_without_epochs():
    with pytest.raises(ValueError, match="run 'empty' has no epochs yet"):
        plot.plot_history(made_up('empty', [], [], []))


@pytest.mark.parametrize('shape', [(5, 28, 28), (5, 1, 28, 28), (5, 28, 28, 1), (5, 20, 12)])
def test_show_images_accepts_the_usual_image_layouts(shape):
    imgs = np.random.RandomState(0).rand(*shape).astype(np.float32)
    axes = plot.show_images(nd.array(imgs), 2, 3, titles=list('abcde'))
    assert len(axes) == 6
    shown = axes[0].get_images()[0]
    np.testing.assert_allclose(shown.get_array(), np.squeeze(imgs[0]))
    assert shown.get_cmap().name == 'gray'
    assert [ax.get_title() for ax in axes] == ['a', 'b', 'c', 'd', 'e', '']
    assert axes[5].get_images() == []


def test_show_images_explains_an_unsupported_shape():
    with pytest.raises(ValueError, match=r'got shape \(28, 28\). For one image add a batch axis'):
        plot.show_images(np.zeros((28, 28)), 1, 1)


def test_show_fashion_mnist_titles_each_image_with_its_label():
    imgs = nd.zeros((3, 1, 28, 28))
    plot.show_fashion_mnist(imgs, ['t-shirt', 'trouser', 'bag'])
    axes = plt.gcf().axes
    assert [ax.get_title() for ax in axes] == ['t-shirt', 'trouser', 'bag']


def test_use_svg_display_is_a_no_op_outside_ipython():
    plot.use_svg_display()
    plot.set_figsize((4, 3))
    assert tuple(plt.rcParams['figure.figsize']) == (4.0, 3.0)


def test_use_svg_display_does_not_start_an_ipython_shell_in_plain_python():
    """Importing IPython (d2lzh does) is not running under it: no shell may be created."""
    from IPython.core.interactiveshell import InteractiveShell
    if InteractiveShell.initialized():
        pytest.skip('an IPython shell already exists in this process')
    plot.use_svg_display()
    assert not InteractiveShell.initialized()


def test_use_svg_display_registers_png_beside_svg_in_a_real_ipython_shell(tmp_path, monkeypatch):
    """The IPython 9 path, on a real (non-kernel) IPython shell created for the test; its
    profile and history go to a temporary folder, not the user's ~/.ipython."""
    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib.figure import Figure
    from traitlets.config import Config
    if InteractiveShell.initialized():
        pytest.skip('an IPython shell already exists in this process')
    monkeypatch.setenv('IPYTHONDIR', str(tmp_path))
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    try:
        plot.use_svg_display()
        formatters = shell.display_formatter.formatters
        # SVG for a trusted notebook, PNG for an untrusted one (Jupyter will not render its SVG)
        assert Figure in formatters['image/svg+xml'].type_printers
        assert Figure in formatters['image/png'].type_printers
    finally:
        InteractiveShell.clear_instance()


# --- bad input (issue 17, reliability.md row 6.5)

def test_plot_history_of_none_says_what_it_expects():
    with pytest.raises(TypeError, match=r'expects a History returned by train\(\).*got None'):
        plot.plot_history(None)


@pytest.mark.parametrize('rows, cols', [(0, 0), (2, 0), (1.5, 2)])
def test_show_images_refuses_a_grid_without_cells(rows, cols):
    with pytest.raises(ValueError, match='must be a positive integer'):
        plot.show_images(np.zeros((4, 28, 28)), rows, cols)


@pytest.mark.parametrize('figsize, error', [('big', TypeError), ((0, 2), ValueError)])
def test_set_figsize_refuses_what_is_not_a_positive_width_and_height(figsize, error):
    before = plt.rcParams['figure.figsize']
    with pytest.raises(error, match='set_figsize'):
        plot.set_figsize(figsize)
    assert plt.rcParams['figure.figsize'] == before


# --- layout (issue 25): nothing collides, the axes keep their height, colours mean methods

def boxes_overlap(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_plot_history_with_five_runs_keeps_legend_labels_and_title_apart_and_axes_tall():
    names = ['scratch BN', 'nn.BatchNorm', 'no BN', 'lr 3', 'lr 10']
    runs = {name: made_up('', [2.0 - 0.3 * i, 1.0 - 0.1 * i], [0.3, 0.6], [0.2, 0.5 + 0.05 * i])
            for i, name in enumerate(names)}
    axes = plot.plot_history(runs, title='Five runs with a long title: scratch BN, '
                             'nn.BatchNorm and no BN at lr 1.0')
    fig = axes[0].figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    [legend] = fig.legends
    boxes = {'legend': legend.get_window_extent(renderer),
             'title': next(text for text in fig.texts if text.get_text() == fig.get_suptitle())
             .get_window_extent(renderer)}
    for i, ax in enumerate(axes):
        boxes['x label %d' % i] = ax.xaxis.label.get_window_extent(renderer)
        boxes['y label %d' % i] = ax.yaxis.label.get_window_extent(renderer)
        boxes['panel title %d' % i] = ax.title.get_window_extent(renderer)
        boxes['axes %d' % i] = ax.get_window_extent(renderer)
    names = sorted(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if a.startswith('axes') and b.startswith(('x label', 'y label', 'panel')):
                continue   # a label sits beside its axes, touching is fine
            if b.startswith('axes') and a.startswith(('x label', 'y label', 'panel')):
                continue
            assert not boxes_overlap(boxes[a], boxes[b]), '%s overlaps %s' % (a, b)
    figure_box = fig.bbox
    for i, ax in enumerate(axes):
        assert boxes['axes %d' % i].height >= 0.45 * figure_box.height
        for part in ('x label %d' % i, 'y label %d' % i, 'legend'):   # nothing cut off
            box = boxes[part]
            assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= figure_box.x1 + 1
            assert box.y1 <= figure_box.y1 + 1
        # the y label stays below the panel title and the figure title
        assert boxes['y label %d' % i].y1 < boxes['title'].y0
    assert len(legend.get_texts()) == 5 + 3 + 2   # runs + metrics + two headings


def test_plot_lr_sweep_keeps_its_legend_clear_of_a_long_title():
    from d2l_utils.experiments.sweeps import Result
    sweeps = {}
    for variant, accs in (('BN', [0.8, 0.77, 0.8]), ('no BN', [0.55, 0.1, 0.1])):
        sweeps[variant] = {lr: Result(variant, lr, made_up(variant, [0.5], [acc], [acc]), None)
                           for lr, acc in zip((1.0, 3.0, 10.0), accs)}
    ax_acc, _ = plot.plot_lr_sweep(sweeps, accuracy=lambda r: r.final('test_acc'),
                                   title='Exercise 2: LeNet (sigmoid), 20000 images, batch 256; '
                                   'BN 3 epochs, no BN 5')
    fig = ax_acc.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    [legend] = fig.legends
    title = next(text for text in fig.texts if text.get_text() == fig.get_suptitle())
    assert not boxes_overlap(legend.get_window_extent(renderer),
                             title.get_window_extent(renderer))


def test_a_method_has_one_colour_in_every_plot_and_a_faint_metric_is_faint():
    runs = {'no BN': made_up('', [2.3, 1.9], [0.1, 0.3], [0.1, 0.35]),
            'scratch BN': made_up('', [1.0, 0.5], [0.6, 0.8], [0.65, 0.82])}
    loss_ax, acc_ax = plot.plot_history(runs, faint=('test_acc',))
    lines = lines_by_label(acc_ax)
    assert lines['scratch BN: test acc'].get_color() == plot.METHOD_COLORS['scratch BN']
    assert lines['no BN: train acc'].get_color() == plot.METHOD_COLORS['no BN']
    assert lines['no BN: test acc'].get_alpha() < 0.5 <= lines['no BN: train acc'].get_alpha()
    # the same names in a list in the other order keep their colours
    [ax] = plot.plot_history({'scratch BN': runs['scratch BN'], 'no BN': runs['no BN']},
                             metrics=('train_loss',))
    assert lines_by_label(ax)['no BN: train loss'].get_color() == plot.METHOD_COLORS['no BN']
    assert plot.method_color('no BN, seed 1') == plot.METHOD_COLORS['no BN']


def test_plot_history_refuses_a_faint_metric_it_does_not_plot():
    with pytest.raises(ValueError, match="faint=\\('test_acc',\\) names metrics not in"):
        plot.plot_history(made_up('a', [1.0], [0.5], [0.5]), metrics=('train_loss',),
                          faint=('test_acc',))


# --- Bad inputs, round 3 (issue 29, battery section I)

def test_plot_history_with_no_metrics_says_what_to_pass():
    run = made_up('x', [1.0, 0.5], [0.5, 0.6], [0.4, 0.5])
    with pytest.raises(ValueError, match=r"metrics is empty.*metrics=\('train_loss'"):   # I5
        plot.plot_history(run, metrics=())


def test_plot_history_with_a_metric_name_as_a_string_says_to_write_a_tuple():
    run = made_up('x', [1.0, 0.5], [0.5, 0.6], [0.4, 0.5])
    with pytest.raises(TypeError, match=r"the string 'train_loss'.*metrics=\('train_loss',\)"):
        plot.plot_history(run, metrics='train_loss')                                   # I7


def sweep_of(variant, lrs, accs):
    from d2l_utils.experiments.sweeps import Result
    return {lr: Result(variant, lr, made_up(variant, [0.5], [acc], [acc]), None)
            for lr, acc in zip(lrs, accs)}


def test_plot_lr_sweep_names_a_variant_without_runs():
    with pytest.raises(ValueError, match=r"variant 'BN' has no runs"):                   # I8
        plot.plot_lr_sweep({'BN': {}})


def test_plot_lr_sweep_says_which_run_the_log_axis_cannot_show():
    sweeps = {'BN': sweep_of('BN', (0, 0.1, 1.0), (0.1, 0.6, 0.8))}                     # I9
    with pytest.warns(UserWarning, match=r"'BN' run\(s\) at learning rate 0 cannot be drawn"):
        ax_acc, _ = plot.plot_lr_sweep(sweeps)
    [line] = [line for line in ax_acc.get_lines() if line.get_label() == 'BN']
    assert list(line.get_xdata()) == [0.1, 1.0]


def test_show_images_takes_the_books_positional_scale_and_titles_by_keyword():
    axes = plot.show_images(np.zeros((6, 28, 28)), 2, 3, 1.0)   # d2lzh: (imgs, rows, cols, scale)
    assert tuple(axes[0].figure.get_size_inches()) == (3.0, 2.0)
    axes = plot.show_images(np.zeros((2, 28, 28)), 1, 2, titles=['a', 'b'])
    assert tuple(axes[0].figure.get_size_inches()) == (4.0, 2.0)   # the book's default scale 2
    assert [ax.get_title() for ax in axes] == ['a', 'b']


def test_legend_below_lists_each_label_once_under_every_panel():
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax in axes:
        ax.plot([0, 1], [0, 1], color=plot.method_color('BN'), label='BN')
        ax.plot([0, 1], [1, 0], color=plot.method_color('no BN'), label='no BN')
        ax.set_xlabel('training step')
    axes[2].plot([0, 1], [0.5, 0.5], label='chance')
    fig.tight_layout()
    legend = plot.legend_below(fig, axes)
    assert [text.get_text() for text in legend.get_texts()] == ['BN', 'no BN', 'chance']
    assert [ax.get_legend() for ax in axes] == [None] * 3    # no legend inside a panel
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    for ax in axes:   # under the panels and their x labels
        assert box.y1 <= ax.xaxis.label.get_window_extent(renderer).y0 + 1


def test_legend_below_says_when_no_line_has_a_label():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match='label='):
        plot.legend_below(fig)
