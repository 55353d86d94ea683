"""ADCG's local descent: move atoms downhill, reweigh them, prune them.

After the oracle adds an atom, ADCG improves the whole configuration
locally (Boyd, Schiebinger and Recht's "local descent"):

- `LocalDescent.move`: bound-constrained minimisation of
  ``F = 0.5 ||R(mu) - y||^2 + lambda V`` over the positions inside the box
  (SciPy's L-BFGS-B through `odl_atoms.descent.lbfgsb`, or ODL's BFGS with
  a backtracking line search,
  ``method='odl'``), of all atoms or of a region (`LocalDescent.block_move`
  for batches);
- `LocalDescent.choose_weights`: with several allowed weights (species),
  each atom takes the one that lowers ``F`` most;
- `LocalDescent.prune`: atoms whose removal lowers ``F`` are removed
  (`removal_changes`, exact), and atoms closer than ``merge_distance`` are
  merged when that lowers ``F``.

No step ever returns a configuration worse than the one it was given.
"""

import numpy as np
from scipy.spatial import cKDTree

from odl_atoms.descent import lbfgsb, odl_local_descent
from odl_atoms.solvers.configuration import Configuration

__all__ = ('LocalDescent', 'removal_changes', 'DESCENT_METHODS')

#: Local minimisers `LocalDescent` can use.
DESCENT_METHODS = ('scipy', 'odl')


def removal_changes(objective, config):
    """Exact objective change of removing each atom, ``(n,)``."""
    stencil = objective.operator.stencil(config.positions)
    r = stencil.project(config.weights) - objective.y
    c = objective.inner_weight
    _, corr = stencil.adjoint_jacobian(np.ones(config.n_atoms), r)
    w = config.weights
    delta = -w * c * corr + 0.5 * w ** 2 * c * stencil.self_inner()
    if objective.energy_weight and config.n_atoms > 1:
        delta += objective.energy_weight * objective.potential.removal_energies(
            config.positions)
    return delta


