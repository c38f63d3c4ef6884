"""Whose code is graded: the learner's own, or the package's (imported or pasted) or the book's.

The exercise edition grades code a learner writes. The package holds the answers
(``d2l_utils.batch_norm``, ``BatchNorm``, the book's verbatim ``book_batch_norm`` and
``BookBatchNorm``, the fast and the planted-mistake variants), so ``from d2l_utils import
batch_norm`` in a solution cell would pass every check. ``provenance_problem(target, kind)``
says why a target is not the learner's own work, or returns None:

- it is defined in ``d2l_utils`` (imported), or a layer inherits ``forward``/``__init__`` from a
  package layer;
- its code reaches a package implementation of what the assignment asks for (a wrapper around
  ``d2l_utils.batch_norm``; for the backward pass also autograd: ``attach_grad``/``backward``);
- its code is a package implementation pasted (the taught, the book's or the fast one): the same
  instructions, names and constants (comments, docstrings, blank lines and local variable names
  do not count), function by function.

A learner can still paste the code and change a line (or paste a planted mistake, which then
fails its property); that needs a person reading the code (nbgrader's formgrader shows it).
``dependencies(target)`` lists what the target's code reaches, which ``grading`` also uses to
notice that a helper was redefined since the last check.
"""
import dis
import importlib
import inspect
import types

from mxnet import autograd, gluon

__all__ = ['KINDS', 'code_signature', 'dependencies', 'package_answers', 'provenance_problem']

KINDS = ('function', 'block', 'backward')
PACKAGE = 'd2l_utils'
# the package's answers: the taught, the book's and the fast implementations (compared with
# pasted code too), and the planted mistakes (recognised when imported or called)
REFERENCE_MODULES = ('d2l_utils.layers', 'd2l_utils.book', 'd2l_utils.experiments.fast_batch_norm')
ANSWER_MODULES = REFERENCE_MODULES + ('d2l_utils.checks.mistakes',)
# attribute names that mean "autograd computes the gradient", for the closed-form backward
AUTOGRAD_NAMES = frozenset({'attach_grad', 'backward', 'grad', 'mark_variables'})


def from_package(obj):
    """True if obj (a function, class or module) is defined in d2l_utils."""
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, '__module__', None)
    return (name or '').split('.')[0] == PACKAGE


def package_answers(modules=ANSWER_MODULES):
    """(functions, layer classes): the package's batch-norm implementations in ``modules``."""
    from .harness import looks_like_function
    functions, layers = [], []
    for name in modules:
        module = importlib.import_module(name)
        for attr in getattr(module, '__all__', []):
            obj = getattr(module, attr)
            if isinstance(obj, type) and issubclass(obj, gluon.Block):
                layers.append(obj)
            elif (inspect.isfunction(obj) and looks_like_function(obj)
                  and attr != 'validate_batch_norm_inputs'):
                functions.append(obj)
            elif isinstance(obj, type) and issubclass(obj, autograd.Function):
                layers.append(obj)
    return functions, layers


def methods_of(cls):
    """The functions defined in the class bodies of cls's MRO up to (not into) library classes."""
    found = []
    for klass in inspect.getmro(cls):
        if (klass.__module__ or '').split('.')[0] in ('mxnet', 'builtins'):
            break
        for value in vars(klass).values():
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                value = value.fget
            if inspect.isfunction(value):
                found.append(value)
    return found


