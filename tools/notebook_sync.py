"""Keep the code the notebooks teach and the package's copy one text.

A notebook cell whose first line is the marker

    # Saved in d2l_utils/<module>.py

teaches definitions the package holds: every top-level ``def``/``class`` in that cell must be,
character for character, the definition of the same name in that module file (found by parsing
the file, never by importing it, so a module that needs an optional package such as torch is
checked all the same).

    python tools/notebook_sync.py            # report problems (exit 1 if any)
    python tools/notebook_sync.py --write    # copy the notebooks' versions into the package
    python tools/notebook_sync.py --to-notebooks   # copy the package's versions into the notebooks

The check reports three kinds of problem:
- drift: a marked definition differs from the module's (or the module has no such definition);
- unmarked: a notebook defines, in a cell without the marker, a name the package exports (an
  unchecked second copy): mark the cell, or rename the notebook's definition;
- unresolved: a marked cell uses a name that neither the notebook's own imports nor the cell
  defines (it would raise NameError when a learner calls it).

``--to-notebooks`` is the other direction, for a change made in the package (a rename, a new
check): each drifted definition in a marked cell is replaced by the module's text, the rest of
the cell and its outputs kept (re-run the notebook afterwards); it refuses, writing nothing, for
a name the module lacks or defines twice.

``--write`` replaces each drifted definition in its module file with the notebook's text. All
definitions of one module are located in one parse of the file and replaced bottom-up, the
result is parsed again and compared, and the file is replaced atomically (a temporary file,
then a rename). It refuses, writing nothing, when it cannot be sure: a name defined twice in
the module or in the notebooks with different texts, a name the module lacks, or a result that
does not parse or does not hold exactly the intended definitions.
"""
import ast
import builtins
import dis
import json
import os
import pathlib
import re
import sys
import tempfile
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKER = re.compile(r'^# Saved in d2l_utils/([\w/]+)\.py\s*$')   # a subfolder too: experiments/x
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
MAGIC = re.compile(r'^\s*(%%?|!)[A-Za-z]')   # IPython line magics and shell escapes


class SyncError(RuntimeError):
    """--write cannot tell for sure what to replace; nothing was written."""


def read_notebook(notebook_path):
    """The notebook as a dict; SyncError naming the file if it is not a notebook's JSON."""
    try:
        nb = json.loads(pathlib.Path(notebook_path).read_text())
        nb['cells']
    except (ValueError, KeyError, TypeError) as err:
        raise SyncError(f'{notebook_path}: not a readable notebook ({err}); restore it '
                        f'(git checkout -- {notebook_path}) or re-save it in Jupyter') from None
    return nb


def code_cells(notebook_path):
    """[(cell index, source)] of a notebook's code cells."""
    nb = read_notebook(notebook_path)
    return [(i, ''.join(cell['source'])) for i, cell in enumerate(nb['cells'])
            if cell['cell_type'] == 'code']


def marker_module(source):
    """The module name of a marked cell's first line, or None."""
    match = MARKER.match(source.splitlines()[0]) if source.strip() else None
    return match.group(1) if match else None


def definition_spans(source):
    """{name: [(first line, last line)]} (1-based, inclusive) of the top-level definitions in
    ``source``; the span starts at the first decorator."""
    spans = {}
    for node in ast.parse(source).body:
        if isinstance(node, DEFINITIONS):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            spans.setdefault(node.name, []).append((first, node.end_lineno))
    return spans


def text_of(lines, span):
    first, last = span
    return ''.join(lines[first - 1:last]).rstrip('\n')


def marked_definitions(notebook_path):
    """Yield (module name, definition name, source text) for each definition in marked cells.

    SyncError (naming the notebook, the cell and the line) if a marked cell does not parse.
    """
    for index, source in code_cells(notebook_path):
        module_name = marker_module(source)
        if module_name is None:
            continue
        lines = source.splitlines(keepends=True)
        try:
            spans_by_name = definition_spans(source)
        except SyntaxError as err:
            raise SyncError(f'{pathlib.Path(notebook_path).name}, cell {index} (marked for '
                            f'd2l_utils/{module_name}.py): line {err.lineno}: {err.msg}; fix the '
                            f'cell, nothing was compared or written') from None
        for name, spans in spans_by_name.items():
            for span in spans:
                yield module_name, name, text_of(lines, span)


def module_file(module_name, root=ROOT):
    return pathlib.Path(root) / 'd2l_utils' / (module_name + '.py')


def module_definitions(module_name, root=ROOT):
    """{name: [text, ...]} of the module file's top-level definitions ({} if no such file)."""
    path = module_file(module_name, root)
    if not path.is_file():
        return {}
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    return {name: [text_of(lines, span) for span in spans]
            for name, spans in definition_spans(source).items()}


def drift(notebook_paths, root=ROOT):
    """List of (notebook, module, name) whose notebook text differs from the package's."""
    found, cache = [], {}
    for path in notebook_paths:
        for module_name, name, text in marked_definitions(path):
            if module_name not in cache:
                cache[module_name] = module_definitions(module_name, root)
            if cache[module_name].get(name) != [text]:
                found.append((pathlib.Path(path).name, module_name, name))
    return found


