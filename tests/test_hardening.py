"""Hardening (issue 22): bad input is refused before any work, resources are
bounded, files can be trusted.

One test (or a few) per item of the issue, through the real entry points:
``odl_atoms.cli.main`` (the console script's function) and, where a process
must really die, ``python -m odl_atoms`` or a Python child killed with
SIGKILL. Each refusal is checked for its exit status (2: input the user can
fix; 1: the run failed), for a message that names the cause and the fix, and
for what must not happen (no output written, no work started). The memory
estimates are checked against the peaks `tracemalloc` measures, and the
phantom counts against the atoms ASE builds.

Every test here fails on the code before the hardening (commit b9df131):
see the report of issue 22 for the old behaviour of each case.
"""

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings

import numpy as np
import pytest

import odl_atoms as oa
from odl_atoms.cli import main
from odl_atoms.errors import ValidationError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(oa.__file__)))


def run(capsys, *args):
    """Run ``odl-atoms args``; return (status, stdout, stderr)."""
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err):
    """The error line of ``err`` (and no traceback)."""
    assert 'Traceback' not in err
    lines = [line for line in err.splitlines() if 'error' in line]
    assert lines, err
    return lines[-1]


def temporaries(folder):
    return sorted(name for name in os.listdir(folder) if '.tmp' in name)


@pytest.fixture(scope='module')
def measured():
    """3 x 3 lattice with a vacancy, 0/45/90 degrees, 48 cells, 1 % noise."""
    phantom = oa.defect_phantom('vacancy', shape=(3, 3))
    return oa.simulate(phantom.measure, np.radians([0, 45, 90]), 0.43,
                       n_detector=48, noise=0.01, seed=0)


@pytest.fixture(scope='module')
def data_file(measured, tmp_path_factory):
    path = tmp_path_factory.mktemp('data') / 'small.npz'
    oa.write_projections(path, measured)
    return path


def write_variant(path, measured, **changes):
    oa.write_projections(path, dataclasses.replace(measured, **changes))
    return path


def forbid_reconstruction(monkeypatch):
    """Make any reconstruction fail the test: the refusals must come first."""
    from odl_atoms import reconstruction

    def fail(*args, **kwargs):
        raise AssertionError('a reconstruction started before the refusal')
    monkeypatch.setattr(reconstruction, '_run_solver', fail)


# --- 1. A corrupted compressed .npz: one line, status 2, in every command


def test_corrupted_npz_is_exit_2_in_every_command(data_file, tmp_path,
                                                   capsys):
    import zipfile
    path = tmp_path / 'corrupt.npz'
    arrays = dict(np.load(data_file))
    np.savez_compressed(path, **arrays)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo('data.npy')
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + 20:start + 60] = b'\xff' * 40  # inside the deflate stream
    path.write_bytes(bytes(raw))
    truth = tmp_path / 'truth.extxyz'
    oa.write_atoms(truth, oa.defect_phantom('vacancy', shape=(3, 3)).measure)
    for argv in (['reconstruct', path, '-o', tmp_path / 'rec.extxyz'],
                 ['evaluate', truth, path],
                 ['sweep', path, '--alphas', '0']):
        status, _, err = run(capsys, *argv)
        assert status == 2, (argv[0], err)
        line = one_line_error(err)
        assert 'damaged' in line and 'corrupt.npz' in line


# --- 2. Memory: estimated before any allocation, refused with the option


@pytest.mark.parametrize('argv, option', [
    (['--detector', '1000000000'], '--detector'),
    (['--shape', '100000', '100000'], '--shape'),
    (['--phantom', 'octahedron', '--size', '2000'], '--size'),
])
def test_simulate_too_large_is_refused_before_allocating(argv, option,
                                                         tmp_path, capsys):
    out = tmp_path / 'big.npz'
    start = time.perf_counter()
    status, _, err = run(capsys, 'simulate', *argv, '-o', out)
    assert status == 2
    line = one_line_error(err)
    assert 'would need about' in line and 'iB of memory' in line
    assert option in line and '--max-memory' in line
    assert not out.exists() and not temporaries(tmp_path)
    # Refused from the sizes alone: nothing of that size was built.
    assert time.perf_counter() - start < 30


