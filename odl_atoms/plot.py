"""Figures: atoms, projections and fits, alpha sweeps, the reconstruction as a film.

Every function draws into a given matplotlib ``Axes`` (or a new figure) and
returns the ``Axes``, so figures compose; the command line, the documentation
and the benchmarks all draw with these. With a ground truth, atoms are
coloured by their distance to it; without one (a user's data), by their
confidence (`odl_atoms.confidence`), uncertain atoms ringed in red.
`animate_reconstruction` turns the atoms a solver calls back with (an ODL
``CallbackStore``) into an animation, `save_movie` into a GIF.
"""

import os
from pathlib import Path

import numpy as np

from odl_atoms.metrics import match_atoms
from odl_atoms.space import SparseMeasure

__all__ = ('plot_atoms', 'plot_projections', 'plot_alpha_sweep',
           'plot_atoms_3d', 'plot_projection_images', 'plot_comparison',
           'animate_reconstruction', 'save_movie')

#: Colour map of the confidence (red: uncertain, green: trusted).
CONFIDENCE_CMAP = 'RdYlGn'


def _axes(ax, projection=None):
    if ax is None:
        import matplotlib.pyplot as plt
        fig = plt.figure()
        ax = fig.add_subplot(projection=projection)
    return ax


def _positions(atoms):
    if isinstance(atoms, SparseMeasure):
        return atoms.positions
    return np.asarray(atoms, dtype=float).reshape(-1, np.shape(atoms)[-1])


def _confidence_arrays(confidence, n):
    """``(score, uncertain mask, disagreement sites or None)``."""
    from odl_atoms.confidence import UNCERTAIN_BELOW

    sites = getattr(confidence, 'disagreement', None)
    score = np.asarray(getattr(confidence, 'score', confidence), dtype=float)
    if score.shape != (n,):
        raise ValueError(
            f'`confidence` must have one score per atom ({n}), got shape '
            f'{score.shape}; pass the AtomConfidence of these atoms')
    return score, score < UNCERTAIN_BELOW, sites


def _draw_confidence(ax, pos, confidence, colorbar, title, projection=None):
    """Atoms coloured by confidence, uncertain ones ringed; the title."""
    score, uncertain, sites = _confidence_arrays(confidence, pos.shape[0])
    size = 40 if projection is None else 25
    sc = ax.scatter(*pos.T, c=score, cmap=CONFIDENCE_CMAP, vmin=0, vmax=1,
                    s=size, edgecolors='k', linewidths=0.5,
                    label='reconstruction')
    if np.any(uncertain):
        ax.scatter(*pos[uncertain].T, s=3 * size, facecolors='none',
                   edgecolors='r', linewidths=1.5, label='uncertain')
    if sites is not None and len(sites):
        ax.scatter(*np.asarray(sites).T, marker='x', color='C1', s=size,
                   linewidths=1.5, label='other starts differ')
    if colorbar:
        if projection is None:
            ax.figure.colorbar(sc, ax=ax, label='confidence')
        else:  # clear of the z axis label
            ax.figure.colorbar(sc, ax=ax, shrink=0.6, pad=0.12,
                               label='confidence')
    if title is None:
        title = (f'{pos.shape[0]} atoms, {int(np.sum(uncertain))} '
                 f'uncertain')
    return title


