"""
The reconstruction as a film, and how far to trust it without a truth
=====================================================================

ADCG calls back with the atoms after every iteration, like every solver of
the toolkit; an ODL ``CallbackStore`` keeps them, and
`odl_atoms.plot.animate_reconstruction` plays them back over the data fit:
atoms added (orange), moved (grey trails) and removed (grey crosses), with
the model's projections and the residual beside them.

The crystal is the one of the generic-angles example: a 4 x 4 square
lattice with an interstitial, seen at 0, 60 and 120 degrees, which are not
its zone axes. ADCG runs from its greedy start and from the best-fitting
lattice (`lattice_starts`); the film shows the starts one after the other,
and the lowest objective wins.

A user has no truth to compare with. What the data and the search say
about each atom is its confidence (`odl_atoms.confidence.atom_confidence`):
whether the competitive starts agree on it, what removing it or moving it
to its best other site would do to the objective, and how precisely the
data fix its position. `odl_atoms.confidence.verdict` sums it up in one
line, and the figure colours the atoms by it. The film is also written as
a GIF (`odl_atoms.plot.save_movie`; on the command line
``odl-atoms reconstruct ... --movie run.gif``).
"""

import os

import matplotlib.pyplot as plt
import numpy as np
import odl

import odl_atoms as oa
from odl_atoms.confidence import atom_confidence, verdict
from odl_atoms.plot import animate_reconstruction

phantom = oa.defect_phantom('interstitial', shape=(4, 4))
a = phantom.lattice_spacing
measured = oa.simulate(phantom.measure, np.radians([0, 60, 120]),
                       sigma=0.15 * a, n_detector=64, noise=0.01, seed=0)
problem = oa.Problem(measured.operator(), measured.element(), potential=a,
                     noise_std=measured.noise_std)

store = odl.solvers.CallbackStore()
result = oa.ADCG(starts=oa.lattice_starts('square')).solve(problem,
                                                           callback=store)
print(f'{len(store.results)} iterations called back; answer: '
      f'{result.n_atoms} atoms')

# %%
# The film. The truth (red crosses) is drawn here because this is simulated
# data; leave ``truth`` out for your own.

film = animate_reconstruction(store.results, problem, truth=phantom.measure,
                              max_frames=40, interval=300)
os.makedirs('odl_atoms_examples', exist_ok=True)   # the film as a file, too
film.save('odl_atoms_examples/reconstruction.gif',
          writer='pillow', dpi=60)

# %%
# Without the truth: the verdict and the confidence of each atom.

confidence = atom_confidence(result, problem)
print(verdict(result, problem, confidence=confidence))
print(f'confidence: lowest {confidence.score.min():.2f}, '
      f'{confidence.uncertain().size} uncertain atoms')

fig, ax = plt.subplots(figsize=(5.5, 4.5))
oa.plot_atoms(result.measure, confidence=confidence, ax=ax)
fig.tight_layout()
fig.savefig('odl_atoms_examples/reconstruction_confidence.png')

# %%
# Only now, the score against the truth that a user would not have.

print(oa.match_atoms(phantom.measure, result.measure))
plt.show()
