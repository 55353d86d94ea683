"""``odl-atoms``: the table of subcommands and the error handling.

Each subcommand is a module of this package with

- ``add_arguments(parser)``: its options (argparse);
- ``run(args)``: the work, returning the exit status (0, or 1 when some of
  the work failed); it imports what it needs (ODL, matplotlib, ...) inside,
  so that ``odl-atoms --help`` loads none of it;
- optionally ``HELP`` (the line in the list of commands), ``DESCRIPTION``
  and ``EPILOG`` for its ``--help`` (default: the module docstring's first
  line, and no epilog).

A new subcommand is a new module and one line in `COMMANDS`.
"""

import argparse
import importlib
import os
import sys

from odl_atoms.cli.common import (OPTIONAL_DEPENDENCIES, Formatter,
                                  add_common_options)
from odl_atoms.errors import ValidationError

__all__ = ('main', 'build_parser', 'COMMANDS')

#: The subcommands, in the order of the help: (name, module).
COMMANDS = [
    ('demo', 'odl_atoms.cli.demo'),
    ('prepare', 'odl_atoms.cli.prepare'),
    ('simulate', 'odl_atoms.cli.simulate'),
    ('reconstruct', 'odl_atoms.cli.reconstruct'),
    ('evaluate', 'odl_atoms.cli.evaluate'),
    ('sweep', 'odl_atoms.cli.sweep'),
]


class _Parser(argparse.ArgumentParser):
    """Argparse with the toolkit's exit status for usage errors (2)."""


def build_parser():
    """Return the `argparse.ArgumentParser` of ``odl-atoms``."""
    from odl_atoms import __version__

    parser = _Parser(
        prog='odl-atoms', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Grid-free atomic electron tomography: atom positions '
                    'from a few projections.',
        epilog='Angles are in degrees on the command line, lengths in '
               'angstrom.\nStart with "odl-atoms demo"; "odl-atoms COMMAND -h" '
               'explains a command.')
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s {__version__}')
    add_common_options(parser, top=True)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, module_name in COMMANDS:
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or '').strip().split('\n')[0]
        p = sub.add_parser(
            name, formatter_class=Formatter,
            help=getattr(module, 'HELP', summary),
            description=getattr(module, 'DESCRIPTION', summary),
            epilog=getattr(module, 'EPILOG', None))
        module.add_arguments(p)
        add_common_options(p)
        p.set_defaults(run=module.run)
    return parser


def _explicit_options(argv):
    """Destinations of the options written on the command line."""
    names = set()
    for token in argv:
        if token.startswith('--'):
            names.add(token[2:].split('=', 1)[0].replace('-', '_'))
    if 'r_min' in names:
        names.add('potential')
    return names


def main(argv=None):
    """Run ``odl-atoms`` with ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success; 2 for input the user can fix (a
        `~odl_atoms.errors.ValidationError`, found before the work); 1 when
        the run failed (a bug, memory or input/output failing during the
        run; the message points to ``--debug``), or when some of a sweep's
        reconstructions failed; 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = '--debug' in argv
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse: usage errors, --help, --version
            return int(exc.code or 0)
        if args.command is None:
            parser.print_help()
            return 2
        args._explicit = _explicit_options(argv)
        return args.run(args) or 0
    except KeyboardInterrupt:
        print('\nodl-atoms: interrupted; no partial output was written',
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``odl-atoms ... | head``):
        # not an error; silence the final flush of the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except ImportError as exc:
        root = (exc.name or '').split('.')[0]
        if debug or root not in OPTIONAL_DEPENDENCIES:
            if debug:
                raise
            print(f'odl-atoms: internal error: ImportError: {exc}\n(run again '
                  f'with --debug for the traceback, and please report it)',
                  file=sys.stderr)
            return 1
        print(f'odl-atoms: error: this needs the optional package {root!r}, '
              f'which is not installed: {OPTIONAL_DEPENDENCIES[root]}',
              file=sys.stderr)
        return 2
    except ValidationError as exc:
        # The library's and the command line's own error (UsageError is
        # one): input the user can fix, found before the work.
        if debug:
            raise
        print(f'odl-atoms: error: {_one_line(exc)}', file=sys.stderr)
        return 2
    except MemoryError as exc:
        # The memory check before the run (odl_atoms.resources) estimates the
        # large arrays; this is what it missed, or memory taken meanwhile.
        if debug:
            raise
        detail = _one_line(exc) if str(exc) else 'no details'
        print(f'odl-atoms: error: out of memory during the run ({detail}); '
              f'free memory or make the problem smaller (fewer detector '
              f'cells, a coarser --grid-spacing, a smaller box)\n'
              f'(run again with --debug for the traceback)', file=sys.stderr)
        return 1
    except OSError as exc:
        # Files and folders were checked before the work; this one failed
        # during it (a full disk, a file system turned read-only, ...).
        if debug:
            raise
        print(f'odl-atoms: error: input/output failed during the run: '
              f'{type(exc).__name__}: {_one_line(exc)}\n(run again with '
              f'--debug for the traceback)', file=sys.stderr)
        return 1
    except Exception as exc:  # a bug (a plain ValueError too): say so
        if debug:
            raise
        print(f'odl-atoms: internal error: {type(exc).__name__}: '
              f'{_one_line(exc)}\n(run again with --debug for the traceback, '
              f'and please report it)', file=sys.stderr)
        return 1


def _one_line(exc):
    """The message of ``exc`` on one line (or its class name)."""
    return ' '.join(str(exc).split()) or type(exc).__name__


if __name__ == '__main__':
    sys.exit(main())
