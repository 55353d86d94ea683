"""ADCG at scale: many atoms per iteration, moves of local blocks.

One atom per iteration followed by a move of all atoms costs ``O(n)`` per
iteration and ``n`` iterations. `grow_batches` adds many well-separated
atoms at once (`~odl_atoms.solvers.adcg.oracle.Oracle.add_atoms`: greedy on
their joint gain, non-maximum suppression at `batch_separation`), moves only
the new atoms and their neighbours
(`~odl_atoms.solvers.adcg.descent.LocalDescent.block_move`) and repeats
while a batch pays off. See the model page of the documentation ("Batch
additions: 3D at scale") and ``benchmarks/scale.py``.
"""

import numpy as np

__all__ = ('grow_batches', 'batch_separation', 'block_radius')


def batch_separation(objective):
    """Least distance between atoms added in one batch.

    ``0.8 r_min`` with a potential (nearest neighbours of a lattice may
    come in the same batch; closer pairs are what the energy forbids),
    else ``3 sigma`` (where two atoms' projections are told apart).
    """
    if objective.energy_weight:
        return 0.8 * objective.potential.r_min
    return 3.0 * objective.operator.sigma


def block_radius(objective):
    """Neighbours within this distance of a new atom move with it:
    ``1.2 r_min`` (the first shell), or ``3 sigma`` without energy."""
    if objective.energy_weight:
        return 1.2 * objective.potential.r_min
    return 3.0 * objective.operator.sigma


def grow_batches(context, config, threshold, batch_size, batch_alpha,
                 max_atoms, max_iter, report, history):
    """Add atoms in batches while a batch lowers F by > ``threshold``.

    Every iteration: the oracle's `add_atoms` (joint gain of each atom above
    ``threshold``), a block move around the new atoms, the weight choice
    and the pruning; the batch is accepted if the objective dropped by more
    than ``threshold``, else the loop ends (ADCG's one-at-a-time loop takes
    over from the last accepted configuration). With an energy, the batches
    run with the stronger weight ``batch_alpha`` (which sorts many new atoms
    onto lattice sites at once); one full local move under the search's own
    objective closes the phase. Returns ``config`` unchanged if
    ``batch_size`` is 1.

    Parameters
    ----------
    context : `~odl_atoms.solvers.adcg.context.SearchContext`
    config : `Configuration`
    threshold : float
    batch_size : int
    batch_alpha : float
    max_atoms, max_iter : int
    report : callable
        Called with every accepted configuration (values of the search's
        objective).
    history : list
        The search's objective history (its length counts iterations).
    """
    if batch_size <= 1:
        return config
    begin = config
    final = context.objective
    objective = final
    if objective.energy_weight:
        objective = objective.with_alpha(batch_alpha)
        config = config.copy()
        config.value = objective(config.positions, config.weights)
    batches = context.with_objective(objective)
    start_value = final(config.positions, config.weights)
    separation = batch_separation(objective)
    radius = block_radius(objective)
    added = False
    while len(history) < max_iter and config.n_atoms < max_atoms:
        n_old = config.n_atoms
        candidate = batches.oracle.add_atoms(
            objective, config, min(batch_size, max_atoms - n_old), separation,
            min_gain=threshold)
        if candidate is None:
            break
        candidate = batches.descent.block_move(
            objective, candidate, np.arange(n_old, candidate.n_atoms), radius)
        candidate = batches.choose_weights(candidate)
        candidate = batches.prune(candidate)
        if not config.value - candidate.value > threshold:
            break
        config = candidate
        added = True
        shown = config.copy()  # history holds values of the objective
        shown.value = final(shown.positions, shown.weights)
        report(shown)
    if final is not objective:
        # Back to the search's own energy weight: relax, and remove the
        # atoms only the batch energy had justified.
        config = config.copy()
        config.value = final(config.positions, config.weights)
    if added:
        config = context.prune(context.local_move(config))
        if not config.value < start_value:  # never worse than the start
            return begin
    return config