def test_memory_limit_override(tmp_path, capsys):
    out = tmp_path / 'small.npz'
    small = ['simulate', '--shape', '3', '3', '--detector', '48', '-o', out]
    # A limit below the job's estimate refuses it; the default lets it run.
    status, _, err = run(capsys, *small, '--max-memory', '1e-6')
    assert status == 2 and 'the limit of' in one_line_error(err)
    assert not out.exists()
    assert run(capsys, *small)[0] == 0 and out.exists()


def test_reconstruct_candidate_grid_and_box_refused(data_file, measured,
                                                    tmp_path, capsys,
                                                    monkeypatch):
    forbid_reconstruction(monkeypatch)
    out = tmp_path / 'rec.extxyz'
    status, _, err = run(capsys, 'reconstruct', data_file, '-o', out,
                         '--grid-spacing', '1e-6')
    assert status == 2
    line = one_line_error(err)
    assert 'candidate grid' in line and '--grid-spacing' in line
    assert 'PiB' in line or 'EiB' in line
    big = write_variant(tmp_path / 'bigbox.npz', measured,
                        box_min=[-1e5, -1e5], box_max=[1e5, 1e5])
    for solver, part in (('adcg', 'candidate grid'), ('sirt', 'image of')):
        status, _, err = run(capsys, 'reconstruct', big, '-o', out,
                             '--solver', solver, '--r-min', '2.885')
        assert status == 2
        line = one_line_error(err)
        assert part in line and '2e+05 x 2e+05' in line and 'TiB' in line
    assert not out.exists()


def test_hdf5_declaring_45_gib_is_refused_by_the_command(data_file, tmp_path,
                                                         capsys):
    h5py = pytest.importorskip('h5py')
    path = tmp_path / 'huge.h5'
    oa.write_projections(path, oa.read_projections(data_file))
    with h5py.File(path, 'a') as f:
        del f['data']
        f.create_dataset('data', shape=(3, 2 * 10 ** 9), dtype='<f8',
                         chunks=(1, 10 ** 6))  # declared, never written
    assert path.stat().st_size < 100_000
    status, _, err = run(capsys, 'reconstruct', path, '-o',
                         tmp_path / 'rec.extxyz')
    assert status == 2
    line = one_line_error(err)
    assert 'declares 44.7 GiB' in line and '--max-memory' in line


def test_sweep_tasks_are_sized_before_they_run(tmp_path, capsys,
                                               monkeypatch):
    from odl_atoms import sweep
    forbid_reconstruction(monkeypatch)
    status, _, err = run(capsys, 'sweep', '--grid', '--shape', '100000',
                         '100000', '--scheduler', 'synchronous', '--cache',
                         tmp_path / 'cache')
    assert status == 2
    line = one_line_error(err)
    assert 'would need about' in line and '--shape' in line
    assert not (tmp_path / 'cache').exists()
    # Two local workers run two tasks at once: twice the memory.
    task = sweep.SweepTask('vacancy', shape=(3, 3), n_detector=48)
    one = sweep.task_memory(task).total
    with pytest.raises(ValidationError, match='2 at once'):
        sweep.run_sweep([task, sweep.SweepTask('interstitial', shape=(3, 3),
                                               n_detector=48)],
                        n_workers=2, max_memory=1.5 * one, progress=False)


def test_library_checks_memory_too(measured):
    phantom = oa.defect_phantom('vacancy', shape=(3, 3))
    with pytest.raises(ValidationError, match='n_detector'):
        oa.simulate(phantom.measure, np.radians([0, 90]), 0.43,
                    n_detector=10 ** 9)
    with pytest.raises(ValidationError, match='max_memory'):
        oa.simulate(phantom.measure, np.radians([0, 90]), 0.43,
                    n_detector=48, max_memory=1000)
    with pytest.raises(ValidationError, match='grid_spacing'):
        oa.reconstruct(measured, alpha=0, grid_spacing=1e-6)


