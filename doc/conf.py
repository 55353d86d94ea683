"""Sphinx configuration of the odl_atoms documentation.

Build (as CI does, warnings are errors and every example is executed)::

    pip install -e ".[doc]"
    python -m sphinx -W --keep-going -q -j auto -b html doc doc/_build/html
"""

import concurrent.futures
import glob
import os
import sys
import urllib.request
from pathlib import Path

# The examples work on small arrays, where OpenBLAS's threads cost more than
# they give (and spin on a busy machine; the solvers limit BLAS to one thread
# themselves, the examples' own NumPy/ODL code is covered here). The variable
# must be set before NumPy is first imported, which is here.
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import odl_atoms  # noqa: E402

# -- Project ------------------------------------------------------------------

project = 'odl_atoms'
author = 'the odl_atoms developers'
copyright = '2026, ' + author
version = release = odl_atoms.__version__

# -- Extensions -----------------------------------------------------------------

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.intersphinx',
    'sphinx.ext.mathjax',
    'sphinx.ext.viewcode',
    'numpydoc',
    'sphinx_gallery.gen_gallery',
    'myst_parser',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', '_generated', 'Thumbs.db', '.DS_Store',
                    'auto_examples/*.ipynb', 'auto_examples/*.py',
                    'auto_examples/*.zip', 'auto_examples/*.md5',
                    'auto_examples/*.codeobj.json']
templates_path = ['_templates']

# Single backticks in the docstrings (`SparseMeasure`) are Python
# cross-references, as in NumPy's and ODL's documentation.
default_role = 'py:obj'

# -- API reference (autosummary + numpydoc) ---------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {'members': False}
autodoc_typehints = 'none'
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False

# -- Markdown (the benchmark tables are Markdown files) ----------------------------

myst_enable_extensions = ['dollarmath']
myst_heading_anchors = 0

# -- Intersphinx, offline-safe ------------------------------------------------------
#
# Links to ODL, NumPy, SciPy and ASE come from their ``objects.inv``
# inventories, which Sphinx downloads at build time. CI machines have no
# network, and Sphinx reports an unreachable inventory as a plain warning
# without a type, so ``suppress_warnings`` cannot silence it and ``-W`` would
# fail the build. Therefore each inventory is probed here first (in parallel,
# 3 s timeout) and only the reachable ones are configured: online builds get
# every link, offline builds get none of the external ones and still pass.
# ODL_ATOMS_DOCS_OFFLINE=1 skips the probe altogether.

_INTERSPHINX_CANDIDATES = {
    'python': 'https://docs.python.org/3',
    'odl': 'https://odlgroup.github.io/odl',
    'numpy': 'https://numpy.org/doc/stable',
    'scipy': 'https://docs.scipy.org/doc/scipy',
    'ase': 'https://wiki.fysik.dtu.dk/ase',
    'matplotlib': 'https://matplotlib.org/stable',
}


def _reachable(url, timeout=3.0):
    try:
        request = urllib.request.Request(url + '/objects.inv', method='HEAD')
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status < 400
    except Exception:
        return False


def _intersphinx_mapping():
    if os.environ.get('ODL_ATOMS_DOCS_OFFLINE'):
        return {}
    with concurrent.futures.ThreadPoolExecutor(len(_INTERSPHINX_CANDIDATES)) as pool:
        ok = dict(zip(_INTERSPHINX_CANDIDATES,
                      pool.map(_reachable, _INTERSPHINX_CANDIDATES.values())))
    missing = [name for name, good in ok.items() if not good]
    if missing:
        print(f'conf.py: intersphinx inventories not reachable (offline?), '
              f'links to them are left out: {", ".join(missing)}')
    return {name: (url, None) for name, url in _INTERSPHINX_CANDIDATES.items()
            if ok[name]}


intersphinx_mapping = _intersphinx_mapping()
intersphinx_timeout = 5

# -- Example gallery (executed at every build) ----------------------------------

# The gallery's order is the order to read the examples in: the first one
# introduces the problem, the later ones build on it. Examples not listed
# here (new ones) follow in alphabetical order. sphinx-gallery takes a
# callable sort key; an instance of its own ExplicitOrder (a name -> rank
# map) is one that Sphinx can pickle with the configuration, which a
# function defined in this file is not.

_GALLERY_ORDER = [
    'plot_vacancy_three_angles.py',     # the problem, the data, ADCG, the score
    'plot_swap_solvers.py',             # the same data, other methods
    'plot_alpha_effect.py',             # the energy weight
    'plot_generic_angles.py',           # other angles: lattice starts, certificate
    'plot_discrepancy_principle.py',    # when the energy overrules the data
    'plot_relaxed_interstitial.py',     # when the phantom and the prior disagree
    'plot_nanoparticle_3d.py',          # the same in 3D
    'plot_odl_composition.py',          # the objective in ODL's own terms
    'plot_custom_potential.py',         # your own energy as an ODL functional
    'plot_reconstruction_movie.py',     # the search as a film; trust without a truth
    'plot_haadf_tilt_series.py',        # microscope images (abTEM) to atoms
]