def plot_atoms(atoms, ground_truth=None, image=None, ax=None, title=None,
               tolerance=None, colorbar=True, vmax=None, cmap='viridis',
               confidence=None):
    """Draw 2D atoms, coloured by their distance to the ground truth, or by
    their confidence when there is no truth.

    Parameters
    ----------
    atoms : `SparseMeasure` or (n, 2) array
        Reconstructed atoms (circles).
    ground_truth : `SparseMeasure` or (m, 2) array, optional
        True atoms, drawn as red crosses; atoms are then coloured by the
        distance to their matched true atom (`match_atoms`), unmatched ones
        drawn as red-edged circles.
    image : odl element of a 2D ``uniform_discr``, optional
        An image (e.g. a SIRT reconstruction) drawn underneath in grey.
    ax : matplotlib Axes, optional
    title : str, optional
    tolerance : float, optional
        Matching tolerance (default: that of `match_atoms`).
    colorbar : bool, optional
    vmax : float, optional
        Upper end of the colour scale (angstrom); default the tolerance.
    confidence : `~odl_atoms.confidence.AtomConfidence` or array, optional
        Without a ground truth: the atoms' confidence (`atom_confidence`, or
        one score in ``[0, 1]`` per atom). Atoms are then coloured by it
        (red uncertain, green trusted), those below
        `~odl_atoms.confidence.UNCERTAIN_BELOW` ringed in red, and the sites
        where other starts put atoms differently marked with orange crosses.

    Returns
    -------
    ax : matplotlib Axes
    """
    ax = _axes(ax)
    pos = _positions(atoms)
    if pos.shape[1] != 2:
        raise ValueError('plot_atoms draws 2D atoms; use plot_atoms_3d')
    if image is not None:
        space = image.space
        extent = [space.min_pt[0], space.max_pt[0], space.min_pt[1],
                  space.max_pt[1]]
        ax.imshow(np.asarray(image.data).T, origin='lower', extent=extent,
                  cmap='gray', interpolation='nearest')
    if ground_truth is not None:
        truth = _positions(ground_truth)
        match = match_atoms(truth, pos, tolerance=tolerance)
        dist = np.full(pos.shape[0], np.nan)
        dist[match.pairs[:, 1]] = match.distances
        vmax = match.tolerance if vmax is None else vmax
        ax.plot(truth[:, 0], truth[:, 1], 'r+', ms=9, mew=1.5,
                label='ground truth')
        matched = np.isfinite(dist)
        sc = ax.scatter(pos[matched, 0], pos[matched, 1], c=dist[matched],
                        cmap=cmap, vmin=0, vmax=vmax, s=40,
                        edgecolors='k', linewidths=0.5, label='reconstruction')
        if np.any(~matched):
            ax.scatter(pos[~matched, 0], pos[~matched, 1], s=40,
                       facecolors='none', edgecolors='r', linewidths=1.5,
                       label='unmatched')
        if colorbar:
            ax.figure.colorbar(sc, ax=ax, label='distance to truth (Å)')
        if title is None:
            title = f'F1 = {match.f1:.3f}, RMSD = {match.rmsd:.3f} Å'
    elif confidence is not None:
        title = _draw_confidence(ax, pos, confidence, colorbar, title)
    else:
        ax.scatter(pos[:, 0], pos[:, 1], s=40, edgecolors='k', linewidths=0.5)
    ax.set_aspect('equal')
    ax.set_xlabel('x (Å)')
    ax.set_ylabel('y (Å)')
    if title:
        ax.set_title(title)
    return ax


def plot_projections(data, model=None, ax=None, title=None):
    """Draw 2D projection data (one curve per angle), the model's fit and residual.

    Parameters
    ----------
    data : element of a 2D projection space
    model : element of the same space, optional
        ``R(mu)`` of a reconstruction: drawn dashed, the residual dotted.
    """
    ax = _axes(ax)
    y = np.asarray(data.data, dtype=float)
    if y.ndim != 2:
        raise ValueError('plot_projections draws 2D projection data')
    u = data.space.partition.coord_vectors[1]
    angles = data.space.partition.coord_vectors[0]
    step = 1.1 * np.abs(y).max()
    for k in range(y.shape[0]):
        off = k * step
        ax.plot(u, y[k] + off, 'k', lw=1,
                label='data' if k == 0 else None)
        if model is not None:
            ym = np.asarray(model.data, dtype=float)[k]
            ax.plot(u, ym + off, 'C1--', lw=1, label='model' if k == 0 else None)
            ax.plot(u, y[k] - ym + off, 'C3:', lw=1,
                    label='residual' if k == 0 else None)
        ax.text(u[-1], off, f' {np.degrees(angles[k]):.0f}°', va='bottom')
    ax.set_xlabel('detector coordinate (Å)')
    ax.set_yticks([])
    ax.legend(loc='upper left', fontsize='small')
    if title:
        ax.set_title(title)
    return ax


