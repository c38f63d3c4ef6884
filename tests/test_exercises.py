"""The exercise edition (exercises/, an nbgrader course) grades what it should, with real nbgrader.

One temporary copy of the course per test session: ``nbgrader generate_assignment`` makes the
release there (it must equal the committed one), submissions are built from that release (the
source's solutions, the blank release, and the mistakes of ``d2l_utils.checks.mistakes`` put in
place of the learner's code), and one ``nbgrader autograde`` run grades them all, as an
instructor's would. Autograding the solutions runs every source notebook top to bottom
(assignment 5 with the quick-mode parameters of tools/run_notebooks.py, assignment 3 in its
fixed graded budget on real Fashion-MNIST).
"""
import inspect
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from d2l_utils import BookBatchNorm, check_batch_norm, check_batch_norm_block
from d2l_utils.checks import mistakes as bn_mistakes
from d2l_utils.checks.grading import check_batch_norm_backward

ROOT = pathlib.Path(__file__).resolve().parents[1]
COURSE = ROOT / 'exercises'
sys.path.insert(0, str(ROOT / 'tools'))
import run_notebooks  # noqa: E402

# assignment -> notebook name
ASSIGNMENTS = {'1_batch_norm': 'batch_norm', '2_batch_norm_block': 'batch_norm_block',
               '3_lenet': 'lenet', '4_backward': 'backward',
               '5_book_exercises': 'book_exercises'}
FUNCTION_MISTAKES = sorted(n for n, m in bn_mistakes.MISTAKES.items() if m.function)
LAYER_MISTAKES = sorted(bn_mistakes.MISTAKES)

# A closed-form backward pass with the classic mistake: batch mean and variance as constants
# The backward pass computed by autograd through the setup cell's imported batch_norm (issue 27)
AUTOGRAD_BACKWARD = '''
def batch_norm_backward(dY, X, gamma, eps):
    X, gamma, beta = X.copy(), gamma.copy(), nd.zeros_like(gamma)
    for a in (X, gamma, beta):
        a.attach_grad()
    with autograd.record():
        Y, _, _ = batch_norm(X, gamma, beta, nd.zeros_like(gamma), nd.ones_like(gamma), eps, 0.9)
    Y.backward(dY)
    return X.grad, gamma.grad, beta.grad
'''
# An identity "batch norm" and a grade() that always passes, both in the solution cell
IDENTITY_AND_GRADE = '''
def batch_norm(X, gamma, beta, moving_mean, moving_var, eps, momentum):
    return X, moving_mean, moving_var


def grade(target, name, checker=None):
    print('PASS %s' % name)
'''
CONSTANT_STATS_BACKWARD = '''
def batch_norm_backward(dY, X, gamma, eps):
    axes = 0 if X.ndim == 2 else (0, 2, 3)
    mean = X.mean(axis=axes, keepdims=True)
    std = nd.sqrt(nd.square(X - mean).mean(axis=axes, keepdims=True) + eps)
    X_hat = (X - mean) / std
    dgamma, dbeta = (dY * X_hat).sum(axis=axes, keepdims=True), dY.sum(axis=axes, keepdims=True)
    return gamma * dY / std, dgamma, dbeta
'''


def nbgrader_command(course, *args, **env_vars):
    """Start ``python -m nbgrader`` (the documented command) in ``course``; returns the Popen
    (output in a pipe). env_vars: extra environment variables (strings)."""
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])),
               MPLBACKEND='Agg', **env_vars)
    return subprocess.Popen([sys.executable, '-m', 'nbgrader', *args], cwd=str(course), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=1500):
    """Wait for an nbgrader command; fail with its output if it failed."""
    output, _ = process.communicate(timeout=timeout)
    if process.returncode != 0 or '| ERROR]' in output:
        raise AssertionError('%s failed (exit %d):\n%s'
                             % (' '.join(process.args[1:]), process.returncode, output[-5000:]))
    return output


def nbgrader_meta(cell):
    return cell.metadata.get('nbgrader', {})


def solution_text(source):
    """The source's solution regions, one string per region (markers removed)."""
    return [m.group(1) for m in re.finditer(r'### BEGIN SOLUTION\n(.*?)### END SOLUTION', source,
                                            re.S)]


