"""
Reconstruct a vacancy from three projections
============================================

A 7 x 7 square lattice of gold columns (spacing 2.885 Å) with one vacancy is
projected at 0, 45 and 90 degrees with 1 % noise. ADCG with a Lennard-Jones
energy finds every atom, and the empty site stays empty.
"""

import os

import matplotlib.pyplot as plt
import numpy as np

import odl_atoms as oa

phantom = oa.defect_phantom('vacancy')
measured = oa.simulate(phantom.measure, np.radians([0, 45, 90]), sigma=0.43,
                       n_detector=96, noise=0.01, seed=0)
op = measured.operator()
problem = oa.Problem(op, measured.element(), potential=phantom.lattice_spacing,
                     noise_std=measured.noise_std)
result = oa.ADCG().solve(problem)

match = oa.match_atoms(phantom.measure, result.measure)
print(match)
print(result)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
oa.plot_atoms(result.measure, phantom.measure, ax=ax1)
oa.plot_projections(measured.element(), op(result.measure), ax=ax2,
                    title='data, model and residual')
fig.tight_layout()
os.makedirs('odl_atoms_examples', exist_ok=True)   # the figure as a file, too
fig.savefig('odl_atoms_examples/vacancy_three_angles.png')
plt.show()
