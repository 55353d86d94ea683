"""3D nanoparticles side by side: ADCG, annealing and SIRT + picking.

Ground truths (gold, nearest-neighbour distance a = 2.885 A), each with
``VACANCIES`` vacancies and 0.05 A rms Gaussian displacements; the seed of a
case draws the vacancies, the displacements, the noise and the annealing:

- ``octahedron``: `nanoparticle('octahedron', size=6)`, a single crystal,
  146 atoms before vacancies;
- ``decahedron``: `nanoparticle('decahedron', size=6)`, five twinned
  grains, 181 atoms;
- ``icosahedron``: `nanoparticle('icosahedron', size=4)`, twenty twinned
  tetrahedra, 147 atoms;
- ``stacking_fault``: `fcc_slab(size=(5, 6))`, a six-layer (111) flake
  stacked ABC|BCA (intrinsic stacking fault), 180 atoms.

Measurement: sigma = 0.15 a, detector cells of 0.5 A, k projections
uniform in [-70, 70] degrees about one tilt axis (z,
``Parallel3dAxisGeometry``) for k = 3, 5, 10 at 1 % Gaussian noise, and
k = 5 at 5 % noise.

Methods (each with the known noise level):

- ``ADCG``: `ADCG` with its defaults (batch additions from no atom) and
  the Lennard-Jones potential with r_min = a;
- ``ADCG + LatticeStart``: the same, started only from the fcc lattice that
  fits the data best (`LatticeStart`; its offset is searched, not its
  orientation): for the particles `LatticeStart('fcc')` (ase.cluster's cubic
  axes are x, y, z), for the slab the fcc basis in the slab's frame
  (``SLAB_BASIS``: (111) normal along z), which `'fcc'` would not fit. The
  orientation of the crystal is thus given, as a user who has indexed the
  zone axes would give it;
- ``annealing``: `SimulatedAnnealing` with its defaults (300 sweeps, gain
  map on a grid of spacing sigma refreshed every 10 moves) and the same
  objective (r_min = a, default alpha) and, as ``benchmarks/compare.py``
  runs it, no atom count: the data decide how many atoms there are. It runs
  at 5 tilts only (1 and 5 % noise), its slowest method's share of the
  budget. (Until its gain map used ADCG's separable scoring grid, 40
  sweeps on the 144-atom octahedron took 210 s and 4.6 GB; the defaults
  now take about 76 s and 330 MB there.)
- ``SIRT + picking``: `SIRT` (ASTRA on the CPU, slice by slice) with its
  default `AtomPicker`.

Scores: `match_atoms` against the phantom (tolerance 0.3 a), F1, "exact"
(F1 = 1), RMSD of matched atoms (angstrom), atoms found, the solver's wall
time.

Usage::

    python benchmarks/clusters3d.py --workers 2    # full run
    python benchmarks/clusters3d.py --quick        # seconds-long smoke run

The full run is 4 phantoms x 4 measurements x 2 seeds x 3 methods plus
16 annealing runs (5 tilts): 112 reconstructions. Measured on 2026-11-25
(AMD EPYC, 2 cores) with ``--workers 2``: 22.8 min wall time at a load
average of 1-2.4. ``--seeds 1`` halves every method's runs; the committed
results say which was run, and the wall time and load it took. ``--quick`` uses small
particles (13-24 atoms), 5 tilts, one seed and a 5-sweep annealing, and
writes to a temporary folder unless ``--output`` is given.

Writes ``clusters3d.md``, ``clusters3d.csv`` and ``clusters3d.png`` (the
ADCG, annealing and SIRT + picking answers at 5 tilts, 1 % noise, first
seed, against the truth) into ``--output`` (default
``benchmarks/results``).
"""

import os

# One BLAS thread per worker process: the workers are the parallelism.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
import csv
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
# Measure the checkout this script lives in, not an installed odl_atoms.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import (markdown_table, reconstruction_parser,  # noqa: E402
                     run_parallel, write_result)

PHANTOMS = ('octahedron', 'decahedron', 'icosahedron', 'stacking_fault')
#: Phantom sizes of the full run (atoms before vacancies: 146, 181, 147,
#: 180) and of ``--quick`` (19, 23, 13, 24).
SIZES = {'octahedron': 6, 'decahedron': 6, 'icosahedron': 4,
         'stacking_fault': (5, 6)}
