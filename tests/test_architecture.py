"""The package's structure: its import graph, its lazy top level, its CLI.

The import graph is read from the source (the AST of every module under
odl_atoms/), imports inside functions included, so that a cycle hidden in
a function is found although Python would only meet it at run time. What
is an edge:

- ``import odl_atoms.x.y`` and ``from odl_atoms.x import y`` (relative
  forms too): the module ``odl_atoms.x.y`` if it is one, else the module
  ``odl_atoms.x`` (``y`` is a name defined there);
- ``from odl_atoms import Name``: the module that defines ``Name``, which
  is what the package's lazy ``__getattr__`` imports; ``import odl_atoms``
  itself: every module the package exports names from;
- the solver registry's ``'module:Class'`` entries
  (`odl_atoms.reconstruction.SOLVERS`), imported by name.

Importing ``odl_atoms.x.y`` also runs ``odl_atoms/x/__init__.py`` first; that
is not an edge (the parent is initialised before its child, so a package
that imports its own submodules is not a cycle).
"""

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import odl_atoms
from odl_atoms import defaults, reconstruction

PACKAGE = Path(odl_atoms.__file__).parent
REPO = PACKAGE.parent
HEAVY = ('odl', 'scipy', 'torch', 'matplotlib', 'dask', 'distributed',
         'astra')
#: Cycles in modules this test's author does not own, reported to their
#: owners: each the set of modules of one strongly connected component. A
#: cycle not listed fails `test_no_import_cycle`; a listed one that is gone
#: fails `test_known_import_cycles_are_still_there`, so that it leaves the
#: list.
KNOWN_CYCLES = []


# --- The import graph


def _modules():
    """``{dotted name: path}`` of every module of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        if '__pycache__' in path.parts or path.name == 'conftest.py':
            continue
        parts = list(path.relative_to(REPO).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts.pop()
        modules['.'.join(parts)] = path
    return modules


def _import_edges(name, path, modules):
    """The package's modules that module ``name`` imports (anywhere)."""
    is_package = path.name == '__init__.py'
    package = name if is_package else name.rpartition('.')[0]
    edges = set()

    def add(target):
        # The longest prefix of ``target`` that is a module of ours.
        parts = target.split('.')
        while parts:
            candidate = '.'.join(parts)
            if candidate in modules:
                if candidate == 'odl_atoms':  # the lazy top level
                    edges.update(f'odl_atoms.{m}' for m in _exported_modules())
                else:
                    edges.add(candidate)
                return
            parts.pop()

    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - (node.level - 1)]
                base = '.'.join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            if not base.split('.')[0] == 'odl_atoms':
                continue
            for alias in node.names:
                full = f'{base}.{alias.name}'
                if full in modules:
                    edges.add(full)
                elif base != 'odl_atoms':
                    add(base)
                elif alias.name in _module_of():  # the lazy top level
                    edges.add(f'odl_atoms.{_module_of()[alias.name]}')
                # else a name of odl_atoms/__init__.py itself (__version__)
    if name == 'odl_atoms.reconstruction':
        for target in reconstruction.SOLVERS.values():
            add(target.partition(':')[0])
    edges.discard(name)
    return edges


def _module_of():
    return odl_atoms._MODULE_OF


def _exported_modules():
    return list(odl_atoms._EXPORTS) + list(odl_atoms._PARTIAL_EXPORTS)


def import_graph():
    """``{module: set of modules it imports}`` of the whole package."""
    modules = _modules()
    return {name: _import_edges(name, path, modules)
            for name, path in modules.items()}


