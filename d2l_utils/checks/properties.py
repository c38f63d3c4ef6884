"""The properties a batch norm must have, each one function that raises ``Failure`` naming the
likely cause when it does not hold.

``check_property(meaning, block_only=False)`` registers a function under its own name in
``PROPERTIES``, in the order they are defined here, which is the printed order.
``FUNCTION_PROPERTIES`` and ``BLOCK_PROPERTIES`` list (name, meaning) pairs: the properties of
``check_batch_norm`` and of ``check_batch_norm_block``.
"""
import os
import tempfile
from collections import namedtuple

import numpy as np
import mxnet as mx
from mxnet import gluon

from ..support.errors import short_message
from .harness import (MOMENTUM, EPS, SECOND_DEVICE, Case, Failure, cases, close,
                      constructor_problem, describe, fmt, run, stat_axes, worst)

__all__ = ['BLOCK_PROPERTIES', 'FUNCTION_PROPERTIES', 'PROPERTIES', 'Property', 'check_property']

Property = namedtuple('Property', 'name meaning check block_only')
Property.__doc__ = """One property: its name, what a PASS means, the function check(subject) that
raises ``Failure`` when it does not hold, and whether only layers have it."""

PROPERTIES = {}   # name -> Property, in definition order


def check_property(meaning, block_only=False, registry=None):
    """Register the decorated function check(subject) as the property of its name, in
    ``registry`` (default ``PROPERTIES``; ``backward.BACKWARD_REGISTRY`` for the backward
    checker)."""
    def register(check):
        target = PROPERTIES if registry is None else registry
        target[check.__name__] = Property(check.__name__, meaning, check, block_only)
        return check
    return register


# --- properties of layers and functions, in the printed order (builds: layers only)

@check_property('cls(num_features, num_dims) builds, initializes and runs on 2-D and 4-D '
                'input',
                block_only=True)
def builds(subject):
    problem = constructor_problem(subject.target)
    if problem:
        raise Failure(problem)
    for case in cases():
        inst = subject.fresh(case, set_stats=False, set_affine=False)
        subject.run(inst, case, 'training')
        subject.run(inst, case, 'prediction')


@check_property("Y has X's shape and the statistics keep theirs, in both modes")
def output_shape(subject):
    for case in cases():
        for mode in ('training', 'prediction'):
            inst = subject.fresh(case)
            Y = subject.run(inst, case, mode)
            if Y.shape != case.shape:
                cause = ('it returns a statistic instead of the normalized X' if Y.shape ==
                         case.pshape else 'a reduction without keepdims=True, or a wrong axis')
                raise Failure('on %s in %s mode: expected Y of shape %s, got %s. Likely cause: '
                              '%s.' % (describe(case.shape), mode, case.shape, Y.shape, cause))
            for name, stat in zip(('moving_mean', 'moving_var'), inst.stats()):
                if stat.shape != case.pshape:
                    raise Failure(
                        'on %s in %s mode: expected %s of shape %s, got %s. Likely cause: the '
                        'batch statistic lost its shape; compute it with keepdims=True (axis=%s).'
                        % (describe(case.shape), mode, name, case.pshape, stat.shape,
                           stat_axes(len(case.shape))))


