"""Figures: atoms against the ground truth, projections and fits, alpha sweeps.

Every function draws into a given matplotlib ``Axes`` (or a new figure) and
returns the ``Axes``, so figures compose; the command line, the documentation
and the benchmarks all draw with these.
"""

import numpy as np

from odl_atoms.metrics import match_atoms
from odl_atoms.space import SparseMeasure

__all__ = ('plot_atoms', 'plot_projections', 'plot_alpha_sweep',
           'plot_atoms_3d', 'plot_projection_images', 'plot_comparison')


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


def plot_atoms(atoms, ground_truth=None, image=None, ax=None, title=None,
               tolerance=None, colorbar=True, vmax=None, cmap='viridis'):
    """Draw 2D atoms, coloured by their distance to the ground truth.

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


def plot_atoms_3d(atoms, ground_truth=None, ax=None, title=None):
    """Draw 3D atoms as a scatter, coloured by distance to the ground truth."""
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


def plot_comparison(results, truth, data, op, fit_label=None):
    """The paper's comparison figure: one panel per method, and the fit.

    In 2D, atoms of every method coloured by distance to the truth (red
    crosses), over the method's image when it has one (SIRT), and the
    projections with one method's model and residual; in 3D, one scatter
    per method.

    Parameters
    ----------
    results : dict
        ``{method name: Reconstruction}``.
    truth : `SparseMeasure` or None
    data : projection-space element
    op : `GaussianRayTransform`
    fit_label : str, optional
        Which method's model to draw over the projections (default the first).

    Returns
    -------
    fig : matplotlib Figure
    """
    import matplotlib.pyplot as plt

    names = list(results)
    fit_label = fit_label or names[0]
    ndim = op.domain.ndim
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
                       colorbar=(i == n - 1))
            ax.set_xlim(box.min_pt[0], box.max_pt[0])
            ax.set_ylim(box.min_pt[1], box.max_pt[1])
            ax.set_title(f'{name}\n{ax.get_title()}' if truth is not None
                         else f'{name}: {result.n_atoms} atoms', fontsize=10)
        plot_projections(data, op(results[fit_label].measure), ax=axes[-1])
        axes[-1].set_title(f'data, {fit_label} model and residual',
                           fontsize=10)
        fig.tight_layout()
        return fig
    fig = plt.figure(figsize=(5.0 * len(names), 4.8))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1, projection='3d')
        plot_atoms_3d(results[name].measure, truth, ax=ax)
        ax.set_title(f'{name}: {ax.get_title()}' if truth is not None
                     else f'{name}: {results[name].n_atoms} atoms')
    fig.tight_layout()
    return fig
