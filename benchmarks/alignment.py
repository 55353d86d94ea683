"""How well the detector shifts of a tilt series are recovered.

Each case: a phantom (2D: the 7 x 7 square Au lattice with a vacancy,
sigma = 0.15 a, 96 detector cells, angles spread over 180 degrees from 10;
3D: the 44-atom Au octahedron, sigma = 0.6 A, cells of 0.5 A, tilts spread
over +-60 degrees), every projection shifted by a random amount of up to 2
detector cells (uniform in [-2, 2] per detector axis), exact data plus
Gaussian noise (`odl_atoms.noise`, relative to the data's RMS), seeds 0-9.

The shifts are estimated

- from the projections' centres of mass (`centre_of_mass_shifts`), what a
  user has before any atom is known;
- by `refine_shifts` started there, at the TRUE atoms (translated into the
  estimators' gauge). That needs knowledge a user lacks: it is the accuracy
  the alignment block of a reconstruction loop can reach once the atoms are
  right, not an end-to-end figure (which comes from the loop that
  alternates alignment and reconstruction).

A second table does the same on multislice HAADF data: the abTEM case
shipped in ``tests/data/tiny_au5_vacancy_zone`` (5 x 5 Au [001] columns
with a vacancy, 0/45/90 degrees, 6 frozen phonons, Poisson noise), read and
prepared by ``odl_atoms.io`` (background estimated), its profiles rolled by
random whole cells in [-2, 2] (exact shifts, no interpolation). The
refinement there uses the atom width and intensity fitted at the true
columns of the unshifted data (also knowledge a user lacks); what is left
of its error is the one-Gaussian model's misfit of multislice data.

The error is that of what the data determine: the difference from the true
shifts with its translation part removed (a translation of the object moves
every projection in a way no data tell from shifts; see
`odl_atoms.alignment`), largest over the projections, in detector cells.
"determined" counts the combinations of shifts that are not a translation;
with 2 angles in 2D there are none and nothing is estimated.

Usage::

    python benchmarks/alignment.py            # 240 cases, about a minute
    python benchmarks/alignment.py --quick    # 3 seeds

Writes ``benchmarks/results/alignment.md`` and ``alignment.csv``.
"""

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import numpy as np  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

import odl_atoms as oa  # noqa: E402
from odl_atoms.alignment import centre_of_mass_shifts, refine_shifts  # noqa: E402
from odl_atoms.noise import add_noise  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import markdown_table, write_result, write_rows  # noqa: E402

#: (dimension, number of projections) of the table.
CASES = [(2, 2), (2, 3), (2, 4), (2, 5), (3, 2), (3, 3), (3, 4), (3, 5)]
NOISES = (0.0, 0.01, 0.05)
MAX_SHIFT_CELLS = 2.0
TARGET_CELLS = 0.1


def simulated(dim, n_angles, noise, seed):
    """Phantom, operator, true shifts, noisy data and the cell size."""
    rng = np.random.default_rng(seed)
    if dim == 2:
        phantom = oa.defect_phantom('vacancy')
        angles = np.radians(np.linspace(0, 180, n_angles, endpoint=False) + 10)
        geometry = oa.tilt_geometry(phantom.space, angles, 96)
        sigma = 0.15 * oa.DEFAULT_SPACING
    else:
        phantom = oa.nanoparticle('octahedron')
        angles = np.radians(np.linspace(-60, 60, n_angles))
        geometry = oa.tilt_geometry(phantom.space, angles, cell=0.5)
        sigma = 0.6
    op = oa.GaussianRayTransform(phantom.space, geometry, sigma)
    cell = float(geometry.det_partition.cell_sides[0])
    m, k = op.frame.offsets.shape
    shifts = rng.uniform(-MAX_SHIFT_CELLS, MAX_SHIFT_CELLS, (m, k)) * cell
    clean = op.shifted(shifts)(phantom.measure)
    data, _ = add_noise(clean, level=noise, seed=rng)
    return phantom, op, shifts, data, cell


def _translations(op):
    m, k, d = op.frame.axes.shape
    return op.frame.axes.reshape(m * k, d)