@check_property('training: each feature/channel of Y has mean beta and std gamma')
def train_normalizes(subject):
    for case in cases():
        Y = subject.run(subject.fresh(case), case, 'training').astype(np.float64)
        where = describe(case.shape)
        axes = stat_axes(Y.ndim)
        if not np.isfinite(Y).all():
            raise Failure('on %s in training mode: expected finite outputs with mean beta and std '
                          'gamma; got %d non-finite values of %d. Likely cause: a negative batch '
                          'variance under the square root, e.g. (X - mean ** 2) instead of '
                          '(X - mean) ** 2.' % (where, (~np.isfinite(Y)).sum(), Y.size))
        mean, std = Y.mean(axis=axes, keepdims=True), Y.std(axis=axes, keepdims=True)
        mean_ok = np.abs(mean - case.beta) <= 2e-3 * np.maximum(1.0, np.abs(case.beta))
        std_ok = np.abs(std - case.gamma) <= 2e-3 * case.gamma
        if mean_ok.all() and std_ok.all():
            continue
        badness = np.abs(mean - case.beta) / np.maximum(1.0, np.abs(case.beta)) + \
            np.abs(std - case.gamma) / case.gamma
        j = np.unravel_index(np.argmax(badness), badness.shape)
        f = j[1]
        _, bvar = case.batch_stats()
        m = Y.size // Y.shape[1]
        ratio = std / case.gamma
        if np.allclose(mean, 0, atol=2e-3) and np.allclose(std, 1, rtol=2e-3):
            cause = 'gamma and beta are not applied: Y = gamma * X_hat + beta.'
        elif mean_ok.all() and np.allclose(ratio, np.sqrt((m - 1) / m), rtol=2e-3):
            cause = ('the unbiased variance (divided by m - 1) normalizes X; batch norm uses the '
                     'biased one, ((X - mean) ** 2).mean().')
        elif mean_ok.all() and np.allclose(ratio, 1 / np.sqrt(bvar), rtol=5e-3):
            cause = 'X is divided by the variance, not by its square root nd.sqrt(var + eps).'
        elif mean_ok.all():
            cause = 'X is not divided by the standard deviation of its own feature/channel.'
        else:
            cause = ('the mean subtracted is not each feature\'s batch mean (see '
                     'per_feature_stats).')
        raise Failure('on %s in training mode, feature/channel %d: expected mean %s (beta) and std '
                      '%s (gamma); got mean %s, std %s. Likely cause: %s'
                      % (where, f, fmt(case.beta[j]), fmt(case.gamma[j]), fmt(mean[j]),
                         fmt(std[j]), cause))


@check_property('an input with mean ~100 gives finite outputs and moving_var >= 0')
def finite_large_mean(subject):
    for case in cases(seed=10, loc=(100.0, 110.0), scale=(0.5, 2.0)):
        inst = subject.fresh(case)
        v0 = inst.stats()[1].astype(np.float64)
        Y = subject.run(inst, case, 'training')
        v1 = inst.stats()[1].astype(np.float64)
        Y_pred = subject.run(inst, case, 'prediction')
        bad_y = int((~np.isfinite(Y)).sum() + (~np.isfinite(Y_pred)).sum())
        bad_v = not np.isfinite(v1).all() or (v1 < 0).any()
        if not bad_y and not bad_v:
            continue
        bmean, bvar = case.batch_stats()
        wrong = bmean - bmean ** 2   # what (X - mean ** 2).mean() computes
        j = tuple(int(i) for i in np.unravel_index(np.argmin(np.nan_to_num(v1, nan=-np.inf)),
                                                   v1.shape))
        got = 'moving_var[%d] = %s' % (j[1], fmt(v1[j]))
        expected_v = MOMENTUM * v0 + (1 - MOMENTUM) * bvar
        if close(v1, MOMENTUM * v0 + (1 - MOMENTUM) * wrong, rtol=1e-3, atol=1e-3):
            cause = ('the variance is computed as (X - mean ** 2).mean(), which is E[X] - mean**2 '
                     '(here about %s): write ((X - mean) ** 2).mean().' % fmt(wrong[j]))
        elif (v1 < 0).any():
            cause = 'the batch variance came out negative; compute it as ((X - mean) ** 2).mean().'
        else:
            cause = ('a square root of a negative number or a division by zero; with a large mean '
                     'E[X**2] - E[X]**2 loses all precision in float32: use ((X - mean) ** 2).')
        raise Failure('on %s with feature means 100 to 110: expected finite outputs and '
                      'moving_var >= 0 (moving_var[%d] -> %s); got %d non-finite outputs of %d '
                      '(training and prediction) and %s. Likely cause: %s'
                      % (describe(case.shape), j[1], fmt(expected_v[j]), bad_y, 2 * Y.size, got,
                         cause))


