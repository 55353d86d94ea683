"""How precise can ADCG's positions be? Cramér-Rao bound vs measured RMSD.

Issue 3 asks for an RMSD of matched atoms below 0.25 detector cells at 1 %
noise on the 2D defects benchmark. For exactly the problems of
``benchmarks/defects.py`` (same phantoms, blurs, 96 detector cells, angle
sets 0/90, 0/45/90, 0/50, 0/60/120; 1 % noise) this script computes the
Cramér-Rao lower bound on the RMSD of any unbiased estimator of the
positions (`odl_atoms.position_crb`, weights and sigma known) and puts it
next to

- ADCG's measured RMSD of matched atoms (alpha = default and 0), the median
  over noise seeds from ``benchmarks/results/defects.csv`` (run
  ``benchmarks/defects.py`` first);
- the RMSD of the local minimiser of the data term alone (least squares,
  alpha = 0) started at the truth, root mean square over noise seeds 0-5:
  the estimator the bound is about (it reaches the bound where the problem
  is close to linear), computed here without any search.

Usage::

    python benchmarks/precision.py

Writes ``benchmarks/results/precision.md`` and ``precision.csv``.
"""

import os

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
import argparse  # noqa: E402
import csv  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _common import markdown_table, write_result  # noqa: E402
from defects import ANGLE_SETS, DEFECTS, N_DETECTOR  # noqa: E402

NOISE = 0.01
BLURS = (0.12, 0.18)
SEEDS = tuple(range(6))  # least-squares fits; 0 and 1 are ADCG's data
TARGET = 0.25  # detector cells (issue 3)


def problem(defect, angles, blur, seed):
    """The phantom and measurement of ``benchmarks/defects.py``'s run_case."""
    import odl_atoms as oa

    phantom = oa.defect_phantom(defect)
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians(ANGLE_SETS[angles]),
                           blur * a, n_detector=N_DETECTOR, noise=NOISE,
                           seed=seed)
    return phantom, measured


def least_squares_from_truth(op, truth, data):
    """Local minimiser of the data misfit over positions (weights known)."""
    pos0, weights = truth.positions, truth.weights
    n, d = pos0.shape
    y = np.asarray(data.data, float).ravel()

    def residual(x):
        return op.project(x.reshape(n, d), weights).ravel() - y

    def jacobian(x):
        index, deriv = op.stencil(x.reshape(n, d)).position_derivatives(weights)
        jac = np.zeros((y.size, n * d))
        cols = np.broadcast_to(np.arange(n * d).reshape(n, d, 1), deriv.shape)
        rows = np.broadcast_to(index[:, None, :], deriv.shape)
        np.add.at(jac, (rows.ravel(), cols.ravel()), deriv.ravel())
        return jac

    fit = scipy.optimize.least_squares(residual, pos0.ravel(), jac=jacobian,
                                       method='trf', x_scale='jac',
                                       xtol=1e-12, ftol=1e-12, gtol=1e-12,
                                       max_nfev=2000)
    return fit.x.reshape(n, d)


def measured_rmsd(path):
    """Median RMSD of matched atoms (cells) per (defect, angles, blur, alpha)."""
    groups = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            if float(row['noise']) != NOISE:
                continue
            key = (row['defect'], row['angles'], float(row['blur']),
                   float(row['alpha']))
            groups.setdefault(key, []).append(float(row['rmsd_cells']))
    return {k: float(np.nanmedian(v)) for k, v in groups.items()}