def plot_alpha_sweep(sweep, ax=None, chosen=None):
    """Draw energy and data discrepancy against alpha (an `AlphaSweep`)."""
    ax = _axes(ax)
    alphas = np.asarray(sweep.alphas, dtype=float)
    x = np.where(alphas > 0, alphas, np.nan)
    if np.any(alphas == 0):
        # Show alpha = 0 one decade left of the smallest positive alpha.
        smallest = alphas[alphas > 0].min() if np.any(alphas > 0) else 1.0
        x = np.where(alphas > 0, alphas, smallest / 10)
    ax.semilogx(x, sweep.discrepancies, 'o-', color='C0')
    ax.set_xlabel('alpha (alpha = 0 drawn one decade left)')
    ax.set_ylabel('data discrepancy ||R(mu) - y||', color='C0')
    if sweep.noise_norm:
        ax.axhline(1.1 * sweep.noise_norm, color='C0', ls=':',
                   label='1.1 x noise norm')
        ax.legend(loc='upper left', fontsize='small')
    twin = ax.twinx()
    twin.semilogx(x, sweep.energies, 's-', color='C1')
    twin.set_ylabel('energy V / epsilon', color='C1')
    if chosen is not None:
        ax.axvline(chosen, color='k', ls='--', lw=1)
    return ax


def plot_atoms_3d(atoms, ground_truth=None, ax=None, title=None,
                  confidence=None):
    """Draw 3D atoms as a scatter, coloured by distance to the ground truth
    or, without one, by their ``confidence`` (as `plot_atoms`)."""
    ax = _axes(ax, projection='3d')
    pos = _positions(atoms)
    if ground_truth is not None:
        truth = _positions(ground_truth)
        match = match_atoms(truth, pos)
        dist = np.full(pos.shape[0], match.tolerance)
        dist[match.pairs[:, 1]] = match.distances
        ax.scatter(*truth.T, marker='+', color='r', s=30)
        sc = ax.scatter(*pos.T, c=dist, cmap='viridis', vmin=0,
                        vmax=match.tolerance, s=25)
        ax.figure.colorbar(sc, ax=ax, shrink=0.6, label='distance to truth (Å)')
        if title is None:
            title = f'F1 = {match.f1:.3f}, RMSD = {match.rmsd:.3f} Å'
    elif confidence is not None:
        title = _draw_confidence(ax, pos, confidence, True, title,
                                 projection='3d')
    else:
        ax.scatter(*pos.T, s=25)
    ax.set_xlabel('x (Å)')
    ax.set_ylabel('y (Å)')
    ax.set_zlabel('z (Å)')
    if title:
        ax.set_title(title)
    return ax