@check_property('statistics are per feature (2-D) / per channel (4-D), over the batch')
def per_feature_stats(subject):
    # Values in [0.1, 0.9] like pixels: every plausible variance formula stays positive here, so
    # this property sees only which outputs depend on which inputs.
    for case in cases(seed=20):
        x = np.random.RandomState(3).uniform(0.1, 0.9, case.shape).astype(np.float32)
        f = 1
        index = (0, f) if x.ndim == 2 else (0, f, 0, 0)
        x2 = x.copy()
        x2[index] += 0.5
        Y1 = subject.run(subject.fresh(case), x, 'training')
        Y2 = subject.run(subject.fresh(case), x2, 'training')
        changed = ~np.isclose(Y1, Y2, rtol=1e-5, atol=1e-6, equal_nan=True)
        unit = 'feature' if x.ndim == 2 else 'channel'
        where = 'on %s in training mode, changing X%s' % (describe(case.shape), list(index))
        per_unit = changed.any(axis=tuple(a for a in range(x.ndim) if a != 1))
        others = int(np.delete(per_unit, f).sum())
        other_examples = changed[1:].any()
        if others and not other_examples:
            raise Failure('%s: expected only %s %d of Y to change, in every example; %d other %ss '
                          'of example 0 changed and no other example did. Likely cause: statistics '
                          'computed per example across its %ss (axis=%s, layer normalization); '
                          'batch norm averages over the batch, axis=%s.'
                          % (where, unit, f, others, unit, unit, 1 if x.ndim == 2 else (1, 2, 3),
                             stat_axes(x.ndim)))
        if others:
            raise Failure('%s: expected only %s %d of Y to change; %d other %ss changed too. '
                          'Likely cause: statistics shared across %ss (computed over the whole '
                          'tensor or over the wrong axis); average over axis=%s.'
                          % (where, unit, f, others, unit, unit, stat_axes(x.ndim)))
        if not changed[1:, f].any():
            raise Failure('%s: expected the other examples of %s %d to change (they share its '
                          'batch statistics); none did. Likely cause: statistics computed per '
                          'example (over axis %s) instead of over the batch (axis=%s).'
                          % (where, unit, f, 1 if x.ndim == 2 else '(2, 3)', stat_axes(x.ndim)))
        if x.ndim == 4 and not changed[:, f, 1:, :].any():
            raise Failure('%s: expected all positions of channel %d to change; only position '
                          '(0, 0) did. Likely cause: statistics per position over axis 0 only; a '
                          '4-D input averages over axes (0, 2, 3).' % (where, f))


@check_property('prediction normalizes with the moving statistics and leaves them unchanged')
def prediction_uses_moving_stats(subject):
    for case in cases(seed=30):
        inst = subject.fresh(case)
        Y = subject.run(inst, case, 'prediction').astype(np.float64)
        mm, mv = inst.stats()
        x = case.x.astype(np.float64)
        expected = case.gamma * (x - case.moving_mean) / np.sqrt(case.moving_var + EPS) + case.beta
        where = describe(case.shape)
        if not close(Y, expected, rtol=1e-4, atol=1e-4):
            bmean, bvar = case.batch_stats()
            batch = case.gamma * (x - bmean) / np.sqrt(bvar + EPS) + case.beta
            no_sqrt = case.gamma * (x - case.moving_mean) / (case.moving_var + EPS) + case.beta
            if close(Y, batch, rtol=1e-4, atol=1e-4):
                cause = ('prediction normalizes with the batch\'s own statistics: the mode test '
                         'is wrong (e.g. a self.training flag that nothing switches off); use '
                         'autograd.is_training().')
            elif close(Y, no_sqrt, rtol=1e-4, atol=1e-4):
                cause = 'X is divided by moving_var, not by nd.sqrt(moving_var + eps).'
            else:
                cause = 'prediction does not compute gamma * (X - moving_mean) / ' \
                        'sqrt(moving_var + eps) + beta.'
            i = worst(Y, expected)
            raise Failure('on %s in prediction mode (moving_mean %s, moving_var %s for feature %d):'
                          ' expected Y%s = %s; got %s. Likely cause: %s'
                          % (where, fmt(case.moving_mean.flat[i[1]]),
                             fmt(case.moving_var.flat[i[1]]), i[1], list(i), fmt(expected[i]),
                             fmt(Y[i]), cause))
        for name, before, after in (('moving_mean', case.moving_mean, mm),
                                    ('moving_var', case.moving_var, mv)):
            if not close(after, before, rtol=1e-6, atol=1e-7):
                raise Failure('on %s in prediction mode: expected %s unchanged (%s); got %s. '
                              'Likely cause: the moving statistics are updated outside training '
                              'mode; update them only when autograd.is_training().'
                              % (where, name, fmt(before.flat[0]), fmt(after.flat[0])))


