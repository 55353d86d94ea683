"""The working state of the atom solvers: positions, weights, labels, value."""

from dataclasses import dataclass

import numpy as np

__all__ = ('Configuration',)


@dataclass
class Configuration:

    """Atoms being reconstructed: positions, weights, labels, objective."""

    positions: np.ndarray
    weights: np.ndarray
    labels: np.ndarray
    value: float = np.inf

    @classmethod
    def lightest(cls, solver, positions):
        """Atoms of ``solver``'s lightest species at ``positions``."""
        k = int(np.argmin(solver.allowed))
        n = len(positions)
        return cls(np.asarray(positions),
                   np.full(n, solver.allowed[k]), np.full(n, solver.labels[k]))

    @property
    def n_atoms(self):
        return self.weights.shape[0]

    def without(self, index):
        keep = np.ones(self.n_atoms, bool)
        keep[index] = False
        return Configuration(self.positions[keep], self.weights[keep],
                             self.labels[keep])

    def copy(self):
        return Configuration(self.positions.copy(), self.weights.copy(),
                             self.labels.copy(), self.value)