def plot_projection_images(data, model=None, fig=None, max_angles=5):
    """Draw 3D projection data (one image per angle), the model and residual.

    `plot_projections` draws 2D data; this is its 3D counterpart: rows data,
    model and residual, one column per angle (the first ``max_angles``).

    Returns
    -------
    fig : matplotlib Figure
    """
    import matplotlib.pyplot as plt
    y = np.asarray(data.data, dtype=float)
    n = min(y.shape[0], max_angles)
    rows = 1 if model is None else 3
    angles = data.space.partition.coord_vectors[0]
    umin, vmin = data.space.partition.min_pt[1:]
    umax, vmax = data.space.partition.max_pt[1:]
    if fig is None:
        aspect = (vmax - vmin) / (umax - umin)
        fig = plt.figure(figsize=(2.4 * n, 2.4 * rows * aspect + 0.5),
                         layout='constrained')
    axes = fig.subplots(rows, n, squeeze=False)
    extent = [umin, umax, vmin, vmax]
    ym = None if model is None else np.asarray(model.data, dtype=float)
    scale = np.abs(y).max()
    for k in range(n):
        panels = [(y[k], 'data', 'gray')]
        if ym is not None:
            panels += [(ym[k], 'model', 'gray'), (y[k] - ym[k], 'residual',
                                                  'RdBu_r')]
        for r, (img, label, cmap) in enumerate(panels):
            ax = axes[r, k]
            lim = (0, scale) if label != 'residual' else (-0.2 * scale,
                                                          0.2 * scale)
            ax.imshow(img.T, origin='lower', extent=extent, cmap=cmap,
                      vmin=lim[0], vmax=lim[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f'{np.degrees(angles[k]):.0f}°')
            if k == 0:
                ax.set_ylabel(label)
    return fig


def _problem_of(result, op, data, noise_std=None):
    """The `Problem` a result answers, as far as the figure knows it: the
    operator, the data, the noise and the result's own weights (its alpha
    and potential come from ``result.info`` in `atom_confidence`)."""
    from odl_atoms.problem import Problem

    weights = np.unique(np.asarray(result.measure.weights, float))
    if weights.size > 8:  # continuous weights (pixel methods): one species
        weights = np.median(weights)
    elif weights.size <= 1:
        weights = None if not weights.size or weights[0] == 1 else weights[0]
    return Problem(op, data, weights=weights, noise_std=noise_std)


def plot_comparison(results, truth, data, op, fit_label=None,
                    noise_std=None, confidences=None):
    """The paper's comparison figure: one panel per method, and the fit.

    In 2D, atoms of every method coloured by distance to the truth (red
    crosses) or, without a truth, by their confidence
    (`odl_atoms.confidence.atom_confidence`), over the method's image when
    it has one (SIRT), and the projections with one method's model and
    residual; in 3D, one scatter per method.

    Parameters
    ----------
    results : dict
        ``{method name: Reconstruction}``.
    truth : `SparseMeasure` or None
    data : projection-space element
    op : `GaussianRayTransform`
    fit_label : str, optional
        Which method's model to draw over the projections (default the first).
    noise_std : float, optional
        The data's noise level, for the confidence (without a truth).
    confidences : dict, optional
        ``{method name: AtomConfidence}`` computed already; the others are
        computed here when there is no truth.

    Returns
    -------
    fig : matplotlib Figure
    """
    import matplotlib.pyplot as plt

    names = list(results)
    fit_label = fit_label or names[0]
    ndim = op.domain.ndim
    confidences = dict(confidences or {})
    if truth is None:
        from odl_atoms.confidence import atom_confidence
        for name in names:
            if name not in confidences and results[name].n_atoms:
                confidences[name] = atom_confidence(
                    results[name], _problem_of(results[name], op, data,
                                               noise_std))
    if ndim == 2:
        n = len(names)
        fig, axes = plt.subplots(
            1, n + 1, figsize=(4.4 * n + 5.6, 4.6), squeeze=False,
            gridspec_kw={'width_ratios': [1.0] * (n - 1) + [1.2, 1.3]})
        axes = axes[0]
        box = op.domain
        for i, (ax, name) in enumerate(zip(axes, names)):
            result = results[name]
            image = result.image
            if image is not None and getattr(image, 'ndim', 0) != 2:
                image = None
            plot_atoms(result.measure, truth, image=image, ax=ax,
                       colorbar=(i == n - 1),
                       confidence=confidences.get(name))
            ax.set_xlim(box.min_pt[0], box.max_pt[0])
            ax.set_ylim(box.min_pt[1], box.max_pt[1])
            ax.set_title(f'{name}\n{ax.get_title()}' if ax.get_title()
                         else f'{name}: {result.n_atoms} atoms', fontsize=10)
        plot_projections(data, op(results[fit_label].measure), ax=axes[-1])
        axes[-1].set_title(f'data, {fit_label} model and residual',
                           fontsize=10)
        fig.tight_layout()
        return fig
    fig = plt.figure(figsize=(5.0 * len(names), 4.8))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1, projection='3d')
        plot_atoms_3d(results[name].measure, truth, ax=ax,
                      confidence=confidences.get(name))
        ax.set_title(f'{name}: {ax.get_title()}' if ax.get_title()
                     else f'{name}: {results[name].n_atoms} atoms')
    fig.tight_layout()
    return fig