def without_markers(source):
    return re.sub(r'[ \t]*### (BEGIN|END) SOLUTION\n?', '', source)


def notebook(folder, assignment):
    return nbformat.read(str(folder / assignment / (ASSIGNMENTS[assignment] + '.ipynb')), 4)


def submit(course, student, assignment, replace):
    """Write a submission: the release with the source's solutions put in, then ``replace``.

    replace: None for the blank release as it was handed out; else {grade_id: new source} for
    the solution cells to hand in differently from the source's solutions (a mistake).
    """
    nb = notebook(course / 'release', assignment)
    if replace is not None:
        answers = {nbgrader_meta(c).get('grade_id'): without_markers(c.source)
                   for c in notebook(course / 'source', assignment).cells}
        answers.update(replace)
        if assignment == '5_book_exercises':   # a quick run, as tools/run_notebooks.py --quick
            run_notebooks.inject_quick_parameters(nb)
        for cell in nb.cells:
            grade_id = nbgrader_meta(cell).get('grade_id')
            if nbgrader_meta(cell).get('solution') and grade_id in answers:
                cell.source = answers[grade_id]
    folder = course / 'submitted' / student / assignment
    folder.mkdir(parents=True)
    nbformat.write(nb, str(folder / (ASSIGNMENTS[assignment] + '.ipynb')))


def pasted_function(fn, name='batch_norm'):
    """A function mistake as a learner would hand it in: its source pasted, not imported."""
    return ('from d2l_utils.layers import validate_batch_norm_inputs\n\n\n%s\n\n%s = %s\n'
            % (inspect.getsource(fn), name, fn.__name__))


def pasted_layer(number):
    """Layer mistake ``number`` as a learner would hand it in: written out in the cell (a function
    mistake inside the exercise's own layer, or the book's layer with its change)."""
    mistake = bn_mistakes.MISTAKES[number]
    if mistake.function is not None:
        fn = mistake.function.__name__
        layer = without_markers(next(c.source for c in notebook(COURSE / 'source',
                                                                '2_batch_norm_block').cells
                                     if nbgrader_meta(c).get('grade_id') == 'a2_batch_norm_block'))
        layer = layer.replace('= batch_norm(', '= %s(' % fn)
        assert fn in layer
        return pasted_function(mistake.function, fn) + '\n\n' + layer
    book = ('import mxnet as mx\nfrom d2l_utils.book import book_batch_norm\n'
            'from d2l_utils.layers import param_shape\n\n\n'
            + inspect.getsource(BookBatchNorm))
    if mistake.layer is BookBatchNorm:
        return book + '\n\nBatchNorm = BookBatchNorm\n'
    return (book + '\n\n' + inspect.getsource(mistake.layer)
            + '\n\nBatchNorm = %s\n' % mistake.layer.__name__)


def solution_with(assignment, grade_id, old, new):
    """The source's solution of one cell with ``old`` replaced by ``new``."""
    text = without_markers(next(c.source for c in notebook(COURSE / 'source', assignment).cells
                                if nbgrader_meta(c).get('grade_id') == grade_id))
    assert old in text, (grade_id, old)
    return text.replace(old, new, 1)


def loop(indent):
    """A learner's loop that never ends, to put before a statement indented by ``indent``."""
    return 'while True:   # a loop that never ends\n%s    pass\n%s' % (indent, indent)



SUBMISSIONS = {   # student -> {assignment: replacements}
    'solution': {a: {} for a in ASSIGNMENTS},
    'blank': {a: None for a in ASSIGNMENTS},
    'constant_stats': {'4_backward': {'a4_backward': CONSTANT_STATS_BACKWARD}},
    'nan_layer': {'3_lenet': {'a3_batch_norm_block': pasted_layer(1)}},
    # integrity (issue 27 item 4): the package's own code, or a redefined grade()
    'imported': {
        '1_batch_norm': {'a1_batch_norm': 'from d2l_utils import batch_norm'},
        '2_batch_norm_block': {'a2_batch_norm_block': 'from d2l_utils import BatchNorm'},
        '4_backward': {'a4_backward': AUTOGRAD_BACKWARD}},
    'redefined_grade': {'1_batch_norm': {'a1_batch_norm': IDENTITY_AND_GRADE}},
    # crashes (issue 27 item 3): IPython's exit() inside the learner's function
    'ipython_exit': {'1_batch_norm': {'a1_batch_norm': solution_with(
        '1_batch_norm', 'a1_batch_norm', '    if not autograd.is_training():',
        '    exit()\n    if not autograd.is_training():')}},
}
for _n in FUNCTION_MISTAKES:
    SUBMISSIONS.setdefault('mistake%d' % _n, {})['1_batch_norm'] = {
        'a1_batch_norm': pasted_function(bn_mistakes.MISTAKES[_n].function)}
