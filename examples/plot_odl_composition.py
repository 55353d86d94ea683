"""
Compose the atom operator with ODL
==================================

The forward map of odl_atoms is an ODL operator and the Lennard-Jones energy an
ODL functional, so the reconstruction objective can be written with ODL's own
parts and minimised with ODL's own smooth solvers.

Here a 4 x 4 gold lattice with a vacancy (15 atoms) is projected at three
angles. The operator on measures has an adjoint, but it maps data to
*functions* on the box, not back to measures; where ODL needs an adjoint
into the domain (norm estimates, gradients), the operator on ``n`` atoms
does the work. Starting from the true atoms moved randomly by 0.3 Å, ODL's
BFGS method with a backtracking line search brings them back. (This is
ADCG's "local move" in ODL terms; ADCG also decides how many atoms there
are.)
"""

import os

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
# The adjoint: data to functions on the box
# -----------------------------------------
# The dual of a space of measures is a space of functions. ``op.adjoint``
# maps data ``r`` to the function ``f(x) = <g_x, r>``, ``g_x`` the data of
# one atom at ``x``, sampled on a grid over the box (cells ``sigma / 2``
# wide): the Gaussian-filtered back-projection, which peaks where atoms are.
# For atoms ``mu = sum_i w_i delta_{x_i}`` on the grid,
# ``<op(mu), r> = sum_i w_i f(x_i)``.

backprojection = op.adjoint(y)
print(backprojection.space)

# Its range is not op.domain, so the power method behind ODL's norm
# estimate cannot use it; the operator says so and where to go instead.
try:
    op.norm(estimate=True)
except NotImplementedError as exc:
    print(f'op.norm: {exc}')

# %%
# The objective from ODL parts
# ----------------------------
# ``op.parametrized(n)`` is the same forward map on ``n`` atoms, as a
# nonlinear operator on ``ProductSpace(rn((n, 2)), rn(n))`` (positions and
# weights) with an exact derivative whose adjoint maps back into that space.
# Composing the translated squared L2 norm of the data space with it gives
# the data misfit, with a gradient; the energy lives on the same parameter
# space. The energy weight is the dimensionless ``alpha`` of
# `odl_atoms.objective`: ``lambda = alpha * E_atom / epsilon``.

atoms_op = op.parametrized(n)
params = atoms_op.domain
truth = phantom.measure.to_parameters()
print(f'norm of the Jacobian at the truth: '
      f'{atoms_op.derivative(truth).norm(estimate=True):.3f}')

misfit = 0.5 * odl.functionals.L2NormSquared(op.range).translated(y) @ atoms_op
energy = oa.LennardJones.from_r_min(params, phantom.lattice_spacing,
                                    smooth=True)
alpha = 1e-3
objective = misfit + alpha * oa.atom_energy(op) / energy.epsilon * energy
print(objective.domain)

# `objective_functional` builds the same functional in one call:
same = oa.objective_functional(op, y, n, alpha, energy)
print(f'F(truth) = {objective(truth):.6f} (by hand), '
      f'{same(truth):.6f} (objective_functional)')

# %%
# Minimise with ODL's BFGS from a perturbed start
# ------------------------------------------------
# ``bfgs_method``'s default step, a constant 1, is not scaled to this
# objective and diverges. With ``BacktrackingLineSearch`` every step
# decreases it. The line search raises when it finds no decrease (at a
# minimum, up to round-off): ``ValueError``, or ``AssertionError`` from its
# step-length check. Both mean "converged" here.
# (`odl_atoms.descent.bfgs_descent` does the same in one call, with a
# stopping rule on the gradient.)

rng = np.random.default_rng(0)
start = params.element([truth[0].data + rng.normal(scale=0.3, size=(n, 2)),
                        truth[1].data])

x = start.copy()
odl.solvers.bfgs_method(objective, x, maxiter=20)
print(f'constant step: F {objective(start):.3f} -> {objective(x):.3g} '
      f'after 20 iterations')

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
# The back-projection of the data (the adjoint, grey) with the true atoms,
# the start, the result and the decrease of the objective.

fig, axes = plt.subplots(1, 4, figsize=(17, 4))
oa.plot_atoms(phantom.measure, phantom.measure, image=backprojection,
              ax=axes[0], colorbar=False,
              title='op.adjoint(data) and the truth')
oa.plot_atoms(start[0].data, phantom.measure, ax=axes[1], colorbar=False,
              title=f'start: RMSD {before.rmsd:.2f} Å')
oa.plot_atoms(x[0].data, phantom.measure, ax=axes[2], colorbar=False,
              title=f'after BFGS: RMSD {after.rmsd:.3f} Å')
axes[3].semilogy(np.array(history) - min(history) + 1e-12, 'o-', ms=3)
axes[3].set_xlabel('BFGS iteration')
axes[3].set_ylabel('F - min F')
fig.tight_layout()
os.makedirs('odl_atoms_examples', exist_ok=True)   # the figure as a file, too
fig.savefig('odl_atoms_examples/odl_composition.png')
plt.show()
