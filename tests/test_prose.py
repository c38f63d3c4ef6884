"""The prose a learner reads: budgets, the first and last cells, numbers, terms, references.

Issue 24 ("a chapter a learner can finish"): the course's prose is held to a budget of Chinese
characters (CJK ideographs U+4E00-U+9FFF in markdown cells), per notebook and in total; no markdown
cell quotes more than 8 decimal numbers outside a table, code or math; every notebook's first
cell states its place, question, assumptions and time in one form and its last cell gives 3-5
take-aways and where to go next; the book's terms are used; every notebook, file or module the
prose names exists; the README's first screen carries the route, and the route's times are the
notebooks' own (tools/sync_route.py copies them).
"""
import importlib
import json
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import sync_route  # noqa: E402

NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))
IDS = [p.name for p in NOTEBOOKS]

# Ideographs of markdown prose per notebook (issue 24); B splits into B and C if the several
# machines part becomes its own appendix.
BUDGET = {'1': 3100, '2': 1600, '3': 3800, '4': 2700, '5': 4300, '6': 4600, '7': 3400,
          '8': 2600, '9': 1600, 'A': 3000, 'B': 4000}
BUDGET_WITH_C = {'B': 3000, 'C': 1800}
COURSE_BUDGET, CORE_BUDGET = 36000, 16000
MAX_DECIMALS = 8
PLACES = {'核心（core path）': set('12345'), '选读（deep dive）': set('6789'),
          '附录（appendix）': set('ABCDEFGH')}

IDEOGRAPH = re.compile(r'[\u4e00-\u9fff]')
FENCED = re.compile(r'^```.*?^```', re.M | re.S)
DISPLAY_MATH = re.compile(r'\$\$.*?\$\$', re.S)
INLINE_MATH = re.compile(r'\$[^$\n]+\$')
INLINE_CODE = re.compile(r'`[^`\n]+`')
LINK_TARGET = re.compile(r'\]\(([^)\s]+)\)')
# a number with one decimal point (0.301, 8.6e-04, 73.5%); versions such as 1.9.1 are not
DECIMAL = re.compile(r'(?<![\w.])\d+\.\d+(?:[eE][-+]?\d+)?(?![\w.]*\d)')
NOTEBOOK_REF = re.compile(r'\bnotebook\s+(\d+[a-z]?|[A-Z])\b')
NOTEBOOK_FILE = re.compile(r'(?<![\w/])(\d+[a-z]?|[A-Z])_\w+\.ipynb')
PATH_REF = re.compile(r'(?<![\w./-])((?:d2l_utils|tools|benchmarks|docs|notebooks|exercises|'
                      r'tests)/[\w./-]*[\w/])')
MODULE_REF = re.compile(r'(?<![\w./])(d2l_utils(?:\.\w+)+)')

FIRST_CELL = re.compile(
    r'\A# (?P<n>[0-9A-Z]+)\. (?P<zh>[^\n]+) / (?P<en>[^\n]+)\n+'
    r'(?P<en1>[^\n]+)\n(?P<en2>[^\n]+)\n+'
    r'\*\*位置 / Place\*\*：(?P<place>[^\n]+?)(?:  |\\)?\n'
    r'\*\*问题 / Question\*\*：(?P<question>[^\n]+?)(?:  |\\)?\n'
    r'\*\*前提 / Assumes\*\*：(?P<assumes>[^\n]+?)(?:  |\\)?\n'
    r'\*\*时间 / Time\*\*：约 (?P<minutes>\d+) 分钟（2 核 CPU 上完整运行）(?:  |\\)?$', re.M)
FIRST_CELL_FORM = """# N. 中文标题 / English title

Two English summary lines,
plain ASCII.

**位置 / Place**：核心（core path）   (or 选读（deep dive）, 附录（appendix）)
**问题 / Question**：<the one question it answers>
**前提 / Assumes**：<what it assumes, e.g. notebook 1 和 2>
**时间 / Time**：约 N 分钟（2 核 CPU 上完整运行）"""
NEXT_LINE = re.compile(r'^\*\*下一步 / Next\*\*：(notebook [0-9A-Z]+\b.*|.*本章结束.*)$', re.M)