QUICK_SIZES = {'octahedron': 3, 'decahedron': 3, 'icosahedron': 2,
               'stacking_fault': (2, 2)}
VACANCIES = 2
DISPLACEMENT = 0.05
BLUR = 0.15
DETECTOR_CELL = 0.5
TILT_RANGE = 70.0
#: (tilts, noise) of the measurements.
MEASUREMENTS = ((3, 0.01), (5, 0.01), (10, 0.01), (5, 0.05))
SEEDS = (0, 1)
METHODS = ('ADCG', 'ADCG + LatticeStart', 'annealing', 'SIRT + picking')
#: Annealing budget (see the module docstring); ``proposal_spacing`` is in
#: units of sigma.
ANNEAL = {}   # the defaults
QUICK_ANNEAL = dict(n_sweeps=5, refresh_interval=50, proposal_spacing=1.5)
#: The tilt counts annealing runs at (its cost: see the module docstring).
ANNEAL_TILTS = (5,)
#: The case of the figure: (tilts, noise, seed).
FIGURE_CASE = (5, 0.01, 0)
FIGURE_METHODS = ('ADCG', 'annealing', 'SIRT + picking')
#: fcc lattice of `fcc_slab` for a nearest-neighbour distance of 1, basis
#: vectors as rows: ase.build.fcc111(orthogonal=True) puts the close-packed
#: layers normal to z with a nearest-neighbour bond along x, and the third
#: vector steps from one layer to the next (A to B) of the layers below the
#: stacking fault. (Checked in `slab_basis` against the phantom itself.)
SLAB_BASIS = np.array([[1.0, 0.0, 0.0],
                       [0.5, np.sqrt(3) / 2, 0.0],
                       [0.0, -1 / np.sqrt(3), np.sqrt(2 / 3)]])


def phantom(name, seed, quick=False):
    """The phantom ``name`` with its vacancies and displacements."""
    import odl_atoms as oa

    size = (QUICK_SIZES if quick else SIZES)[name]
    vacancies = 1 if quick else VACANCIES
    if name == 'stacking_fault':
        return oa.fcc_slab(size=size, vacancies=vacancies,
                           displacement=DISPLACEMENT, seed=seed)
    return oa.nanoparticle(name, size=size, vacancies=vacancies,
                           displacement=DISPLACEMENT, seed=seed)