@check_property('the mode follows autograd.is_training(), also in record(train_mode=False) '
                'and train_mode()')
def mode_from_is_training(subject):
    for case in cases(seed=40):
        # Each run gets a fresh instance, so a run that wrongly updates state cannot affect another
        pairs = (('record(train_mode=False)', 'prediction',
                  'normalizes with the batch statistics while recording in prediction mode'),
                 ('train_mode() without recording', 'training',
                  'uses the moving statistics in training mode when nothing is recorded'))
        for mode, same_as, symptom in pairs:
            Y = subject.run(subject.fresh(case), case, mode)
            Y_ref = subject.run(subject.fresh(case), case, same_as)
            if not close(Y, Y_ref, rtol=1e-5, atol=1e-6):
                i = worst(Y, Y_ref)
                raise Failure('on %s inside autograd.%s: expected the %s-mode output (Y%s = %s); '
                              'got %s: it %s. Likely cause: the mode is taken from '
                              'autograd.is_recording() (or a flag) instead of '
                              'autograd.is_training().'
                              % (describe(case.shape), mode.split(' ')[0], same_as, list(i),
                                 fmt(Y_ref[i]), fmt(Y[i]), symptom))


def _update_candidates(old, batch, name, is_block, extra=()):
    """(value, cause) pairs a wrong moving-average update produces, for naming the mistake."""
    m = MOMENTUM
    unchanged = ('%s did not change: the new value is computed from %s itself (momentum * %s + '
                 '(1 - momentum) * %s)' % (name, name, name, name))
    if is_block:
        unchanged += ', or it is never stored back in self.%s' % name
    return (
        (old, unchanged + '.'),
        (m * old + (1 - m) + old, "'+' where '*' belongs: momentum * %s + (1 - momentum) + %s; "
                                  'write (1 - momentum) * %s.' % (name, name, name.split('_')[1])),
        ((1 - m) * old + m * batch, 'momentum and 1 - momentum are swapped.'),
        (batch, '%s is replaced by the batch statistic instead of averaged with it.' % name),
    ) + tuple(extra)


