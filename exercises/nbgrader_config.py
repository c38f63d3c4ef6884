"""nbgrader configuration of the exercise edition (run nbgrader from this folder).

Layout: source/<assignment>/<notebook>.ipynb (the instructor's version, with solutions) ->
``nbgrader generate_assignment <assignment>`` -> release/<assignment>/ (what learners get,
committed). Submissions go to submitted/<student>/<assignment>/, ``nbgrader autograde``
writes autograded/, ``nbgrader generate_feedback`` writes feedback/; those folders and the
gradebook (gradebook.db) are not committed (see .gitignore). docs/instructors.md lists the
commands, with python -m nbgrader so that they run with the course environment's nbgrader, and
exercises/generate_release.py, which regenerates release/ without leaving it deleted when
nbgrader fails.
"""
c = get_config()  # noqa: F821 (nbgrader provides get_config)

c.CourseDirectory.course_id = 'd2l-batch-norm'

# Autograding runs every notebook top to bottom; assignment 3 trains a LeNet, assignment 5 ten:
# allow 20 minutes a cell. Learner code that never returns does not wait this out: every call of
# it in grading has the checkers' own per-property limit (D2L_CHECK_TIME_LIMIT, default 60 s).
c.Execute.timeout = 1200
# The stub learners replace (nbgrader's default, spelt out because the checks look for it).
c.ClearSolutions.code_stub = {'python': '# YOUR CODE HERE\nraise NotImplementedError()'}
c.ClearSolutions.text_stub = 'YOUR ANSWER HERE'
