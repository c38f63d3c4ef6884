"""Helpers for the batch normalization chapter of 动手学深度学习 (MXNet edition).

Names follow the course's ``d2lzh`` package (``load_data_fashion_mnist``, ``try_gpu``,
``evaluate_accuracy``, ``train_ch5``, ...), so every call maps to the book, and every name a
notebook uses is here, at the top level (``from d2l_utils import BatchNorm, lenet, train``).

Modules, each named for what it holds:

- ``layers``: the scratch ``batch_norm`` and ``BatchNorm`` the notebooks teach;
  ``book``: the book's own version, verbatim, with its two defects;
  ``fast_batch_norm``: the same layer with a hand-written backward, for speed;
  ``cross_device_batch_norm``: the layer with statistics over a batch split across devices;
- ``data`` (Fashion-MNIST in memory), ``fashion_mnist_files`` (finding and verifying the files);
- ``device`` (GPUs that really work, device lists), ``data_parallel`` (splitting batches);
- ``models`` (LeNet variants), ``training`` (``train``, ``evaluate_accuracy``, ``History``),
  ``recalibration`` (PreciseBN), ``plot``, ``progress``;
- ``checks`` (checkers for a learner's batch norm) and ``bn_mistakes`` (real mistakes they
  catch); ``gradient_check`` (numerical gradients, relative error);
- ``probes`` (measuring tools for the exercises), ``sweeps`` (many short trainings compared);
- ``pytorch`` (the appendix; needs torch; not imported here);
- ``environment`` (the version check run on import), ``report`` (``python -m d2l_utils``),
  ``errors`` (short messages from long errors).
"""
from .support.environment import UnsupportedEnvironmentError, check_environment, import_mxnet

check_environment()   # before mxnet is imported: a clear message instead of np.bool's traceback
import_mxnet()        # first import of mxnet, without its own DeprecationWarnings

# noqa: E402 below: these imports must come after the environment check
from .layers import (BatchNorm, BatchNormCalling, batch_norm, check_batch_norm_inputs,  # noqa: E402
                     check_batch_norm_settings, check_batch_norm_shapes, check_num_features,
                     moving_average, param_shape)
from .book import BookBatchNorm, book_batch_norm  # noqa: E402
from .experiments.fast_batch_norm import (BatchNormFunction, ChannelView, FastBatchNorm,  # noqa: E402
                              fast_batch_norm)
from .experiments.cross_device_batch_norm import (CrossDeviceBatchNorm,  # noqa: E402
                                      CrossDeviceBatchNormFunction)
from .checks import CheckReport, CheckResult, check_batch_norm, check_batch_norm_block  # noqa: E402
from .data import (TEXT_LABELS, ArrayDataIter, get_fashion_mnist_labels,  # noqa: E402
                   load_data_fashion_mnist)
from .data_parallel import (check_initialized_on, forward_parts, needs_all_parts,  # noqa: E402
                            split_batch, split_parts)
from .device import as_ctx_list, try_all_gpus, try_gpu  # noqa: E402
from .support.fashion_mnist_files import (CorruptFileError, DataUnavailableError,  # noqa: E402
                                  ENV_VAR as FASHION_MNIST_ENV_VAR)
from .checks.gradient_check import numerical_gradient, relative_error  # noqa: E402
from .models import count_parameters, lenet  # noqa: E402
from .plot import (METHOD_COLORS, method_color, plot_history, plot_lr_sweep,  # noqa: E402
                   set_figsize, show_fashion_mnist, show_images, use_svg_display)
from .experiments.probes import (LayerRecord, batch_statistics_spread, device_copy_spread,  # noqa: E402
                     record_layers, running_stats_by_device, saturated_fraction,
                     weight_gradient_norms)