def code_names(code):
    """Every global and attribute name a code object (and the code nested in it) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= code_names(const)
    return names


def dependencies(target):
    """The objects ``target``'s code reaches, in a stable order: functions and classes defined
    where target is (followed further), and the first object outside (not followed): package
    functions, modules, values of global names. Closures count too."""
    seen, order = set(), []
    home = getattr(target, '__module__', None)
    stack = [target]
    while stack:
        obj = stack.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        order.append(obj)
        if getattr(obj, '__module__', None) != home:
            continue   # not the learner's: do not follow into libraries
        if isinstance(obj, type):
            functions = methods_of(obj)
            stack.extend(klass for klass in inspect.getmro(obj)[1:]
                         if (klass.__module__ or '').split('.')[0] not in ('mxnet', 'builtins'))
        elif inspect.isfunction(obj):
            functions = [obj]
        else:
            continue
        for function in functions:
            stack.append(function)
            names = code_names(function.__code__)
            for name in sorted(names):
                if name in function.__globals__:
                    value = function.__globals__[name]
                    stack.append(value)
                    if isinstance(value, types.ModuleType) and from_package(value):
                        # d2l_utils.batch_norm(...): the attributes the code may read from it
                        stack.extend(getattr(value, attr) for attr in sorted(names)
                                     if hasattr(value, attr))
            for cell in function.__closure__ or ():
                try:
                    stack.append(cell.cell_contents)
                except ValueError:   # an empty cell
                    pass
    return order


def code_signature(function):
    """What a function's code does, without comments, docstring, line numbers or local names:
    its instructions and their arguments, nested code included."""
    return signature_of(function.__code__, function.__doc__)


# the same source can compile to either form of an attribute call (seen between a module and a
# notebook cell), so both count as one
SAME_OPCODE = {'LOAD_METHOD': 'LOAD_ATTR', 'CALL_METHOD': 'CALL_FUNCTION'}
SKIPPED_OPCODES = {'CACHE', 'NOP', 'RESUME', 'PRECALL', 'PUSH_NULL', 'EXTENDED_ARG'}


def signature_of(code, doc=None):
    """(opname, argument) per instruction: local variables by number (their names do not
    count), jumps without targets, constants by value (code objects recursively, the docstring
    left out), global and attribute names by name."""
    out = []
    for ins in dis.get_instructions(code):
        if ins.opname in SKIPPED_OPCODES:
            continue
        name = SAME_OPCODE.get(ins.opname, ins.opname)
        if ins.opname.endswith('_FAST') or 'DEREF' in ins.opname or 'CLOSURE' in ins.opname:
            arg = ins.arg
        elif 'JUMP' in ins.opname or ins.opname in ('FOR_ITER', 'SEND', 'SETUP_FINALLY'):
            arg = None
        elif isinstance(ins.argval, types.CodeType):
            arg = signature_of(ins.argval)
        elif ins.opname == 'LOAD_CONST' and doc is not None and ins.argval == doc:
            arg = '<docstring>'
        else:
            arg = ins.argval
        out.append((name, arg))
    return tuple(out)


def layer_signature(cls):
    """The code signatures of every function a layer class and its non-library bases define
    (methods, static methods such as a ``batch_norm_fn``)."""
    return frozenset(code_signature(function) for function in methods_of(cls))


def qualified(obj):
    return '%s.%s' % (obj.__module__, getattr(obj, '__qualname__', repr(obj)))


def provenance_problem(target, kind):
    """Why ``target`` is not the learner's own work, in one message; None if it is.

    kind: 'function' (assignment 1's batch_norm), 'block' (a layer class; the setup gives
    ``batch_norm``, so calling it is fine) or 'backward' (a closed-form backward pass).
    """
    if kind not in KINDS:
        raise ValueError('provenance_problem: kind must be one of %s; got %r' % (KINDS, kind))
    name = getattr(target, '__name__', repr(target))
    tail = (' Integrity: this part scores 0. Write the code yourself in the solution cell (you '
            'may read the package and the book, not import or paste them).')
    if from_package(target):
        return ('%s is %s, the package\'s own code imported into the notebook, not code '
                'written here.%s' % (name, qualified(target), tail))
    functions, layers = package_answers()
    if isinstance(target, type):
        for method in ('__init__', 'forward'):
            owner = next((k for k in inspect.getmro(target) if method in vars(k)), None)
            if owner is not None and from_package(owner):
                return ('%s takes its %s from %s, the package\'s own layer (a subclass that '
                        'inherits it).%s' % (name, method, qualified(owner), tail))
    reached = dependencies(target)
    answers = layers + (functions if kind in ('function', 'backward') else [])
    for obj in reached[1:]:
        if any(obj is answer for answer in answers):
            return ('%s calls %s, the package\'s own implementation, instead of computing it '
                    'itself.%s' % (name, qualified(obj), tail))
    if kind == 'backward':
        own = [f for f in reached if inspect.isfunction(f) and not from_package(f)]
        used = sorted(set().union(*(code_names(f.__code__) for f in own)) & AUTOGRAD_NAMES)
        if used:
            return ('%s lets autograd compute the gradients (it uses %s); the assignment asks for '
                    'the closed form.%s' % (name, ', '.join(used), tail))
    functions, layers = package_answers(REFERENCE_MODULES)
    if inspect.isfunction(target):
        mine = code_signature(target)
        for function in functions:
            if code_signature(function) == mine:
                return ('%s is a copy of %s (the same code, up to comments, docstring and '
                        'variable names).%s' % (name, qualified(function), tail))
    elif isinstance(target, type):
        mine = layer_signature(target)
        for layer in layers:
            if isinstance(layer, type) and issubclass(layer, gluon.Block) and \
                    layer_signature(layer) == mine:
                return ('%s is a copy of %s (the same methods, up to comments, docstrings and '
                        'variable names).%s' % (name, qualified(layer), tail))
    return None
