"""The exercise edition (exercises/, an nbgrader course) grades what it should, with real nbgrader.

One temporary copy of the course per test session: ``nbgrader generate_assignment`` makes the
release there (it must equal the committed one), submissions are built from that release (the
source's solutions, the blank release, and the mistakes of ``d2l_utils.checks.mistakes`` put in
place of the learner's code), and one ``nbgrader autograde`` run grades them all, as an
instructor's would. Autograding the solutions runs every source notebook top to bottom
(assignment 5 with the quick-mode parameters of tools/run_notebooks.py, assignment 3 in its
fixed graded budget on real Fashion-MNIST).
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from d2l_utils import check_batch_norm, check_batch_norm_block
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
CONSTANT_STATS_BACKWARD = '''
def batch_norm_backward(dY, X, gamma, eps):
    axes = 0 if X.ndim == 2 else (0, 2, 3)
    mean = X.mean(axis=axes, keepdims=True)
    std = nd.sqrt(nd.square(X - mean).mean(axis=axes, keepdims=True) + eps)
    X_hat = (X - mean) / std
    dgamma, dbeta = (dY * X_hat).sum(axis=axes, keepdims=True), dY.sum(axis=axes, keepdims=True)
    return gamma * dY / std, dgamma, dbeta
'''


def nbgrader_command(course, *args):
    """Start the nbgrader command line in ``course``; returns the Popen (output in a pipe)."""
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get('PATH', ''),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])),
               MPLBACKEND='Agg')
    return subprocess.Popen([os.path.join(bin_dir, 'nbgrader'), *args], cwd=str(course), env=env,
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


SUBMISSIONS = {   # student -> {assignment: replacements}
    'solution': {a: {} for a in ASSIGNMENTS},
    'blank': {a: None for a in ASSIGNMENTS},
    'constant_stats': {'4_backward': {'a4_backward': CONSTANT_STATS_BACKWARD}},
    'nan_layer': {'3_lenet': {'a3_batch_norm_block': 'from d2l_utils.checks.mistakes import '
                                                     'NegativeVarianceBatchNorm as BatchNorm'}},
}
for _n in FUNCTION_MISTAKES:
    SUBMISSIONS.setdefault('mistake%d' % _n, {})['1_batch_norm'] = {
        'a1_batch_norm': 'from d2l_utils.checks.mistakes import %s as batch_norm'
                         % bn_mistakes.MISTAKES[_n].function.__name__}
for _n in LAYER_MISTAKES:
    SUBMISSIONS.setdefault('mistake%d' % _n, {})['2_batch_norm_block'] = {
        'a2_batch_norm_block': 'from d2l_utils.checks.mistakes import %s as BatchNorm'
                               % bn_mistakes.MISTAKES[_n].layer.__name__}


# Autograding runs in two course copies at once (the machine has two cores): the solutions and
# the blank release in one, the mistakes in the other. Each copy has the gradebook that
# generate_assignment made.
HEAVY = ('solution', 'blank')


@pytest.fixture(scope='module')
def course(tmp_path_factory, fashion_mnist_dir):
    """A graded copy of the course: released, every submission in SUBMISSIONS autograded.

    Returns {student: the course folder that graded them}; the first is also the released one.
    """
    base = tmp_path_factory.mktemp('course')
    released = base / 'main'
    released.mkdir()
    for name in ('nbgrader_config.py', 'source'):
        src = COURSE / name
        (shutil.copytree if src.is_dir() else shutil.copy)(str(src), str(released / name))
    finish(nbgrader_command(released, 'generate_assignment', '*', '--force'))
    other = base / 'mistakes'
    shutil.copytree(str(released), str(other))
    folders = {student: released if student in HEAVY else other for student in SUBMISSIONS}
    for student, assignments in SUBMISSIONS.items():
        for assignment, replace in assignments.items():
            submit(folders[student], student, assignment, replace)
    runs = [nbgrader_command(folder, 'autograde', '*', '--create', '--force')
            for folder in (released, other)]
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


@pytest.mark.parametrize('number', LAYER_MISTAKES)
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