def strongly_connected(graph):
    """The strongly connected components with more than one module
    (Tarjan's algorithm), each a set."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _describe(component, graph):
    lines = []
    for v in sorted(component):
        targets = sorted(graph[v] & component)
        lines.append(f'  {v} -> {", ".join(targets)}')
    return '\n'.join(lines)


def test_graph_sees_imports_inside_functions():
    # The reader of the graph itself, on known facts of the source: the
    # command line imports the library inside its functions, and
    # odl_atoms.atoms imports odl_atoms.space at the top.
    graph = import_graph()
    assert 'odl_atoms.io' in graph['odl_atoms.cli.reconstruct']
    assert 'odl_atoms.space' in graph['odl_atoms.atoms']
    assert 'odl_atoms.solvers' in graph['odl_atoms.reconstruction']
    cycle = strongly_connected({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}})
    assert cycle == [{'a', 'b', 'c'}]


def test_no_import_cycle():
    graph = import_graph()
    cycles = [c for c in strongly_connected(graph) if c not in KNOWN_CYCLES]
    assert not cycles, 'import cycles:\n' + '\n\n'.join(
        _describe(c, graph) for c in cycles)


@pytest.mark.xfail(bool(KNOWN_CYCLES), strict=True,
                   reason='known import cycles (KNOWN_CYCLES) not removed yet')
def test_known_import_cycles_are_still_there():
    # Passes (a strict xfail then fails) once every known cycle is gone:
    # then empty KNOWN_CYCLES.
    cycles = strongly_connected(import_graph())
    assert not [c for c in KNOWN_CYCLES if c in cycles]


def test_library_never_imports_the_command_line():
    graph = import_graph()
    command_line = {m for m in graph
                    if m == 'odl_atoms.cli' or m.startswith('odl_atoms.cli.')}
    for module in sorted(set(graph) - command_line - {'odl_atoms.__main__'}):
        seen, todo = set(), [module]
        while todo:
            for target in graph[todo.pop()]:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        assert not seen & command_line, (
            f'{module} imports the command line: '
            f'{sorted(seen & command_line)}')


# --- The lazy top level


def test_export_table_matches_the_modules():
    for module_name, names in odl_atoms._EXPORTS.items():
        module = importlib.import_module(f'odl_atoms.{module_name}')
        assert tuple(module.__all__) == names, (
            f'odl_atoms/__init__.py: _EXPORTS[{module_name!r}] must be '
            f'odl_atoms.{module_name}.__all__ = {tuple(module.__all__)}')
    for module_name, names in odl_atoms._PARTIAL_EXPORTS.items():
        module = importlib.import_module(f'odl_atoms.{module_name}')
        assert set(names) <= set(module.__all__)


def test_every_public_name_is_the_modules_object():
    names = odl_atoms.__all__
    assert len(names) == len(set(names))
    for name in names:
        module = importlib.import_module(
            f'odl_atoms.{odl_atoms._MODULE_OF[name]}')
        assert getattr(odl_atoms, name) is getattr(module, name), name
    namespace = {}
    exec('from odl_atoms import *', namespace)
    assert set(names) <= set(namespace)
    assert namespace['reconstruct'] is reconstruction.reconstruct
    for name in ('solvers', 'defaults', 'cli', 'learned', 'reconstruction'):
        assert getattr(odl_atoms, name).__name__ == f'odl_atoms.{name}'
    assert {'ADCG', 'solvers', 'reconstruct'} <= set(dir(odl_atoms))
    with pytest.raises(AttributeError):
        odl_atoms.no_such_name


def test_defaults_name_the_phantoms_the_library_has():
    # The command line offers these names without importing the phantoms.
    from odl_atoms import phantoms
    assert defaults.PHANTOM_NAMES_2D == tuple(phantoms.PHANTOM_NAMES_2D)
    assert defaults.NANOPARTICLE_SHAPES == tuple(phantoms.NANOPARTICLE_SHAPES)
    assert callable(phantoms.fcc_slab)  # 'slab'


def test_solver_registry_resolves_to_the_exported_classes():
    for name in reconstruction.available_solvers():
        cls = reconstruction.solver_class(name)
        assert cls is getattr(odl_atoms, cls.__name__)
    assert reconstruction.available_solvers()[:3] == ['adcg', 'sa', 'sirt']


# --- What the command line imports


def _imported_modules(*args):
    """Run ``python -X importtime *args``; return (process, module names)."""
    proc = subprocess.run([sys.executable, '-X', 'importtime', *args],
                          capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=dict(os.environ, COLUMNS='80'))
    names = set(re.findall(r'^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)',
                           proc.stderr, flags=re.MULTILINE))
    return proc, names


@pytest.mark.parametrize('args', [
    ['-c', 'import odl_atoms'],
    ['-m', 'odl_atoms', '--help'],
    ['-m', 'odl_atoms', '--version'],
    ['-m', 'odl_atoms', 'reconstruct', '--help'],
    ['-m', 'odl_atoms', 'sweep', '--help'],
    ['-m', 'odl_atoms.cli', 'simulate', '--help'],
])
def test_help_and_version_import_no_heavy_package(args):
    proc, names = _imported_modules(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'odl_atoms' in names  # the import log was read
    heavy = sorted(n for n in names if n.split('.')[0] in HEAVY)
    assert not heavy, f'{" ".join(args)} imports {heavy[:10]}'
    if '--version' in args:
        assert odl_atoms.__version__ in proc.stdout
    elif '--help' in args:
        assert proc.stdout.startswith('usage: odl-atoms')
