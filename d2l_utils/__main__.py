"""``python -m d2l_utils``: print the environment report to paste into a question."""
from .support.env_report import environment_report

if __name__ == '__main__':
    print(environment_report())