def peak_bytes(function):
    """Peak of the memory NumPy and Python allocate while ``function`` runs
    (NumPy reports its arrays to tracemalloc)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = function()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return result, peak


def test_estimates_bound_the_measured_peaks():
    from odl_atoms.resources import (ProblemSize, reconstruction_memory,
                                     simulation_memory)
    from odl_atoms.simulation import detector_size
    from odl_atoms.solvers.grid import scoring_grid

    # simulate: many detector cells, and many atoms.
    for phantom, n_detector in ((oa.defect_phantom('vacancy', shape=(3, 3)),
                                 200_000),
                                (oa.defect_phantom('vacancy',
                                                   shape=(60, 60)), 4000)):
        angles = np.radians([0, 45, 90])
        measured, peak = peak_bytes(lambda: oa.simulate(
            phantom.measure, angles, 0.43, n_detector=n_detector, noise=0.01,
            seed=0))
        size = detector_size(phantom.measure.space, angles, 0.43, n_detector)
        assert size.detector_shape == measured.data.shape[1:]
        estimate = simulation_memory(phantom.n_atoms, size).total
        assert peak <= estimate <= 10 * peak, (peak, estimate)
    # ADCG's candidate grid (2D windows) over a 60 x 60 box.
    space = oa.SparseMeasureSpace([-30, -30], [30, 30])
    measured = oa.simulate(space.element([[0.0, 0.0]]), np.radians([0, 60,
                                                                     120]),
                           0.43, detector_cell=0.344)
    op = measured.operator()
    (points, stencil, _), peak = peak_bytes(lambda: scoring_grid(op, 0.43))
    label, estimate, _ = next(
        part for part in reconstruction_memory(measured).parts
        if part[0].startswith('candidate grid'))
    assert f'{len(points)} points' in label
    assert peak <= estimate <= 4 * peak, (peak, estimate)
    # In 3D (separable correlations: no stored windows).
    space = oa.SparseMeasureSpace([-10, -10, -10], [10, 10, 10])
    measured = oa.simulate(space.element([[0.0, 0.0, 0.0]]),
                           np.radians([0, 60, 120]), 0.43, detector_cell=0.4)
    op = measured.operator()
    size = ProblemSize.of(measured)
    (points, stencil, _), peak = peak_bytes(lambda: (
        lambda grid: (grid, grid[1].correlate(measured.data)))(
            scoring_grid(op, 0.86))[0])
    label, estimate, _ = next(
        part for part in reconstruction_memory(size, grid_spacing=0.86).parts
        if part[0].startswith('candidate grid'))
    assert f'{len(points)} points' in label
    assert peak <= estimate <= 10 * peak, (peak, estimate)


def test_phantom_counts_match_the_built_phantoms():
    from odl_atoms.resources import phantom_atoms
    for shape in ('octahedron', 'decahedron', 'icosahedron'):
        for size in (2, 3, 5):
            built = oa.nanoparticle(shape, size=size).n_atoms
            assert phantom_atoms(shape, size=size) == built, (shape, size)
    assert phantom_atoms('slab', size=4) == oa.fcc_slab(size=(4, 4)).n_atoms
    for name in oa.phantoms.PHANTOM_NAMES_2D:
        built = oa.defect_phantom(name, shape=(5, 6)).n_atoms
        assert built <= phantom_atoms(name, shape=(5, 6)) <= built + 12


# --- 4 and 9. Output paths checked before any work


def unwritable_folder(tmp_path):
    """A folder this process cannot create files in (root ignores file
    modes: then a kernel file system that refuses new files)."""
    if hasattr(os, 'geteuid') and os.geteuid() != 0:
        folder = tmp_path / 'read-only'
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    for folder in ('/sys', '/proc'):
        try:
            fd = os.open(os.path.join(folder, 'odl-atoms-test'),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return folder
        os.close(fd)
        os.unlink(os.path.join(folder, 'odl-atoms-test'))
    pytest.skip('no unwritable folder found')


def test_unwritable_output_folder_found_before_the_work(data_file, tmp_path,
                                                        capsys, monkeypatch):
    forbid_reconstruction(monkeypatch)
    folder = unwritable_folder(tmp_path)
    for flag in ('-o', '--figure', '--json'):
        paths = {'-o': tmp_path / 'rec.extxyz', '--figure': None,
                 '--json': None}
        name = {'-o': 'rec.extxyz', '--figure': 'fig.png',
                '--json': 'rec.json'}[flag]
        paths[flag] = os.path.join(folder, name)
        argv = ['reconstruct', data_file, '-o', paths['-o']]
        for extra in ('--figure', '--json'):
            if paths[extra]:
                argv += [extra, paths[extra]]
        status, _, err = run(capsys, *argv)
        assert status == 2, err
        line = one_line_error(err)
        assert 'not writable' in line and str(folder) in line
    assert not (tmp_path / 'rec.extxyz').exists()


@pytest.mark.parametrize('extra, message', [
    # 9: ASE would write the "atom file" as a picture, then the figure
    # would overwrite it.
    (['-o', '{tmp}/same.png', '--figure', '{tmp}/same.png'],
     'cannot read it back'),
    (['-o', '{tmp}/atoms.png'], 'cannot read it back'),
    (['-o', '{tmp}/new.extxyz', '--figure', '{tmp}/./fig.png', '--json',
      '{tmp}/sub/../fig.png'], '.json'),
    (['-o', '{tmp}/rec.extxyz', '--init', '{tmp}/rec.extxyz'],
     'is the input --init'),
    (['-o', '{tmp}/new.extxyz', '--figure', '{tmp}/new.png', '--json',
      '{tmp}/new.json', '--init', '{tmp}/new.json'], 'is the input --init'),
])
def test_outputs_distinct_readable_and_not_inputs(extra, message, data_file,
                                                  measured, tmp_path, capsys,
                                                  monkeypatch):
    forbid_reconstruction(monkeypatch)
    (tmp_path / 'sub').mkdir()
    oa.write_atoms(tmp_path / 'rec.extxyz', measured.ground_truth())
    before = (tmp_path / 'rec.extxyz').read_bytes()
    argv = [a.format(tmp=tmp_path) for a in extra]
    status, _, err = run(capsys, 'reconstruct', data_file, *argv)
    assert status == 2, err
    assert message in one_line_error(err)
    assert sorted(os.listdir(tmp_path)) == ['rec.extxyz', 'sub']
    assert (tmp_path / 'rec.extxyz').read_bytes() == before


def test_an_input_through_a_linked_folder_is_recognised(data_file, tmp_path, capsys,
                                          monkeypatch):
    forbid_reconstruction(monkeypatch)
    (tmp_path / 'd').mkdir()
    os.symlink(tmp_path / 'd', tmp_path / 'link')
    oa.write_atoms(tmp_path / 'd' / 'r.extxyz',
                   oa.read_projections(data_file).ground_truth())
    status, _, err = run(capsys, 'reconstruct', data_file, '-o',
                         tmp_path / 'd' / 'r.extxyz', '--init',
                         tmp_path / 'link' / 'r.extxyz')
    assert status == 2 and 'is the input --init' in one_line_error(err)


# --- 5. Angles that look like degrees


def degree_file(path, data_file, edges):
    arrays = dict(np.load(data_file))
    arrays['angles'] = np.array([0.0, 45.0, 90.0])
    if not edges:
        del arrays['angle_min'], arrays['angle_max']
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize('edges', [False, True])
def test_angles_in_degrees(edges, data_file, tmp_path, capsys, monkeypatch):
    forbid_reconstruction(monkeypatch)
    path = degree_file(tmp_path / 'degrees.npz', data_file, edges)
    for argv in (['reconstruct', path, '-o', tmp_path / 'rec.extxyz'],
                 ['sweep', path, '--alphas', '0']):
        status, _, err = run(capsys, *argv)
        assert status == 2
        line = one_line_error(err)
        assert 'look like degrees' in line and 'np.radians' in line
        assert 'radians' in line
        if edges:
            assert 'angle_min' in line
    assert not (tmp_path / 'rec.extxyz').exists()


def test_library_refuses_angles_in_degrees(measured):
    from odl_atoms.checks import check_angles
    degrees = dataclasses.replace(measured, angles=[0.0, 45.0, 90.0],
                                  angle_min=None, angle_max=None)
    with pytest.raises(ValidationError, match='look like degrees'):
        oa.reconstruct(degrees, alpha=0)
    assert check_angles(np.radians([-70, 0, 70])) == []
    # A span beyond a half turn without stored edges: a warning.
    (message,) = check_angles([0.0, 2.0, 4.0])
    assert 'degrees' in message


# --- 6. Implausible input: the likely cause and the fix, before any work


@pytest.mark.parametrize('change, expected', [
    ({'scale': 1e6}, ['not in units of one atom', '--intensity',
                      '--weights', 'calibrat']),
    ({'scale': 1e300}, ['not in units of one atom', '--intensity']),
    ({'sigma': 0.01 * 9.38 * 2 ** 0.5 / 48}, ['below a tenth of a detector '
                                               'cell', '--sigma']),
    ({'sigma': 50.0}, ['larger than the box', '--sigma']),
])
def test_implausible_input_refused(change, expected, measured, tmp_path,
                                   capsys, monkeypatch):
    forbid_reconstruction(monkeypatch)
    changes = {}
    if 'scale' in change:
        changes = {'data': measured.data * change['scale'],
                   'noise_std': measured.noise_std * change['scale']}
    else:
        changes = {'sigma': change['sigma']}
    path = write_variant(tmp_path / 'odd.npz', measured, **changes)
    status, _, err = run(capsys, 'reconstruct', path, '-o',
                         tmp_path / 'rec.extxyz')
    assert status == 2
    line = one_line_error(err)
    for text in expected:
        assert text in line, text
    assert '--r-min' not in line


def test_too_few_detector_cells_refused(tmp_path, capsys, monkeypatch):
    forbid_reconstruction(monkeypatch)
    path = tmp_path / 'coarse.npz'
    assert run(capsys, 'simulate', '--detector', '4', '-o', path)[0] == 0
    status, _, err = run(capsys, 'reconstruct', path, '-o',
                         tmp_path / 'rec.extxyz')
    assert status == 2
    assert 'detector is too coarse' in one_line_error(err)


def test_data_scale_fix_is_right(measured, tmp_path, capsys):
    """The fixes the message names make the same data reconstructable:
    --intensity (the data divided by it) and --weights (atoms of that
    weight)."""
    scaled = write_variant(tmp_path / 'scaled.npz', measured,
                           data=measured.data * 1e6,
                           noise_std=measured.noise_std * 1e6)
    truth = measured.ground_truth()
    for fix in (['--intensity', '1e6'], ['--weights', '1e6']):
        out = tmp_path / 'rec.extxyz'
        status, _, err = run(capsys, '-q', 'reconstruct', scaled, '-o', out,
                             '--r-min', '2.885', *fix)
        assert status == 0, err
        assert oa.match_atoms(truth, oa.read_atoms(out)).exact, fix


def test_force_runs_implausible_input_with_warnings(measured, tmp_path,
                                                   capsys):
    path = write_variant(tmp_path / 'wide.npz', measured, sigma=12.0)
    out = tmp_path / 'rec.extxyz'
    status, _, err = run(capsys, 'reconstruct', path, '-o', out)
    assert status == 2 and 'larger than the box' in one_line_error(err)
    assert not out.exists()
    status, _, err = run(capsys, '-q', 'reconstruct', path, '-o', out,
                         '--force', '--r-min', '2.885')
    assert status == 0, err
    assert 'warning: the atom width sigma = 12' in err
    assert out.exists()


def test_time_limit_stops_the_command(data_file, tmp_path, capsys):
    out = tmp_path / 'rec.extxyz'
    start = time.perf_counter()
    status, _, err = run(capsys, '-q', 'reconstruct', data_file, '-o', out,
                         '--alpha', '0', '--time-limit', '0.001')
    assert status == 0, err
    assert 'stopped at the time limit of 0.001 s' in err
    assert '--time-limit' in err and out.exists()
    assert time.perf_counter() - start < 60
    status, _, err = run(capsys, 'reconstruct', data_file, '-o', out,
                         '--time-limit', '-3')
    assert status == 2 and '--time-limit' in err


def test_library_time_limit_and_checks(measured):
    from odl_atoms.checks import check_measurement
    start = time.perf_counter()
    result = oa.reconstruct(measured, alpha=0, time_limit=1e-3)
    assert result.info['stop_reason'] == 'time_limit'
    assert time.perf_counter() - start < 30
    scaled = dataclasses.replace(measured, data=measured.data * 1e6)
    with pytest.raises(ValidationError, match='intensity'):
        oa.reconstruct(scaled)
    # Huge values of both signs: a sane scale, an overflowing misfit.
    spikes = measured.data.copy()
    spikes[:, 0], spikes[:, 1] = 1e200, -1e200
    with pytest.raises(ValidationError, match='overflows'):
        check_measurement(dataclasses.replace(measured, data=spikes))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert check_measurement(measured) == []


# --- 7. Sweep cache integrity


def sweep_tasks_tiny():
    from odl_atoms.sweep import sweep_tasks
    return sweep_tasks(phantom=['vacancy', 'interstitial'], shape=(2, 2),
                       n_detector=24, angles_deg=(0, 60, 120), noise=0.01,
                       solver='sirt')


def test_tampered_and_malformed_cache_rows_are_rerun(tmp_path):
    from odl_atoms.sweep import _checksum, run_sweep

    tasks = sweep_tasks_tiny()
    first = run_sweep(tasks, scheduler='synchronous', cache_dir=tmp_path,
                      progress=False)
    assert not first.failed and first.n_run == 2
    files = [tmp_path / f'{task.key}.json' for task in tasks]
    # An edited result; a malformed one with a matching checksum; garbage.
    row = json.loads(files[0].read_text())
    row['f1'] = 0.5
    files[0].write_text(json.dumps(row))
    row = json.loads(files[1].read_text())
    row['f1'] = 'abc'
    row['checksum'] = _checksum(row)
    files[1].write_text(json.dumps(row))
    with pytest.warns(UserWarning) as caught:
        second = run_sweep(tasks, scheduler='synchronous', cache_dir=tmp_path,
                           progress=False)
    messages = [str(w.message) for w in caught]
    assert any(str(files[0]) in m and 'checksum' in m for m in messages)
    assert any(str(files[1]) in m and "'f1' is 'abc'" in m for m in messages)
    assert (second.n_run, second.n_reused) == (2, 0)
    assert [r['f1'] for r in second.rows] == [r['f1'] for r in first.rows]
    assert len(second.rejected) == 2 and 'rejected' in second.summary()
    second.as_markdown()
    files[0].write_text('{not json')
    with pytest.warns(UserWarning, match='not valid JSON'):
        third = run_sweep(tasks, scheduler='synchronous', cache_dir=tmp_path,
                          progress=False)
    assert (third.n_run, third.n_reused) == (1, 1)
    # Rewritten: the next run reuses everything, silently.
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        fourth = run_sweep(tasks, scheduler='synchronous',
                           cache_dir=tmp_path, progress=False)
    assert fourth.n_reused == 2 and not fourth.rejected


def test_cli_sweep_names_the_tampered_file(tmp_path, capsys):
    cache = tmp_path / 'cache'
    argv = ['sweep', '--grid', '--phantoms', 'vacancy', '--shape', '2', '2',
            '--detector', '24', '--angles', '0', '60', '120', '--solvers',
            'sirt', '--scheduler', 'synchronous', '--cache', cache, '-q']
    assert run(capsys, *argv)[0] == 0
    (path,) = cache.glob('*.json')
    row = json.loads(path.read_text())
    row['f1'] = '{:.3f}'
    path.write_text(json.dumps(row))
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    assert path.name in err and 'runs again' in err
    assert '1 tasks: 1 run, 0 reused' in out


# --- 8. SIGKILL while writing: no partial file, the stray removed later


def python_child(code, **kwargs):
    return subprocess.Popen([sys.executable, '-c', textwrap.dedent(code)],
                            cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def kill_when_writing(child, timeout=120):
    """Wait for the child to print 'writing', then SIGKILL it."""
    deadline = time.monotonic() + timeout
    line = ''
    while 'writing' not in line:
        line = child.stdout.readline()
        if not line and child.poll() is not None:
            raise AssertionError(f'the child ended: {child.stderr.read()}')
        assert time.monotonic() < deadline, 'the child never wrote'
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL


def test_sigkill_during_a_write(measured, tmp_path):
    """A real write killed half-way (the writer blocks after its first
    bytes): no file at the target, one stray; the next write removes it."""
    target = tmp_path / 'tilts.npz'
    source = tmp_path / 'source.npz'
    oa.write_projections(source, measured)
    child = python_child(f"""
        import time
        import numpy as np
        import odl_atoms as oa

        measured = oa.read_projections({str(source)!r})
        def savez(fobj, **arrays):
            fobj.write(b'PK, the first bytes of an archive')
            fobj.flush()
            print('writing', flush=True)
            time.sleep(600)
        np.savez = savez
        oa.write_projections({str(target)!r}, measured)
    """)
    kill_when_writing(child)
    assert not target.exists()
    strays = temporaries(tmp_path)
    assert len(strays) == 1 and strays[0].startswith('.tilts.')
    oa.write_projections(target, measured)
    assert temporaries(tmp_path) == []
    assert oa.read_projections(target) == measured


def test_sigkill_of_the_command_while_writing_its_result(data_file,
                                                        tmp_path):
    out = tmp_path / 'rec.extxyz'
    oa.write_atoms(out, oa.read_projections(data_file).ground_truth())
    before = out.read_bytes()
    child = python_child(f"""
        import time
        import ase.io
        from odl_atoms.cli import main

        def write(path, atoms, **kwargs):
            with open(path, 'w') as fobj:
                fobj.write('9 atoms, then half an atom file')
            print('writing', flush=True)
            time.sleep(600)
        ase.io.write = write
        main(['-q', 'reconstruct', {str(data_file)!r}, '-o', {str(out)!r},
              '--r-min', '2.885'])
    """)
    kill_when_writing(child, timeout=300)
    assert out.read_bytes() == before  # the old file, whole
    assert len(temporaries(tmp_path)) == 1
    assert main(['-q', 'reconstruct', str(data_file), '-o', str(out),
                 '--r-min', '2.885']) == 0
    assert temporaries(tmp_path) == []
    truth = oa.read_projections(data_file).ground_truth()
    assert oa.match_atoms(truth, oa.read_atoms(out)).exact


# --- SIGKILL during a sweep: its client while writing a row, and a worker


def cache_rows_are_whole(cache, tasks):
    """Every row in ``cache`` is complete and passes its checksum."""
    from odl_atoms.sweep import _read_cached
    keys = {task.key: task for task in tasks}
    rows = [path for path in cache.glob('*.json')
            if not path.name.startswith('.')]  # not the temporaries
    for path in rows:
        row, problem = _read_cached(cache, keys[path.stem])
        assert row is not None and problem is None, (path, problem)
    return len(rows)


GRID = ['sweep', '--grid', '--phantoms', 'vacancy', 'interstitial',
        'perfect', 'substitution', '--shape', '2', '2', '--detector', '24',
        '--angles', '0', '60', '120', '--solvers', 'sirt', '--scheduler',
        'synchronous']


@pytest.mark.slow
def test_sigkill_of_a_sweep_client_while_it_writes_a_row(tmp_path, capsys):
    from odl_atoms.sweep import sweep_tasks
    cache = tmp_path / 'cache'
    argv = GRID + ['--cache', str(cache), '-q']
    child = python_child(f"""
        import time
        from odl_atoms import sweep
        from odl_atoms.io import atomic_path

        written = []
        keep = sweep._write_atomically

        def write(path, text):
            written.append(path)
            if len(written) < 3:
                return keep(path, text)
            with atomic_path(path) as tmp:  # the third row: half of it
                tmp.write_text(text[:len(text) // 2])
                print('writing', flush=True)
                time.sleep(600)
        sweep._write_atomically = write

        from odl_atoms.cli import main
        main({argv!r})
    """)
    kill_when_writing(child, timeout=300)
    tasks = sweep_tasks(phantom=['vacancy', 'interstitial', 'perfect',
                                 'substitution'], shape=(2, 2),
                        n_detector=24, angles_deg=(0, 60, 120), noise=0.01,
                        solver='sirt')
    assert cache_rows_are_whole(cache, tasks) == 2  # no partial row
    assert len(temporaries(cache)) == 1  # the killed write's
    status, out, err = run(capsys, *argv)  # the re-run resumes
    assert status == 0, err
    assert '4 tasks: 2 run, 2 reused from the cache, 0 failed' in out
    assert cache_rows_are_whole(cache, tasks) == 4
    assert temporaries(cache) == []


@pytest.mark.slow
def test_sigkill_of_a_dask_worker_during_a_sweep(tmp_path):
    import threading

    distributed = pytest.importorskip('dask.distributed')
    from odl_atoms.sweep import run_sweep, sweep_tasks

    # Tasks of a few seconds each (ADCG on 3 x 3 lattices), two workers.
    tasks = sweep_tasks(phantom=['vacancy', 'interstitial', 'perfect'],
                        shape=(3, 3), n_detector=48, angles_deg=(0, 45, 90),
                        noise=[0.0, 0.01], solver='adcg', alpha=0)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True,
        dashboard_address=':0', silence_logs=50)
    client = distributed.Client(cluster)
    try:
        pids = client.run(os.getpid)
        outcome = {}
        thread = threading.Thread(target=lambda: outcome.update(
            result=run_sweep(tasks, scheduler=client, cache_dir=tmp_path,
                             progress=False)))
        thread.start()
        deadline = time.monotonic() + 300
        victim = None
        while victim is None:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy and busy[0] in pids:
                victim = busy[0]
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        os.kill(pids[victim], signal.SIGKILL)
        thread.join(timeout=600)
        assert not thread.is_alive()
        first = outcome['result']
        # Every task has its row; Dask reran the killed worker's task
        # elsewhere (or, at worst, reported it).
        assert [r['key'] for r in first.rows] == [t.key for t in tasks]
        assert all('KilledWorker' in r['error'] for r in first.failed)
        n_ok = len(first.rows) - len(first.failed)
        assert cache_rows_are_whole(tmp_path, tasks) == n_ok
        assert temporaries(tmp_path) == []
        second = run_sweep(tasks, scheduler=client, cache_dir=tmp_path,
                           progress=False)
        assert second.n_reused == n_ok and not second.failed
        assert cache_rows_are_whole(tmp_path, tasks) == len(tasks)
    finally:
        client.close()
        cluster.close()


# --- 10. Complex data on the command line


def test_complex_data_refused_by_the_command(data_file, tmp_path, capsys):
    arrays = dict(np.load(data_file))
    arrays['data'] = arrays['data'] + 1e-3j
    path = tmp_path / 'complex.npz'
    np.savez(path, **arrays)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no ComplexWarning either
        status, _, err = run(capsys, 'reconstruct', path, '-o',
                             tmp_path / 'rec.extxyz')
    assert status == 2 and 'complex' in one_line_error(err)
    assert not (tmp_path / 'rec.extxyz').exists()


# --- 3. HDF5 links on the command line: refused, the other file unread


def test_hdf5_external_link_refused_by_the_command(data_file, tmp_path,
                                                   capsys):
    h5py = pytest.importorskip('h5py')
    secret = tmp_path / 'secret.h5'
    with h5py.File(secret, 'w') as f:
        f.create_dataset('values', data=np.full((3, 48), 123456.0))
    path = tmp_path / 'linked.h5'
    oa.write_projections(path, oa.read_projections(data_file))
    with h5py.File(path, 'a') as f:
        del f['data']
        f['data'] = h5py.ExternalLink(str(secret), '/values')
    status, _, err = run(capsys, 'reconstruct', path, '-o',
                         tmp_path / 'rec.extxyz')
    assert status == 2
    line = one_line_error(err)
    assert 'external link' in line and '123456' not in err


# --- 11. Exit statuses that mean something


def break_the_writer(monkeypatch, exc):
    from odl_atoms import io

    def write_atoms(*args, **kwargs):
        raise exc
    monkeypatch.setattr(io, 'write_atoms', write_atoms)


@pytest.mark.parametrize('exc, status, words', [
    (ValueError('a bug in the toolkit'), 1, ['internal error', 'ValueError',
                                             '--debug', 'report']),
    (MemoryError('Unable to allocate 7 GiB'), 1, ['out of memory',
                                                  '--debug']),
    (OSError(errno.EROFS, 'Read-only file system', 'rec.extxyz'), 1,
     ['Read-only file system', '--debug']),
    (ValidationError('a value the user can fix'), 2, ['error: a value the '
                                                      'user can fix']),
])
def test_exit_status_of_errors_found_late(exc, status, words, data_file,
                                          tmp_path, capsys, monkeypatch):
    break_the_writer(monkeypatch, exc)
    code, _, err = run(capsys, '-q', 'reconstruct', data_file, '-o',
                       tmp_path / 'rec.extxyz', '--solver', 'sirt')
    assert code == status
    assert 'Traceback' not in err
    for word in words:
        assert word in err, word
    if status == 1 and not isinstance(exc, ValueError):
        assert 'internal error' not in err  # not a bug: a resource failed


def test_library_user_errors_are_validation_errors(measured):
    op = measured.operator()
    with pytest.raises(ValidationError, match='alpha'):
        oa.Problem(op, measured.element(), alpha=-1)
    with pytest.raises(ValidationError, match='noise_std'):
        oa.Problem(op, measured.element(), noise_std=-1)
    with pytest.raises(ValidationError, match='tol'):
        oa.ADCG(tol=-1)
    with pytest.raises(TypeError) as info:
        oa.Problem(object(), [1.0])
    assert isinstance(info.value, ValidationError)
    with pytest.raises(ValidationError, match='angles'):
        oa.simulate(measured.ground_truth(), [0.0, 0.0], 0.43, n_detector=8)