for _n in LAYER_MISTAKES:
    SUBMISSIONS.setdefault('mistake%d' % _n, {})['2_batch_norm_block'] = {
        'a2_batch_norm_block': pasted_layer(_n)}

# Hangs (issue 27 item 3), graded with a 3-s time limit per property and a 120-s cell timeout:
# a loop that never ends in each assignment's code, and one only in prediction mode.
HANGS = {
    'loops': {
        '1_batch_norm': {'a1_batch_norm': solution_with(
            '1_batch_norm', 'a1_batch_norm', 'if not autograd.is_training():',
            loop(' ' * 4) + 'if not autograd.is_training():')},
        '2_batch_norm_block': {'a2_batch_norm_block': solution_with(
            '2_batch_norm_block', 'a2_batch_norm_block', 'ctx = X.context',
            loop(' ' * 8) + 'ctx = X.context')},
        '3_lenet': {'a3_batch_norm_block': solution_with(
            '3_lenet', 'a3_batch_norm_block', 'ctx = X.context',
            loop(' ' * 8) + 'ctx = X.context')},
        '4_backward': {'a4_backward': solution_with(
            '4_backward', 'a4_backward', 'axes = 0 if', loop(' ' * 4) + 'axes = 0 if')}},
    'loops_in_prediction': {'1_batch_norm': {'a1_batch_norm': solution_with(
        '1_batch_norm', 'a1_batch_norm', '    if not autograd.is_training():\n',
        '    while not autograd.is_training():   # hangs only when predicting\n        pass\n'
        '    if not autograd.is_training():\n')}},
}
HANG_TIME_LIMIT, HANG_CELL_TIMEOUT = 3, 120


# Autograding runs in two course copies at once (the machine has two cores): the solutions and
# the blank release in one, the mistakes in the other. Each copy has the gradebook that
# generate_assignment made.
HEAVY = ('solution', 'blank')


@pytest.fixture(scope='module')
def course(tmp_path_factory, fashion_mnist_dir):
    """A graded copy of the course: released, every submission in SUBMISSIONS and HANGS
    autograded (HANGS with a 3-s time limit per property and a 120-s cell timeout).

    Returns {student: the course folder that graded them}; the first is also the released one.
    """
    base = tmp_path_factory.mktemp('course')
    released = base / 'main'
    released.mkdir()
    for name in ('nbgrader_config.py', 'source'):
        src = COURSE / name
        (shutil.copytree if src.is_dir() else shutil.copy)(str(src), str(released / name))
    finish(nbgrader_command(released, 'generate_assignment', '*', '--force'))
    other, hangs = base / 'mistakes', base / 'hangs'
    shutil.copytree(str(released), str(other))
    shutil.copytree(str(released), str(hangs))
    folders = {student: released if student in HEAVY else other for student in SUBMISSIONS}
    folders.update({student: hangs for student in HANGS})
    for student, assignments in list(SUBMISSIONS.items()) + list(HANGS.items()):
        for assignment, replace in assignments.items():
            submit(folders[student], student, assignment, replace)
    runs = [nbgrader_command(folder, 'autograde', '*', '--create', '--force')
            for folder in (released, other)]
    runs.append(nbgrader_command(hangs, 'autograde', '*', '--create', '--force',
                                 '--Execute.timeout=%d' % HANG_CELL_TIMEOUT,
                                 D2L_CHECK_TIME_LIMIT=str(HANG_TIME_LIMIT)))
    for run in runs:
        finish(run)
    return folders