# --- The reconstruction as a film


def _film_setting(problem, data, operator):
    """``(data, model(measure), box, sigma)`` from a Problem or data and
    an operator."""
    from odl_atoms.problem import Problem, atom_operator

    if problem is not None:
        if data is not None or operator is not None:
            raise TypeError('give either `problem` or `data` and `operator`, '
                            'not both')
        if isinstance(problem, Problem):
            op, data = problem.operator, problem.data

            def model(measure):
                x, w, _ = problem.arrays(measure)
                return op(op.domain.element(x, w))

            return data, model, op.domain, op.sigma
        raise TypeError(
            f'`problem` must be a Problem (odl_atoms.Problem(operator, data, '
            f'...)); for data and an operator pass data=..., operator=...; '
            f'got {type(problem).__name__}')
    if data is None or operator is None:
        raise TypeError('animate_reconstruction needs the `problem`, or '
                        '`data` and `operator`, to draw the data fit')
    inner, _ = atom_operator(operator)
    data = operator.range.element(getattr(data, 'data', data))

    def model(measure):
        return operator(inner.domain.element(measure))

    return data, model, inner.domain, inner.sigma


def _film_frames(measures, max_frames):
    """The measures to draw: all, or ``max_frames`` evenly spaced (the
    first and the last always among them)."""
    frames = list(measures)
    if not frames:
        raise ValueError(
            'no atoms to animate: the list of measures is empty (pass '
            'CallbackStore().results after solve(problem, callback=store))')
    for k, frame in enumerate(frames):
        if not isinstance(frame, SparseMeasure):
            raise TypeError(
                f'every frame must be a SparseMeasure (what the solvers '
                f'call back with); frame {k} is {type(frame).__name__}')
    if max_frames is not None:
        if not (isinstance(max_frames, (int, np.integer)) and max_frames >= 2):
            raise ValueError(f'`max_frames` must be an int >= 2 or None, got '
                             f'{max_frames!r}')
        if len(frames) > max_frames:
            keep = np.unique(np.round(np.linspace(0, len(frames) - 1,
                                                  max_frames)).astype(int))
            frames = [frames[k] for k in keep]
    return frames


def _changes(previous, current, reach):
    """Indices of added atoms, (old, new) segments of moved atoms and the
    positions of removed atoms between two frames."""
    if previous is None or not len(previous):
        return np.arange(len(current)), np.zeros((0, 2, current.shape[1])), \
            np.zeros((0, current.shape[1]))
    if not len(current):
        return np.zeros(0, int), np.zeros((0, 2, current.shape[1])), previous
    pairs = match_atoms(previous, current, tolerance=reach).pairs
    added = np.setdiff1d(np.arange(len(current)), pairs[:, 1])
    removed = previous[np.setdiff1d(np.arange(len(previous)), pairs[:, 0])]
    old, new = previous[pairs[:, 0]], current[pairs[:, 1]]
    moved = np.linalg.norm(new - old, axis=1) > 1e-3 * reach
    return added, np.stack([old[moved], new[moved]], axis=1), removed


