"""A noise-aware data term: least squares weighted by the noise model or not.

The data of a microscope have Poisson-Gaussian noise (`odl_atoms.calibration`:
variance ``gain * mean + read_noise^2``): a pixel of a bright column is
noisier than a pixel of vacuum. The maximum-likelihood data term for such
noise weights each residual by ``1 / variance``; the solvers' data term is
unweighted least squares. This benchmark measures, on the abTEM cases of
``benchmarks/realistic_data.py`` (multislice HAADF in 2D, projected
potential x probe in 3D), which of the two data terms prefers the truth, and
by how much, independently of any search:

- the model (width, intensity, factors, backgrounds) is fitted at the TRUE
  atoms (`Calibration.refined`), so that both data terms see the same
  calibration and only the weighting differs;
- ``chi2`` of a configuration under a data term: ``sum W (R x - y)^2`` with
  ``W = 1 / variance`` (weighted) or ``W = 1 / mean(variance)`` (unweighted,
  the same scale): both are ``N`` (the number of data values) for noise
  alone, so their values and differences compare;
- every configuration is relaxed under each data term (positions, L-BFGS-B,
  no energy) before it is scored;
- the truth against its neighbours: each true atom removed, and one atom
  added at each candidate site (the defect's site, the lattice's empty sites
  and bridge sites in 2D, random points in 3D); the margin is the smallest
  ``chi2(alternative) - chi2(truth)`` (> 0: the data term prefers the truth);
- the reconstruction ``odl_atoms.reconstruct`` finds (unweighted, the
  library's default path): its ``chi2`` against the truth's under both terms
  (the truth lower: a search failure; higher: the data term prefers the
  wrong answer);
- ``shift``: the RMS distance of the relaxed truth from the true positions
  (the bias model error gives the positions).

A sanity check on the project's own Gaussian-atom model (Poisson counts, the
model exact): there the weighted term is the likelihood and must do at least
as well.

Usage::

    python benchmarks/noise_model.py            # the default cases
    python benchmarks/noise_model.py --case au7_vacancy_zone --no-reconstruct
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import markdown_table, write_result  # noqa: E402

DATA = os.path.join(HERE, 'data', 'realistic')
RESULTS = os.path.join(HERE, 'results')
CASES = ('au7_vacancy_zone', 'au7_interstitial_zone', 'au7_vacancy_generic',
         'au_octahedron_140')


def load_case(name):
    """``(meta, series, measured, truth)`` of a cached case."""
    import odl_atoms as oa

    base = os.path.join(DATA, name, name)
    if not os.path.exists(base + '.hspy'):
        raise SystemExit(f'{name} is not generated: python '
                         f'benchmarks/realistic_data.py --case {name}')
    meta = json.load(open(base + '.json'))
    ndim = 2 if meta['kind'] == '2d' else 3
    series = oa.read_tilt_series(base + '.hspy')
    measured = oa.prepare_projections(series, ndim=ndim)
    truth = oa.read_atoms(base + '_truth.extxyz', ndim=ndim)
    return meta, series, measured, truth


def calibration_of(name, series, measured):
    """The calibration `reconstruct` would start from (generic 2D sets: the
    width and intensity of the zone-axis series of the same crystal)."""
    from odl_atoms.calibration import calibrate

    if name.endswith('_generic'):
        _, zs, zm, _ = load_case(name[:-len('_generic')] + '_zone')
        known = calibrate(zm, images=zs)
        return calibrate(measured, images=series, sigma=known.sigma,
                         intensity=known.intensity)
    return calibrate(measured, images=series)


class DataTerm:

    """``0.5 chi2 = 0.5 sum W (R x - y)^2`` at fixed unit weights, with its
    gradient in the positions (the stencil's adjoint Jacobian applied to the
    weighted residual)."""

    def __init__(self, op, y, inverse_variance):
        self.op = op
        y = np.asarray(y, float)
        self.w = np.broadcast_to(inverse_variance, y.shape).ravel()
        self.y = y.ravel()

    def chi2(self, positions):
        r = self.op.stencil(positions).project(
            np.ones(len(positions))) - self.y
        return float(r @ (self.w * r))

    def fun(self, flat):
        positions = flat.reshape(-1, self.op.domain.ndim)
        stencil = self.op.stencil(positions)
        ones = np.ones(len(positions))
        r = stencil.project(ones) - self.y
        wr = self.w * r
        grad, _ = stencil.adjoint_jacobian(ones, wr)
        return 0.5 * float(r @ wr), np.asarray(grad).ravel()

    def relax(self, positions, maxiter=200):
        from scipy.optimize import minimize

        space = self.op.domain
        positions = np.clip(np.asarray(positions, float), space.min_pt,
                            space.max_pt)
        if positions.shape[0] == 0:
            return positions, self.chi2(positions)
        bounds = list(zip(np.tile(space.min_pt, len(positions)),
                          np.tile(space.max_pt, len(positions))))
        res = minimize(self.fun, positions.ravel(), jac=True,
                       method='L-BFGS-B', bounds=bounds,
                       options=dict(maxiter=maxiter))
        x = res.x.reshape(positions.shape)
        return x, self.chi2(x)


def candidate_sites(meta, truth, rng, n_random=20):
    """Where an atom could be added: the defect's site, the empty sites and
    bridge sites of the 2D lattice, random points inside the 3D particle's
    hull."""
    positions = truth.positions
    if positions.shape[1] == 2:
        a = float(np.min(np.asarray(meta.get('lattice_constant', 4.078)))) / 2
        lo, hi = positions.min(0), positions.max(0)
        grid = np.stack(np.meshgrid(*[np.arange(l - a, h + 1.5 * a, a / 2)
                                      for l, h in zip(lo, hi)]), -1)
        sites = grid.reshape(-1, 2)
    else:
        lo, hi = positions.min(0), positions.max(0)
        sites = rng.uniform(lo, hi, (n_random, 3))
    defect = (meta.get('defect') or {}).get('position')
    if defect is not None:
        sites = np.vstack([np.asarray(defect, float)[:positions.shape[1]],
                           sites])
    d = np.min(np.linalg.norm(sites[:, None] - positions[None], axis=-1),
               axis=1)
    return sites[d > 0.8]


def margins(term, variance, truth_relaxed, truth_chi2, sites, removals):
    """The truth against each removal and addition (each relaxed): the
    smallest ``chi2`` increase, and the smallest increase in units of its
    noise (``z``: the increase over the standard deviation that the noise
    gives it, ``2 sqrt(d' W V W d)`` with ``d`` the change of the predicted
    data, ``V`` the variances; below 2, noise alone flips the decision in a
    few percent of measurements, below 0 the data term prefers the wrong
    configuration)."""
    variance = np.asarray(variance, float).ravel()
    ones = lambda x: np.ones(len(x))  # noqa: E731
    at_truth = term.op.stencil(truth_relaxed).project(ones(truth_relaxed))
    worst = dict(removal=np.inf, removal_z=np.inf, addition=np.inf,
                 addition_z=np.inf)
    trials = [('removal', np.delete(truth_relaxed, i, axis=0))
              for i in removals]
    trials += [('addition', np.vstack([truth_relaxed, site]))
               for site in sites]
    for kind, start in trials:
        x, value = term.relax(start)
        delta = value - truth_chi2
        d = term.op.stencil(x).project(ones(x)) - at_truth
        noise = 2 * np.sqrt(float(np.sum((term.w * d) ** 2 * variance)))
        worst[kind] = min(worst[kind], delta)
        worst[kind + '_z'] = min(worst[kind + '_z'], delta / noise)
    return worst


def measure_case(name, reconstruct=True, seed=0, max_removals=None):
    """Both data terms on one case; returns rows (one per data term)."""
    import odl_atoms as oa

    rng = np.random.default_rng(seed)
    meta, series, measured, truth = load_case(name)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        cal = calibration_of(name, series, measured)
        at_truth = cal.refined(measured, truth)
    data = at_truth.apply(measured)
    op = data.operator()
    y = np.asarray(data.data, float)
    var = np.asarray(at_truth.variances(measured), float)
    n = y.size
    answer = None
    if reconstruct:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            kwargs = {}
            if name.endswith('_generic'):
                kwargs['calibration'] = cal
            result = oa.reconstruct(measured, images=series, **kwargs)
        seconds = time.perf_counter() - start
        match = oa.match_atoms(truth, result.measure)
        answer = dict(positions=np.asarray(result.measure.positions),
                      f1=match.f1, exact=match.exact, n=result.n_atoms,
                      seconds=seconds)
    sites = candidate_sites(meta, truth, rng)
    removals = np.arange(truth.n_atoms)
    if max_removals is not None and removals.size > max_removals:
        removals = rng.choice(removals, max_removals, replace=False)
    rows = []
    for label, inverse in (('unweighted', 1.0 / var.mean()),
                           ('weighted', 1.0 / var)):
        term = DataTerm(op, y, inverse)
        start = time.perf_counter()
        relaxed, value = term.relax(truth.positions)
        shift = float(np.sqrt(np.mean(np.sum(
            (relaxed - truth.positions) ** 2, axis=1))))
        worst = margins(term, var, relaxed, value, sites, removals)
        row = dict(case=name, angles='/'.join(
            f'{a:g}' for a in meta['angles_deg']), term=label, n_data=n,
            truth_chi2_per_n=value / n, shift=shift, **worst,
            n_sites=len(sites), n_removals=len(removals))
        if answer is not None:
            _, found = term.relax(answer['positions'])
            row.update(reconstruct_f1=answer['f1'],
                       reconstruct_exact=answer['exact'],
                       reconstruct_n=answer['n'],
                       reconstruct_seconds=answer['seconds'],
                       answer_minus_truth=found - value)
        row['seconds'] = time.perf_counter() - start
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v)
               for k, v in row.items()}, flush=True)
    return rows


def own_model_rows(seed=0, dose=2e4):
    """The same measurement on the project's own model: a 7 x 7 crystal with
    a vacancy at 0/45/90 degrees, Poisson counts of ``dose`` electrons per
    unit of atom data, and a vacuum level of 5 % of a column's peak."""
    import odl_atoms as oa
    from odl_atoms.calibration import NoiseModel

    rng = np.random.default_rng(seed)
    phantom = oa.lattice_with_vacancy(spacing=2.04)
    clean = oa.simulate(phantom.measure, np.radians([0, 45, 90]), sigma=0.35,
                        detector_cell=0.29)
    truth = phantom.measure
    op = clean.operator()
    background = 0.05 * float(clean.data.max())
    mean = np.asarray(clean.data, float) + background
    y = rng.poisson(dose * mean) / dose - background
    var = NoiseModel(gain=1 / dose, read_noise=0.0).variance(mean)
    meta = {'lattice_constant': 4.08,
            'defect': {'position': np.asarray(phantom.defect_sites,
                                              float)[0].tolist()}}
    sites = candidate_sites(meta, truth, rng)
    rows = []
    for label, inverse in (('unweighted', 1.0 / var.mean()),
                           ('weighted', 1.0 / var)):
        term = DataTerm(op, y, inverse)
        relaxed, value = term.relax(truth.positions)
        shift = float(np.sqrt(np.mean(np.sum(
            (relaxed - truth.positions) ** 2, axis=1))))
        worst = margins(term, var, relaxed, value, sites,
                        np.arange(truth.n_atoms))
        rows.append(dict(case='own model 7x7 vacancy', angles='0/45/90',
                         term=label, n_data=y.size,
                         truth_chi2_per_n=value / y.size, shift=shift,
                         **worst, n_sites=len(sites),
                         n_removals=truth.n_atoms))
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--case', nargs='*', default=list(CASES))
    parser.add_argument('--no-reconstruct', action='store_true')
    parser.add_argument('--output', default=os.path.join(RESULTS,
                                                         'noise_model.md'))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    rows = own_model_rows()
    for name in args.case:
        rows += measure_case(name, reconstruct=not args.no_reconstruct,
                             max_removals=30)
    wall = time.perf_counter() - start
    load = max(load, os.getloadavg()[0])
    with open(os.path.splitext(args.output)[0] + '.json', 'w') as f:
        json.dump(rows, f, indent=1, default=float)
    write_result(args.output, 'A noise-aware data term', render(rows, wall,
                                                                 load))


def render(rows, wall, load):
    def f(value, spec):
        return '' if value is None else format(value, spec)

    header = ['case', 'angles', 'data term', 'chi2/N at truth',
              'position bias (A)', 'removal: min z', 'addition: min z',
              'reconstruction (F1, exact, s)', 'answer - truth chi2']
    table = []
    for r in rows:
        rec = ''
        if r.get('reconstruct_f1') is not None:
            rec = (f"{r['reconstruct_f1']:.3f}, "
                   f"{'yes' if r['reconstruct_exact'] else 'no'}, "
                   f"{r['reconstruct_seconds']:.0f}")
        table.append([r['case'], r['angles'], r['term'],
                      f(r['truth_chi2_per_n'], '.2f'), f(r['shift'], '.3f'),
                      f(r['removal_z'], '.1f'), f(r['addition_z'], '.1f'),
                      rec, f(r.get('answer_minus_truth'), '.0f')])
    pairs = {}
    for r in rows:
        pairs.setdefault(r['case'], {})[r['term']] = r
    better = {'removal_z': 0, 'addition_z': 0, 'shift': 0,
              'truth_chi2_per_n': 0}
    for pair in pairs.values():
        u, w = pair['unweighted'], pair['weighted']
        better['removal_z'] += w['removal_z'] > u['removal_z']
        better['addition_z'] += w['addition_z'] > u['addition_z']
        better['shift'] += w['shift'] < u['shift']
        better['truth_chi2_per_n'] += (w['truth_chi2_per_n']
                                       < u['truth_chi2_per_n'])
    summary = (f'Weighted better than unweighted, of {len(pairs)} cases: '
               f"removal margin {better['removal_z']}, addition margin "
               f"{better['addition_z']}, position bias {better['shift']}, "
               f"misfit at the truth over the noise "
               f"{better['truth_chi2_per_n']}.")
    return ('Command: ``python benchmarks/noise_model.py`` (the '
            'reconstructions with the tree of commit 275d91d, which had '
            "prepare's vacuum background).\n\n"
            + __doc__.split('Usage::')[0].strip() + '\n\nColumns: ``chi2/N '
            'at truth``: the relaxed truth\'s misfit over the noise\'s '
            '(1 = the noise level); ``position bias``: RMS distance of the '
            'relaxed truth from the true atoms; ``removal/addition: min '
            'z``: the smallest margin of the truth over removing one true '
            'atom / adding one atom at a candidate site, in units of the '
            'noise standard deviation of that margin (below 0 the data '
            'term prefers the wrong configuration); ``reconstruction``: '
            '`odl_atoms.reconstruct` as a user runs it (unweighted); '
            '``answer - truth chi2``: its answer against the truth under '
            'each data term, both relaxed (> 0: the truth fits better).'
            '\n\n' + markdown_table(header, table) + '\n\n' + summary
            + f'\n\n{wall:.0f} s wall, load {load:.1f} on 2 cores.\n\n'
            + FINDINGS)


#: What the measurement of 2026-12-07 decided (the table above, 4 abTEM
#: cases and the own-model check).
FINDINGS = '''## Decision: unweighted least squares stays the data term

- **No gain from the weights.** On the project's own model (exact, the
  weighted term is the likelihood) the margins are equal within 4 %: the
  variance varies little across a profile there. On abTEM, weighted is
  better in 2 of 5 removal margins, 3 of 5 addition margins, 1 of 5
  position biases: mixed, by 10-30 % either way, with no case changed from
  wrong to right (the interstitial's worst addition is below 0 under both).
- **Weights enlarge the model misfit.** The HAADF misfit at the true atoms
  (channelling: sharper cores, longer tails) sits in the dim tails and the
  vacuum next to the columns, exactly where 1 / variance is largest: the
  misfit over the noise goes 17 -> 44 (vacancy, zone axes), 13 -> 28
  (interstitial), 0.9 -> 4.0 (generic, truth relaxed 0.28 A); only the
  nearly linear 3D case (projected potential x probe) goes 1.9 -> 1.3, with
  a larger position bias (0.062 -> 0.090 A).
- **The failures are searches, not the data term.** Both failed
  reconstructions (interstitial at zone axes, vacancy at 10/70/130) fit the
  data worse than the truth under both data terms (``answer - truth chi2``
  1600-20000 > 0): a weighted solver would start from the same wrong
  answers' basins.
- **Cost.** A weighted data term needs the weights in the objective, the
  compiled kernels' fused data term, the oracle's scores and Gram
  matrices, the removal changes, the lattice fits, annealing and the
  certificate (odl_atoms/objective.py, kernels.py, solvers/*): not worth it
  on this evidence.

The discrepancy principle is consistent with the unweighted term and the
Poisson-Gaussian model: ``noise_std`` is the root-mean-square standard
deviation (`Calibration.noise_std`), so ``c N noise_std^2`` is the expected
squared noise norm (tests/test_noise_model.py checks the bound against the
misfit of noise realisations put through preparation and calibration: 1.5
% with the true noise model, 9 % with the one estimated from the images).
But on multislice data the model misfit at the truth is 13-17 times the
noise at 2D zone axes: the bound (``tau^2 = 1.21`` times the noise) is
never met there, and the principle lowers alpha in every such run whatever
the answer.
'''


if __name__ == '__main__':
    main()