def load(path):
    return json.loads(pathlib.Path(path).read_text(encoding='utf-8'))


def markdown_cells(nb):
    return [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown']


def ideographs(text):
    return len(IDEOGRAPH.findall(text))


def prose_size(path):
    return sum(ideographs(text) for text in markdown_cells(load(path)))


def notebook_id(path):
    return sync_route.notebook_id(path)


def budgets():
    ids = {notebook_id(p) for p in NOTEBOOKS}
    return dict(BUDGET, **BUDGET_WITH_C) if 'C' in ids else dict(BUDGET)


def without_code_and_math(text):
    for pattern in (FENCED, DISPLAY_MATH, INLINE_CODE, INLINE_MATH):
        text = pattern.sub(' ', text)
    return text


def decimals_outside_tables(text):
    """Decimal numbers in a markdown cell, not counting table rows, code and math."""
    prose = '\n'.join(line for line in text.splitlines() if not line.lstrip().startswith('|'))
    return DECIMAL.findall(without_code_and_math(prose))


# --- budgets ------------------------------------------------------------------------------

@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_notebook_prose_fits_its_budget(path):
    limit = budgets().get(notebook_id(path))
    assert limit is not None, (
        '%s is not in the teaching order (no prose budget for notebook %s; budgets exist for %s)'
        % (path.name, notebook_id(path), ', '.join(sorted(budgets()))))
    size = prose_size(path)
    assert size <= limit, ('%s: %d ideographs of markdown prose, %d over its budget of %d'
                           % (path.name, size, size - limit, limit))


def test_course_and_core_prose_fit_their_budgets():
    sizes = {p.name: prose_size(p) for p in NOTEBOOKS}
    total = sum(sizes.values())
    core = sum(size for name, size in sizes.items() if notebook_id(name) in sync_route.CORE)
    over = []
    if total > COURSE_BUDGET:
        over.append('the course: %d ideographs, %d over %d' % (total, total - COURSE_BUDGET,
                                                               COURSE_BUDGET))
    if core > CORE_BUDGET:
        over.append('the core path (notebooks 1-5): %d ideographs, %d over %d'
                    % (core, core - CORE_BUDGET, CORE_BUDGET))
    assert not over, '; '.join(over) + '. Per notebook: ' + ', '.join(
        '%s %d' % (name.split('_')[0], size) for name, size in sizes.items())


@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_no_markdown_cell_quotes_more_than_eight_decimal_numbers_outside_a_table(path):
    crowded = []
    for index, cell in enumerate(load(path)['cells']):
        if cell['cell_type'] != 'markdown':
            continue
        found = decimals_outside_tables(''.join(cell['source']))
        if len(found) > MAX_DECIMALS:
            crowded.append('cell %d: %d numbers (%s)' % (index, len(found), ' '.join(found)))
    assert not crowded, ('%s: markdown cells with more than %d decimal numbers outside a table, '
                         'code or math; put them in a table or leave them in the output: %s'
                         % (path.name, MAX_DECIMALS, '; '.join(crowded)))


def test_the_decimal_count_skips_tables_code_math_and_versions():
    text = ('精度 0.301 和 76.776，误差 8.6e-04，73.5% 饱和；MXNet 1.9.1，notebook 3。\n'
            '| 0.1 | 0.2 | 0.3 |\n`0.4 0.5` 与 $0.9^{0.5}$\n```\n0.6 0.7\n```\n')
    assert decimals_outside_tables(text) == ['0.301', '76.776', '8.6e-04', '73.5']


# --- first and last cells -----------------------------------------------------------------

@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_notebook_opens_with_its_place_question_assumptions_and_time(path):
    first = ''.join(load(path)['cells'][0]['source'])
    found = FIRST_CELL.search(first)
    assert found, ('%s: the first cell must open in this form (full-width colons after the '
                   'bold labels):\n%s\nit opens with:\n%s'
                   % (path.name, FIRST_CELL_FORM, '\n'.join(first.splitlines()[:9])))
    assert found.group('n') == notebook_id(path), (
        '%s: the title says notebook %s' % (path.name, found.group('n')))
    assert ideographs(found.group('zh')) and found.group('en').isascii(), (
        '%s: the title is "中文 / English": %r' % (path.name, first.splitlines()[0]))
    for line in (found.group('en1'), found.group('en2')):
        assert line.isascii() and not line.startswith('**'), (
            '%s: two plain-ASCII English summary lines after the title; got %r'
            % (path.name, line))
    places = [place for place, ids in PLACES.items() if notebook_id(path)[0] in ids]
    assert found.group('place') == places[0], (
        '%s: place %r; notebook %s belongs to %r' % (path.name, found.group('place'),
                                                     notebook_id(path), places[0]))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_notebook_ends_with_three_to_five_take_aways_and_a_next_line(path):
    last = ''.join(load(path)['cells'][-1]['source'])
    assert last.startswith('## 小结 / Summary\n'), (
        '%s: the last cell must start with "## 小结 / Summary"; it starts with %r'
        % (path.name, last.splitlines()[0] if last else ''))
    bullets = [line for line in last.splitlines() if line.startswith('- ')]
    assert 3 <= len(bullets) <= 5, ('%s: the summary has %d take-aways ("- " lines); give 3 to 5'
                                    % (path.name, len(bullets)))
    assert NEXT_LINE.search(last), (
        '%s: the summary must end with a line "**下一步 / Next**：notebook N ..." (or one '
        'saying 本章结束)' % path.name)


def test_first_cell_check_accepts_the_house_form_and_rejects_a_half_colon():
    good = FIRST_CELL_FORM.replace('   (or 选读（deep dive）, 附录（appendix）)', '')
    good = good.replace('# N.', '# 1.').replace('约 N 分钟', '约 2 分钟')
    assert FIRST_CELL.search(good)
    assert FIRST_CELL.search(re.sub(r'(?<=\S)\n\*\*', '  \n**', good))   # Markdown hard breaks
    assert not FIRST_CELL.search(good.replace('**时间 / Time**：', '**时间 / Time**: '))


# --- the route and the times --------------------------------------------------------------

def test_readme_and_notebook_1_share_one_route_and_every_notebook_its_time():
    stale = sync_route.out_of_sync(ROOT)
    assert not stale, ('the route in README.md (between <!-- route --> and <!-- /route -->) is '
                       'the one place for the times; these files differ from it: %s. Edit the '
                       'README, then run: python tools/sync_route.py' % ', '.join(stale))


def test_the_route_names_every_notebook_with_a_time():
    route = sync_route.readme_route((ROOT / 'README.md').read_text(encoding='utf-8'))
    times = sync_route.route_times(route)
    missing = [p.name for p in NOTEBOOKS if notebook_id(p) not in times]
    assert not missing, 'the README route gives no "约 N 分钟" line for: %s' % ', '.join(missing)
    nb1 = [p for p in NOTEBOOKS if notebook_id(p) == '1'][0]
    routes = [text for text in markdown_cells(load(nb1))
              if text.startswith(sync_route.ROUTE_HEADING)]
    assert len(routes) == 1, '%s needs one "%s" cell' % (nb1.name, sync_route.ROUTE_HEADING)
    cells = load(nb1)['cells']
    position = [i for i, c in enumerate(cells) if ''.join(c['source']) == routes[0]][0]
    assert position <= 2, 'the route is near the top of %s (cell %d)' % (nb1.name, position)


@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_the_time_line_agrees_with_the_route(path):
    route = sync_route.readme_route((ROOT / 'README.md').read_text(encoding='utf-8'))
    expected = sync_route.route_times(route).get(notebook_id(path))
    stated = sync_route.first_cell_time(load(path))
    assert stated is not None and stated == expected, (
        '%s: the first cell says 约 %s 分钟, the README route 约 %s 分钟; run python '
        'tools/sync_route.py' % (path.name, stated, expected))


# --- the README ---------------------------------------------------------------------------

TEST_COMMAND = 'pip install -r requirements-dev.txt && python -m pytest -q'


def test_readme_first_screen_has_what_install_test_and_route_within_its_line_limits():
    lines = (ROOT / 'README.md').read_text(encoding='utf-8').splitlines()
    assert len(lines) <= 150, 'README.md has %d lines, %d over 150' % (len(lines),
                                                                        len(lines) - 150)
    screen = '\n'.join(lines[:40])
    assert any(TEST_COMMAND in line for line in lines[:40]), (
        'the first 40 lines of README.md must contain the test command that .ci/run runs: %s'
        % TEST_COMMAND)
    assert 'jupyter notebook' in screen, 'the first 40 lines give the install-and-open command'
    assert sync_route.START in screen and sync_route.END in screen, (
        'the route ends at line %d of README.md; the first screen is 40 lines'
        % next((i + 1 for i, line in enumerate(lines) if sync_route.END in line), -1))
    assert TEST_COMMAND in (ROOT / '.ci' / 'run').read_text(), '.ci/run runs the same command'


# --- the book's terms -----------------------------------------------------------------------

def chinese_prose_lines(text):
    """Lines of a markdown cell with Chinese prose, without code, math and headings' English."""
    for line in without_code_and_math(text).splitlines():
        if line.startswith('#') and ' / ' in line:
            line = line.split(' / ', 1)[0]
        if IDEOGRAPH.search(line):
            yield line


def term_problems(text):
    problems = []
    for line in chinese_prose_lines(text):
        bare = re.sub(r'迭代周期（epochs?）', '', line)
        found = re.search(r'\bepochs?\b', bare, re.I)
        if found:
            problems.append('"epoch" for 迭代周期: ...%s...'
                            % bare[max(0, found.start() - 20):found.end() + 20].strip())
    if '重新校准' in text:
        problems.append('重新校准: the one name is 重新估计统计量（PreciseBN）')
    return problems


@pytest.mark.parametrize('path', NOTEBOOKS, ids=IDS)
def test_prose_uses_the_books_terms(path):
    problems = ['cell %d: %s' % (i, problem) for i, cell in enumerate(load(path)['cells'])
                if cell['cell_type'] == 'markdown'
                for problem in term_problems(''.join(cell['source']))]
    assert not problems, '%s: %d places: %s' % (path.name, len(problems),
                                                '; '.join(problems[:8]))


def test_the_term_check_allows_the_first_use_and_code():
    assert term_problems('每个迭代周期（epoch）之后；`NUM_EPOCHS` 个迭代周期') == []
    assert term_problems('第 3 个 epoch 之后') != []
    assert term_problems('## 训练 / Training per epoch') == []


# --- every notebook, file and module named exists -----------------------------------------

def prose_documents():
    """(name, folder the links are relative to, markdown text) of everything a learner reads."""
    docs = [('README.md', ROOT, (ROOT / 'README.md').read_text(encoding='utf-8'))]
    docs += [(str(p.relative_to(ROOT)), p.parent, p.read_text(encoding='utf-8'))
             for p in sorted((ROOT / 'docs').glob('**/*.md'))]
    for path in NOTEBOOKS + sorted((ROOT / 'exercises').glob('**/*.ipynb')):
        if '.ipynb_checkpoints' in path.parts:
            continue
        for index, cell in enumerate(load(path)['cells']):
            if cell['cell_type'] == 'markdown':
                docs.append(('%s cell %d' % (path.relative_to(ROOT), index), path.parent,
                             ''.join(cell['source'])))
    return docs


def resolvable(dotted):
    """True if d2l_utils.x.y is a module, or an attribute of the longest importable prefix."""
    parts = dotted.split('.')
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def missing_references(text, folder):
    missing = []
    notebook_ids = {notebook_id(p) for p in NOTEBOOKS}
    for ref in NOTEBOOK_REF.findall(text):
        if ref not in notebook_ids:
            missing.append('notebook %s' % ref)
    for match in NOTEBOOK_FILE.finditer(text):
        if not (ROOT / 'notebooks' / match.group(0)).exists() and not (
                folder / match.group(0)).exists():
            missing.append(match.group(0))
    links = set(LINK_TARGET.findall(text))
    for ref in PATH_REF.findall(text):
        if ref not in links and not (ROOT / ref.rstrip('./')).exists():
            missing.append(ref)
    for ref in MODULE_REF.findall(text):
        if not resolvable(ref):
            missing.append(ref)
    for target in links:
        target = target.split('#', 1)[0]
        if target and not re.match(r'[a-z]+:', target) and not (folder / target).exists():
            missing.append('link %s' % target)
    return sorted(set(missing))


def test_every_notebook_file_and_module_named_in_the_prose_exists():
    broken = []
    for name, folder, text in prose_documents():
        missing = missing_references(text, folder)
        if missing:
            broken.append('%s: %s' % (name, ', '.join(missing)))
    assert not broken, '%d places name what does not exist:\n%s' % (len(broken),
                                                                     '\n'.join(broken))


def test_the_reference_check_catches_a_missing_module_notebook_and_path():
    text = ('见 notebook 5c 和 notebook 3，`d2l_utils/experiments.py`、`d2l_utils.nothing_here`、'
            '`d2l_utils.batch_norm`、`tools/run_notebooks.py`、[x](docs/none.md)')
    assert missing_references(text, ROOT) == [
        'd2l_utils.nothing_here', 'd2l_utils/experiments.py', 'link docs/none.md', 'notebook 5c']


def test_sync_route_copies_the_readme_route_total_and_times_into_the_notebooks(tmp_path):
    route = ('## 学习路线 / Route\n\n**核心（core path）**：合计约 1 分钟。\n\n'
             '1. [notebook 1](notebooks/1_a.ipynb)：甲，约 2 分钟\n'
             '- 问题？[notebook 6](notebooks/6_b.ipynb)，约 7 分钟\n')
    (tmp_path / 'README.md').write_text('# T\n\n%s\n%s%s\n' % (sync_route.START, route,
                                                               sync_route.END), encoding='utf-8')
    (tmp_path / 'notebooks').mkdir()
    header = ('# 6. 乙 / B\n\n**时间 / Time**：约 3 分钟（2 核 CPU 上完整运行）\n')
    for name, cells in (('1_a', [header.replace('6.', '1.'), '## 学习路线 / Route\n\nold']),
                        ('6_b', [header])):
        nb = {'cells': [{'cell_type': 'markdown', 'id': str(i), 'metadata': {}, 'source': text}
                        for i, text in enumerate(cells)],
              'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}
        (tmp_path / 'notebooks' / (name + '.ipynb')).write_text(json.dumps(nb), encoding='utf-8')
    assert sync_route.out_of_sync(tmp_path) == ['README.md', 'notebooks/1_a.ipynb',
                                                 'notebooks/6_b.ipynb']
    sync_route.sync(tmp_path)
    assert sync_route.out_of_sync(tmp_path) == []
    assert '合计约 2 分钟' in (tmp_path / 'README.md').read_text(encoding='utf-8')
    nb1 = load(tmp_path / 'notebooks' / '1_a.ipynb')
    assert sync_route.first_cell_time(nb1) == 2
    assert ''.join(nb1['cells'][1]['source']).endswith('[notebook 6](6_b.ipynb)，约 7 分钟')
    assert sync_route.first_cell_time(load(tmp_path / 'notebooks' / '6_b.ipynb')) == 7
