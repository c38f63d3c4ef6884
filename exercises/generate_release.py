"""Regenerate the learners' release from source/ without ever leaving it deleted.

    . .venv/bin/activate                          # the environment with nbgrader
    python exercises/generate_release.py          # every assignment ("*")
    python exercises/generate_release.py 3_lenet  # one

``nbgrader generate_assignment --force`` deletes ``release/<assignment>`` before it writes the
new one, so a run that fails half way (a broken source notebook, nbgrader missing from the
environment) leaves learners' files deleted. This script copies ``release/`` aside first, runs
``python -m nbgrader generate_assignment <assignment> --force`` with this interpreter in the
course folder, and puts the copy back if nbgrader fails. Exit status: nbgrader's.
"""
import os
import shutil
import subprocess
import sys
import tempfile

__all__ = ['generate_release', 'main']

COURSE = os.path.dirname(os.path.abspath(__file__))


def generate_release(assignment='*', course=COURSE):
    """Run generate_assignment for ``assignment`` in ``course``; restore release/ on failure.
    Returns nbgrader's exit status (0 on success)."""
    try:
        import nbgrader  # noqa: F401 (only: is it installed for this interpreter?)
    except ImportError:
        print('generate_release: nbgrader is not installed for %s. Activate the course '
              'environment first (. .venv/bin/activate) or run this script with its python.'
              % sys.executable, file=sys.stderr)
        return 2
    release = os.path.join(course, 'release')
    backup = tempfile.mkdtemp(prefix='.release-backup-', dir=course)
    saved = os.path.join(backup, 'release')
    try:
        if os.path.isdir(release):
            shutil.copytree(release, saved)
        status = subprocess.call([sys.executable, '-m', 'nbgrader', 'generate_assignment',
                                  assignment, '--force'], cwd=course)
        if status != 0 and os.path.isdir(saved):
            shutil.rmtree(release, ignore_errors=True)
            shutil.copytree(saved, release)
            print('generate_release: nbgrader failed (exit %d); release/ restored as it was.'
                  % status, file=sys.stderr)
        return status
    finally:
        shutil.rmtree(backup, ignore_errors=True)


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith('-')):
        print('usage: python exercises/generate_release.py [ASSIGNMENT]   (default: all, "*")',
              file=sys.stderr)
        return 2
    return generate_release(args[0] if args else '*')


if __name__ == '__main__':
    sys.exit(main())