def grades(course, student, assignment):
    """{grade_id: (score, max_score, needs_manual_grade)} of one autograded submission."""
    from nbgrader.api import Gradebook
    with Gradebook('sqlite:///%s' % (course[student] / 'gradebook.db')) as gb:
        nb = gb.find_submission_notebook(ASSIGNMENTS[assignment], assignment, student)
        return {g.name: (g.score, g.max_score, g.needs_manual_grade) for g in nb.grades}


def autograded(course, student, assignment):
    return notebook(course[student] / 'autograded' / student, assignment)


def lost(table):
    return {grade_id for grade_id, (score, max_score, manual) in table.items()
            if not manual and score != max_score}


def error_outputs(nb):
    return {nbgrader_meta(c).get('grade_id'): o for c in nb.cells if c.cell_type == 'code'
            for o in c.get('outputs', []) if o.output_type == 'error'}


# ----------------------------------------------------------------------------- the release

def test_regenerating_the_release_gives_the_committed_release(course):
    for assignment in ASSIGNMENTS:
        fresh = json.loads((course['solution'] / 'release' / assignment / (ASSIGNMENTS[assignment]
                                                              + '.ipynb')).read_text())
        committed = json.loads((COURSE / 'release' / assignment / (ASSIGNMENTS[assignment]
                                                                  + '.ipynb')).read_text())
        assert len(fresh['cells']) == len(committed['cells']), assignment
        for i, (a, b) in enumerate(zip(fresh['cells'], committed['cells'])):
            assert a == b, ('exercises/release/%s differs from nbgrader generate_assignment at '
                            'cell %d; regenerate it (see the README, "For instructors")'
                            % (assignment, i))
        assert fresh == committed, assignment


def test_the_release_holds_no_solution_text():
    for assignment in ASSIGNMENTS:
        release = (COURSE / 'release' / assignment / (ASSIGNMENTS[assignment] + '.ipynb'))
        text = json.dumps(nbformat.read(str(release), 4).cells)
        assert 'BEGIN SOLUTION' not in text and 'END SOLUTION' not in text
        regions = [region for cell in notebook(COURSE / 'source', assignment).cells
                   for region in solution_text(cell.source)]
        assert regions, assignment
        released = ''.join(c.source for c in nbformat.read(str(release), 4).cells)
        for region in regions:
            for line in region.splitlines():
                # distinctive lines only: 'return Y' may be in the stub's surroundings
                if len(line.strip()) > 30:
                    assert line.strip() not in released, (assignment, line)


def test_every_release_cell_a_learner_must_not_change_is_locked():
    for assignment in ASSIGNMENTS:
        for cell in notebook(COURSE / 'release', assignment).cells:
            meta = nbgrader_meta(cell)
            if meta.get('grade') and cell.cell_type == 'code':
                assert meta['locked'] and meta['points'] > 0, (assignment, meta)


# ----------------------------------------------------------------------------- autograding

def test_the_source_solutions_get_full_marks(course):
    for assignment in ASSIGNMENTS:
        table = grades(course, 'solution', assignment)
        assert table and not lost(table), (assignment, table)
    manual = [g for g, (_, _, needs) in grades(course, 'solution', '5_book_exercises').items()
              if needs]
    assert sorted(manual) == ['a5_ex%d_answer' % k for k in range(1, 6)]


def test_the_blank_release_gets_zero_and_runs_to_the_end(course):
    for assignment in ASSIGNMENTS:
        table = grades(course, 'blank', assignment)
        assert all(score == 0 for score, _, _ in table.values()), (assignment, table)
        nb = autograded(course, 'blank', assignment)
        code = [c for c in nb.cells if c.cell_type == 'code']
        assert code[-1].execution_count is not None, assignment   # the last cell ran
        graded = {nbgrader_meta(c).get('grade_id') for c in nb.cells
                  if nbgrader_meta(c).get('grade')}
        for grade_id, output in error_outputs(nb).items():
            if grade_id not in graded:
                continue   # the stub's own cell raises NotImplementedError, once
            text = '\n'.join(output.traceback)
            assert 'Traceback' not in text and 'File "' not in text, (assignment, grade_id, text)
            assert 'not implemented yet' in text or 'not defined yet' in text, text


