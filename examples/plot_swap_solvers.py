"""
Swap ADCG, simulated annealing and SIRT with one line
=====================================================

Every reconstruction method of odl_atoms is a `~odl_atoms.Solver`: it is
built from its method's options only, ``solve(problem)`` takes the same
`~odl_atoms.Problem` (the data, the forward operator, the potential and the
noise level) and returns the same `~odl_atoms.Reconstruction`, and it
accepts ODL callbacks. Changing the method is changing the constructor:

.. code-block:: python

    problem = oa.Problem(op, data, potential=2.885)
    result = oa.ADCG().solve(problem)
    result = oa.SimulatedAnnealing(seed=0).solve(problem)
    result = oa.SIRT().solve(problem)

Here the three reconstruct a 5 x 5 gold lattice with an interstitial atom from
three noisy projections.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
import odl

import odl_atoms as oa

phantom = oa.defect_phantom('interstitial', shape=(5, 5))
measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]), sigma=0.43,
                       n_detector=72, noise=0.01, seed=3)
op = measured.operator()
data = measured.element()
a = phantom.lattice_spacing

# One problem, one constructor per method; everything after it is shared.
problem = oa.Problem(op, data, potential=a, noise_std=measured.noise_std)
solvers = {
    'ADCG': oa.ADCG(),
    'SimulatedAnnealing': oa.SimulatedAnnealing(seed=0),
    'SIRT': oa.SIRT(),
}

results = {}
for name, solver in solvers.items():
    iterations = odl.solvers.CallbackStore()        # any ODL callback works
    result = solver.solve(problem, callback=iterations)
    results[name] = result
    match = oa.match_atoms(phantom.measure, result.measure)
    print(f'{name:18s} {result.n_atoms:3d} atoms, F1 = {match.f1:.3f}, '
          f'RMSD = {match.rmsd:.3f} Å, {len(iterations):4d} callback calls, '
          f'{result.time:5.1f} s')

# %%
# The reconstructions, coloured by the distance to the true atoms (red
# crosses); SIRT's pixel image is drawn underneath its atoms.

fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.4),
                         squeeze=False)
for ax, (name, result) in zip(axes[0], results.items()):
    oa.plot_atoms(result.measure, phantom.measure, image=result.image, ax=ax,
                  colorbar=False)
    ax.set_title(f'{name}\n{ax.get_title()}', fontsize=10)
fig.tight_layout()

os.makedirs('odl_atoms_examples', exist_ok=True)   # the figure as a file, too
fig.savefig('odl_atoms_examples/swap_solvers.png')
plt.show()
