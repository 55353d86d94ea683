"""Baselines side by side: SIRT (+ learned) picking, annealing and ADCG.

Part 1 (methods): the 2D defect phantoms of ``defects.py`` (square lattice,
7 x 7 sites, spacing a = 2.885 angstrom, with a vacancy, an interstitial, an
edge dislocation, a grain boundary or a random displacement field), atom
blur sigma = 0.15 a, 96 detector cells, angle sets 0/90, 0/45/90 (zone
axes) and 0/60/120 degrees (generic), 1 % and 5 % relative Gaussian noise;
methods

- SIRT + picking (`odl_atoms.SIRT`, `AtomPicker`, defaults),
- SIRT + learned picking (`odl_atoms.learned.LearnedSIRT`; one model per
  angle set: the shipped model for 0/45/90, the others trained here with
  the same defaults),
- simulated annealing (`SimulatedAnnealing`, Lennard-Jones with r_min = a,
  default alpha),
- ADCG without energy (alpha = 0) and with it (r_min = a, default alpha),
  and with it and lattice starts (`lattice_starts('square')`: greedy,
  `LatticeStart('square')`, its 2 x 2 patches and
  `SplitLatticeStart('square')`; the lowest objective wins).

Part 2 (where learning starts to work): SIRT + picking against SIRT +
learned picking for 2, 3, 5, 10 and 15 angles uniform in [0, 180), the same
phantoms, 1 % and 5 % noise, 2 noise seeds; one model per angle count
(trained for that angle set: the network learns that set's streaks).

Usage::

    python benchmarks/compare.py            # full run, 2 worker processes
    python benchmarks/compare.py --quick    # small models, fewer cases
    python benchmarks/compare.py --figure-only   # redraw compare.png

Writes ``benchmarks/results/compare.md`` and ``compare.png``; trained
models go to ``--models DIR`` (default: a temporary folder), and models
already there with the same configuration are reused.
"""

import argparse
import os

# One BLAS thread per worker process: the workers are the parallelism.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
import itertools
import multiprocessing
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import markdown_table, write_result  # noqa: E402

DEFECTS = ('vacancy', 'interstitial', 'edge_dislocation', 'grain_boundary',
           'displaced')
ANGLE_SETS = {'0/90': (0, 90), '0/45/90': (0, 45, 90),
              '0/60/120': (0, 60, 120)}
ANGLE_COUNTS = (2, 3, 5, 10, 15)
METHODS = ('SIRT + picking', 'SIRT + learned', 'annealing', 'ADCG alpha=0',
           'ADCG + energy', 'ADCG + lattice starts')
N_DETECTOR = 96
BLUR = 0.15
# The case drawn in the figure (defect, angle set, noise, seed).
FIGURE_CASE = ('interstitial', '0/60/120', 0.01, 0)


def uniform_angles(n):
    """``n`` angles (degrees) uniform in [0, 180)."""
    return tuple(float(x) for x in np.round(np.arange(n) * 180.0 / n, 6))


def angle_label(angles):
    return '/'.join(f'{a:g}' for a in angles)


def _init_worker():
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    warnings.filterwarnings('ignore', category=UserWarning)


# --- Tasks (run in workers; build their own operators)


def train_task(task):
    """Train (or reuse) the model of one angle set; return its path/info."""
    _, angles, path, quick = task
    from odl_atoms.learned import load_model, train
    from odl_atoms.learned.training import default_training_config
    overrides = dict(angles=list(np.radians(angles)))
    if quick:
        overrides.update(n_samples=150, n_steps=300)
    config = default_training_config(**overrides)
    if os.path.isfile(path):
        model = load_model(path, device='cpu')
        if all(model.config.get(k) == v for k, v in config.items()):
            return dict(kind='model', angles=angles, path=path, reused=True,
                        **model_info(model))
    model = train(device='cpu', progress=False, output=path, **config)
    return dict(kind='model', angles=angles, path=path, reused=False,
                **model_info(model))


def model_info(model):
    c = model.config
    return dict(time=c.get('training_time'), val_f1=c.get('val_f1'),
                threshold=c.get('threshold'), n_samples=c.get('n_samples'),
                n_steps=c.get('n_steps'))


def _problem(defect, angles, noise, seed):
    import odl_atoms as oa
    phantom = oa.defect_phantom(defect)
    a = phantom.lattice_spacing
    measured = oa.simulate(phantom.measure, np.radians(angles), BLUR * a,
                           n_detector=N_DETECTOR, noise=noise, seed=seed)
    return phantom, measured


def _row(phantom, result, **fields):
    import odl_atoms as oa
    match = oa.match_atoms(phantom.measure, result.measure)
    a = phantom.lattice_spacing
    fields.update(n_true=phantom.n_atoms, n_found=result.n_atoms, f1=match.f1,
                  exact=match.exact, rmsd_a=match.rmsd / a,
                  count_error=result.n_atoms - phantom.n_atoms,
                  time=result.time, positions=result.measure.positions)
    return fields