def run(defect, angles, blur):
    import odl_atoms as oa

    start = time.perf_counter()
    phantom, measured = problem(defect, angles, blur, SEEDS[0])
    op = measured.operator()
    bound = oa.position_crb(op, phantom.measure, measured.noise_std)
    fits = []
    for seed in SEEDS:
        _, m = problem(defect, angles, blur, seed)
        pos = least_squares_from_truth(op, phantom.measure, m.element())
        err = np.sum((pos - phantom.measure.positions) ** 2, axis=1)
        fits.append(float(err.mean()))
    return dict(defect=defect, angles=angles, blur=blur, n_atoms=bound.n_atoms,
                crb_cells=bound.rmsd_cells,
                crb_median_atom_cells=float(np.median(bound.atom_rms_cells)),
                n_undetermined=int(bound.undetermined.size),
                null_dim=bound.null_dim,
                # root mean square over seeds, as the bound (an expectation)
                lsq_cells=float(np.sqrt(np.mean(fits))) / bound.cell,
                time=time.perf_counter() - start)


def _cells(value):
    return '∞' if not np.isfinite(value) else f'{value:.3g}'


def _ratio(measured, bound):
    if not np.isfinite(measured) or not np.isfinite(bound):
        return '–'
    return f'{measured / bound:.2g}'


def _compact(rs):
    """Case names grouped by defect and angle set (blurs in brackets)."""
    groups = {}
    for r in rs:
        groups.setdefault(r['defect'], {}).setdefault(r['angles'], []).append(
            f"{r['blur']:g}")
    return '; '.join(
        f'{defect} ' + ', '.join(f"{angles} ({', '.join(blurs)})"
                                 for angles, blurs in by_angles.items())
        for defect, by_angles in groups.items()) or 'none'


def compute(output):
    """Bounds and least-squares fits of every case (the slow part)."""
    from odl_atoms import DEFAULT_ALPHA

    measured = measured_rmsd(os.path.join(output, 'defects.csv'))
    rows = []
    for defect in DEFECTS:
        for angles in ANGLE_SETS:
            for blur in BLURS:
                r = run(defect, angles, blur)
                r['adcg_cells'] = measured.get(
                    (defect, angles, blur, DEFAULT_ALPHA), np.nan)
                r['adcg0_cells'] = measured.get(
                    (defect, angles, blur, 0.0), np.nan)
                rows.append(r)
                print(f"{defect:17s} {angles:9s} {blur}: CRB "
                      f"{r['crb_cells']:.3g} cells, LSQ {r['lsq_cells']:.3g}, "
                      f"ADCG {r['adcg_cells']:.3g}")
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, 'precision.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def read_rows(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k not in ('defect', 'angles'):
                r[k] = float(v)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--output', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results'))
    parser.add_argument('--report-only', action='store_true',
                        help='rewrite precision.md from precision.csv')
    args = parser.parse_args(argv)
    if args.report_only:
        rows = read_rows(os.path.join(args.output, 'precision.csv'))
    else:
        rows = compute(args.output)
    report(rows, args.output)