def _check_update(subject, index, name, seed):
    for case in cases(seed=seed):
        inst = subject.fresh(case)
        old = inst.stats()[index].astype(np.float64)
        subject.run(inst, case, 'training')
        new = inst.stats()[index].astype(np.float64)
        bmean, bvar = case.batch_stats()
        batch = bvar if index else bmean
        expected = MOMENTUM * old + (1 - MOMENTUM) * batch
        if close(new, expected, rtol=1e-4, atol=1e-5):
            continue
        x64 = case.x.astype(np.float64)
        whole_mean = np.full(case.pshape, x64.mean())
        whole_var = np.full(case.pshape, x64.var())
        around_whole = ((x64 - x64.mean()) ** 2).mean(axis=stat_axes(x64.ndim), keepdims=True)
        follows = ('the update formula is right, but the batch %s it averages is not per '
                   'feature/channel: it is taken over the whole tensor. This row follows from the '
                   'batch statistics (see per_feature_stats): fix those first.'
                   % ('variance' if index else 'mean'))
        extra = ((MOMENTUM * old + (1 - MOMENTUM) * (whole_var if index else whole_mean),
                  follows),)
        if index:
            extra += ((MOMENTUM * old + (1 - MOMENTUM) * around_whole,
                       'the update formula is right, but the batch variance it averages is '
                       'measured around the mean of the whole tensor, not each feature\'s '
                       'mean. This row follows from the batch statistics (see '
                       'per_feature_stats): fix those first.'),)
            m = case.x.size // case.shape[1]
            extra += ((MOMENTUM * old + (1 - MOMENTUM) * bvar * m / (m - 1),
                      'the unbiased variance (divided by m - 1); batch norm and MXNet\'s '
                      'nn.BatchNorm use the biased one, ((X - mean) ** 2).mean().'),
                     (MOMENTUM * old + (1 - MOMENTUM) * (bmean - bmean ** 2),
                      'the batch variance is computed as (X - mean ** 2).mean() = E[X] - mean**2; '
                      'write ((X - mean) ** 2).mean().'),
                     (MOMENTUM * old + (1 - MOMENTUM) * np.sqrt(bvar),
                      'it moves toward the standard deviation instead of the variance.'))
        cause = 'the update is not momentum * %s + (1 - momentum) * batch %s.' % (
            name, 'variance' if index else 'mean')
        for value, text in _update_candidates(old, batch, name, subject.is_block, extra):
            if new.shape == value.shape and np.allclose(new, value, rtol=1e-3, atol=1e-5):
                cause = text
                break
        if subject.is_block:
            elsewhere = inst.attribute_holding(expected, exclude=name)
            if elsewhere:
                cause = ('the new value is stored in self.%s, not in self.%s (a misspelt '
                         'attribute name), so %s keeps its old value.' % (elsewhere, name, name))
        j = worst(new, expected) if new.shape == expected.shape else (0,) * len(case.pshape)
        raise Failure('on %s, one training step: expected %s[%d] %s -> %s (%s x %s + %s x batch '
                      '%s %s); got %s. Likely cause: %s'
                      % (describe(case.shape), name, j[1], fmt(old[j]), fmt(expected[j]),
                         MOMENTUM, fmt(old[j]), round(1 - MOMENTUM, 6),
                         'variance' if index else 'mean', fmt(batch[j]), fmt(new.flat[0] if
                         new.shape != expected.shape else new[j]), cause))


@check_property('moving_mean <- momentum * moving_mean + (1 - momentum) * batch mean')
def moving_mean_update(subject):
    _check_update(subject, 0, 'moving_mean', seed=50)


@check_property('moving_var <- momentum * moving_var + (1 - momentum) * batch var')
def moving_var_update(subject):
    _check_update(subject, 1, 'moving_var', seed=60)


@check_property('gradients w.r.t. X, gamma and beta equal the reference')
def gradients(subject):
    for case in cases(seed=70):
        inst, ref = subject.fresh(case), subject.reference(case)
        Y, dX = subject.run(inst, case, 'training', head=case.head)
        grads = inst.grads()
        Y_ref, dX_ref = run(ref, case.x, 'training', head=case.head)
        grads_ref = ref.grads()
        wrong = []
        for name, g, g_ref in (('X', dX, dX_ref), ('gamma', grads[0], grads_ref[0]),
                               ('beta', grads[1], grads_ref[1])):
            if not close(g, g_ref, rtol=1e-3, atol=1e-4):
                if g.shape != g_ref.shape:
                    wrong.append('d%s has shape %s, expected %s' % (name, g.shape, g_ref.shape))
                elif not np.isfinite(g).all():
                    wrong.append('d%s has %d non-finite values of %d'
                                 % (name, (~np.isfinite(g)).sum(), g.size))
                else:
                    wrong.append('d%s differs by up to %s (reference max |d%s| %s)'
                                 % (name, fmt(np.abs(g - g_ref).max()), name,
                                    fmt(np.abs(g_ref).max())))
        if not wrong:
            continue
        if not close(Y, Y_ref, rtol=1e-4, atol=1e-4):
            cause = ('the training-mode output already differs from the reference, so its '
                     'gradients do too: fix the forward pass first (see train_normalizes).')
        elif all(np.abs(g).max() == 0 for g in (dX,) + tuple(grads)):
            cause = ('all gradients are zero: the output is not connected to the inputs in '
                     'autograd\'s graph (computed under autograd.pause(), detached, or via numpy).')
        else:
            cause = ('the output matches but the gradients do not: part of the computation is '
                     'hidden from autograd (autograd.pause(), .detach(), or numpy values).')
        raise Failure('on %s in training mode, loss (Y * fixed weights).sum(): expected the '
                      'reference\'s gradients; %s. Likely cause: %s'
                      % (describe(case.shape), '; '.join(wrong), cause))


