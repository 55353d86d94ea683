"""The getting-started page's steps print what the page shows.

The page (doc/getting_started.rst) shows each command-line step as a
``console`` block (``$ odl-atoms ...`` and the lines it prints) and each
Python step as a ``python`` block followed by a ``text`` block of its
output. These tests read the blocks from the page, run the commands through
`odl_atoms.cli.main` and the Python through ``exec`` in a temporary folder,
in the page's order, and check that the lines the page shows are printed:
the stable parts (atom counts, table scores, F1, the certificate's
local-minimum line, the verdict), with timings and RMSDs masked; lines of
other kinds (file lists, certificate details) are shown but not compared.
"""

import contextlib
import io
import re
import shlex
from pathlib import Path

import matplotlib
import pytest

from odl_atoms.cli import main

matplotlib.use('Agg')

PAGE = Path(__file__).resolve().parents[1] / 'doc' / 'getting_started.rst'

#: Table columns that are not compared (they vary from machine to machine
#: or with the last digits of a position).
VOLATILE_COLUMNS = ('time (s)', 'RMSD (Å)', 'max dist (Å)')


def page_blocks(text=None):
    """The page's ``code-block`` directives in order: ``(language, lines)``
    with the block's indentation removed."""
    lines = (PAGE.read_text() if text is None else text).splitlines()
    blocks, k = [], 0
    while k < len(lines):
        match = re.match(r'\.\. code-block:: (\w+)\s*$', lines[k])
        k += 1
        if not match:
            continue
        body = []
        while k < len(lines) and (not lines[k].strip()
                                  or lines[k].startswith('   ')):
            body.append(lines[k][3:])
            k += 1
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        blocks.append((match.group(1), body))
    return blocks


def console_steps(body):
    """``[(argv, shown output lines)]`` of a console block."""
    steps = []
    for line in body:
        if line.startswith('$ '):
            steps.append((shlex.split(line[2:]), []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def python_steps(blocks):
    """``[(code, shown output lines)]``: each python block and the text
    block after it."""
    steps = []
    for (kind, body), (after, shown) in zip(blocks, blocks[1:] + [('', [])]):
        if kind == 'python':
            steps.append(('\n'.join(body), shown if after == 'text' else []))
    return steps


def _mask(line):
    line = re.sub(r'\b\d+(\.\d+)? s\b', '<t> s', line)
    return re.sub(r'rmsd=[\d.]+', 'rmsd=<r>', line.rstrip())


def checked_lines(lines):
    """The stable parts of output lines, as compared: table rows without
    the volatile columns, the verdict, the local-minimum line, atom counts,
    `AtomMatch` lines (RMSD masked), counts of frames and uncertain atoms."""
    found, header = [], None
    for line in lines:
        text = line.strip()
        if text.startswith('|'):
            cells = [c.strip() for c in text.strip('|').split('|')]
            if all(set(c) <= set('-:') for c in cells):
                continue
            if 'method' in cells:
                header = cells
            keep = [c for name, c in zip(header or cells, cells)
                    if name not in VOLATILE_COLUMNS]
            found.append('| ' + ' | '.join(keep))
        elif text.startswith(('verdict:', 'local minimum:', 'AtomMatch(')):
            found.append(_mask(text))
        elif re.match(r'^\d+ (frames|uncertain atoms)', text):
            found.append(_mask(text))
        else:
            for pattern in (r'^[A-Za-z][\w +]*: \d+ atoms\b',
                            r'ground truth \d+ atoms'):
                match = re.search(pattern, text)
                if match:
                    found.append(match.group(0))
    return found


def assert_shows(printed, shown, step):
    """Every checked line the page shows is among those printed."""
    expected = checked_lines(shown)
    actual = checked_lines(printed.splitlines())
    missing = [line for line in expected if line not in actual]
    assert not missing, (
        f'{step}: the page shows lines the step no longer prints; update '
        f'doc/getting_started.rst.\nmissing: {missing}\nprinted:\n{printed}')


def test_page_has_the_steps():
    blocks = page_blocks()
    consoles = [console_steps(body) for kind, body in blocks
                if kind == 'console']
    commands = [argv for steps in consoles for argv, _ in steps]
    assert [argv[1] for argv in commands[:2]] == ['demo', 'simulate']
    assert all(argv[0] == 'odl-atoms' for argv in commands)
    assert all(shown for steps in consoles for _, shown in steps)
    # Every reconstruction on the page shows its verdict and its scores.
    for steps in consoles:
        for argv, shown in steps:
            if argv[1] == 'reconstruct':
                assert any(line.startswith('verdict: ') for line in shown)
                assert any('F1' in line for line in checked_lines(shown))
    python = python_steps(blocks)
    assert len(python) >= 3 and all(shown for _, shown in python)


def test_the_checks_read_the_output():
    # The comparison masks timings and RMSDs, drops volatile table columns,
    # and still tells different scores apart.
    shown = ['ADCG: 50 atoms in 24.3 s, 3 iterations',
             '| method | atoms |    F1 | time (s) |',
             '|-------:|------:|------:|---------:|',
             '|   adcg |    50 | 1.000 |     24.3 |',
             'verdict: all 4 starts agree on the 50 atoms; local minimum',
             'AtomMatch(48 of 48 reference, f1=1.000, rmsd=0.0285)']
    printed = '\n'.join(['ADCG: 50 atoms in 9.1 s, 3 iterations',
                         '| method | atoms | F1 | time (s) |',
                         '| adcg | 50 | 1.000 | 9.1 |',
                         'verdict: all 4 starts agree on the 50 atoms; '
                         'local minimum',
                         'AtomMatch(48 of 48 reference, f1=1.000, '
                         'rmsd=0.0291)'])
    assert_shows(printed, shown, 'example')
    with pytest.raises(AssertionError, match='no longer prints'):
        assert_shows(printed.replace('1.000 |', '0.320 |'), shown, 'example')
    with pytest.raises(AssertionError, match='no longer prints'):
        assert_shows(printed.replace('all 4', 'all 3'), shown, 'example')


def _run_console_blocks(select, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ran = 0
    for kind, body in page_blocks():
        if kind != 'console':
            continue
        for argv, shown in console_steps(body):
            if not select(argv):
                continue
            capsys.readouterr()
            status = main(argv[1:])
            printed = capsys.readouterr().out
            assert status == 0, f'{shlex.join(argv)} exited with {status}'
            assert_shows(printed, shown, shlex.join(argv))
            ran += 1
    return ran


@pytest.mark.slow
def test_demo_step(tmp_path, monkeypatch, capsys):
    assert _run_console_blocks(lambda argv: argv[1] == 'demo', tmp_path,
                               monkeypatch, capsys) == 1


@pytest.mark.slow
def test_command_line_steps(tmp_path, monkeypatch, capsys):
    """simulate, reconstruct (with and without --lattice), evaluate."""
    ran = _run_console_blocks(lambda argv: argv[1] != 'demo', tmp_path,
                              monkeypatch, capsys)
    assert ran >= 4


@pytest.mark.slow
def test_python_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {'__name__': '__tutorial__'}
    steps = python_steps(page_blocks())
    for k, (code, shown) in enumerate(steps):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, f'getting_started.rst, python step {k + 1}',
                         'exec'), namespace)
        assert_shows(buffer.getvalue(), shown, f'python step {k + 1}')
    assert (tmp_path / 'atoms.extxyz').is_file()
    assert (tmp_path / 'run.gif').is_file()