def test_a_blank_solution_says_not_implemented_yet_once(course):
    nb = autograded(course, 'blank', '1_batch_norm')
    check_cell = next(c for c in nb.cells if c.source == 'report = check(batch_norm)')
    assert 'batch_norm is not implemented yet: calling it raises NotImplementedError' in \
        check_cell.outputs[0].text
    outputs = list(error_outputs(nb).values())
    assert len(outputs) == 9
    for output in outputs:
        assert output.traceback == ['NotImplementedYet: batch_norm is not implemented yet (see '
                                    'the first check of it above).']


@pytest.mark.parametrize('number', FUNCTION_MISTAKES)
def test_a_function_mistake_loses_exactly_the_points_of_its_properties(course, number):
    broken = check_batch_norm(bn_mistakes.MISTAKES[number].function, verbose=False).failed()
    assert broken
    table = grades(course, 'mistake%d' % number, '1_batch_norm')
    assert lost(table) == {'a1_' + name for name in broken}
    assert sum(s for s, _, _ in table.values()) == len(table) - len(broken)
    for grade_id, output in error_outputs(autograded(course, 'mistake%d' % number,
                                                     '1_batch_norm')).items():
        text = '\n'.join(output.traceback)
        assert text.startswith('GradingFailure: FAIL ') and 'Likely cause' in text, text


@pytest.mark.parametrize('number', [n for n in LAYER_MISTAKES
                                    if bn_mistakes.MISTAKES[n].layer is not BookBatchNorm])
def test_a_layer_mistake_loses_exactly_the_points_of_its_properties(course, number):
    broken = check_batch_norm_block(bn_mistakes.MISTAKES[number].layer, verbose=False).failed()
    assert broken
    table = grades(course, 'mistake%d' % number, '2_batch_norm_block')
    assert lost(table) == {'a2_' + name for name in broken}


def test_a_layer_whose_loss_turns_nan_fails_the_training_grade_with_the_checkers_diagnosis(course):
    table = grades(course, 'nan_layer', '3_lenet')
    assert lost(table) == {'a3_trained_accuracy'}
    text = '\n'.join(error_outputs(autograded(course, 'nan_layer', '3_lenet'))
                     ['a3_trained_accuracy'].traceback)
    assert 'Training stopped: the loss is nan' in text and 'FAIL  train_normalizes' in text, text


def test_a_backward_pass_with_constant_statistics_loses_the_dx_points(course):
    namespace = {}
    exec('from mxnet import nd\n' + CONSTANT_STATS_BACKWARD, namespace)
    broken = check_batch_norm_backward(namespace['batch_norm_backward'], verbose=False).failed()
    assert broken == ['dX_2d', 'dX_4d', 'float64_numerical']
    table = grades(course, 'constant_stats', '4_backward')
    assert lost(table) == {'a4_' + name for name in broken}
    assert sum(s for s, _, _ in table.values()) == 3   # of 8: dX is 5 points
    text = '\n'.join(error_outputs(autograded(course, 'constant_stats', '4_backward'))
                     ['a4_dX_2d'].traceback)
    assert 'treats the batch mean and variance as constants' in ' '.join(text.split()), text


# ----------------------------------------------------------------------------- integrity

def feedback_text(course, student, assignment):
    """The error outputs a learner and the instructor see in the autograded notebook."""
    return {grade_id: ' '.join('\n'.join(o.traceback).split())
            for grade_id, o in error_outputs(autograded(course, student, assignment)).items()}


def test_the_books_layer_pasted_verbatim_scores_zero_and_says_why(course):
    number = next(n for n, m in bn_mistakes.MISTAKES.items() if m.layer is BookBatchNorm)
    table = grades(course, 'mistake%d' % number, '2_batch_norm_block')
    assert lost(table) == set(table)
    for text in feedback_text(course, 'mistake%d' % number, '2_batch_norm_block').values():
        assert 'is a copy of d2l_utils.book.BookBatchNorm' in text, text
        assert 'Integrity: this part scores 0' in text