def _gallery_order():
    from sphinx_gallery.sorting import ExplicitOrder

    present = sorted(Path(p).name for p in glob.glob(str(ROOT / 'examples' / '*.py')))
    order = [name for name in _GALLERY_ORDER if name in present]
    order += [name for name in present if name not in order]
    return ExplicitOrder(order)


sphinx_gallery_conf = {
    'examples_dirs': str(ROOT / 'examples'),
    'gallery_dirs': 'auto_examples',
    'filename_pattern': r'/plot_',
    'abort_on_example_error': True,
    'only_warn_on_example_error': False,
    'remove_config_comments': True,
    'download_all_examples': False,
    # Teaching order (examples/README.rst says it), not alphabetical.
    'within_subsection_order': _gallery_order(),
    # Animations (FuncAnimation objects an example keeps) are embedded as
    # JavaScript players (matplotlib's to_jshtml: no ffmpeg needed).
    'matplotlib_animations': (True, 'jshtml'),
    'reset_modules': ('matplotlib', 'seaborn'),
    'show_memory': False,
    'min_reported_time': 0,
    # No "computation times" pages: sphinx-gallery draws them with jQuery and
    # DataTables from CDNs, the only scripts of the site that need a network.
    'write_computation_times': False,
    # Run the examples in as many processes as Sphinx's "-j N" (joblib); the
    # examples are independent and take 1-70 s each.
    'parallel': True,
}

# -- Benchmarks page: every table and figure benchmarks/ wrote ------------------
#
# benchmarks.md has one section per benchmark, which includes that
# benchmark's tables (``benchmarks/results/*.md``) and figures (``*.png``) as
# the scripts wrote them: numbers are never copied by hand. A table or figure
# that no section names yet (a new benchmark) is not left out: it is
# included at the end of the page, under "More results", from a generated
# file.


def _write_benchmark_includes():
    target = HERE / '_generated' / 'benchmark_results.md'
    target.parent.mkdir(exist_ok=True)
    page = (HERE / 'benchmarks.md').read_text()
    lines = []
    for path in sorted(glob.glob(str(ROOT / 'benchmarks' / 'results' / '*'))):
        name = os.path.basename(path)
        if not name.endswith(('.md', '.png')) or f'results/{name}' in page:
            continue
        # Nested includes resolve paths from the including page (doc/).
        rel = os.path.relpath(path, HERE)
        if name.endswith('.md'):
            lines += [f'```{{include}} {rel}', ':heading-offset: 2', '```', '']
        else:
            lines += [f'```{{figure}} {rel}', f':alt: {name}', '', f'`{name}`', '```', '']
    if lines:
        lines = ['## More results', '',
                 'Written by a benchmark that has no section above yet.', ''] + lines
    else:
        lines = ['% Every table and figure in benchmarks/results/ has its section.', '']
    text = '\n'.join(lines)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


_write_benchmark_includes()

# -- HTML ------------------------------------------------------------------------

html_theme = 'pydata_sphinx_theme'
html_title = f'odl_atoms {version}'
html_static_path = ['_static']

# -- Equations: MathJax shipped with the site, not loaded from a CDN --------------
#
# sphinx.ext.mathjax loads MathJax from a CDN by default, so without network
# the equations stay raw TeX. The package sphinx-mathjax-offline (the doc
# extra) vendors MathJax 3.2.2; its ``static/`` folder is added to the
# static paths, so that Sphinx copies it to ``_static/mathjax/`` of the site,
# and ``mathjax_path`` points there. (The package is not loaded as a Sphinx
# extension: it declares no parallel safety, which makes "sphinx -j N" read
# serially and warn, and the warning fails the "-W" build.)


def _mathjax_static():
    import importlib.util
    spec = importlib.util.find_spec('sphinx-mathjax-offline')
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('the documentation needs sphinx-mathjax-offline '
                           '(MathJax shipped with the site): pip install -e ".[doc]"')
    return str(Path(spec.submodule_search_locations[0]) / 'static')


html_static_path.append(_mathjax_static())
mathjax_path = 'mathjax/tex-chtml.js'
html_theme_options = {
    'navigation_with_keys': False,
    'show_toc_level': 2,
    'secondary_sidebar_items': ['page-toc'],
}
html_show_sourcelink = False

# -- Command-line help, generated from the parser itself --------------------------


def _write_cli_help():
    import io
    from contextlib import redirect_stdout

    from odl_atoms import cli

    folder = HERE / '_generated'
    folder.mkdir(exist_ok=True)
    parser = cli.build_parser()
    texts = {'odl-atoms': parser.format_help()}
    try:    # the table of subcommands (odl_atoms/cli/main.py)
        from odl_atoms.cli.main import COMMANDS
        commands = [name for name, _ in COMMANDS]
    except ImportError:
        commands = ['demo', 'simulate', 'reconstruct', 'evaluate', 'sweep']
    for command in commands:
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            try:
                parser.parse_args([command, '--help'])
            except SystemExit:
                pass
        texts[command] = buffer.getvalue()
    os.environ.setdefault('COLUMNS', '80')
    for name, text in texts.items():
        path = folder / f'cli-{name}.txt'
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