def animate_reconstruction(measures, problem=None, truth=None, data=None,
                           operator=None, interval=250, max_frames=None,
                           title=None):
    """Return the reconstruction as an animation: atoms added and moved, and
    the data fit, iteration by iteration.

    Feed it the atoms a solver called back with, e.g. those an ODL
    ``CallbackStore`` kept::

        store = odl.solvers.CallbackStore()
        result = ADCG().solve(problem, callback=store)
        anim = animate_reconstruction(store.results, problem)
        anim.save('run.gif', writer='pillow')      # or save_movie(...)

    Each frame shows, on the left, the atoms of one iteration (those added
    since the previous frame in orange, a grey line from where each moved
    atom was, grey crosses where atoms were removed; the truth, if given,
    as red crosses) and, in 2D on the right, the projections with the
    model's fit and residual, as `plot_projections` draws them (in 3D: the
    data misfit iteration by iteration). The title counts atoms, additions,
    moves and removals. A search with several starts (lattice starts) calls
    back from each start in turn: the film shows them one after the other.

    Parameters
    ----------
    measures : sequence of `SparseMeasure`
        One per frame (``CallbackStore().results``).
    problem : `Problem`, optional
        The problem solved (its data and operator draw the fit).
    truth : `SparseMeasure` or array, optional
        True atoms, drawn as red crosses.
    data, operator : optional
        Instead of ``problem``: the data (a projection-space element) and
        the forward operator (`GaussianRayTransform` or a multiple).
    interval : float, optional
        Milliseconds per frame when shown (`save_movie` sets its own rate).
    max_frames : int, optional
        Draw at most this many frames, evenly spaced over the run (the
        first and last among them); default: every one.
    title : str, optional
        Text before the counts in the title.

    Returns
    -------
    animation : `matplotlib.animation.FuncAnimation`
        ``animation._fig`` is its figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation
    from matplotlib.collections import LineCollection

    data, model, box, sigma = _film_setting(problem, data, operator)
    frames = _film_frames(measures, max_frames)
    ndim = box.ndim
    reach = 3.0 * sigma
    positions = [np.asarray(m.positions, float).reshape(-1, ndim)
                 for m in frames]
    fits = [model(m) for m in frames]
    y = np.asarray(data.data, float)
    misfits = [0.5 * float(np.sum((np.asarray(f.data, float) - y) ** 2))
               for f in fits]
    truth_pos = None if truth is None else _positions(truth)

    if ndim == 2:
        fig, (ax, right) = plt.subplots(
            1, 2, figsize=(10.5, 4.8), gridspec_kw={'width_ratios': [1, 1.2]})
    else:
        fig = plt.figure(figsize=(10.5, 4.8))
        ax = fig.add_subplot(1, 2, 1, projection='3d')
        right = fig.add_subplot(1, 2, 2)
    lo, hi = box.min_pt, box.max_pt
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel('x (Å)')
    ax.set_ylabel('y (Å)')
    if ndim == 3:
        ax.set_zlim(lo[2], hi[2])
        ax.set_zlabel('z (Å)')
    else:
        ax.set_aspect('equal')
    if truth_pos is not None:
        ax.scatter(*truth_pos.T, marker='+', color='r', s=60,
                   linewidths=1.5, label='truth')
    empty = np.zeros((0, ndim))
    atoms = ax.scatter(*empty.T, s=40, color='C0', edgecolors='k',
                       linewidths=0.5, label='atoms')
    new = ax.scatter(*empty.T, s=60, color='C1', edgecolors='k',
                     linewidths=0.8, label='added')
    gone = ax.scatter(*empty.T, marker='x', color='0.5', s=40,
                      label='removed')
    trails = None
    if ndim == 2:
        trails = LineCollection([], colors='0.4', linewidths=1.5)
        ax.add_collection(trails)
    # Below the atoms, where it hides none of them.
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.14), ncol=4,
              fontsize='small', frameon=False, handletextpad=0.2,
              columnspacing=0.8)

    if ndim == 2:
        u = data.space.partition.coord_vectors[1]
        angles = data.space.partition.coord_vectors[0]
        step = 1.1 * max(np.abs(y).max(), 1e-12)
        model_lines, residual_lines = [], []
        for k in range(y.shape[0]):
            off = k * step
            right.plot(u, y[k] + off, 'k', lw=1,
                       label='data' if k == 0 else None)
            model_lines.append(right.plot(
                u, np.full_like(u, off), 'C1--', lw=1,
                label='model' if k == 0 else None)[0])
            residual_lines.append(right.plot(
                u, np.full_like(u, off), 'C3:', lw=1,
                label='residual' if k == 0 else None)[0])
            right.text(u[-1], off, f' {np.degrees(angles[k]):.0f}°',
                       va='bottom')
        right.set_xlabel('detector coordinate (Å)')
        right.set_yticks([])
        right.legend(loc='upper left', fontsize='small')
        right.set_title('data, model and residual')
    else:
        right.semilogy(np.arange(1, len(frames) + 1),
                       np.maximum(misfits, 1e-300), 'C0-')
        marker, = right.semilogy([], [], 'o', color='C1')
        right.set_xlabel('frame')
        right.set_ylabel('data misfit 0.5 ||R(mu) - y||^2')
    # Room for the two title lines and the angle labels at the right.
    fig.tight_layout(rect=(0, 0, 0.97, 0.9))
    prefix = f'{title}: ' if title else ''

    def draw(k):
        pos = positions[k]
        previous = positions[k - 1] if k else None
        added, moved, removed = _changes(previous, pos, reach)
        kept = np.setdiff1d(np.arange(len(pos)), added)
        if ndim == 2:
            atoms.set_offsets(pos[kept])
            new.set_offsets(pos[added].reshape(-1, 2))
            gone.set_offsets(removed.reshape(-1, 2))
            trails.set_segments(list(moved))
            fit = np.asarray(fits[k].data, float)
            for j in range(y.shape[0]):
                off = j * step
                model_lines[j].set_ydata(fit[j] + off)
                residual_lines[j].set_ydata(y[j] - fit[j] + off)
        else:
            atoms._offsets3d = tuple(pos[kept].T)
            new._offsets3d = tuple(pos[added].reshape(-1, 3).T)
            gone._offsets3d = tuple(removed.reshape(-1, 3).T)
            marker.set_data([k + 1], [max(misfits[k], 1e-300)])
        ax.set_title(
            f'{prefix}step {k + 1} of {len(frames)}: {len(pos)} atoms '
            f'(+{len(added)} added, {len(moved)} moved, {len(removed)} '
            f'removed)\ndata misfit 0.5 ||R(mu) - y||^2 = {misfits[k]:.3g}',
            fontsize=10)
        return ()

    return FuncAnimation(fig, draw, frames=len(frames), interval=interval,
                         blit=False, repeat=False)


def save_movie(path, measures, problem=None, truth=None, data=None,
               operator=None, fps=4, max_frames=None, dpi=80, title=None):
    """Write the reconstruction as an animated GIF, atomically.

    `animate_reconstruction` draws the frames; matplotlib's ``PillowWriter``
    writes them (Pillow comes with matplotlib), to a temporary file that
    replaces ``path`` only once complete (`odl_atoms.io.atomic_path`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination, ending in ``.gif``.
    measures : sequence of `SparseMeasure`
        The atoms a solver called back with (``CallbackStore().results``).
    problem, truth, data, operator, max_frames, title
        As for `animate_reconstruction`.
    fps : positive float, optional
        Frames per second.
    dpi : positive float, optional
        Resolution of the frames (the figure is 10.5 x 4.8 inches).

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.gif``, its folder does not exist, or
        there are no frames (before any drawing).
    """
    from matplotlib.animation import PillowWriter

    from odl_atoms.io import atomic_path

    path = Path(os.fspath(path))
    if path.suffix.lower() != '.gif':
        raise ValueError(f'the movie is written as a GIF: give a path ending '
                         f'in .gif, got {str(path)!r}')
    if not path.parent.is_dir():
        raise ValueError(f'the folder of {str(path)!r} does not exist; create '
                         f'it first')
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f'`fps` must be positive, got {fps!r}')
    anim = animate_reconstruction(measures, problem, truth=truth, data=data,
                                  operator=operator, max_frames=max_frames,
                                  title=title)
    import matplotlib.pyplot as plt
    try:
        with atomic_path(path) as tmp:
            anim.save(tmp, writer=PillowWriter(fps=fps), dpi=dpi)
    finally:
        plt.close(anim._fig)
    return path
