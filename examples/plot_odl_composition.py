"""
Compose the atom operator with ODL
==================================

The forward map of odl_atoms is an ODL operator and the Lennard-Jones energy an
ODL functional, so the reconstruction objective can be written with ODL's own
parts and minimised with ODL's own smooth solvers.

Here a 4 x 4 gold lattice with a vacancy (15 atoms) is projected at three
angles; starting from the true atoms moved randomly by 0.3 Å, ODL's BFGS
method with a backtracking line search brings them back. (This is ADCG's
"local move" in ODL terms; ADCG also decides how many atoms there are.)
"""

import matplotlib.pyplot as plt
import numpy as np
import odl

import odl_atoms as oa

phantom = oa.defect_phantom('vacancy', shape=(4, 4))
n = phantom.n_atoms
measured = oa.simulate(phantom.measure, np.radians([0, 60, 120]), sigma=0.43,
                       n_detector=64, noise=0.01, seed=1)
op = measured.operator()          # GaussianRayTransform: measures -> Y
y = measured.element()            # data, an element of op.range

# %%
# The objective from ODL parts
# ----------------------------
# ``op.parametrized(n)`` is the same forward map on ``n`` atoms, as a
# nonlinear operator on ``ProductSpace(rn((n, 2)), rn(n))`` (positions and
# weights) with an exact derivative. Composing the translated squared L2 norm
# of the data space with it gives the data misfit; the energy lives on the
# same parameter space. The energy weight is the dimensionless ``alpha`` of
# `odl_atoms.objective`: ``lambda = alpha * E_atom / epsilon``.

atoms_op = op.parametrized(n)
params = atoms_op.domain
misfit = 0.5 * odl.functionals.L2NormSquared(op.range).translated(y) @ atoms_op
energy = oa.LennardJones.from_r_min(params, phantom.lattice_spacing,
                                    smooth=True)
alpha = 1e-3
objective = misfit + alpha * oa.atom_energy(op) / energy.epsilon * energy
print(objective.domain)

# `objective_functional` builds the same functional in one call:
same = oa.objective_functional(op, y, n, alpha, energy)
truth = phantom.measure.to_parameters()
print(f'F(truth) = {objective(truth):.6f} (by hand), '
      f'{same(truth):.6f} (objective_functional)')

# %%
# Minimise with ODL's BFGS from a perturbed start
# ------------------------------------------------
# ``BacktrackingLineSearch`` raises when it finds no decrease (at a minimum,
# up to round-off): ``ValueError``, or ``AssertionError`` from its step-length
# check. Both mean "converged" here.

rng = np.random.default_rng(0)
start = params.element([truth[0].data + rng.normal(scale=0.3, size=(n, 2)),
                        truth[1].data])
x = start.copy()
history = odl.solvers.CallbackStore(function=objective)
line_search = odl.solvers.BacktrackingLineSearch(objective)
try:
    odl.solvers.bfgs_method(objective, x, line_search=line_search,
                            maxiter=200, tol=1e-10, num_store=20,
                            callback=history)
except (ValueError, AssertionError) as exc:
    print(f'line search stopped: {type(exc).__name__}')

before = oa.match_atoms(phantom.measure, start[0].data)
after = oa.match_atoms(phantom.measure, x[0].data)
print(f'{len(history)} BFGS iterations; F: {objective(start):.4f} -> '
      f'{objective(x):.4f}')
print(f'RMSD to the truth: {before.rmsd:.3f} Å -> {after.rmsd:.4f} Å')
print(f'weights: {x[1].data.min():.3f} .. {x[1].data.max():.3f}')

# %%
# The start, the result and the decrease of the objective.

fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 4))
oa.plot_atoms(start[0].data, phantom.measure, ax=ax1, colorbar=False,
              title=f'start: RMSD {before.rmsd:.2f} Å')
oa.plot_atoms(x[0].data, phantom.measure, ax=ax2, colorbar=False,
              title=f'after BFGS: RMSD {after.rmsd:.3f} Å')
ax3.semilogy(np.array(history) - min(history) + 1e-12, 'o-', ms=3)
ax3.set_xlabel('BFGS iteration')
ax3.set_ylabel('F - min F')
fig.tight_layout()
plt.show()