def exported_names(root=ROOT):
    """The names the package exports: ``__all__`` of d2l_utils and of d2l_utils.pytorch (read
    from the files, not imported)."""
    names = set()
    for path in (pathlib.Path(root) / 'd2l_utils' / '__init__.py',
                 pathlib.Path(root) / 'd2l_utils' / 'pytorch.py'):
        if not path.is_file():
            continue
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and getattr(node.targets[0], 'id', None) == '__all__'):
                names.update(ast.literal_eval(node.value))
    return names


def unmarked_exports(notebook_paths, root=ROOT):
    """List of (notebook, cell index, name): a definition of an exported name outside a marked
    cell, i.e. an unchecked copy of package code."""
    exported, found = exported_names(root), []
    for path in notebook_paths:
        for index, source in code_cells(path):
            if marker_module(source) is not None:
                continue
            for name in definition_spans(without_magics(source)):
                if name in exported:
                    found.append((pathlib.Path(path).name, index, name))
    return found


def without_magics(source):
    return '\n'.join(line for line in source.splitlines() if not MAGIC.match(line))


def notebook_imports(notebook_path):
    """The notebook's top-level import statements, in order, as one block of code."""
    statements = []
    for _, source in code_cells(notebook_path):
        source = without_magics(source)
        for node in ast.parse(source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                statements.append(ast.get_source_segment(source, node))
    return '\n'.join(statements)


def global_names(code):
    """Names ``code`` and every function and class body inside it look up as globals."""
    found, stored = set(), set()
    for instruction in dis.get_instructions(code):
        if instruction.opname in ('LOAD_GLOBAL', 'LOAD_NAME'):
            found.add(instruction.argval)
        elif instruction.opname in ('STORE_NAME', 'STORE_GLOBAL'):
            stored.add(instruction.argval)
    if code.co_flags & 0x2 == 0:   # not a function (module or class body): its own names count
        found -= stored
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= global_names(const)
    return found


def unresolved_names(notebook_path):
    """List of (cell index, sorted names): for each marked cell, the names it uses that the
    notebook's imports, the marked cells before it and the cell itself leave undefined.

    Runs the notebook's import statements, then its marked cells in order, in one fresh
    namespace: nothing else the notebook computes is there. The imported packages must be
    installed (an ImportError propagates).
    """
    namespace = {'__name__': 'notebook'}
    exec(compile(notebook_imports(notebook_path), str(notebook_path), 'exec'), namespace)
    found = []
    for index, source in code_cells(notebook_path):
        if marker_module(source) is None:
            continue
        cell = namespace   # the marked cells before this one are defined in it too
        code = compile(source, '%s, cell %d' % (notebook_path, index), 'exec')
        missing = set()
        try:
            exec(code, cell)   # defines the cell's functions and classes (runs class bodies)
        except NameError as err:
            missing.add(err.name)
        missing |= {name for name in global_names(code)
                    if name not in cell and not hasattr(builtins, name)}
        if missing:
            found.append((index, sorted(missing)))
    return found


def planned_writes(notebook_paths, root=ROOT):
    """{module name: {definition name: new text}} for the drifted definitions, or SyncError."""
    wanted = {}
    for path in notebook_paths:
        for module_name, name, text in marked_definitions(path):
            previous = wanted.setdefault(module_name, {}).setdefault(name, (text, path))
            if previous[0] != text:
                raise SyncError('%s: %s.%s differs between %s and %s; make the notebooks agree '
                                'first' % (path, module_name, name, previous[1], path))
    plan = {}
    for module_name, definitions in wanted.items():
        current = module_definitions(module_name, root)
        for name, (text, path) in definitions.items():
            if name not in current:
                raise SyncError('%s marks %s as saved in d2l_utils/%s.py, which defines no %s; '
                                'add it to the module by hand, or fix the marker line'
                                % (pathlib.Path(path).name, name, module_name, name))
            if len(current[name]) != 1:
                raise SyncError('d2l_utils/%s.py defines %s %d times at the top level; cannot '
                                'tell which one to replace' % (module_name, name,
                                                               len(current[name])))
            if current[name] != [text]:
                plan.setdefault(module_name, {})[name] = text
    return plan


def rewritten(source, replacements):
    """``source`` with each top-level definition named in ``replacements`` replaced, bottom-up
    (so earlier line numbers stay valid); the result is parsed again and must hold exactly the
    old definitions with the replaced ones changed."""
    old_lines = source.splitlines(keepends=True)
    spans = definition_spans(source)
    lines = list(old_lines)
    for name, text in sorted(replacements.items(), key=lambda item: -spans[item[0]][0][0]):
        first, last = spans[name][0]
        lines[first - 1:last] = [text + '\n']
    result = ''.join(lines)
    try:
        after = definition_spans(result)
    except SyntaxError as err:
        raise SyncError('the new module text does not parse (%s); nothing written' % err) from None
    new_lines = result.splitlines(keepends=True)
    got = {name: [text_of(new_lines, span) for span in found] for name, found in after.items()}
    expected = {name: [text_of(old_lines, span) for span in found] for name, found in spans.items()}
    expected.update((name, [text]) for name, text in replacements.items())
    if got != expected:
        wrong = sorted(name for name in set(got) | set(expected)
                       if got.get(name) != expected.get(name))
        raise SyncError('after replacing, the module\'s definitions of %s are not the intended '
                        'ones; nothing written' % ', '.join(wrong))
    return result


def write_atomically(path, text):
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = pathlib.Path(path)
    handle, temporary = tempfile.mkstemp(dir=str(path.parent), prefix='.' + path.name + '.')
    try:
        with os.fdopen(handle, 'w') as out:
            out.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, str(path))
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_back(notebook_paths, root=ROOT):
    """Replace each drifted definition in its module file with the notebook's text.

    Plans every module first and writes only if every plan is sure (else SyncError, nothing
    written). Returns [(module name, definition name)] of what it replaced.
    """
    plan = planned_writes(notebook_paths, root)
    new_texts = {module_name: rewritten(module_file(module_name, root).read_text(), replacements)
                 for module_name, replacements in plan.items()}
    done = []
    for module_name, text in new_texts.items():
        write_atomically(module_file(module_name, root), text)
        done += [(module_name, name) for name in sorted(plan[module_name])]
    return done


