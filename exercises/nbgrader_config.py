"""nbgrader configuration of the exercise edition (run nbgrader from this folder).

Layout: source/<assignment>/<notebook>.ipynb (the instructor's version, with solutions) ->
``nbgrader generate_assignment <assignment>`` -> release/<assignment>/ (what learners get,
committed). Submissions go to submitted/<student>/<assignment>/, ``nbgrader autograde``
writes autograded/, ``nbgrader generate_feedback`` writes feedback/; those folders and the
gradebook (gradebook.db) are not committed (see .gitignore). The README's "For instructors"
section lists the commands.
"""
c = get_config()  # noqa: F821 (nbgrader provides get_config)

c.CourseDirectory.course_id = 'd2l-batch-norm'

# Autograding runs every notebook top to bottom; assignment 3 trains a LeNet (about half a
# minute on a 2-core CPU), assignment 5 several (a few minutes): allow 20 minutes a notebook.
c.Execute.timeout = 1200
# The stub learners replace (nbgrader's default, spelt out because the checks look for it).
c.ClearSolutions.code_stub = {'python': '# YOUR CODE HERE\nraise NotImplementedError()'}
c.ClearSolutions.text_stub = 'YOUR ANSWER HERE'
