"""Helpers for the batch normalization chapter of 动手学深度学习 (MXNet edition).

Names follow the course's ``d2lzh`` package (``load_data_fashion_mnist``, ``try_gpu``,
``evaluate_accuracy``, ``train_ch5``, ...), so every call maps to the book, and every name a
notebook uses is here, at the top level (``from d2l_utils import BatchNorm, lenet, train``).

The folders say who each part is for (docs/package.md lists every public name):

- this folder: the book's helpers, what notebooks 1-4 use: ``layers`` (the taught
  ``batch_norm`` and ``BatchNorm``), ``book`` (the book's own text), ``models``, ``data``,
  ``device``, ``data_parallel``, ``training``, ``nan_guard``, ``recalibration``, ``plot``;
  ``pytorch`` (the appendix; needs torch; not imported here);
- ``checks/``: what judges a learner's code (the checkers, the planted mistakes, grading);
- ``experiments/``: the deep dives' tools (fast and cross-device BN, other normalizations,
  folding, probes, sweeps, the loss landscape, deep nets and half batch norms);
- ``support/``: for maintainers: the environment check, error text, the data files, progress.

The names of ``checks/`` and ``experiments/`` are imported on first use (PEP 562), so
``import d2l_utils`` loads the book's helpers only.
"""
import importlib

from .support.environment import UnsupportedEnvironmentError, check_environment, import_mxnet

check_environment()   # before mxnet is imported: a clear message instead of np.bool's traceback
import_mxnet()        # first import of mxnet, without its own DeprecationWarnings

# noqa: E402 below: these imports must come after the environment check
from .book import BookBatchNorm, book_batch_norm  # noqa: E402
from .data import (  # noqa: E402
    TEXT_LABELS, ArrayDataIter, get_fashion_mnist_labels, load_data_fashion_mnist)
from .data_parallel import split_batch  # noqa: E402
from .device import try_all_gpus, try_gpu  # noqa: E402
from .layers import (  # noqa: E402
    BatchNorm, batch_norm, moving_average, validate_batch_norm_inputs, validate_num_features)
from .models import batch_norm_layers, count_parameters, is_batch_norm, lenet  # noqa: E402
from .nan_guard import NonFiniteLossError, NonFiniteParameterError  # noqa: E402
from .plot import (  # noqa: E402
    METHOD_COLORS, legend_below, method_color, plot_history, plot_lr_sweep, plt, set_figsize,
    show_fashion_mnist, show_images, use_svg_display)
from .recalibration import recalibrate_batch_norm, restoring_state  # noqa: E402
from .support.fashion_mnist_files import CorruptFileError, DataUnavailableError  # noqa: E402
from .training import (  # noqa: E402
    History, evaluate_accuracy, recalibrated_accuracy, set_seed, train, train_ch5)

__version__ = '0.1.0'   # the one place it is written: pyproject.toml reads it from here

# name -> the module that defines it, imported when the name is first used
LAZY_NAMES = {
    **dict.fromkeys(['CheckReport', 'check_batch_norm', 'check_batch_norm_block'], 'checks'),
    **dict.fromkeys(['numerical_gradient', 'relative_error'], 'checks.gradient_check'),
    **dict.fromkeys(['GradingFailure', 'check', 'check_batch_norm_backward', 'check_lenet',
                     'grade', 'grade_lenet_training'], 'checks.grading'),
    **dict.fromkeys(['ChannelView', 'FastBatchNorm', 'fast_batch_norm'],
                    'experiments.fast_batch_norm'),
    'CrossDeviceBatchNorm': 'experiments.cross_device_batch_norm',
    **dict.fromkeys(['GroupNorm', 'InstanceNorm', 'LayerNorm', 'group_norm', 'instance_norm',
                     'layer_norm'], 'experiments.normalization'),
    'fold_batch_norm': 'experiments.folding',
    **dict.fromkeys(['batch_statistics_spread', 'device_copy_spread', 'record_layers',
                     'running_stats_by_device', 'weight_gradient_norms'], 'experiments.probes'),
    **dict.fromkeys(['Runner', 'fit', 'lr_range'], 'experiments.sweeps'),
    **dict.fromkeys(['NoisyBatchNorm', 'gradient_direction_probe', 'train_steps'],
                    'experiments.landscape'),
    'launch_local': 'experiments.distributed',
    **dict.fromkeys(['MeanOnlyBatchNorm', 'VarianceOnlyBatchNorm', 'deep_mlp'],
                    'experiments.depth'),
    **dict.fromkeys(['MIN_SEEDS', 'SeedSpread', 'over_seeds'], 'experiments.seeds'),
}


def __getattr__(name):
    module = LAZY_NAMES.get(name)
    if module is None:
        # a name of the book's d2lzh for another chapter: say so, and what to import there
        from .support.d2lzh_names import NOT_PROVIDED, not_provided_message
        if name in NOT_PROVIDED:
            raise AttributeError(not_provided_message(name))
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{module}', __name__), name)
    globals()[name] = value   # the next lookup is an ordinary one
    return value


def __dir__():
    return sorted(set(globals()) | set(LAZY_NAMES))


__all__ = [
    # the taught layer and the book's own text
    'BatchNorm', 'batch_norm', 'moving_average', 'validate_batch_norm_inputs',
    'validate_num_features', 'BookBatchNorm', 'book_batch_norm',
    # data and devices
    'TEXT_LABELS', 'ArrayDataIter', 'get_fashion_mnist_labels', 'load_data_fashion_mnist',
    'CorruptFileError', 'DataUnavailableError', 'try_all_gpus', 'try_gpu', 'split_batch',
    # models, training, the NaN guard, recalibration
    'lenet', 'count_parameters', 'is_batch_norm', 'batch_norm_layers', 'History',
    'evaluate_accuracy', 'set_seed', 'train', 'train_ch5', 'NonFiniteLossError',
    'NonFiniteParameterError', 'recalibrate_batch_norm', 'recalibrated_accuracy',
    'restoring_state',
    # plots
    'METHOD_COLORS', 'legend_below', 'method_color', 'plot_history', 'plot_lr_sweep', 'plt',
    'set_figsize', 'show_fashion_mnist', 'show_images', 'use_svg_display',
    # the environment
    'UnsupportedEnvironmentError',
    # imported on first use (LAZY_NAMES): judging a learner's code (checks/)
    'CheckReport', 'check_batch_norm', 'check_batch_norm_block', 'numerical_gradient',
    'relative_error', 'GradingFailure', 'check', 'check_batch_norm_backward', 'check_lenet',
    'grade', 'grade_lenet_training',
    # imported on first use (LAZY_NAMES): the deep dives' tools (experiments/)
    'ChannelView', 'FastBatchNorm', 'fast_batch_norm', 'CrossDeviceBatchNorm', 'GroupNorm',
    'InstanceNorm', 'LayerNorm', 'group_norm', 'instance_norm', 'layer_norm', 'fold_batch_norm',
    'batch_statistics_spread', 'device_copy_spread', 'record_layers', 'running_stats_by_device',
    'weight_gradient_norms', 'Runner', 'fit', 'lr_range', 'NoisyBatchNorm',
    'gradient_direction_probe', 'train_steps', 'launch_local', 'MeanOnlyBatchNorm',
    'VarianceOnlyBatchNorm', 'deep_mlp', 'MIN_SEEDS', 'SeedSpread', 'over_seeds',
]
