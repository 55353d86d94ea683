"""Escape moves for ADCG: ways out of local minima.

Greedy addition with local moves gets stuck where projected atoms overlap:
an atom placed early in the wrong column cannot move to the right one, because
every path there climbs the objective. When no addition pays off any more,
`ADCG` tries escape moves: each proposes trial configurations (built lazily,
cheapest first) and the first one that lowers the objective is taken, after
which the normal additions resume.

A move is an object with a ``name`` and a method
``trials(solver, objective, config, threshold, rng)`` that yields trial
`Configuration` objects (already locally relaxed), or ``None`` for a trial
that was screened out (it still counts against the budget). Moves here:

- `Relocate`: remove one atom and re-add greedily, the first re-addition
  away from where it was (a tabu radius) — fixes an atom placed in the
  wrong one of two equally plausible sites.
- `Regrow`: remove every atom within a radius of a suspect atom and grow the
  region again greedily — fixes a small misarranged patch. Suspects are the
  atoms cheapest to remove (least supported by the data) and those with the
  highest potential energy (strained or misplaced).

Write your own by following the same interface and pass it in
``ADCG(op, moves=[...])``.
"""

import numpy as np
from scipy.spatial import cKDTree

__all__ = ('Relocate', 'Regrow', 'DEFAULT_MOVES')


class Relocate:

    """Remove one atom, re-add greedily elsewhere.

    Atoms are tried in order of increasing removal cost (the exact objective
    change of removing them). The first re-added atom may not come back within
    ``tabu_radius`` of the removed one; further atoms are then added as in the
    main loop while they pay off.

    Parameters
    ----------
    tabu_radius : float, optional
        Default: twice the atom width ``sigma``.
    screen : float, optional
        A trial whose objective, before relaxation, is worse than the current
        one by more than ``screen`` atom energies is dropped unrelaxed.
    """

    name = 'relocate'

    def __init__(self, tabu_radius=None, screen=0.5):
        self.tabu_radius = tabu_radius
        self.screen = float(screen)

    def trials(self, solver, objective, config, threshold, rng):
        if config.n_atoms == 0:
            return
        radius = (self.tabu_radius if self.tabu_radius is not None
                  else 2 * solver.operator.sigma)
        screen = self.screen * objective.atom_energy
        removal = solver.removal_changes(objective, config)
        for i in np.argsort(removal):
            trial = config.without(i)
            trial.value = config.value + removal[i]  # exact, see removal_changes
            candidate = solver.best_candidate(
                objective, trial, exclude=(config.positions[i], radius))
            # Screen before refining and relaxing: a relocation that is far
            # worse before relaxing rarely ends better after it. The grid
            # gain is exact for the unrefined addition.
            if not candidate[2] > 0 or \
                    trial.value - candidate[2] > config.value + screen:
                yield None
                continue
            trial = solver.add_atom(objective, trial, candidate=candidate)
            # Relax around the two changed places first (cheap); only
            # promising trials get a full relaxation.
            region = _near(solver, objective, trial.positions,
                           [config.positions[i], trial.positions[-1]])
            trial = solver.local_move(objective, trial, active=region)
            trial = solver.grow(objective, trial, threshold)
            yield solver.finish_trial(objective, trial, config)

    def __repr__(self):
        return f'Relocate(tabu_radius={self.tabu_radius!r}, screen={self.screen!r})'


class Regrow:

    """Remove the atoms around a suspect atom and regrow them greedily.

    Parameters
    ----------
    radius : float, optional
        Radius of the removed region. Default: 1.6 equilibrium distances of
        the potential (the first shell of neighbours), or ``6 sigma`` without
        potential.
    n_suspects : int, optional
        How many of the cheapest-to-remove atoms and how many of the
        highest-energy atoms to try as centres.
    """

    name = 'regrow'

    def __init__(self, radius=None, n_suspects=6):
        self.radius = radius
        self.n_suspects = int(n_suspects)

    def trials(self, solver, objective, config, threshold, rng):
        if config.n_atoms < 3:
            return
        suspects = list(np.argsort(solver.removal_changes(objective, config))
                        [:self.n_suspects])
        if objective.potential is not None:
            site = -objective.potential.removal_energies(config.positions)
            suspects += list(np.argsort(site)[::-1][:self.n_suspects])
        radius = self.radius
        if radius is None:
            radius = (1.6 * objective.potential.r_min
                      if objective.potential is not None
                      else 6 * solver.operator.sigma)
        tree = cKDTree(config.positions)
        seen = set()
        for i in suspects:
            if i in seen:
                continue
            seen.add(i)
            centre = config.positions[i]
            region = tree.query_ball_point(centre, radius)
            trial = config.without(region)
            trial.value = objective(trial.positions, trial.weights)
            trial = solver.grow(objective, trial, threshold,
                                max_new=len(region) + 2,
                                near=(centre, 2 * radius))
            yield solver.finish_trial(objective, trial, config)

    def __repr__(self):
        return f'Regrow(radius={self.radius!r}, n_suspects={self.n_suspects!r})'


def _near(solver, objective, positions, centres):
    """Mask of the atoms within two neighbour distances of any centre."""
    reach = (2.0 * objective.potential.r_min if objective.potential is not None
             else 8 * solver.operator.sigma)
    dist = np.linalg.norm(positions[:, None, :] - np.asarray(centres)[None],
                          axis=-1)
    return dist.min(axis=1) < reach


#: The moves ADCG uses by default (chosen by the defects benchmark).
DEFAULT_MOVES = (Relocate(), Regrow())