def method_task(task):
    """One reconstruction of part 1."""
    _, method, defect, angles_key, noise, seed, model_path = task
    import odl_atoms as oa
    from odl_atoms.problem import Problem
    phantom, measured = _problem(defect, ANGLE_SETS[angles_key], noise, seed)
    a = phantom.lattice_spacing
    op, data = measured.operator(), measured.element()
    # The SIRT methods are given neither the spacing nor the noise level.
    problem = Problem(op, data)
    if method == 'SIRT + picking':
        solver = oa.SIRT()
    elif method == 'SIRT + learned':
        from odl_atoms.learned import LearnedSIRT
        solver = LearnedSIRT(model=model_path, device='cpu')
    elif method == 'annealing':
        problem = Problem(op, data, potential=a, noise_std=measured.noise_std)
        solver = oa.SimulatedAnnealing(seed=seed)
    elif method == 'ADCG alpha=0':
        problem = Problem(op, data, alpha=0, noise_std=measured.noise_std)
        solver = oa.ADCG()
    elif method == 'ADCG + energy':
        problem = Problem(op, data, potential=a, noise_std=measured.noise_std)
        solver = oa.ADCG()
    else:
        problem = Problem(op, data, potential=a, noise_std=measured.noise_std)
        solver = oa.ADCG(starts=oa.lattice_starts('square'))
    result = solver.solve(problem)
    row = _row(phantom, result, kind='method', method=method, defect=defect,
               angles=angles_key, noise=noise, seed=seed)
    if (defect, angles_key, noise, seed) == FIGURE_CASE and \
            result.image is not None:
        image = result.image
        row['image'] = (np.asarray(image.data), image.space.min_pt.tolist(),
                        image.space.max_pt.tolist())
    return row


def count_task(task):
    """Part 2: SIRT + picking and SIRT + learned picking on one SIRT image."""
    _, n_angles, defect, noise, seed, model_path = task
    import odl_atoms as oa
    from odl_atoms.learned import LearnedPicker
    from odl_atoms.problem import Problem
    angles = uniform_angles(n_angles)
    phantom, measured = _problem(defect, angles, noise, seed)
    problem = Problem(measured.operator(), measured.element())
    rows = []
    for method, picker in (('SIRT + picking', None),
                           ('SIRT + learned',
                            LearnedPicker(model_path, device='cpu'))):
        result = oa.SIRT(picker=picker).solve(problem)
        rows.append(_row(phantom, result, kind='count', method=method,
                         n_angles=n_angles, defect=defect, noise=noise,
                         seed=seed))
    return rows


def run_task(task):
    kind = task[0]
    if kind == 'train':
        return [train_task(task)]
    if kind == 'method':
        return [method_task(task)]
    return count_task(task)


# --- Tables and figure


def _stats(group):
    f1 = np.array([g['f1'] for g in group])
    exact = np.array([g['exact'] for g in group])
    rmsd = np.array([g['rmsd_a'] for g in group])
    count = np.array([abs(g['count_error']) for g in group])
    times = np.array([g['time'] for g in group])
    return [f'{exact.sum()}/{exact.size} ({100 * exact.mean():.0f} %)',
            f'{f1.mean():.3f}',
            f'{np.nanmedian(rmsd):.3f}' if np.any(np.isfinite(rmsd)) else '-',
            f'{count.mean():.2f}', f'{np.median(times):.2f}']


STATS = ['exact', 'mean F1', 'median RMSD (a)', 'mean |count err|',
         'median time (s)']


def method_tables(rows):
    rows = [r for r in rows if r.get('kind') == 'method']
    by = {}
    for r in rows:
        by.setdefault((r['angles'], r['noise'], r['method']), []).append(r)
    main = []
    for key in sorted(by, key=lambda k: (list(ANGLE_SETS).index(k[0]), k[1],
                                         METHODS.index(k[2]))):
        angles, noise, method = key
        main.append([angles, f'{100 * noise:.0f} %', method] + _stats(by[key]))
    per_defect = []
    for method in METHODS:
        line = [method]
        for defect in DEFECTS:
            group = [r for r in rows if r['method'] == method
                     and r['defect'] == defect]
            line.append(f'{np.mean([g["f1"] for g in group]):.3f}'
                        if group else '-')
        group = [r for r in rows if r['method'] == method]
        line.append(f'{np.mean([g["f1"] for g in group]):.3f}'
                    if group else '-')
        per_defect.append(line)
    return main, per_defect