from .recalibration import batch_norm_layers, recalibrate_batch_norm  # noqa: E402
from .experiments.sweeps import Result, Runner, fit, lr_range, sweep_table  # noqa: E402
from .experiments.seeds import MIN_SEEDS, SeedSpread, over_seeds  # noqa: E402
from .training import (History, NonFiniteLossError, NonFiniteParameterError,  # noqa: E402
                       evaluate_accuracy, first_nonfinite_parameter,
                       first_nonfinite_layer, recalibrated_accuracy, restoring_state, set_seed,
                       train, train_ch5)

from .checks.grading import (GradingFailure, check, check_batch_norm_backward, check_lenet, expect,  # noqa: E402,E501
                      grade, grade_lenet_training, raise_for_failures, require_names, score)
from .experiments.normalization import (GroupNorm, InstanceNorm, LayerNorm, group_norm,  # noqa: E402
                            instance_norm, layer_norm)
from .experiments.folding import fold_batch_norm  # noqa: E402
from .experiments.landscape import NoisyBatchNorm, gradient_direction_probe, train_steps  # noqa: E402
from .experiments.distributed import launch_local  # noqa: E402

__version__ = '0.1.0'   # the one place it is written: pyproject.toml reads it from here

__all__ = [
    # layers and the book's code
    'BatchNorm', 'BatchNormCalling', 'batch_norm', 'check_batch_norm_inputs',
    'check_batch_norm_settings', 'check_batch_norm_shapes', 'check_num_features', 'moving_average',
    'param_shape', 'BookBatchNorm', 'book_batch_norm',
    'BatchNormFunction', 'ChannelView', 'FastBatchNorm', 'fast_batch_norm', 'CrossDeviceBatchNorm',
    'CrossDeviceBatchNormFunction',
    # checking a learner's batch norm, and gradients
    'CheckReport', 'CheckResult', 'check_batch_norm', 'check_batch_norm_block',
    'numerical_gradient', 'relative_error',
    # data and devices
    'TEXT_LABELS', 'ArrayDataIter', 'get_fashion_mnist_labels', 'load_data_fashion_mnist',
    'CorruptFileError', 'DataUnavailableError', 'FASHION_MNIST_ENV_VAR',
    'as_ctx_list', 'try_all_gpus', 'try_gpu',
    'check_initialized_on', 'forward_parts', 'needs_all_parts', 'split_batch', 'split_parts',
    # models, training, recalibration
    'count_parameters', 'lenet', 'History', 'NonFiniteLossError', 'NonFiniteParameterError',
    'evaluate_accuracy', 'first_nonfinite_parameter',
    'first_nonfinite_layer', 'recalibrated_accuracy', 'restoring_state', 'set_seed', 'train',
    'train_ch5', 'batch_norm_layers', 'recalibrate_batch_norm',
    # plots
    'METHOD_COLORS', 'method_color', 'plot_history', 'plot_lr_sweep', 'set_figsize',
    'show_fashion_mnist', 'show_images', 'use_svg_display',
    # measuring tools and sweeps for the exercises
    'LayerRecord', 'batch_statistics_spread', 'device_copy_spread', 'record_layers',
    'running_stats_by_device', 'saturated_fraction', 'weight_gradient_norms',
    'Result', 'Runner', 'fit', 'lr_range', 'sweep_table',
    'MIN_SEEDS', 'SeedSpread', 'over_seeds',   # several seeds: the spread a difference must beat
    # other normalizations: layer, group, instance (notebook 7)
    'GroupNorm', 'InstanceNorm', 'LayerNorm', 'group_norm', 'instance_norm', 'layer_norm',
    # beyond the book: folding BN for prediction, the papers' experiments (notebook 6)
    'fold_batch_norm', 'NoisyBatchNorm', 'gradient_direction_probe', 'train_steps',
    'launch_local',
    # grading a learner's code (the nbgrader course in exercises/)
    'GradingFailure', 'check', 'check_batch_norm_backward', 'check_lenet', 'expect', 'grade',
    'grade_lenet_training', 'raise_for_failures', 'require_names', 'score',
    # the environment
    'UnsupportedEnvironmentError', 'check_environment',
]
