"""Helpers for the batch normalization chapter of 动手学深度学习 (MXNet edition).

Names follow the course's ``d2lzh`` package (``load_data_fashion_mnist``, ``try_gpu``,
``evaluate_accuracy``, ``train_ch5``, ...), so every call maps to the book.
Modules: ``data`` (Fashion-MNIST in memory), ``fashion_mnist_files`` (finding and verifying
the files), ``device``, ``training``, ``plot``, ``layers`` (the scratch ``batch_norm`` and
``BatchNorm`` the notebooks teach), ``fast_batch_norm`` (the same layer with a hand-written
backward, for speed), ``models`` (LeNet variants), ``checks`` (checkers for a learner's batch
norm) and ``bn_mistakes`` (real mistakes they catch), ``experiments`` (measuring tools for the
exercises), ``parallel`` (several devices), ``pytorch`` (the appendix; needs torch), ``report``
(``python -m d2l_utils``).
"""
from ._versions import check_environment

check_environment()   # before mxnet is imported: a clear message instead of np.bool's traceback

# noqa: E402 below: these imports must come after the environment check
from .layers import BatchNorm, batch_norm  # noqa: E402
from .checks import CheckReport, check_batch_norm, check_batch_norm_block  # noqa: E402
from .data import ArrayDataIter, get_fashion_mnist_labels, load_data_fashion_mnist  # noqa: E402
from .device import try_all_gpus, try_gpu  # noqa: E402
from .fast_batch_norm import FastBatchNorm  # noqa: E402
from .fashion_mnist_files import (CorruptFileError, DataUnavailableError,  # noqa: E402
                                  ENV_VAR as FASHION_MNIST_ENV_VAR)
from .models import lenet  # noqa: E402
from .parallel import CrossDeviceBatchNorm  # noqa: E402
from .plot import (plot_history, set_figsize, show_fashion_mnist, show_images,  # noqa: E402
                   use_svg_display)
from .recalibration import recalibrate_batch_norm  # noqa: E402
from .training import (History, NonFiniteLossError, evaluate_accuracy,  # noqa: E402
                       recalibrated_accuracy, set_seed, train, train_ch5)

__version__ = '0.1.0'
from .normalization import (GroupNorm, InstanceNorm, LayerNorm, group_norm,  # noqa: E402
                            instance_norm, layer_norm)