def write_to_notebooks(notebook_paths, root=ROOT):
    """Replace each drifted definition in the notebooks' marked cells with the module's text.

    Plans every notebook first and writes only if every replacement is sure (else SyncError,
    nothing written); each notebook file is replaced atomically, its outputs kept. Returns
    [(notebook name, definition name)] of what it replaced.
    """
    cache, new_notebooks, done = {}, {}, []
    for path in notebook_paths:
        nb = read_notebook(path)
        changed = False
        for cell in nb['cells']:
            source = ''.join(cell['source']) if cell['cell_type'] == 'code' else ''
            module_name = marker_module(source)
            if module_name is None:
                continue
            if module_name not in cache:
                cache[module_name] = module_definitions(module_name, root)
            lines = source.splitlines(keepends=True)
            replacements = {}
            for name, spans in definition_spans(source).items():
                texts = cache[module_name].get(name, [])
                if len(texts) != 1 or len(spans) != 1:
                    raise SyncError('%s: %s is defined %d time(s) in d2l_utils/%s.py and %d '
                                    'time(s) in its marked cell; cannot tell what to copy'
                                    % (pathlib.Path(path).name, name, len(texts), module_name,
                                       len(spans)))
                if text_of(lines, spans[0]) != texts[0]:
                    replacements[name] = texts[0]
            if replacements:
                new_source = rewritten(source, replacements)
                if source.endswith('\n') != new_source.endswith('\n'):
                    new_source = new_source.rstrip('\n') + ('\n' if source.endswith('\n') else '')
                cell['source'] = new_source.splitlines(keepends=True)
                changed = True
                done += [(pathlib.Path(path).name, name) for name in sorted(replacements)]
        if changed:
            new_notebooks[path] = json.dumps(nb, indent=1, ensure_ascii=False) + '\n'
    for path, text in new_notebooks.items():
        write_atomically(path, text)
    return done


def main(argv, root=ROOT):
    notebooks = sorted((pathlib.Path(root) / 'notebooks').glob('*.ipynb'))
    writes = {'--to-notebooks': (write_to_notebooks, 'updated %s: %s'),
              '--write': (write_back, 'updated d2l_utils/%s.py: %s')}
    for flag, (write, done_line) in writes.items():
        if flag in argv:
            try:
                done = write(notebooks, root)
            except SyncError as err:
                print('notebook_sync: %s' % err, file=sys.stderr)
                return 2
            for where, name in done:
                print(done_line % (where, name))
            return 0
    try:
        drifted = drift(notebooks, root)
    except SyncError as err:
        print('notebook_sync: %s' % err, file=sys.stderr)
        return 2
    problems = []
    for nb_name, module_name, name in drifted:
        if not module_file(module_name, root).is_file():
            problems.append(f'{nb_name}: the marker names d2l_utils/{module_name}.py, which does '
                            f'not exist (a typo in the marker line? it defines {name})')
        else:
            problems.append(f"{nb_name}: {name} differs from d2l_utils/{module_name}.py (edit one "
                            f"of them; --write copies the notebook's version into the package)")
    problems += ['%s, cell %d: defines %s, which d2l_utils exports, in a cell without the marker '
                 '(mark the cell "# Saved in d2l_utils/<module>.py", or rename it)' % found
                 for found in unmarked_exports(notebooks, root)]
    for path in notebooks:
        try:
            unresolved = unresolved_names(path)
        except ImportError as err:
            print('%s: imports not checked (%s)' % (path.name, err), file=sys.stderr)
            continue
        problems += ['%s, cell %d: the marked cell uses %s, which the notebook never imports'
                     % (path.name, index, ', '.join(names)) for index, names in unresolved]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