os.environ['COLUMNS'] = '80'
_write_cli_help()

# -- API reference, generated from the package's __all__ ---------------------------
#
# api.rst is written here at every build from each module's ``__all__``, so
# that names added to the package (new solvers, say) appear in the reference
# without anyone remembering to list them. Each section shows the module's
# docstring and a table of its public names; every name gets its own page
# (autosummary), documented under the name users import: ``odl_atoms.X``.

_API_SECTIONS = [
    ('Atoms and spaces', ['space', 'atoms']),
    ('Forward operator', ['operators']),
    ('Energy and objective', ['functionals', 'objective']),
    ('Solvers', ['solvers']),
    ('Learned post-processing', ['learned']),
    ('Phantoms', ['phantoms']),
    ('Simulation and noise', ['simulation', 'noise']),
    ('Choosing alpha', ['parameter_choice']),
    ('Parameter sweeps', ['sweep']),
    ('Scores', ['metrics']),
    ('Precision of positions', ['precision']),
    ('Files', ['io']),
    ('Figures', ['plot']),
]


def _public_modules():
    """Submodules whose names odl_atoms exports (in odl_atoms.__init__)."""
    import types
    exported = set(odl_atoms.__all__)
    return [name for name, value in vars(odl_atoms).items()
            if isinstance(value, types.ModuleType)
            and value.__name__ == f'odl_atoms.{name}'
            and exported & set(getattr(value, '__all__', ()))]


def _write_api_page():
    listed = [m for _, modules in _API_SECTIONS for m in modules]
    sections = list(_API_SECTIONS)
    extra = [m for m in _public_modules() if m not in listed]
    if extra:
        sections.append(('More', extra))
    exported = set(odl_atoms.__all__)
    lines = [
        '.. This file is generated by conf.py from the package; do not edit.',
        '',
        'API reference',
        '=============',
        '',
        'Everything below is importable from the package itself: '
        '``import odl_atoms as oa; oa.ADCG``. The sections follow the '
        "package's modules; each starts with the module's own introduction.",
        '',
        '.. currentmodule:: odl_atoms',
        '',
    ]
    for title, modules in sections:
        lines += [title, '-' * len(title), '']
        for module_name in modules:
            module = getattr(odl_atoms, module_name)
            names = [n for n in module.__all__ if n in exported]
            lines += [f'``odl_atoms.{module_name}``', '~' * (len(module_name) + 14), '',
                      f'.. automodule:: odl_atoms.{module_name}',
                      '   :no-index:', '',
                      '.. currentmodule:: odl_atoms', '',
                      '.. autosummary::', '   :toctree: api/generated', '']
            lines += [f'   {name}' for name in names]
            lines += ['']
    text = '\n'.join(lines)
    path = HERE / 'api.rst'
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


_write_api_page()


# -- Constants: their ``#:`` comments ------------------------------------------------
#
# The package re-exports its constants (``odl_atoms.LATTICES_2D`` is defined
# in ``odl_atoms.defaults``); autodoc looks for a ``#:`` comment in the
# package's own __init__.py, finds none and shows the docstring of the value's
# type (``tuple``, ``float``). The comment is taken from the module that
# assigns the name instead.

def _constant_comments():
    import pkgutil
    from sphinx.pycode import ModuleAnalyzer
    comments = {}
    for info in pkgutil.walk_packages(odl_atoms.__path__, 'odl_atoms.'):
        try:
            docs = ModuleAnalyzer.for_module(info.name).find_attr_docs()
        except Exception:   # a module without source: nothing to read
            continue
        for (scope, name), lines in docs.items():
            if scope == '' and name in odl_atoms.__all__:
                comments.setdefault(name, list(lines))
    return comments


_CONSTANT_COMMENTS = _constant_comments()


def _constant_docstring(app, what, name, obj, options, lines):
    short = name.rpartition('.')[2]
    if what == 'data' and name == f'odl_atoms.{short}' \
            and short in _CONSTANT_COMMENTS:
        lines[:] = _CONSTANT_COMMENTS[short]


def setup(app):
    import inspect
    from sphinx.util import logging
    app.connect('autodoc-process-docstring', _constant_docstring)
    # -W makes this an error: a new constant without its comment.
    for name in odl_atoms.__all__:
        value = getattr(odl_atoms, name)
        if not (inspect.isclass(value) or inspect.isroutine(value)
                or inspect.ismodule(value) or name in _CONSTANT_COMMENTS):
            logging.getLogger(__name__).warning(
                f'odl_atoms.{name} has no #: comment where it is assigned')
