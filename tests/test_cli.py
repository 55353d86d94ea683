"""The ``odl-atoms`` command through its real entry points.

Most tests call ``odl_atoms.cli.main([...])`` (the function the console script
runs) and check exit codes, messages and the files written; a few run
``python -m odl_atoms`` in a subprocess. Results are checked against
ground truths built independently here (phantoms, `match_atoms`), and files
are read back with the library's readers. Problems are small (a 3 x 3
lattice, 48 detector cells) so that every reconstruction takes about a second.
"""

import dataclasses
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import odl_atoms as oa
from odl_atoms import cli, reconstruction
from odl_atoms.cli import main

SMALL = ['--shape', '3', '3', '--detector', '48']


def run(capsys, *args):
    """Run ``odl-atoms args``; return (status, stdout, stderr)."""
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def no_temporary_files(folder):
    return not [name for name in os.listdir(folder) if '.tmp' in name]


@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    """A simulated 3 x 3 lattice with a vacancy at 0/45/90 degrees, 1 % noise."""
    folder = tmp_path_factory.mktemp('data')
    path = folder / 'small.npz'
    assert main(['-q', 'simulate', *SMALL, '-o', str(path)]) == 0
    return path


def truth_3x3():
    return oa.defect_phantom('vacancy', shape=(3, 3)).measure


_SOLVER_MODULES = {'SIRT': 'odl_atoms.solvers.sirt',
                   'SimulatedAnnealing': 'odl_atoms.solvers.annealing'}


def use_solver(monkeypatch, name):
    """Make ``odl_atoms.<name>`` available if its module exists; else skip.

    The solvers being written are exported from the package when they land;
    until then the command line is tested with the class from its module,
    so that its integration is checked as early as possible.
    """
    cls = getattr(oa, name, None)
    if cls is None:
        try:
            cls = getattr(importlib.import_module(_SOLVER_MODULES[name]), name)
        except (ImportError, AttributeError):
            pytest.skip(f'odl_atoms.{name} is not available yet')
        monkeypatch.setattr(oa, name, cls, raising=False)
    return cls


# --- Entry points and top level