# --- properties of layers only, after the function ones



@check_property("an untrained layer predicts on the reference's scale (moving_var does not "
                'start at 0)',
                block_only=True)
def initial_moving_var(subject):
    for case in cases(seed=80):
        inst = subject.fresh(case, set_stats=False, set_affine=False)
        ref = subject.reference(case, set_stats=False, set_affine=False)
        Y = subject.run(inst, case, 'prediction').astype(np.float64)
        Y_ref = run(ref, case.x, 'prediction').astype(np.float64)
        rms, rms_ref = np.sqrt(np.mean(Y ** 2)), np.sqrt(np.mean(Y_ref ** 2))
        ratio = rms / rms_ref
        if np.isfinite(ratio) and ratio < 10:
            continue
        var0 = inst.array('moving_var').asnumpy()
        if np.allclose(var0, 0):
            cause = ('moving_var starts at 0, so prediction divides by sqrt(0 + eps) = '
                     'sqrt(1e-5) ~ 0.0032, i.e. multiplies by ~316; start moving_var at ones, as '
                     'nn.BatchNorm does (init=init.One()).')
        else:
            cause = ('the initial moving statistics (moving_var starts at %s) make prediction '
                     'far from normalizing; start moving_mean at 0 and moving_var at 1.'
                     % fmt(var0.flat[0]))
        raise Failure('on %s, prediction before any training step: expected outputs on the '
                      'reference\'s scale (RMS %s); got RMS %s (%sx). Likely cause: %s'
                      % (describe(case.shape), fmt(rms_ref), fmt(rms), fmt(ratio), cause))


@check_property("after 3 training steps moving_mean equals the reference's", block_only=True)
def updated_every_step(subject):
    for case in cases(seed=90):
        inst, ref = subject.fresh(case), subject.reference(case)
        changed_at = []
        previous = inst.stats()[0]
        for step in range(3):
            x = Case(case.shape, seed=91 + step).x
            subject.run(inst, x, 'training')
            run(ref, x, 'training')
            current = inst.stats()[0]
            # not array_equal: 0.9 * m + 0.1 * m differs from m in the last float32 bit
            if not np.allclose(current, previous, rtol=1e-6, atol=1e-7):
                changed_at.append(step + 1)
            previous = current
        expected = ref.stats()[0]
        if close(previous, expected, rtol=1e-4, atol=1e-5):
            continue
        if not changed_at:
            cause = 'moving_mean is never updated (see moving_mean_update).'
        elif changed_at != [1, 2, 3]:
            cause = ('moving_mean is updated only on some steps (e.g. only when it is copied to '
                     'a new device): store the new value on every training step.')
        else:
            cause = 'each update differs from the reference\'s (see moving_mean_update).'
        j = worst(previous, expected)
        changes = ('it never changed' if not changed_at else 'it changed only at step%s %s'
                   % ('s' if len(changed_at) > 1 else '', ', '.join(map(str, changed_at))))
        if changed_at == [1, 2, 3]:
            changes = 'it changed at every step'
        raise Failure('on %s, 3 training steps: expected moving_mean[%d] = %s (the reference\'s); '
                      'got %s, and %s. Likely cause: %s'
                      % (describe(case.shape), j[1], fmt(expected[j]), fmt(previous[j]),
                         changes, cause))