def gauge_free_error(op, estimate, truth, cell):
    """Largest error in cells of what the data determine."""
    tmat = _translations(op)
    diff = (estimate - truth).ravel()
    diff = diff - tmat @ np.linalg.lstsq(tmat, diff, rcond=None)[0]
    return float(np.abs(diff).max() / cell)


def run_case(dim, n_angles, noise, seed):
    """One row: errors from the centre of mass and after refinement."""
    phantom, op, truth, data, cell = simulated(dim, n_angles, noise, seed)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "not determined" (2 angles, 2D)
        start = time.perf_counter()
        com = centre_of_mass_shifts(op, data)
        t_com = time.perf_counter() - start
        tmat = _translations(op)
        atoms = phantom.measure.positions + np.linalg.lstsq(
            tmat, truth.ravel(), rcond=None)[0]
        start = time.perf_counter()
        refined = refine_shifts(op, data, atoms, phantom.measure.weights,
                                shifts=com.shifts)
        t_ref = time.perf_counter() - start
    return dict(dim=dim, angles=n_angles, noise=noise, seed=seed,
                determined=com.determined,
                com_error=gauge_free_error(op, com.shifts, truth, cell),
                refined_error=gauge_free_error(op, refined.shifts, truth, cell),
                at_bound=refined.at_bound, iterations=refined.n_iterations,
                com_seconds=t_com, refine_seconds=t_ref)


def accuracy_table(rows):
    """Markdown table: median and worst error per case and noise level."""
    header = ['dim', 'projections', 'determined', 'noise',
              'centre of mass: median / worst (cells)',
              'refined at true atoms: median / worst (cells)',
              f'refined worst < {TARGET_CELLS}', 'refine time (median, s)']
    table = []
    for dim, n_angles in CASES:
        for noise in NOISES:
            sel = [r for r in rows if r['dim'] == dim
                   and r['angles'] == n_angles and r['noise'] == noise]
            if not sel:
                continue
            det = sel[0]['determined']
            com = np.array([r['com_error'] for r in sel])
            ref = np.array([r['refined_error'] for r in sel])
            if det == 0:
                table.append([f'{dim}D', n_angles, 0, f'{noise:.0%}',
                              'not determined', 'not determined', '-', '-'])
                continue
            table.append([
                f'{dim}D', n_angles, det, f'{noise:.0%}',
                f'{np.median(com):.3f} / {com.max():.3f}',
                f'{np.median(ref):.4f} / {ref.max():.4f}',
                'yes' if ref.max() < TARGET_CELLS else 'NO',
                f'{np.median([r["refine_seconds"] for r in sel]):.3f}'])
    return markdown_table(header, table)


REALISTIC = os.path.join(os.path.dirname(__file__), os.pardir, 'tests', 'data',
                         'tiny_au5_vacancy_zone', 'tiny_au5_vacancy_zone')


def realistic_rows(seeds):
    """Rows of the abTEM case: errors with profiles rolled by whole cells."""
    import ase.io

    measured = oa.prepare_projections(
        oa.read_tilt_series(REALISTIC + '.hspy'), ndim=2)
    truth = ase.io.read(REALISTIC + '_truth.extxyz')
    positions = truth.positions[:, :2]
    weights = truth.arrays['weights']
    y = np.asarray(measured.data, dtype=float)
    space = measured.measure_space()
    cell = float(measured.geometry.det_partition.cell_sides[0])

    def residual(params):
        op = oa.GaussianRayTransform(space, measured.geometry, params[0])
        return (op.project(positions, params[1] * weights) - y).ravel()

    # The one-Gaussian model fitted at the true columns (unshifted data).
    start = [0.4, y.sum(axis=1).mean() * cell / weights.sum()]
    sigma, scale = least_squares(residual, start,
                                 bounds=([0.05, 0.0], [2.0, np.inf])).x
    op = oa.GaussianRayTransform(space, measured.geometry, sigma)
    m = y.shape[0]
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        steps = (np.zeros(m, int) if seed is None
                 else rng.integers(-2, 3, size=m))
        data = np.stack([np.roll(y[a], steps[a]) for a in range(m)])
        truth_shifts = (steps * cell)[:, None]
        com = centre_of_mass_shifts(op, data)
        tmat = _translations(op)
        atoms = positions + np.linalg.lstsq(tmat, truth_shifts.ravel(),
                                            rcond=None)[0]
        refined = refine_shifts(op, data, atoms, scale * weights,
                                shifts=com.shifts)
        rows.append(dict(
            seed=seed, shifts=' '.join(str(int(v)) for v in steps),
            com_error=gauge_free_error(op, com.shifts, truth_shifts, cell),
            refined_error=gauge_free_error(op, refined.shifts, truth_shifts,
                                           cell),
            at_bound=refined.at_bound, sigma=sigma, intensity=scale,
            cell=cell))
    return rows