def count_table(rows, models):
    rows = [r for r in rows if r.get('kind') == 'count']
    table = []
    for n in sorted({r['n_angles'] for r in rows}):
        info = models.get(uniform_angles(n), {})
        for method in ('SIRT + picking', 'SIRT + learned'):
            group = [r for r in rows if r['n_angles'] == n
                     and r['method'] == method]
            model = ''
            if method == 'SIRT + learned':
                model = describe(info)
            table.append([n, angle_label(uniform_angles(n)), method]
                         + _stats(group) + [model])
    return table


def describe(info):
    text = info.get('name', '')
    if info.get('time'):
        text += f', trained in {info["time"]:.0f} s'
    if info.get('val_f1') is not None:
        text += (f', validation F1 {info["val_f1"]:.3f} at threshold '
                 f'{info["threshold"]:.2f}')
    return text


def figure(rows, path):
    """One panel per method on `FIGURE_CASE`: atoms coloured by distance to
    the truth, truth as red crosses, the SIRT image under the SIRT methods."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import odl

    import odl_atoms as oa

    defect, angles_key, noise, seed = FIGURE_CASE
    picks = {r['method']: r for r in rows if r.get('kind') == 'method'
             and (r['defect'], r['angles'], r['noise'], r['seed'])
             == FIGURE_CASE}
    phantom = oa.defect_phantom(defect)
    fig, axes = plt.subplots(1, len(METHODS),
                             figsize=(3.3 * len(METHODS), 4.0),
                             squeeze=False)
    for ax, method in zip(axes[0], METHODS):
        r = picks.get(method)
        if r is None:
            ax.axis('off')
            continue
        image = None
        if 'image' in r:
            arr, lo, hi = r['image']
            image = odl.uniform_discr(lo, hi, arr.shape).element(arr)
        oa.plot_atoms(r['positions'], phantom.measure, image=image, ax=ax,
                      colorbar=False,
                      title=f"{method}\nF1 = {r['f1']:.2f}, RMSD = "
                            f"{r['rmsd_a']:.3f} a")
        ax.set_xlabel('')
        ax.set_ylabel('')
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle(f'{defect.replace("_", " ")}, {angles_key} degrees, '
                 f'{100 * noise:.0f} % noise (red crosses: truth; colour: '
                 f'distance to the matched true atom; red rings: unmatched)',
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=80)
    print(f'wrote {path}')


# --- Main


def plan(quick, models_dir):
    """Return (training tasks, part-1 tasks without models, the rest)."""
    from odl_atoms.learned import default_model_path
    from odl_atoms.learned.training import default_training_config

    defects = ('vacancy', 'edge_dislocation', 'grain_boundary') if quick \
        else DEFECTS
    angle_sets = ('0/45/90', '0/60/120') if quick else tuple(ANGLE_SETS)
    noises = (0.01,) if quick else (0.01, 0.05)
    counts = (2, 3, 5) if quick else ANGLE_COUNTS
    count_seeds = (0,) if quick else (0, 1)

    needed = {ANGLE_SETS[k] for k in angle_sets}
    needed |= {uniform_angles(n) for n in counts}
    shipped = tuple(np.round(np.degrees(
        default_training_config()['angles']), 6))
    models, training = {}, []
    for angles in sorted(needed, key=lambda a: -len(a)):
        if tuple(float(x) for x in angles) == shipped:
            models[angles] = dict(path=default_model_path(), name='shipped')
            continue
        name = angle_label(angles).replace('/', '-')
        path = os.path.join(models_dir, f'picker_{name}'
                                        f'{"_quick" if quick else ""}.pt')
        models[angles] = dict(path=path, name='trained here')
        training.append(('train', angles, path, quick))

    first = [('method', m, d, k, nz, 0, None)
             for d, k, nz in itertools.product(defects, angle_sets, noises)
             for m in METHODS if m != 'SIRT + learned']
    # Slow methods first, so that the pool ends with short tasks.
    first.sort(key=lambda t: METHODS.index(t[1]) not in (2, 4, 5))
    later = [('method', 'SIRT + learned', d, k, nz, 0,
              models[ANGLE_SETS[k]]['path'])
             for d, k, nz in itertools.product(defects, angle_sets, noises)]
    later += [('count', n, d, nz, s, models[uniform_angles(n)]['path'])
              for n, d, nz, s in itertools.product(counts, defects, noises,
                                                   count_seeds)]
    return training, first, later, models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--models', default=None, metavar='DIR',
                        help='folder for trained models (reused when the '
                             'configuration matches); default: temporary')
    parser.add_argument('--output', default=os.path.join(
        os.path.dirname(__file__), 'results'))
    parser.add_argument('--figure-only', action='store_true',
                        help='only redraw compare.png (reruns the five '
                             'methods on the figure case, with the shipped '
                             'model if the case is at 0/45/90 degrees)')
    args = parser.parse_args(argv)
    from tqdm import tqdm

    if args.figure_only:
        from odl_atoms.learned import default_model_path
        _init_worker()
        defect, angles_key, noise, seed = FIGURE_CASE
        model = (default_model_path() if angles_key == '0/45/90' else
                 os.path.join(args.models or '', 'picker_'
                              + angles_key.replace('/', '-') + '.pt'))
        rows = [method_task(('method', m, defect, angles_key, noise, seed,
                             model)) for m in tqdm(METHODS, desc='methods')]
        figure(rows, os.path.join(args.output, 'compare.png'))
        return

    start = time.perf_counter()
    tmp = None
    if args.models is None:
        tmp = tempfile.TemporaryDirectory(prefix='odl_atoms_models_')
        models_dir = tmp.name
    else:
        models_dir = args.models
        os.makedirs(models_dir, exist_ok=True)
    training, first, later, models = plan(args.quick, models_dir)
    rows = []
    # 'spawn': forked workers can deadlock in BLAS / torch thread pools the
    # parent already started; each worker builds its own operators anyway.
    context = multiprocessing.get_context('spawn')
    with context.Pool(args.workers, initializer=_init_worker) as pool:
        todo = training + first
        for out in tqdm(pool.imap_unordered(run_task, todo), total=len(todo),
                        desc='training + reconstructions'):
            rows += out
        for out in tqdm(pool.imap_unordered(run_task, later, chunksize=2),
                        total=len(later), desc='learned picking'):
            rows += out
    wall = time.perf_counter() - start
    if tmp is not None:
        tmp.cleanup()
    for r in rows:
        if r.get('kind') == 'model':
            models[r['angles']].update(r)
    from odl_atoms.learned import load_model
    for m in models.values():
        if m['name'] == 'shipped':
            m.update(model_info(load_model(device='cpu')))

    main_table, per_defect = method_tables(rows)
    from odl_atoms import DEFAULT_ALPHA
    model_lines = [f'- {angle_label(k)}: {describe(v)}' for k, v in
                   sorted(models.items(), key=lambda kv: len(kv[0]))]
    n_methods = sum(r.get('kind') == 'method' for r in rows)
    n_count = sum(r.get('kind') == 'count' for r in rows)
    text = [
        f'{"Quick run" if args.quick else "Full run"}: {n_methods} '
        f'reconstructions in part 1, {n_count} in part 2; wall time '
        f'{wall / 60:.1f} min with {args.workers} worker processes '
        f'(including training the models). Phantoms: 2D defect phantoms '
        f'(7 x 7 square lattice, a = 2.885 A), sigma = {BLUR} a, '
        f'{N_DETECTOR} detector cells, noise seed 0. ADCG + energy and '
        f'annealing use Lennard-Jones with r_min = a and alpha = '
        f'{DEFAULT_ALPHA:g}. Every method is given the true blur (the '
        f'operator\'s sigma); ADCG and annealing also the true noise level '
        f'(`noise_std`) and, with energy, the true lattice spacing (r_min = '
        f'a), which a user may have to estimate. '
        f'"exact" = F1 = 1 (matching tolerance 0.3 a); '
        f'RMSD of matched atoms in lattice spacings a; time = the '
        f"solver's wall time (SIRT + learned: SIRT plus the network on one "
        f'CPU thread; model loading excluded).',
        '', 'Learned models (one per angle set; architecture and training '
        'data: `odl_atoms.learned`; default training configuration'
        + (', except 150 samples and 300 steps for the quick run'
           if args.quick else '') + '; the validation F1 is on held-out '
        'random crystals, its own training distribution):', '',
        *model_lines,
        '', '## Part 1: methods by angle set and noise', '',
        markdown_table(['angles', 'noise', 'method'] + STATS, main_table),
        '', '## Part 1: mean F1 by defect (all angle sets and noise levels)',
        '', markdown_table(['method'] + list(DEFECTS) + ['all'], per_defect),
        '', '## Part 2: SIRT + picking vs SIRT + learned picking by number '
        'of angles (uniform in [0, 180))', '',
        'One model per angle count, trained for that angle set. Both '
        'pickers read the same SIRT image.', '',
        markdown_table(['n angles', 'angles', 'method'] + STATS + ['model'],
                       count_table(rows, models)),
        '', f'Figure: `compare.png` ({FIGURE_CASE[0]}, {FIGURE_CASE[1]} '
        f'degrees, {100 * FIGURE_CASE[2]:.0f} % noise; one panel per method; '
        'SIRT image underneath for the SIRT methods).']
    write_result(os.path.join(args.output, 'compare.md'),
                 'Baselines compared: SIRT + picking, SIRT + learned picking, '
                 'simulated annealing, ADCG', '\n'.join(text))
    figure(rows, os.path.join(args.output, 'compare.png'))


if __name__ == '__main__':
    main()