def test_module_entry_point_runs():
    for module in ('odl_atoms', 'odl_atoms.cli'):
        proc = subprocess.run([sys.executable, '-m', module, '--version'],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert oa.__version__ in proc.stdout


def test_console_script_is_declared():
    from importlib.metadata import entry_points
    scripts = entry_points(group='console_scripts')
    assert any(ep.name == 'odl-atoms' and ep.value == 'odl_atoms.cli:main'
               for ep in scripts)


def test_no_command_prints_help_and_fails(capsys):
    status, out, _ = run(capsys)
    assert status == 2
    assert 'demo' in out and 'reconstruct' in out


def test_help_of_every_subcommand(capsys):
    for command in ('demo', 'simulate', 'reconstruct', 'evaluate', 'sweep'):
        status, out, _ = run(capsys, command, '--help')
        assert status == 0
        assert f'odl-atoms {command}' in out
    _, out, _ = run(capsys, 'simulate', '--help')
    assert 'DEGREES' in out


def test_unknown_command_and_option(capsys):
    assert run(capsys, 'reconstrut')[0] == 2
    status, _, err = run(capsys, 'simulate', '--bogus', '-o', 'x.npz')
    assert status == 2 and 'unrecognized arguments' in err


# --- simulate


def test_simulate_writes_layout_with_ground_truth(small_data):
    measured = oa.read_projections(small_data)
    np.testing.assert_allclose(measured.angles, np.radians([0, 45, 90]))
    assert measured.data.shape == (3, 48)
    assert measured.noise_std > 0
    assert measured.ground_truth() == truth_3x3()
    # 1 % relative noise: noise_std is 1 % of the root mean square of the
    # noise-free data (recomputed here with the forward operator).
    clean = measured.operator()(truth_3x3()).data
    assert measured.noise_std == pytest.approx(
        0.01 * np.sqrt(np.mean(clean ** 2)), rel=1e-12)


def test_simulate_angles_range_hdf5_and_options(tmp_path, capsys):
    path = tmp_path / 'tilts.h5'
    status, out, _ = run(capsys, '-q', 'simulate', '--phantom', 'interstitial',
                         '--lattice', 'hexagonal', '--shape', '3', '3',
                         '--spacing', '3.0', '--angles=-60:60:5', '--noise',
                         '0', '--sigma', '0.5', '--detector-cell', '0.5',
                         '-o', path)
    assert status == 0 and 'wrote' in out
    measured = oa.read_projections(path)
    np.testing.assert_allclose(np.degrees(measured.angles),
                               [-60, -30, 0, 30, 60])
    assert measured.noise_std is None and measured.sigma == 0.5
    cell = (measured.detector_max - measured.detector_min) / measured.data.shape[1]
    assert cell[0] == pytest.approx(0.5)
    expected = oa.defect_phantom('interstitial', lattice='hexagonal',
                                 shape=(3, 3), spacing=3.0).measure
    assert measured.ground_truth() == expected


def test_simulate_relaxed_phantom(tmp_path, capsys):
    path = tmp_path / 'relaxed.npz'
    status, _, _ = run(capsys, '-q', 'simulate', '--phantom', 'interstitial',
                       '--shape', '4', '4', '--relax', '--detector', '40',
                       '-o', path)
    assert status == 0
    built = oa.defect_phantom('interstitial', shape=(4, 4))
    truth = oa.read_projections(path).ground_truth()
    assert truth == oa.relax_defect(built).measure
    assert not truth == built.measure


def test_simulate_comma_angles_dose_and_3d(tmp_path, capsys):
    path = tmp_path / 'octa.npz'
    status, _, _ = run(capsys, '-q', 'simulate', '--phantom', 'octahedron',
                       '--size', '2', '--angles', '-30', '0,30', '--dose',
                       '1e4', '--noise', '0', '--detector', '24', '-o', path)
    assert status == 0
    measured = oa.read_projections(path)
    assert measured.ndim == 3 and measured.n_angles == 3
    assert measured.ground_truth().n_atoms == 6


def test_simulate_from_atom_file(tmp_path, capsys):
    space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    atoms = space.element([[-1.5, 0.0], [1.5, 0.5]], weights=[1.0, 1.3],
                          species=['Au', 'Pt'])
    oa.write_atoms(tmp_path / 'in.extxyz', atoms)
    status, _, _ = run(capsys, '-q', 'simulate', '--atoms',
                       tmp_path / 'in.extxyz', '--detector', '40', '-o',
                       tmp_path / 'from_file.npz')
    assert status == 0
    truth = oa.read_projections(tmp_path / 'from_file.npz').ground_truth()
    assert truth == atoms
    # Weights by species override the file's.
    status, _, _ = run(capsys, '-q', 'simulate', '--atoms',
                       tmp_path / 'in.extxyz', '--weights', 'Au=2,Pt=3',
                       '--detector', '40', '-o', tmp_path / 'weighted.npz')
    assert status == 0
    truth = oa.read_projections(tmp_path / 'weighted.npz').ground_truth()
    np.testing.assert_array_equal(np.sort(truth.weights), [2.0, 3.0])


@pytest.mark.parametrize('args, message', [
    (['--phantom', 'twin'], 'unknown phantom'),
    (['--angles', '0', 'abc'], "'abc' is not a number"),
    (['--angles', '0', '45', '45'], 'must be different'),
    (['--angles=0:90:0'], 'COUNT >= 1'),
    (['--angles', 'nan'], 'finite'),
    (['--phantom', 'octahedron', '--shape', '3', '3'], '--shape is for the 2D'),
    (['--atoms', 'missing.xyz'], 'no atom file'),
    (['--weights', 'Au=1'], 'apply to --atoms'),
    (['--noise', '-1'], 'must be a number >= 0'),
    (['--sigma', '0'], 'must be positive'),
    (['--phantom', 'perfect', '--relax'], '--relax: the \'perfect\' phantom '
                                          'marks no defect'),
    (['--atoms', 'in.xyz', '--relax'], '--relax applies to the built-in'),
])
def test_simulate_bad_input(tmp_path, capsys, args, message):
    status, out, err = run(capsys, 'simulate', *args, '-o',
                           tmp_path / 'x.npz')
    assert status == 2
    assert message in err
    assert 'Traceback' not in err
    assert not (tmp_path / 'x.npz').exists()


def test_simulate_bad_output(tmp_path, capsys):
    status, _, err = run(capsys, 'simulate', '-o', tmp_path / 'x.txt')
    assert status == 2 and '.npz' in err
    status, _, err = run(capsys, 'simulate', '-o',
                         tmp_path / 'missing' / 'x.npz')
    assert status == 2 and 'does not exist' in err


# --- reconstruct


def test_reconstruct_finds_every_atom(small_data, tmp_path, capsys):
    out_atoms = tmp_path / 'rec.extxyz'
    status, out, _ = run(capsys, '-q', 'reconstruct', small_data, '-o',
                         out_atoms, '--figure', tmp_path / 'rec.png',
                         '--json', tmp_path / 'rec.json')
    assert status == 0
    recon = oa.read_atoms(out_atoms)
    match = oa.match_atoms(truth_3x3(), recon)
    assert match.exact and match.rmsd < 0.05
    assert 'against the ground truth' in out
    assert (tmp_path / 'rec.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    report = json.loads((tmp_path / 'rec.json').read_text())
    assert report['metrics']['f1'] == 1.0 and report['n_atoms'] == 8
    assert report['r_min'] > 2 * 0.43  # estimated: atoms 2 sigma apart at least
    assert no_temporary_files(tmp_path)


def test_reconstruct_data_without_truth_or_noise(small_data, tmp_path, capsys):
    """Data from elsewhere: no ground truth, no noise_std, float32."""
    measured = oa.read_projections(small_data)
    foreign = dataclasses.replace(
        measured, data=measured.data.astype(np.float32), noise_std=None,
        positions=None, weights=None, species=None)
    oa.write_projections(tmp_path / 'foreign.h5', foreign)
    status, out, err = run(capsys, 'reconstruct', tmp_path / 'foreign.h5',
                           '-o', tmp_path / 'rec.xyz', '--figure',
                           tmp_path / 'rec.pdf')
    assert status == 0, err
    assert 'against the ground truth' not in out
    assert 'noise_std -' in err  # the informational line says it is unknown
    assert oa.match_atoms(truth_3x3(), oa.read_atoms(tmp_path / 'rec.xyz')).exact
    assert (tmp_path / 'rec.pdf').read_bytes()[:4] == b'%PDF'


def test_reconstruct_3d_particle(tmp_path, capsys):
    data = tmp_path / 'octa.npz'
    assert main(['-q', 'simulate', '--phantom', 'octahedron', '--size', '2',
                 '--angles=-60:60:3', '--detector', '32', '-o',
                 str(data)]) == 0
    status, _, err = run(capsys, '-q', 'reconstruct', data, '-o',
                         tmp_path / 'octa.extxyz', '--figure',
                         tmp_path / 'octa.png')
    assert status == 0, err
    truth = oa.nanoparticle('octahedron', size=2).measure
    recon = oa.read_atoms(tmp_path / 'octa.extxyz')
    assert recon.ndim == 3
    assert oa.match_atoms(truth, recon).exact
    assert (tmp_path / 'octa.png').is_file()
    assert (tmp_path / 'octa-projections.png').is_file()


def test_reconstruct_options(small_data, tmp_path, capsys):
    # Start from the truth, data only, explicit r_min, weights, sigma.
    oa.write_atoms(tmp_path / 'init.extxyz', truth_3x3())
    status, _, err = run(capsys, '-q', 'reconstruct', small_data, '-o',
                         tmp_path / 'rec.extxyz', '--init',
                         tmp_path / 'init.extxyz', '--alpha', '0',
                         '--r-min', '2.885', '--weights', '1', '--sigma',
                         '0.43', '--noise-std', 'none', '--grid-spacing',
                         '0.5')
    assert status == 0, err
    assert oa.match_atoms(truth_3x3(),
                          oa.read_atoms(tmp_path / 'rec.extxyz')).exact


def test_reconstruct_reports_lowered_alpha(small_data, tmp_path, capsys):
    # r_min far above the lattice spacing: the energy keeps out atoms the
    # data need, and ADCG with lattice starts lowers alpha (the file's
    # noise_std is known).
    status, out, err = run(capsys, 'reconstruct', small_data, '-o',
                           tmp_path / 'rec.extxyz', '--alpha', '0.1',
                           '--r-min', '5', '--lattice', 'square', '--json',
                           tmp_path / 'rec.json')
    assert status == 0, err
    assert 'alpha lowered from 0.1 to ' in out
    report = json.loads((tmp_path / 'rec.json').read_text())
    assert report['alpha'] == 0.1 and report['alpha_used'] < 0.1
    # Without a noise level the principle does not apply.
    status, out, err = run(capsys, 'reconstruct', small_data, '-o',
                           tmp_path / 'rec2.extxyz', '--alpha', '0.1',
                           '--r-min', '5', '--lattice', 'square',
                           '--noise-std', 'none', '--json',
                           tmp_path / 'rec2.json')
    assert status == 0, err
    assert 'alpha lowered' not in out
    assert json.loads((tmp_path / 'rec2.json').read_text())['alpha_used'] == 0.1


def test_reconstruct_warns_about_data_scale(small_data, tmp_path, capsys):
    measured = oa.read_projections(small_data)
    scaled = dataclasses.replace(measured, data=measured.data * 1e-4)
    oa.write_projections(tmp_path / 'scaled.npz', scaled)
    status, _, err = run(capsys, '-q', 'reconstruct', tmp_path / 'scaled.npz',
                         '-o', tmp_path / 'rec.extxyz', '--r-min', '2.885')
    assert status == 0
    assert 'warning' in err and '--weights' in err


def write_npz_without(path, source, key):
    with np.load(source) as archive:
        arrays = {k: archive[k] for k in archive.files if k != key}
    np.savez(path, **arrays)


@pytest.mark.parametrize('case, message', [
    ('missing', 'no projection-data file'),
    # (A file without 'sigma' is calibrated now, issue 19; a file without
    # the detector edges still cannot be read.)
    ('layout', "'detector_min'"),
    ('not-npz', 'cannot read'),
    ('suffix', 'not a projection-data file'),
    ('solver', 'invalid choice'),
    ('learned', 'not available'),
    ('out-suffix', '.extxyz'),
    ('out-folder', 'does not exist'),
    ('figure', 'cannot save a figure'),
    ('weights', '--weights'),
    ('init', 'no atom file'),
    ('alpha', 'must be a number >= 0'),
])
def test_reconstruct_bad_input(small_data, tmp_path, capsys, case, message):
    data, out = small_data, tmp_path / 'rec.extxyz'
    extra = []
    if case == 'missing':
        data = tmp_path / 'nothing.npz'
    elif case == 'layout':
        data = tmp_path / 'no_sigma.npz'
        write_npz_without(data, small_data, 'detector_min')
    elif case == 'not-npz':
        data = tmp_path / 'garbage.npz'
        data.write_text('not an archive')
    elif case == 'suffix':
        data = tmp_path / 'data.txt'
        data.write_text('0 1 2')
    elif case == 'solver':
        extra = ['--solver', 'magic']
    elif case == 'learned':
        extra = ['--solver', 'sirt+learned']
    elif case == 'out-suffix':
        out = tmp_path / 'rec.unknownformat'
    elif case == 'out-folder':
        out = tmp_path / 'missing' / 'rec.extxyz'
    elif case == 'figure':
        extra = ['--figure', tmp_path / 'fig.docx']
    elif case == 'weights':
        extra = ['--weights', 'Au=heavy']
    elif case == 'init':
        extra = ['--init', tmp_path / 'nothing.xyz']
    elif case == 'alpha':
        extra = ['--alpha', '-1']
    if case == 'learned' and reconstruction.available_solvers().count(
            'sirt+learned'):
        pytest.skip('the learned solver exists')
    status, _, err = run(capsys, 'reconstruct', data, '-o', out, *extra)
    assert status == 2
    assert message in err
    assert 'Traceback' not in err
    assert not out.exists()


def test_missing_solver_is_a_clear_error(small_data, tmp_path, capsys,
                                         monkeypatch):
    # As before SIRT landed: its module is not there.
    monkeypatch.setitem(reconstruction.SOLVERS, 'sirt',
                        'odl_atoms.no_such_module:SIRT')
    status, _, err = run(capsys, 'reconstruct', small_data, '-o',
                         tmp_path / 'rec.extxyz', '--solver', 'sirt')
    assert status == 2
    assert 'odl_atoms.SIRT' in err and 'not available' in err


def test_learned_solver_without_pytorch(small_data, tmp_path, capsys,
                                        monkeypatch):
    """A missing optional dependency is a clear error, not a traceback."""
    class NeedsTorch(oa.Solver):
        Options = oa.SIRT.Options

        def _solve(self, data, initial, callback, rng):
            import torch_that_is_not_installed  # noqa: F401

    class NeedsTorchForReal(oa.Solver):
        Options = oa.SIRT.Options

        def _solve(self, data, initial, callback, rng):
            raise ModuleNotFoundError("No module named 'torch'", name='torch')

    monkeypatch.setitem(reconstruction.SOLVERS, 'sirt+learned',
                        NeedsTorchForReal)
    status, _, err = run(capsys, 'reconstruct', small_data, '-o',
                         tmp_path / 'rec.extxyz', '--solver', 'sirt+learned')
    assert status == 2
    assert "'torch'" in err and 'odl_atoms[learn]' in err
    assert 'Traceback' not in err
    # An import error that is not an optional dependency is a bug (status 1).
    monkeypatch.setitem(reconstruction.SOLVERS, 'sirt+learned', NeedsTorch)
    status, _, err = run(capsys, 'reconstruct', small_data, '-o',
                         tmp_path / 'rec.extxyz', '--solver', 'sirt+learned')
    assert status == 1 and 'internal error' in err
    assert not (tmp_path / 'rec.extxyz').exists()


@pytest.mark.parametrize('solver', ['sa', 'sirt'])
def test_other_solvers(small_data, tmp_path, capsys, monkeypatch, solver):
    use_solver(monkeypatch, reconstruction.solver_class(solver).__name__)
    status, out, err = run(capsys, '-q', 'reconstruct', small_data, '-o',
                           tmp_path / 'rec.extxyz', '--solver', solver,
                           '--seed', '0', '--figure', tmp_path / 'rec.png')
    assert status == 0, err
    recon = oa.read_atoms(tmp_path / 'rec.extxyz')
    # Scored independently of the command's own table.
    assert oa.match_atoms(truth_3x3(), recon).recall >= 0.75
    assert 'against the ground truth' in out
    assert (tmp_path / 'rec.png').is_file()


def test_options_a_solver_does_not_take_are_reported(small_data, tmp_path,
                                                     capsys, monkeypatch):
    use_solver(monkeypatch, 'SIRT')
    status, _, err = run(capsys, '-q', 'reconstruct', small_data, '-o',
                         tmp_path / 'rec.extxyz', '--solver', 'sirt',
                         '--alpha', '0.01')
    assert status == 0
    assert '--alpha' in err and 'ignored' in err


def test_debug_shows_traceback(tmp_path):
    with pytest.raises(cli.UsageError):
        main(['--debug', 'reconstruct', str(tmp_path / 'nothing.npz'), '-o',
              str(tmp_path / 'rec.extxyz')])


def test_interrupted_write_keeps_old_file(small_data, tmp_path, capsys,
                                          monkeypatch):
    """Ctrl-C while the result is written: old file intact, no temp file."""
    import ase.io

    out = tmp_path / 'rec.extxyz'
    out.write_text('previous result\n')

    def interrupted_write(filename, *args, **kwargs):
        with open(filename, 'w') as fobj:
            fobj.write('half a fi')
        raise KeyboardInterrupt

    monkeypatch.setattr(ase.io, 'write', interrupted_write)
    status, _, err = run(capsys, '-q', 'reconstruct', small_data, '-o', out,
                         '--r-min', '2.885')
    assert status == 130 and 'interrupted' in err
    assert out.read_text() == 'previous result\n'
    assert no_temporary_files(tmp_path)


# --- evaluate


def test_evaluate_table_and_json(small_data, tmp_path, capsys):
    truth = truth_3x3()
    # A reconstruction with one atom moved by 0.1 A and one missing.
    positions = truth.positions.copy()
    positions[0, 0] += 0.1
    recon = truth.space.element(positions[:-1])
    oa.write_atoms(tmp_path / 'rec.extxyz', recon)
    oa.write_atoms(tmp_path / 'truth.xyz', truth)

    for reference in (small_data, tmp_path / 'truth.xyz'):
        status, out, _ = run(capsys, 'evaluate', tmp_path / 'rec.extxyz',
                             reference)
        assert status == 0
        assert 'precision' in out and '0.933' in out  # F1 = 14 / 15

    status, out, _ = run(capsys, 'evaluate', tmp_path / 'rec.extxyz',
                         small_data, '--json')
    scores = json.loads(out)
    assert scores['n_matched'] == 7 and scores['count_error'] == -1
    assert scores['rmsd'] == pytest.approx(0.1 / np.sqrt(7))

    status, _, _ = run(capsys, 'evaluate', tmp_path / 'rec.extxyz',
                       small_data, '--json', tmp_path / 'scores.json',
                       '--tolerance', '0.05')
    assert status == 0
    scores = json.loads((tmp_path / 'scores.json').read_text())
    assert scores['n_matched'] == 6  # the moved atom is beyond 0.05 A


def test_evaluate_bad_input(small_data, tmp_path, capsys):
    measured = oa.read_projections(small_data)
    oa.write_projections(tmp_path / 'no_truth.npz',
                         dataclasses.replace(measured, positions=None, weights=None,
                                             species=None))
    oa.write_atoms(tmp_path / 'rec.extxyz', truth_3x3())
    status, _, err = run(capsys, 'evaluate', tmp_path / 'rec.extxyz',
                         tmp_path / 'no_truth.npz')
    assert status == 2 and 'no ground truth' in err
    status, _, err = run(capsys, 'evaluate', tmp_path / 'nothing.xyz',
                         small_data)
    assert status == 2 and 'no atom file' in err
    (tmp_path / 'broken.xyz').write_text('3\n\nAu 0 0\n')
    status, _, err = run(capsys, 'evaluate', tmp_path / 'broken.xyz',
                         small_data)
    assert status == 2 and 'Traceback' not in err


# --- sweep


def test_sweep_table_figure_and_choice(small_data, tmp_path, capsys):
    status, out, _ = run(capsys, '-q', 'sweep', small_data, '--alphas', '0',
                         '1e-3', '--r-min', '2.885', '--figure',
                         tmp_path / 'sweep.png', '--table',
                         tmp_path / 'sweep.csv', '-o', tmp_path / 'best.extxyz')
    assert status == 0
    assert 'discrepancy principle' in out
    lines = (tmp_path / 'sweep.csv').read_text().splitlines()
    assert lines[0].startswith('alpha,chosen,discrepancy')
    assert len(lines) == 3 and sum(',*,' in line for line in lines) == 1
    assert (tmp_path / 'sweep.png').read_bytes()[:4] == b'\x89PNG'
    assert oa.match_atoms(truth_3x3(),
                          oa.read_atoms(tmp_path / 'best.extxyz')).exact


def test_sweep_without_noise_level(small_data, tmp_path, capsys):
    status, out, _ = run(capsys, '-q', 'sweep', small_data, '--alphas', '1e-3',
                         '--noise-std', 'none', '--table',
                         tmp_path / 'sweep.md')
    assert status == 0
    assert 'noise level unknown' in out
    assert (tmp_path / 'sweep.md').read_text().startswith('| alpha')


def test_sweep_bad_alphas(small_data, capsys):
    status, _, err = run(capsys, 'sweep', small_data, '--alphas', '-1')
    assert status == 2 and '>= 0' in err


# --- demo


def test_demo_small(tmp_path, capsys):
    folder = tmp_path / 'demo'
    status, out, _ = run(capsys, '-q', 'demo', *SMALL, '-o', folder)
    assert status == 0
    for name in ('projections.npz', 'truth.extxyz', 'adcg.extxyz',
                 'metrics.md', 'metrics.json', 'comparison.png'):
        assert (folder / name).is_file(), name
    scores = json.loads((folder / 'metrics.json').read_text())
    assert scores['ADCG + energy']['f1'] == 1.0
    assert 'ADCG + energy' in out and 'F1' in out
    assert oa.match_atoms(truth_3x3(),
                          oa.read_atoms(folder / 'adcg.extxyz')).exact
    assert no_temporary_files(folder)


def test_demo_compares_with_sirt(tmp_path, capsys, monkeypatch):
    use_solver(monkeypatch, 'SIRT')
    folder = tmp_path / 'demo'
    status, out, _ = run(capsys, '-q', 'demo', *SMALL, '-o', folder)
    assert status == 0
    assert 'SIRT + picking' in out
    scores = json.loads((folder / 'metrics.json').read_text())
    assert set(scores) == {'ADCG + energy', 'SIRT + picking'}
    sirt = oa.read_atoms(folder / 'sirt.extxyz')
    assert oa.match_atoms(truth_3x3(), sirt).f1 == pytest.approx(
        scores['SIRT + picking']['f1'])


def test_demo_output_is_a_file(tmp_path, capsys):
    (tmp_path / 'file').write_text('')
    status, _, err = run(capsys, 'demo', '-o', tmp_path / 'file')
    assert status == 2 and 'not a folder' in err


# --- helpers


def test_parse_angles_and_weights():
    np.testing.assert_allclose(cli.parse_angles(['90', '0,45']),
                               np.radians([0, 45, 90]))
    np.testing.assert_allclose(np.degrees(cli.parse_angles(['-60:60:3'])),
                               [-60, 0, 60])
    assert cli.parse_weights('Au=1, Pt=1.3') == {'Au': 1.0, 'Pt': 1.3}
    assert cli.parse_weights('2') == 2.0
    for bad in ('Au=1,Au=2', 'Au=-1', 'x', '='):
        with pytest.raises(cli.UsageError):
            cli.parse_weights(bad)
    with pytest.raises(cli.UsageError):
        cli.parse_angles(['0', '360'])