def realistic_table(rows):
    """Markdown table of `realistic_rows`."""
    com = np.array([r['com_error'] for r in rows])
    ref = np.array([r['refined_error'] for r in rows])
    header = ['shifted by (cells)', 'centre of mass (cells)',
              'refined at true columns (cells)']
    table = [[r['shifts'] if r['seed'] is not None else 'none',
              f'{r["com_error"]:.3f}', f'{r["refined_error"]:.4f}']
             for r in rows]
    table.append(['median / worst', f'{np.median(com):.3f} / {com.max():.3f}',
                  f'{np.median(ref):.4f} / {ref.max():.4f}'])
    return (f'Atom width fitted at the true columns: sigma = '
            f'{rows[0]["sigma"]:.3f} A; cell {rows[0]["cell"]:.4f} A. '
            f'One combination of the 3 shifts is determined (the tilt-axis '
            f'offset).\n\n' + markdown_table(header, table))



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='3 seeds')
    parser.add_argument('--output', default=os.path.join(
        os.path.dirname(__file__), 'results'))
    args = parser.parse_args(argv)
    seeds = range(3 if args.quick else 10)
    start = time.perf_counter()
    rows = [run_case(dim, n_angles, noise, seed)
            for dim, n_angles in CASES for noise in NOISES for seed in seeds]
    try:
        real = realistic_rows([None] + list(seeds))
    except ImportError as exc:  # RosettaSciIO missing
        real = None
        print(f'abTEM case skipped: {exc}')
    elapsed = time.perf_counter() - start
    load = os.getloadavg()[0]
    text = '\n'.join([
        f'Shifts of every projection uniform in +-{MAX_SHIFT_CELLS:g} '
        f'detector cells, {len(seeds)} seeds per row; error = largest error '
        f'over the projections of the part of the shifts the data determine '
        f'(translations of the object removed), in detector cells. 2D: 7 x 7 '
        f'square Au lattice with a vacancy, sigma = 0.15 a, 96 cells, angles '
        f'spread over 180 degrees from 10. 3D: 44-atom Au octahedron, sigma = '
        f'0.6 A, cells of 0.5 A, tilts spread over +-60 degrees. Noise: '
        f'Gaussian, relative to the data RMS.',
        '',
        '"refined at true atoms" starts `refine_shifts` from the centre-of-'
        'mass shifts with the TRUE atoms (in the estimators\' gauge): '
        'knowledge a user lacks. It measures the alignment step of a '
        'reconstruction loop once the atoms are right; the end-to-end '
        'accuracy comes from the loop that alternates alignment and '
        'reconstruction. "determined": combinations of shifts that are not '
        'a translation (0 for 2 angles in 2D: nothing to estimate).',
        '',
        accuracy_table(rows),
        '',
        '## Multislice HAADF data (abTEM, shipped test case)',
        '',
        realistic_table(real) if real else 'skipped (RosettaSciIO missing)',
        '',
        f'{len(rows)} cases in {elapsed:.0f} s (load {load:.1f} on '
        f'{os.cpu_count()} cores). Command: `python benchmarks/alignment.py'
        f'{" --quick" if args.quick else ""}`.'])
    write_result(os.path.join(args.output, 'alignment.md'),
                 'Alignment: detector shifts recovered', text)
    write_rows(os.path.join(args.output, 'alignment.csv'), rows)


if __name__ == '__main__':
    main()