def _device_of(inst, name):
    value = inst.attr(name)
    if isinstance(value, gluon.Parameter):
        return value.list_ctx()
    return [value.context]


@check_property('after initialize(ctx=cpu(1)) it trains there and its moving statistics live '
                'on cpu(1)',
                block_only=True)
def follows_device(subject):
    device = SECOND_DEVICE
    for case in cases(seed=100):
        subject.enter('building', 'building the layer for %s and initializing it on %s'
                      % (describe(case.shape), device))
        try:
            inst = subject.instance(case, ctx=device, set_stats=False)
            subject.run(inst, case, 'training', head=case.head, ctx=device)
            subject.run(inst, case, 'prediction', ctx=device)
            devices = {name: _device_of(inst, name) for name in ('moving_mean', 'moving_var')}
        except Failure:
            raise
        except Exception as exc:
            raise Failure('%s: expected it to train and predict there; raised %s: %s. Likely '
                          'cause: arrays made on a fixed device in the constructor; create the '
                          'moving statistics as Parameters (self.params.get(..., '
                          'grad_req=\'null\')) so initialize(ctx=...) places them.'
                          % (subject.where, type(exc).__name__, short_message(exc, 200)))
        for name, where in devices.items():
            if where != [device]:
                raise Failure('on %s, after initialize(ctx=%s) and a training step there: expected '
                              '%s on %s; it is on %s. Likely cause: the constructor fixes its '
                              'device (ctx=...); create it as a Parameter (self.params.get(..., '
                              'grad_req=\'null\')) so initialize(ctx=...) places it, or copy it to '
                              'X.context in forward as the book does.'
                              % (describe(case.shape), device, name, device,
                                 ', '.join(map(str, where))))


@check_property('save_parameters/load_parameters keep the moving statistics: a reloaded layer '
                'predicts the same',
                block_only=True)
def saved_with_parameters(subject):
    for case in cases(seed=110):
        inst = subject.fresh(case, set_stats=False)
        for step in range(3):
            subject.run(inst, Case(case.shape, seed=111 + step).x, 'training')
        x_test = Case(case.shape, seed=120).x
        Y = subject.run(inst, x_test, 'prediction')
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, 'layer.params')
            subject.enter('building', 'saving and reloading the layer for %s'
                          % describe(case.shape))
            inst.block.save_parameters(path)
            reloaded = subject.instance(case, set_stats=False, set_affine=False)
            reloaded.block.load_parameters(path, ctx=mx.cpu())
        Y2 = subject.run(reloaded, x_test, 'prediction')
        if close(Y2, Y, rtol=1e-5, atol=1e-6):
            continue
        plain = [name for name in ('moving_mean', 'moving_var')
                 if not isinstance(inst.attr(name), gluon.Parameter)]
        if plain:
            cause = ('%s %s plain NDArray attribute%s, which save_parameters does not save, so '
                     'the reloaded layer predicts with the initial values; make them Parameters: '
                     'self.params.get(\'moving_mean\', shape=shape, init=init.Zero(), '
                     'grad_req=\'null\').' % (' and '.join(plain), 'are' if len(plain) > 1
                                              else 'is a', 's' if len(plain) > 1 else ''))
        else:
            cause = 'part of the state the layer predicts with is not a Parameter.'
        i = worst(Y2, Y)
        raise Failure('on %s, after 3 training steps, save_parameters and load_parameters into a '
                      'new layer: expected the same predictions (Y%s = %s); the reloaded layer '
                      'gives %s. Likely cause: %s'
                      % (describe(case.shape), list(i), fmt(Y[i]), fmt(Y2[i]), cause))


# (name, what a PASS means); the order is the printed order
FUNCTION_PROPERTIES = tuple((p.name, p.meaning) for p in PROPERTIES.values() if not p.block_only)
BLOCK_PROPERTIES = tuple((p.name, p.meaning) for p in PROPERTIES.values())
