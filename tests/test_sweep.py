"""Tests of odl_atoms.sweep: grids of reconstructions on a real Dask cluster.

One ``distributed.LocalCluster`` (2 single-threaded worker processes) serves
the module; the problems are tiny (2 x 2 lattices, 3-5 atoms, 24 detector
cells), so each reconstruction takes well under a second.
"""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import odl_atoms as oa
from odl_atoms.cli import main
from odl_atoms.sweep import (SweepTask, run_sweep, run_sweep_task,
                             sweep_tasks)

TINY = dict(shape=(2, 2), n_detector=24, angles_deg=(0, 60, 120))


@pytest.fixture(scope='module')
def client():
    distributed = pytest.importorskip('dask.distributed')
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True,
        dashboard_address=':0', silence_logs=logging.CRITICAL)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def tiny_tasks():
    """4 good tasks: 2 phantoms x (ADCG without energy, SIRT), 1 % noise."""
    return sweep_tasks(phantom=['vacancy', 'interstitial'], noise=0.01,
                       solver=['adcg', 'sirt'], alpha=0, **TINY)


# --- Tasks and keys (no cluster)


def test_key_is_stable_and_discriminating():
    base = SweepTask('vacancy', angles_deg=[0, 90], noise=0, seed=1,
                     solver_options={'n_iter': 50, 'tol': 0.5})
    same = SweepTask('vacancy', angles_deg=(0.0, np.float64(90)),
                     noise=0.0, seed=np.int64(1),
                     solver_options=[('tol', 0.5), ('n_iter', 50)])
    assert same == base and same.key == base.key
    # A hash of the parameters' text, not Python's per-process hash(): the
    # same in a fresh interpreter (with another hash seed).
    code = ('from odl_atoms.sweep import SweepTask; print(SweepTask('
            "'vacancy', angles_deg=[0, 90], noise=0, seed=1, solver_options="
            "{'n_iter': 50, 'tol': 0.5}).key)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True, cwd=_repo(),
                         env=dict(os.environ, PYTHONHASHSEED='123'))
    assert out.stdout.strip() == base.key
    others = [SweepTask('interstitial', angles_deg=[0, 90], noise=0, seed=1),
              SweepTask('vacancy', angles_deg=[0, 45], noise=0, seed=1),
              SweepTask('vacancy', angles_deg=[0, 90], noise=1e-9, seed=1),
              SweepTask('vacancy', angles_deg=[0, 90], noise=0, seed=2),
              SweepTask('vacancy', angles_deg=[0, 90], noise=0, seed=1,
                        solver='sirt'),
              SweepTask('vacancy', angles_deg=[0, 90], noise=0, seed=1,
                        alpha=0),
              SweepTask('vacancy', angles_deg=[0, 90], noise=0, seed=1,
                        solver_options={'n_iter': 51, 'tol': 0.5})]
    keys = {t.key for t in others} | {base.key}
    assert len(keys) == len(others) + 1


def test_bad_task_parameters():
    with pytest.raises(ValueError, match='sigma'):
        SweepTask(sigma=-1)
    with pytest.raises(ValueError, match='noise'):
        SweepTask(noise=float('nan'))
    with pytest.raises(TypeError, match='plain'):
        SweepTask(solver_options={'callback': print})
    with pytest.raises(TypeError, match='unknown sweep parameter'):
        sweep_tasks(phantoms=['vacancy'])


def test_grid_expansion():
    tasks = sweep_tasks(phantom=['vacancy', 'interstitial'],
                        angles_deg=[[0, 90], [0, 45, 90]], noise=[0, 0.01],
                        seed=[0, 1], solver=['adcg', 'sirt'], alpha=[0, 1e-3])
    # SIRT takes no alpha: its two alphas are one task.
    assert len(tasks) == 2 * 2 * 2 * 2 * (2 + 1)
    assert len({t.key for t in tasks}) == len(tasks)
    assert {t.alpha for t in tasks if t.solver == 'sirt'} == {None}
    assert {t.angles_deg for t in tasks} == {(0.0, 90.0), (0.0, 45.0, 90.0)}
    # A flat list of numbers is one angle set.
    assert len(sweep_tasks(angles_deg=[0, 60, 120])) == 1


# --- On the cluster


def test_cluster_rows_equal_in_process_and_failures_are_reported(
        client, tmp_path):
    good = tiny_tasks()
    bad = SweepTask('no_such_phantom', **TINY)
    tasks = good[:2] + [bad] + good[2:]
    result = run_sweep(tasks, scheduler=client, cache_dir=tmp_path,
                       progress=False)
    assert [row['key'] for row in result.rows] == [t.key for t in tasks]
    # The failed task is a row with its error; the others all succeeded.
    assert [row['key'] for row in result.failed] == [bad.key]
    # (Input the user can fix: the toolkit's ValidationError.)
    assert result.failed[0]['error'].startswith(
        'ValidationError: unknown phantom')
    assert 'no_such_phantom' in result.failed[0]['traceback']
    assert 'failed: ValidationError' in result.as_markdown()
    ok = [row for row in result.rows if not row['error']]
    assert len(ok) == 4
    # Run in the worker processes, not here.
    assert all(int(row['worker'].split(':')[1]) != os.getpid() for row in ok)
    for task, row in zip(good, ok):
        here = run_sweep_task(task)
        for name in ('n_true', 'n_found', 'f1', 'exact', 'precision',
                     'recall'):
            assert row[name] == here[name], (task.label(), name)
        assert row['rmsd'] == pytest.approx(here['rmsd'], rel=1e-6, abs=1e-9)
    # Independent of the sweep code: the vacancy SIRT task done by hand.
    phantom = oa.defect_phantom('vacancy', shape=(2, 2))
    measured = oa.simulate(phantom.measure, np.radians([0, 60, 120]), 0.43,
                           n_detector=24, noise=0.01, seed=0)
    direct = oa.SIRT().solve(oa.Problem(measured.operator(), measured.element(),
                                        noise_std=measured.noise_std))
    match = oa.match_atoms(phantom.measure, direct.measure)
    row = next(r for r in ok if r['phantom'] == 'vacancy'
               and r['solver'] == 'sirt')
    assert row['f1'] == match.f1 and row['n_true'] == phantom.n_atoms == 3
    assert row['n_found'] == direct.n_atoms
    # Only successes are cached (a failure is retried next time).
    assert sorted(p.stem for p in tmp_path.glob('*.json')) == sorted(
        t.key for t in good)