class LocalDescent:

    """The local steps of ADCG on a configuration.

    Parameters
    ----------
    box : `SparseMeasureSpace`
        The atoms' box (positions are kept inside it).
    allowed, labels : numpy.ndarray
        Allowed atom weights (in the operator's units) and their labels.
    maxiter : int, optional
        Iteration limit of each local minimisation (default 100).
    merge_distance : float
        Atoms closer than this are candidates for merging.
    method : {'scipy', 'odl'}, optional
        The local minimiser: SciPy's L-BFGS-B with the box as bounds
        (default; `odl_atoms.descent.lbfgsb`, ``minimize``'s answer without
        its per-evaluation wrapper), or ODL's ``bfgs_method`` with a
        backtracking line search (`odl_atoms.descent`), projected onto the
        box.
    """

    def __init__(self, box, allowed, labels, merge_distance, maxiter=100,
                 method='scipy'):
        self.box = box
        self.allowed = np.asarray(allowed, float)
        self.labels = np.asarray(labels)
        self.merge_distance = float(merge_distance)
        self.maxiter = int(maxiter)
        if method not in DESCENT_METHODS:
            raise ValueError(f'`method` must be one of {DESCENT_METHODS}, got '
                             f'{method!r}')
        self.method = method

    def _minimize(self, fun, x0, lo, hi):
        """Minimise ``fun(flat) -> (value, gradient)`` within ``[lo, hi]``."""
        if self.method == 'odl':
            return odl_local_descent(fun, x0, lo, hi, maxiter=self.maxiter).x
        return lbfgsb(fun, x0, lo, hi, maxiter=self.maxiter).x

    def move(self, objective, config, active=None):
        """Minimise the objective over positions (weights fixed), in the box.

        ``active`` (bool mask or indices) restricts the move to some atoms;
        the others stay fixed (a cheap relaxation after a local change).
        """
        if config.n_atoms == 0:
            return config
        space = self.box
        n, d = config.positions.shape
        weights = config.weights
        if active is None:
            index = np.arange(n)

            def fun(flat):
                value, grad_x, _ = objective.value_and_gradient(
                    flat.reshape(n, d), weights)
                return value, grad_x.ravel()
        else:
            index = np.arange(n)[active]
            if index.size == 0:
                return config
            restricted = objective.restricted(config.positions, weights, index)

            def fun(flat):
                value, grad_x = restricted(flat.reshape(-1, d))
                return value, grad_x.ravel()

        k = index.size
        x0 = np.clip(config.positions[index], space.min_pt, space.max_pt).ravel()
        x = self._minimize(fun, x0, np.tile(space.min_pt, k),
                           np.tile(space.max_pt, k))
        positions = config.positions.copy()
        positions[index] = x.reshape(k, d)
        new = Configuration(positions, weights.copy(), config.labels.copy())
        new.value = objective(new.positions, new.weights)
        if new.value > config.value:  # never accept a worse configuration
            return config
        return new

    def block_move(self, objective, config, new, radius):
        """Relax atoms ``new`` (indices) and their neighbours only.

        The block is the new atoms and every atom within ``radius`` of one;
        the others stay fixed. Data: only the block is projected per
        evaluation (`AtomObjective.restricted`); energy: a neighbour list of
        the block taken once (``local_energy=True``), with every atom kept
        within one cut-off of its start so that the list stays exact.
        """
        n, d = config.positions.shape
        new = np.asarray(new, int)
        if new.size == 0:
            return config
        active = np.zeros(n, bool)
        active[new] = True
        near = cKDTree(config.positions[new]).query_ball_point(
            config.positions, radius, return_length=True) > 0
        active |= near
        index = np.flatnonzero(active)
        fun = objective.restricted(config.positions, config.weights, index,
                                   local_energy=True)
        space = self.box
        x0 = np.clip(config.positions[index], space.min_pt, space.max_pt)
        lo, hi = np.broadcast_to(space.min_pt, x0.shape), np.broadcast_to(
            space.max_pt, x0.shape)
        if objective.energy_weight:
            reach = objective.potential.cutoff
            lo, hi = np.maximum(lo, x0 - reach), np.minimum(hi, x0 + reach)

        def flat_fun(flat):
            value, grad = fun(flat.reshape(-1, d))
            return value, grad.ravel()

        x = self._minimize(flat_fun, x0.ravel(), lo.ravel(), hi.ravel())
        positions = config.positions.copy()
        positions[index] = x.reshape(-1, d)
        moved = Configuration(positions, config.weights.copy(),
                              config.labels.copy())
        moved.value = objective(moved.positions, moved.weights)
        return moved if moved.value <= config.value else config

    def choose_weights(self, objective, config):
        """Give each atom the allowed weight that lowers the objective most."""
        if self.allowed.size == 1 or config.n_atoms == 0:
            return config
        config = config.copy()
        changed = False
        for _ in range(config.n_atoms):
            stencil = objective.operator.stencil(config.positions)
            r = stencil.project(config.weights) - objective.y
            c = objective.inner_weight
            _, corr = stencil.adjoint_jacobian(np.ones(config.n_atoms), r)
            corr *= c
            norms = c * stencil.self_inner()
            dw = self.allowed[None, :] - config.weights[:, None]
            delta = dw * corr[:, None] + 0.5 * dw ** 2 * norms[:, None]
            i, j = np.unravel_index(np.argmin(delta), delta.shape)
            if not delta[i, j] < -1e-12 * objective.atom_energy:
                break
            config.weights[i] = self.allowed[j]
            config.labels[i] = self.labels[j]
            changed = True
        if changed:
            config.value = objective(config.positions, config.weights)
            config = self.move(objective, config)
        return config

    def prune(self, objective, config):
        """Remove atoms whose removal lowers the objective; merge near pairs."""
        changed = False
        while config.n_atoms > 0:
            delta = removal_changes(objective, config)
            i = int(np.argmin(delta))
            if not delta[i] < 0:
                break
            config = config.without(i)
            config.value = objective(config.positions, config.weights)
            changed = True
        merged = self._merge(objective, config)
        if merged is not config:
            config, changed = merged, True
        if changed:
            config = self.move(objective, config)
        return config

    def _merge(self, objective, config):
        """Merge the closest pair within ``merge_distance`` if that helps."""
        if config.n_atoms < 2:
            return config
        pairs = cKDTree(config.positions).query_pairs(self.merge_distance,
                                                      output_type='ndarray')
        best = config
        for i, j in pairs:
            wi, wj = config.weights[i], config.weights[j]
            k = int(np.argmin(np.abs(self.allowed - (wi + wj))))
            merged = config.without(j)
            idx = i if i < j else i - 1
            merged.positions[idx] = (wi * config.positions[i]
                                     + wj * config.positions[j]) / (wi + wj)
            merged.weights[idx] = self.allowed[k]
            merged.labels[idx] = self.labels[k]
            merged.value = objective(merged.positions, merged.weights)
            if merged.value < best.value:
                best = merged
        return best