def slab_basis(size, spacing):
    """`SLAB_BASIS` scaled to ``spacing``, checked against a perfect slab.

    Every atom of the layers below the stacking fault of
    ``fcc_slab(size=size)`` must lie on the lattice through its first atom;
    otherwise ASE's slab convention changed and the lattice start would be
    told a wrong crystal.
    """
    import odl_atoms as oa

    basis = spacing * SLAB_BASIS
    perfect = oa.fcc_slab(size=size)
    x = perfect.measure.positions
    layers = np.unique(np.round(x[:, 2], 6))
    below = x[x[:, 2] < layers[len(layers) // 2] - 1e-6]
    coef = np.linalg.solve(basis.T, (below - below[0]).T)
    if not np.allclose(coef, np.round(coef), atol=1e-6):
        raise RuntimeError('fcc_slab is not on SLAB_BASIS: update the basis '
                           'to the slab ASE builds')
    return basis


def angles(tilts):
    return np.radians(np.linspace(-TILT_RANGE, TILT_RANGE, tilts))


def task(args):
    """One reconstruction; return a dict of plain values (a table row)."""
    name, tilts, noise, seed, method, quick = args
    warnings.filterwarnings('ignore', category=UserWarning)
    import odl_atoms as oa
    from odl_atoms.problem import Problem

    ph = phantom(name, seed, quick)
    a = ph.lattice_spacing
    measured = oa.simulate(ph.measure, angles(tilts), BLUR * a,
                           detector_cell=DETECTOR_CELL, noise=noise,
                           seed=seed)
    op, data = measured.operator(), measured.element()
    # Every method is given the known noise level; ADCG and annealing also
    # the lattice spacing (SIRT has no potential).
    problem = Problem(op, data, potential=a, noise_std=measured.noise_std)
    if method == 'ADCG':
        solver = oa.ADCG()
    elif method == 'ADCG + LatticeStart':
        lattice = ('fcc' if name != 'stacking_fault' else
                   slab_basis((QUICK_SIZES if quick else SIZES)[name], a))
        solver = oa.ADCG(starts=[oa.LatticeStart(lattice)])
    elif method == 'annealing':
        budget = dict(QUICK_ANNEAL if quick else ANNEAL)
        if 'proposal_spacing' in budget:   # in units of sigma here
            budget['proposal_spacing'] *= op.sigma
        solver = oa.SimulatedAnnealing(seed=seed, **budget)
    elif method == 'SIRT + picking':
        solver = oa.SIRT()
    else:
        raise ValueError(f'unknown method {method!r}')
    result = solver.solve(problem)
    match = oa.match_atoms(ph.measure, result.measure)
    return dict(phantom=name, atoms=ph.n_atoms, tilts=tilts, noise=noise,
                seed=seed, method=method, exact=bool(match.exact),
                f1=float(match.f1), rmsd=float(match.rmsd),
                found=int(result.n_atoms), time=float(result.time),
                positions=np.asarray(result.measure.positions).tolist())


def plan(quick, n_seeds=len(SEEDS)):
    """The tasks, slow methods first so that the pool ends with short ones."""
    measurements = ((5, 0.01),) if quick else MEASUREMENTS
    seeds = SEEDS[:1] if quick else SEEDS[:n_seeds]
    tasks = [(name, k, noise, seed, method, quick)
             for name in PHANTOMS for k, noise in measurements
             for seed in seeds for method in METHODS
             if method != 'annealing' or k in ANNEAL_TILTS]
    cost = {'annealing': 0, 'ADCG': 1, 'ADCG + LatticeStart': 1,
            'SIRT + picking': 2}
    tasks.sort(key=lambda t: (cost[t[4]], -t[1]))
    return tasks


# --- Results


def sort_key(row):
    return (PHANTOMS.index(row['phantom']),
            MEASUREMENTS.index((row['tilts'], row['noise'])),
            METHODS.index(row['method']), row['seed'])


def table(rows):
    """One line per phantom, measurement and method (seeds pooled)."""
    groups = {}
    for r in sorted(rows, key=sort_key):
        key = (r['phantom'], r['tilts'], r['noise'], r['method'])
        groups.setdefault(key, []).append(r)
    lines = []
    for (name, tilts, noise, method), group in groups.items():
        exact = sum(g['exact'] for g in group)
        rmsd = [g['rmsd'] for g in group if np.isfinite(g['rmsd'])]
        lines.append([
            name.replace('_', ' '),
            '/'.join(sorted({str(g['atoms']) for g in group}, key=int)),
            tilts, f'{100 * noise:.0f} %', method,
            f'{exact}/{len(group)}',
            ' / '.join(f"{g['f1']:.3f}" for g in group),
            f'{np.mean(rmsd):.3f}' if rmsd else '-',
            ' / '.join(str(g['found']) for g in group),
            f"{np.mean([g['time'] for g in group]):.1f}"])
    return lines


def _mean_f1(rows, **where):
    group = [r for r in rows if all(r[k] == v for k, v in where.items())]
    if not group:
        return None, 0, 0
    return (float(np.mean([g['f1'] for g in group])),
            sum(g['exact'] for g in group), len(group))


def findings(rows):
    """The "what this shows" sentences, computed from the rows."""
    out = []
    for method in METHODS:
        f1, exact, n = _mean_f1(rows, method=method)
        if n == 0:
            continue
        per = []
        for name in PHANTOMS:
            pf1, pex, pn = _mean_f1(rows, method=method, phantom=name)
            if pn:
                per.append(f'{name.replace("_", " ")} {pf1:.3f} '
                           f'({pex}/{pn} exact)')
        out.append(f'- {method}: exact in {exact} of {n} runs, mean F1 '
                   f'{f1:.3f}; by phantom: ' + ', '.join(per) + '.')
    # The lattice start against the default, phantom by phantom, on the same
    # cases (same measurement and seed).
    helped, hurt, same = [], [], []
    for name in PHANTOMS:
        pairs = []
        for r in rows:
            if r['phantom'] != name or r['method'] != 'ADCG':
                continue
            other = [s for s in rows if s['method'] == 'ADCG + LatticeStart'
                     and all(s[k] == r[k] for k in
                             ('phantom', 'tilts', 'noise', 'seed'))]
            if other:
                pairs.append((r['f1'], other[0]['f1']))
        if not pairs:
            continue
        diff = float(np.mean([b - a for a, b in pairs]))
        text = f'{name.replace("_", " ")} ({diff:+.3f})'
        (helped if diff > 0.005 else hurt if diff < -0.005 else same).append(
            text)
    if helped or hurt or same:
        out.append('- LatticeStart against the default ADCG (mean change of '
                   'F1 over the same cases): higher on '
                   + (', '.join(helped) or 'none') + '; lower on '
                   + (', '.join(hurt) or 'none') + '; within 0.005 on '
                   + (', '.join(same) or 'none') + '.')
    # How the number of tilts matters (1 % noise).
    by_tilts = []
    for method in METHODS:
        parts = []
        for k in sorted({r['tilts'] for r in rows if r['noise'] == 0.01}):
            f1, exact, n = _mean_f1(rows, method=method, tilts=k, noise=0.01)
            if n:
                parts.append(f'{k} tilts {f1:.3f} ({exact}/{n})')
        if parts:
            by_tilts.append(f'{method}: ' + ', '.join(parts))
    if by_tilts:
        out.append('- Mean F1 (exact runs) by number of tilts at 1 % noise: '
                   + '; '.join(by_tilts) + '.')
    noisy = []
    for method in METHODS:
        low, _, n1 = _mean_f1(rows, method=method, tilts=5, noise=0.01)
        high, _, n5 = _mean_f1(rows, method=method, tilts=5, noise=0.05)
        if n1 and n5:
            noisy.append(f'{method} {low:.3f} -> {high:.3f}')
    if noisy:
        out.append('- From 1 % to 5 % noise at 5 tilts, mean F1: '
                   + ', '.join(noisy) + '.')
    best = {}
    for r in rows:
        best.setdefault(r['method'], []).append(r['time'])
    out.append('- Median time per reconstruction: ' + ', '.join(
        f'{m} {np.median(best[m]):.1f} s' for m in METHODS if m in best)
        + '.')
    return out


def write_csv(rows, path):
    fields = ['phantom', 'atoms', 'tilts', 'noise', 'seed', 'method', 'exact',
              'f1', 'rmsd', 'found', 'time']
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
        writer.writeheader()
        for r in sorted(rows, key=sort_key):
            writer.writerow(r)
    print(f'wrote {path}')


def figure(rows, path, quick=False):
    """Each phantom (rows) reconstructed by `FIGURE_METHODS` (columns) at
    `FIGURE_CASE`, atoms coloured by distance to the truth (red crosses)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    import odl_atoms as oa

    tilts, noise, seed = FIGURE_CASE
    picks = {(r['phantom'], r['method']): r for r in rows
             if (r['tilts'], r['noise'], r['seed']) == FIGURE_CASE}
    fig = plt.figure(figsize=(4.2 * len(FIGURE_METHODS), 3.8 * len(PHANTOMS)))
    for i, name in enumerate(PHANTOMS):
        truth = phantom(name, seed, quick).measure
        for j, method in enumerate(FIGURE_METHODS):
            ax = fig.add_subplot(len(PHANTOMS), len(FIGURE_METHODS),
                                 i * len(FIGURE_METHODS) + j + 1,
                                 projection='3d')
            r = picks.get((name, method))
            if r is None:
                ax.set_axis_off()
                continue
            oa.plot.plot_atoms_3d(
                np.array(r['positions']).reshape(-1, 3), truth, ax=ax,
                title=f"{name.replace('_', ' ')}: {method}\nF1 = "
                      f"{r['f1']:.3f}, RMSD = {r['rmsd']:.3f} A")
            ax.title.set_fontsize(9)
    fig.suptitle(f'{tilts} tilts in +-{TILT_RANGE:g} degrees, '
                 f'{100 * noise:.0f} % noise, seed {seed} (red crosses: '
                 'truth; colour: distance to the matched true atom, '
                 'unmatched at the tolerance)', fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=70)
    plt.close(fig)
    print(f'wrote {path}')


def main(argv=None):
    parser = reconstruction_parser(__doc__)
    parser.add_argument('--seeds', type=int, default=len(SEEDS),
                        choices=range(1, len(SEEDS) + 1),
                        help='number of seeds per case (default: '
                             f'{len(SEEDS)})')
    args = parser.parse_args(argv)
    output = args.output
    tmp = None
    if args.quick and '--output' not in (argv if argv is not None
                                         else sys.argv):
        # A smoke run must not overwrite the committed results.
        tmp = tempfile.mkdtemp(prefix='clusters3d_quick_')
        output = tmp
    os.makedirs(output, exist_ok=True)
    tasks = plan(args.quick, args.seeds)
    load_before = os.getloadavg()
    start = time.perf_counter()
    rows = run_parallel(task, tasks, args.workers)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()

    budget = QUICK_ANNEAL if args.quick else ANNEAL
    seeds = SEEDS[:1] if args.quick else SEEDS[:args.seeds]
    text = [
        f'{"Quick run" if args.quick else "Full run"}: {len(rows)} '
        f'reconstructions, wall time {wall / 60:.1f} min with {args.workers} '
        f'worker process{"es" if args.workers > 1 else ""}. Load average '
        f'(1, 5, 15 min) {load_before[0]:.1f} / {load_before[1]:.1f} / '
        f'{load_before[2]:.1f} at the start and {load_after[0]:.1f} / '
        f'{load_after[1]:.1f} / {load_after[2]:.1f} at the end, on '
        f'{os.cpu_count()} cores: above the number of workers, other '
        'processes shared the machine and times are pessimistic.', '',
        f'Gold particles (a = 2.885 A) with '
        f'{"1 vacancy" if args.quick else f"{VACANCIES} vacancies"} and {DISPLACEMENT} A rms displacements (phantom, noise '
        f'and annealing seeded by the seed: {", ".join(map(str, seeds))}); '
        f'sigma = {BLUR} a, detector cells {DETECTOR_CELL} A, tilts uniform '
        f'in +-{TILT_RANGE:g} degrees about z. ADCG and annealing: '
        'Lennard-Jones with r_min = a, default alpha, the known noise level. '
        'ADCG + LatticeStart: started only from the best-fitting fcc lattice '
        "(particles: LatticeStart('fcc'), cubic axes x, y, z; slab: the fcc "
        'basis in the slab frame, (111) along z). Annealing ('
        f"{'/'.join(map(str, ANNEAL_TILTS))} tilts only): "
        + (', '.join(f'{k}={v:g}' for k, v in budget.items()) or 'defaults')
        + ' (300 sweeps, gain map on a sigma grid refreshed every 10 moves), '
        'atom count not given (see the '
        'script). SIRT + picking: defaults, the known noise level (its '
        'stopping rule). The blur (the operator\'s sigma), the spacing a and '
        'the noise level are the true ones, which a user may have to '
        'estimate. "exact" = F1 = 1 (tolerance '
        '0.3 a); F1 and atoms found per seed; RMSD of matched atoms (A) and '
        "time (the solver's wall time) averaged over the seeds.", '',
        markdown_table(['phantom', 'atoms', 'tilts', 'noise', 'method',
                        'exact', 'F1', 'RMSD (A)', 'atoms found',
                        'time (s)'], table(rows)),
        '', '## What this shows', '', *findings(rows), '',
        f'Figure: `clusters3d.png` ({FIGURE_CASE[0]} tilts, '
        f'{100 * FIGURE_CASE[1]:.0f} % noise, seed {FIGURE_CASE[2]}; '
        + ', '.join(FIGURE_METHODS) + ' against the truth).']
    write_result(os.path.join(output, 'clusters3d.md'),
                 '3D nanoparticles: ADCG, annealing, SIRT + picking',
                 '\n'.join(text))
    write_csv(rows, os.path.join(output, 'clusters3d.csv'))
    figure(rows, os.path.join(output, 'clusters3d.png'), args.quick)


if __name__ == '__main__':
    main()