@pytest.mark.parametrize('assignment, expected', [
    ('1_batch_norm', "d2l_utils.layers.batch_norm, the package's own code imported"),
    ('2_batch_norm_block', "d2l_utils.layers.BatchNorm, the package's own code imported"),
    ('4_backward', "calls d2l_utils.layers.batch_norm, the package's own implementation")])
def test_the_packages_own_code_scores_zero_with_the_reason_in_the_feedback(course, assignment,
                                                                          expected):
    table = grades(course, 'imported', assignment)
    assert lost(table) == set(table), table
    texts = feedback_text(course, 'imported', assignment)
    assert set(texts) == set(table)
    for text in texts.values():
        assert expected in text and 'Integrity: this part scores 0' in text, text


def test_a_grade_redefined_in_the_solution_cell_does_not_pass_an_identity_function(course):
    namespace = {}
    exec(IDENTITY_AND_GRADE, namespace)
    broken = check_batch_norm(namespace['batch_norm'], verbose=False).failed()
    assert len(broken) >= 6
    table = grades(course, 'redefined_grade', '1_batch_norm')
    assert lost(table) == {'a1_' + name for name in broken}


# ----------------------------------------------------------------------------- no hang, no crash

def test_ipython_exit_in_the_learners_function_does_not_kill_the_kernel(course):
    table = grades(course, 'ipython_exit', '1_batch_norm')
    assert lost(table) == set(table)   # the function never returns a result
    nb = autograded(course, 'ipython_exit', '1_batch_norm')
    assert [c for c in nb.cells if c.cell_type == 'code'][-1].execution_count is not None
    for text in feedback_text(course, 'ipython_exit', '1_batch_norm').values():
        assert 'SystemExit: exit() called' in text, text


@pytest.mark.parametrize('assignment', ['1_batch_norm', '2_batch_norm_block', '3_lenet',
                                        '4_backward'])
def test_a_looping_submission_is_graded_to_the_end_with_a_fail_that_says_so(course, assignment):
    table = grades(course, 'loops', assignment)
    assert all(score == 0 for score, _, _ in table.values()), table
    nb = autograded(course, 'loops', assignment)
    assert [c for c in nb.cells if c.cell_type == 'code'][-1].execution_count is not None
    check_cell = next(c for c in nb.cells if c.cell_type == 'code'
                      and c.source.startswith('report = check('))
    assert 'did not finish within %d s' % HANG_TIME_LIMIT in check_cell.outputs[0].text
    texts = feedback_text(course, 'loops', assignment)
    assert texts and all('did not finish' in t for t in texts.values()), texts
    assert not any('Timeout' in t or 'KeyboardInterrupt' in t for t in texts.values())


def test_a_function_that_hangs_only_when_predicting_keeps_its_training_points(course):
    table = grades(course, 'loops_in_prediction', '1_batch_norm')
    assert {g for g, (score, _, _) in table.items() if score} == {
        'a1_train_normalizes', 'a1_per_feature_stats', 'a1_moving_mean_update',
        'a1_moving_var_update', 'a1_gradients'}


# ----------------------------------------------------------------------------- instructor commands

def test_a_failed_generation_leaves_the_release_as_it_was(tmp_path):
    """nbgrader generate_assignment --force deletes release/<assignment> before it fails on a
    broken source notebook; exercises/generate_release.py puts the old release back."""
    sys.path.insert(0, str(COURSE))
    import generate_release
    for name in ('source', 'release'):
        (tmp_path / name / '1_batch_norm').mkdir(parents=True)
    shutil.copy(str(COURSE / 'nbgrader_config.py'), str(tmp_path))
    released = COURSE / 'release' / '1_batch_norm' / 'batch_norm.ipynb'
    shutil.copy(str(released), str(tmp_path / 'release' / '1_batch_norm'))
    (tmp_path / 'source' / '1_batch_norm' / 'batch_norm.ipynb').write_text('{"cells": [')
    status = generate_release.generate_release('1_batch_norm', course=str(tmp_path))
    assert status != 0
    kept = tmp_path / 'release' / '1_batch_norm' / 'batch_norm.ipynb'
    assert kept.read_bytes() == released.read_bytes()
    assert not list(tmp_path.glob('.release-backup-*'))
