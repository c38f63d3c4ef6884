"""Keep the course route and every notebook's stated time in one place: the README's route.

The route (学习路线 / Route) is written once, in README.md between the markers
``<!-- route -->`` and ``<!-- /route -->``: the core path, the deep dives by question, the
appendices, each notebook with its time as "约 N 分钟". This tool copies it into notebook 1's route
cell (with the links made relative to notebooks/), sets the core path's total ("合计约 N 分钟") to
the sum of its notebooks, and writes each notebook's time into the ``**时间 / Time**`` line of its
first cell. After a release run, edit the times in the README only, then run:

    python tools/sync_route.py            # write README.md and the notebooks
    python tools/sync_route.py --check    # only report what is out of sync (exit status 1)

tests/test_prose.py fails while anything is out of sync.
"""
import argparse
import json
import os
import pathlib
import re
import sys
import tempfile

__all__ = ['ROUTE_HEADING', 'TIME_LINE', 'CORE', 'readme_route', 'route_times', 'notebook_route',
           'notebook_id', 'first_cell_time', 'out_of_sync', 'sync', 'main']

ROOT = pathlib.Path(__file__).resolve().parents[1]
START, END = '<!-- route -->', '<!-- /route -->'
ROUTE_HEADING = '## 学习路线 / Route'
# the first cell's time line, as the house style writes it (a Markdown hard break may end it)
TIME_LINE = re.compile(r'^\*\*时间 / Time\*\*：约 (\d+) 分钟（2 核 CPU 上完整运行）(?:  |\\)?$',
                       re.M)
CORE = ('1', '2', '3', '4', '5')
ROW = re.compile(r'\]\(notebooks/([0-9A-Z]+)_[\w.-]*\.ipynb\).*?约 (\d+) 分钟')
TOTAL = re.compile(r'(合计约 )(\d+)( 分钟)')


def notebook_id(path):
    """'3' for notebooks/3_lenet_batch_norm.ipynb, 'A' for A_pytorch.ipynb."""
    return pathlib.Path(path).name.split('_', 1)[0]


def readme_route(readme_text):
    """The route as written in the README: the text between the two markers, stripped."""
    if START not in readme_text or END not in readme_text:
        raise ValueError('README.md has no route: expected the lines %r and %r around it'
                         % (START, END))
    return readme_text.split(START, 1)[1].split(END, 1)[0].strip('\n')


def route_times(route):
    """{notebook id: minutes} from the route's lines, one linked notebook and its time per line."""
    times = {}
    for line in route.splitlines():
        found = ROW.findall(line)
        if len(found) == 1:
            times[found[0][0]] = int(found[0][1])
    return times


def notebook_route(route):
    """The README's route as notebook 1 shows it: links made relative to notebooks/."""
    return (route.replace('](notebooks/', '](')
            .replace('](docs/', '](../docs/').replace('](README.md', '](../README.md'))


def source(cell):
    return ''.join(cell['source'])


def set_source(cell, text):
    cell['source'] = text.splitlines(keepends=True)


def first_cell_time(nb):
    """The minutes stated in a notebook's first cell, or None when it has no time line."""
    found = TIME_LINE.search(source(nb['cells'][0])) if nb['cells'] else None
    return int(found.group(1)) if found else None


def with_core_total(route):
    times = route_times(route)
    total = sum(times.get(n, 0) for n in CORE)
    return TOTAL.sub(lambda m: m.group(1) + str(total) + m.group(3), route, count=1)


def planned(root=ROOT):
    """{path: new text} for every file whose route, total or time line differs from the README."""
    root = pathlib.Path(root)
    readme_path = root / 'README.md'
    readme = readme_path.read_text(encoding='utf-8')
    route = readme_route(readme)
    fixed_route = with_core_total(route)
    changes = {}
    if fixed_route != route:
        changes[readme_path] = readme.replace(route, fixed_route, 1)
    times = route_times(fixed_route)
    for path in sorted((root / 'notebooks').glob('*.ipynb')):
        text = path.read_text(encoding='utf-8')
        nb = json.loads(text)
        if not nb['cells']:
            continue
        minutes = times.get(notebook_id(path))
        first = source(nb['cells'][0])
        if minutes is not None and TIME_LINE.search(first):
            set_source(nb['cells'][0], TIME_LINE.sub(
                lambda m: m.group(0).replace('约 %s 分钟' % m.group(1), '约 %d 分钟' % minutes),
                first, count=1))
        if notebook_id(path) == '1':
            cells = [c for c in nb['cells']
                     if c['cell_type'] == 'markdown' and source(c).startswith(ROUTE_HEADING)]
            if cells:
                set_source(cells[0], notebook_route(fixed_route))
        if nb != json.loads(text):   # compare content, not how the file happens to be formatted
            changes[path] = json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + '\n'
    return changes


def out_of_sync(root=ROOT):
    """Names of the files that `python tools/sync_route.py` would change (README.md first)."""
    return [str(path.relative_to(pathlib.Path(root))) for path in planned(root)]


def write_atomically(path, text):
    handle, temp = tempfile.mkstemp(dir=str(path.parent), suffix='.tmp')
    try:
        with os.fdopen(handle, 'w', encoding='utf-8') as f:
            f.write(text)
        os.replace(temp, str(path))
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def sync(root=ROOT):
    """Write the README's route (with its core total) into notebook 1 and every time line."""
    changes = planned(root)
    for path, text in changes.items():
        write_atomically(path, text)
    return [str(path.relative_to(pathlib.Path(root))) for path in changes]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='only list the files out of sync; exit status 1 if any')
    args = parser.parse_args(argv)
    try:
        names = out_of_sync() if args.check else sync()
    except ValueError as err:
        print('sync_route: %s' % err, file=sys.stderr)
        return 2
    verb = 'out of sync' if args.check else 'updated'
    for name in names:
        print('%s: %s' % (verb, name))
    if not names:
        print('route and times in sync')
    return 1 if (args.check and names) else 0


if __name__ == '__main__':
    sys.exit(main())
