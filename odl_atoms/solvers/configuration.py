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
    def lightest(cls, species, positions):
        """Atoms of the lightest species at ``positions``.

        ``species`` has the allowed weights and their labels as attributes
        ``allowed`` and ``labels`` (a `~odl_atoms.problem.Problem`, or the
        search context of `~odl_atoms.solvers.adcg.ADCG`).
        """
        k = int(np.argmin(species.allowed))
        n = len(positions)
        return cls(np.asarray(positions),
                   np.full(n, species.allowed[k]),
                   np.full(n, species.labels[k]))

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