def report(rows, output):
    """Write precision.md: the table and the computed conclusions."""
    from odl_atoms import DEFAULT_ALPHA

    elapsed = sum(r['time'] for r in rows)
    table = []
    for r in rows:
        undet = (f"{r['n_undetermined']:.0f}/{r['n_atoms']:.0f} "
                 f"({r['null_dim']:.0f})"
                 if r['null_dim'] else '0')
        table.append([
            r['defect'], r['angles'], f"{r['blur']:g}", _cells(r['crb_cells']),
            _cells(r['crb_median_atom_cells']), undet,
            _cells(r['lsq_cells']), _cells(r['adcg_cells']),
            _ratio(r['adcg_cells'], r['crb_cells']),
            _cells(r['adcg0_cells']), _ratio(r['adcg0_cells'], r['crb_cells'])])
    header = ['defect', 'angles', 'blur (a)', 'CRB RMSD', 'CRB median atom',
              'undetermined atoms (null dim)', 'LSQ from truth',
              f'ADCG alpha={DEFAULT_ALPHA:g}', 'ratio', 'ADCG alpha=0',
              'ratio alpha=0']

    def span(rs, key):
        vals = [r[key] for r in rs]
        return f'{min(vals):.2g}-{max(vals):.2g}' if vals else '-'

    infeasible = [r for r in rows if not r['crb_cells'] <= TARGET]
    singular = [r for r in infeasible if not np.isfinite(r['crb_cells'])]
    feasible = [r for r in rows if r['crb_cells'] <= TARGET]
    # Far from the bound: the data fix those positions only at second order.
    nonlinear = [r for r in rows if r['lsq_cells'] < 0.5 * r['crb_cells']]
    lsq_miss = [r for r in rows if r['lsq_cells'] > TARGET]
    search_miss = [r for r in feasible if r['adcg_cells'] > TARGET]
    beaten = [r for r in rows if r['adcg_cells'] < r['crb_cells']]

    text = [
        f'Problems of `benchmarks/defects.py` at {100 * NOISE:.0f} % noise '
        f'({N_DETECTOR} detector cells, blur sigma in {list(BLURS)} x a). '
        'All RMSDs in detector cells. "CRB RMSD": the Cramér-Rao bound on '
        'the RMSD over all atoms of any unbiased estimator of the positions '
        '(`position_crb`, weights and sigma known); "CRB median atom": the '
        'median of the per-atom bounds; "undetermined": atoms with a '
        'coordinate the data do not determine at first order (the dimension '
        'of the null space of the Fisher information in brackets; the bound '
        'is then infinite). "LSQ from truth": RMSD over all atoms of the '
        'local least-squares fit of the data alone started at the truth '
        f'(root mean square over noise seeds {SEEDS[0]}-{SEEDS[-1]}). '
        '"ADCG": median RMSD of matched atoms (within 0.3 a) from '
        '`defects.csv`; "ratio" = ADCG / CRB (below 1: the estimate is '
        'biased, by the energy prior or by the nonlinearity of the model).',
        '', markdown_table(header, table), '',
        f'**Unbiased estimators.** The {TARGET}-cell target is below the '
        f'bound, i.e. out of reach of every unbiased estimator, in '
        f'{len(infeasible)} of {len(rows)} cases: {_compact(infeasible)}. In '
        f'{len(singular)} of them the bound is infinite (atoms that share a '
        'ray at every angle, zone axes, or at most one equation per atom '
        'and angle with 2 angles). The target is above the bound in '
        f'{len(feasible)} cases: {_compact(feasible)}.',
        '',
        '**The bound is not the whole story.** In '
        f'{len(nonlinear)} cases (every infinite bound among them) the '
        'least-squares fit from the truth is more than twice as precise '
        'as the bound (RMSD '
        f'{span(nonlinear, "lsq_cells")} cells): the data fix the poorly '
        'determined combinations of positions at second order (atoms nearly '
        'on one ray), where the linearisation behind the bound fails and '
        'estimators are biased. Where the problem is close to linear the fit '
        'reaches the bound (the tests check this by Monte Carlo). The data '
        f'term\'s own minimiser at the truth misses the target in '
        f'{len(lsq_miss)} cases: {_compact(lsq_miss)}; there {TARGET} cells is '
        'below the precision of even the data term\'s local minimiser next '
        'to the truth, the best a search can end in without the prior.',
        '',
        f'**ADCG.** The target is within the bound but ADCG misses it in '
        f'{len(search_miss)} cases ({_compact(search_miss)}: ADCG RMSD '
        f'{span(search_miss, "adcg_cells")} cells): a search that found the '
        'wrong arrangement, not a lack of precision in the data. ADCG '
        f'(alpha = {DEFAULT_ALPHA:g}) is below a finite bound in '
        f'{len([r for r in beaten if np.isfinite(r["crb_cells"])])} cases: '
        f'{_compact([r for r in beaten if np.isfinite(r["crb_cells"])])}. '
        '(Cases: defect, angle set (blurs in a).)',
        '', f'Wall time {elapsed:.0f} s (bounds and {len(SEEDS)} '
        'least-squares fits per case, one process).']
    write_result(os.path.join(output, 'precision.md'),
                 'Position precision: Cramér-Rao bound vs ADCG',
                 '\n'.join(text))


if __name__ == '__main__':
    main()