def test_cache_runs_only_missing_tasks(client, tmp_path):
    tasks = tiny_tasks()
    first = run_sweep(tasks[:2], scheduler=client, cache_dir=tmp_path,
                      progress=False)
    assert (first.n_run, first.n_reused) == (2, 0)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob('*.json')}
    assert len(stamps) == 2

    second = run_sweep(tasks, scheduler=client, cache_dir=tmp_path,
                       progress=False)
    assert (second.n_run, second.n_reused) == (2, 2)
    assert [row['cached'] for row in second.rows] == [True, True, False,
                                                      False]
    assert second.rows[:2] == [dict(r, cached=True) for r in first.rows]
    for name, stamp in stamps.items():  # reused files were not rewritten
        assert (tmp_path / name).stat().st_mtime_ns == stamp

    # Everything cached: nothing is submitted, so an unreachable scheduler
    # does not matter (connecting to it would fail).
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob('*.json')}
    third = run_sweep(tasks, scheduler='tcp://127.0.0.1:9', cache_dir=tmp_path,
                      progress=False)
    assert (third.n_run, third.n_reused) == (0, 4)
    assert all(row['cached'] for row in third.rows)
    assert {p.name: p.stat().st_mtime_ns
            for p in tmp_path.glob('*.json')} == stamps
    assert [dict(r, cached=False) for r in third.rows] == [
        dict(r, cached=False) for r in second.rows]


def test_default_local_cluster(tmp_path):
    pytest.importorskip('dask.distributed')
    tasks = tiny_tasks()[:2]
    result = run_sweep(tasks, n_workers=2, progress=False)
    assert not result.failed and len(result.rows) == 2
    assert all(row['worker'] and row['f1'] == 1.0 for row in result.rows)
    text = result.to_csv(tmp_path / 'rows.csv')
    assert (tmp_path / 'rows.csv').read_text() == text
    assert text.splitlines()[0].startswith('key,phantom,angles')


def test_missing_dask_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'distributed', None)
    with pytest.raises(ImportError, match=r'odl_atoms\[sweep\]'):
        run_sweep([SweepTask(**TINY)], progress=False)
    # In-process runs need no Dask.
    result = run_sweep([SweepTask(solver='sirt', **TINY)],
                       scheduler='synchronous', progress=False)
    assert result.rows[0]['f1'] == 1.0


def test_import_does_not_import_dask():
    code = ('import sys, odl_atoms; print(odl_atoms.__file__); '
            "print(any(m.split('.')[0] in ('dask', 'distributed') "
            'for m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True, cwd=_repo())
    path, imported = out.stdout.split()
    assert path == oa.__file__ and imported == 'False'


def _repo():
    return os.path.dirname(os.path.dirname(os.path.abspath(oa.__file__)))


# --- Command line


def test_cli_grid_on_scheduler(client, tmp_path, capsys):
    table = tmp_path / 'grid.csv'
    cache = tmp_path / 'cache'
    argv = ['-q', 'sweep', '--grid', '--phantoms', 'vacancy', 'interstitial',
            '--shape', '2', '2', '--detector', '24', '--angles', '0', '60',
            '120', '--noise', '0.01', '--solvers', 'adcg', 'sirt',
            '--alphas', '0', '--scheduler', client.scheduler.address,
            '--cache', str(cache), '--table', str(table)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert '4 tasks: 4 run, 0 reused from the cache, 0 failed' in out
    lines = table.read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith('key,')
    assert len(list(cache.glob('*.json'))) == 4
    # The same rows as the API gives for the same grid.
    rows = run_sweep(tiny_tasks(), scheduler=client, cache_dir=cache,
                     progress=False).rows
    assert all(row['cached'] for row in rows)
    assert main(argv) == 0
    assert '4 tasks: 0 run, 4 reused' in capsys.readouterr().out


@pytest.mark.parametrize('argv, message', [
    (['sweep', '--grid', '--phantoms', 'twin'], 'unknown phantom'),
    (['sweep', '--grid', 'data.npz'], 'reads no data file'),
    (['sweep', '--grid', '--figure', 'x.png'], '--figure'),
    (['sweep', '--grid', '--table', 'x.txt2'], '.md'),
    (['sweep', '--grid', '--angles', '0', '0'], 'different'),
    (['sweep', '--noise', '0.1'], 'add --grid'),
    (['sweep'], 'projection-data file'),
])
def test_cli_grid_bad_input(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and 'Traceback' not in err
