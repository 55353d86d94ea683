"""The reconstruction objective: data misfit plus a weighted potential energy.

For atoms at ``x`` with weights ``w``,

    F(x, w) = 0.5 * ||R(x, w) - y||_Y^2 + lambda * V(x),

with ``R`` the Gaussian-atom ray transform, ``|| . ||_Y`` the (weighted) norm
of ODL's projection space and ``V`` a pair potential (`LennardJones`).

The energy weight is given as a dimensionless ``alpha``:

    lambda = alpha * E_atom / epsilon,

where ``E_atom = 0.5 * ||R(w_ref G * delta_c)||_Y^2`` is the data energy of one
atom of the reference weight (at the centre of the box) and ``epsilon`` the
potential's well depth. Then ``alpha = 1`` means "one well depth of energy
costs as much as the data of one whole atom", whatever the lattice spacing,
the blur, the detector or the number of angles; the same ``alpha`` works
across all of them.

`AtomObjective` evaluates ``F`` and its gradient on plain arrays of any size
(the fast path solvers use with SciPy); `objective_functional` builds the same
objective from ODL parts (``L2NormSquared``, the operator, the potential) on a
fixed-size parameter space, for ODL's own solvers.
"""

import copy

import numpy as np
import odl

from odl_atoms.geometry import as_data

__all__ = ('AtomObjective', 'objective_functional', 'atom_energy')


def atom_energy(operator, weight=1.0):
    """Return ``0.5 * ||R(weight * G * delta_c)||^2``, ``c`` the box centre.

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import SparseMeasureSpace, GaussianRayTransform
    >>> space = SparseMeasureSpace([-5, -5], [5, 5])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 2), odl.uniform_partition(-8, 8, 64))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.5)

    For a detector fine compared to sigma, each projection of a unit atom has
    squared L2 norm ``1 / (2 sqrt(pi) sigma)``; the angle weight is pi / 2:

    >>> e = atom_energy(op)
    >>> expected = 0.5 * 2 * (np.pi / 2) / (2 * np.sqrt(np.pi) * 0.5)
    >>> round(e / expected, 3)
    1.0
    """
    centre = operator.domain.element([operator.domain.box.mid_pt],
                                     weights=float(weight))
    data = operator(centre)
    return 0.5 * float(data.inner(data))


class AtomObjective:

    """``F(x, w) = 0.5 ||R(x, w) - y||^2 + lambda V(x)`` on arrays of any size.

    Parameters
    ----------
    operator : `GaussianRayTransform`
    data : projection data (element or array)
    alpha : float, optional
        Dimensionless energy weight (see the module documentation). 0 switches
        the energy off.
    potential : `LennardJones`, optional
        Required if ``alpha > 0``.
    reference_weight : float, optional
        Weight of the atom whose data energy is the unit of ``alpha``.
    """

    def __init__(self, operator, data, alpha=0.0, potential=None,
                 reference_weight=1.0):
        self.operator = operator
        self.data = as_data(operator.range, data)
        self.y = np.asarray(self.data.data, dtype=float).ravel()
        self.inner_weight = operator.inner_weight
        self.potential = potential
        self.atom_energy = atom_energy(operator, reference_weight)
        self._set_alpha(alpha)

    def _set_alpha(self, alpha):
        """Check ``alpha`` and set it and ``energy_weight`` (lambda)."""
        alpha = float(alpha)
        if not np.isfinite(alpha) or alpha < 0:
            raise ValueError(
                f'`alpha` (the energy weight) must be a number >= 0, got {alpha}')
        if alpha > 0 and self.potential is None:
            raise ValueError('`alpha > 0` needs a `potential`')
        self.alpha = alpha
        self.energy_weight = (alpha * self.atom_energy / self.potential.epsilon
                              if alpha > 0 else 0.0)

    def with_alpha(self, alpha):
        """Return the same objective with energy weight ``alpha``.

        Shares the operator, data and potential (nothing is recomputed):
        for a polish with a weaker energy, or a relaxation with a stronger
        one (`~odl_atoms.solvers.moves.Stiffen`).

        Examples
        --------
        >>> import odl
        >>> from odl.applications import tomo
        >>> from odl_atoms import SparseMeasureSpace, GaussianRayTransform
        >>> from odl_atoms.problem import default_lennard_jones
        >>> space = SparseMeasureSpace([-5, -5], [5, 5])
        >>> geometry = tomo.Parallel2dGeometry(
        ...     odl.uniform_partition(0, np.pi, 2),
        ...     odl.uniform_partition(-8, 8, 64))
        >>> op = GaussianRayTransform(space, geometry, sigma=0.5)
        >>> objective = AtomObjective(op, op.range.zero(), 1e-3,
        ...                           default_lennard_jones(2, r_min=2.0))
        >>> stiff = objective.with_alpha(0.1)
        >>> round(stiff.energy_weight / objective.energy_weight, 6)
        100.0
        """
        new = copy.copy(self)
        new._set_alpha(alpha)
        return new

    # --- Pieces

    def residual(self, positions, weights):
        """Return ``R(x, w) - y`` as a flat array."""
        from odl_atoms import kernels

        if kernels.backend() == 'numba':
            op = self.operator
            return kernels.Projector.of(
                op.frame, op.sigma, op.truncate, op.mode).project(
                    positions, weights) - self.y
        stencil = self.operator.stencil(positions)
        return stencil.project(np.asarray(weights, float)) - self.y

    def data_misfit(self, positions, weights):
        """Return ``0.5 ||R(x, w) - y||^2``."""
        r = self.residual(positions, weights)
        return 0.5 * self.inner_weight * float(r @ r)

    def noise_misfit(self, noise_std):
        """Return the expected `data_misfit` of the noise alone.

        ``0.5 c N noise_std^2`` (``N`` data values, ``c`` the cell weight).
        """
        return 0.5 * self.inner_weight * self.y.size * float(noise_std) ** 2

    def energy(self, positions):
        """Return ``V(x)`` (0 without potential)."""
        if self.potential is None or len(positions) < 2:
            return 0.0
        return self.potential.energy(positions)

    def __call__(self, positions, weights):
        """Return ``F(x, w)``."""
        value = self.data_misfit(positions, weights)
        if self.energy_weight:
            value += self.energy_weight * self.energy(positions)
        return value

    def value_and_gradient(self, positions, weights):
        """Return ``F``, ``dF/dx`` ``(n, d)`` and ``dF/dw`` ``(n,)``."""
        from odl_atoms import kernels

        positions = np.asarray(positions, float)
        weights = np.asarray(weights, float)
        c = self.inner_weight
        op = self.operator
        if kernels.backend() == 'numba':
            # One compiled call: windows, projection, residual, adjoint.
            half, grad_x, grad_w = kernels.Projector.of(
                op.frame, op.sigma, op.truncate, op.mode).data_term(
                    positions, weights, self.y)
            value = c * half
        else:
            stencil = op.stencil(positions)
            r = stencil.project(weights) - self.y
            grad_x, grad_w = stencil.adjoint_jacobian(weights, r)
            value = 0.5 * c * float(r @ r)
        grad_x *= c
        grad_w *= c
        if self.energy_weight and positions.shape[0] > 1:
            e, g = self.potential.energy(positions, gradient=True)
            value += self.energy_weight * e
            grad_x += self.energy_weight * g
        return value, grad_x, grad_w

    def restricted(self, positions, weights, active, local_energy=False):
        """Return ``F`` as a function of the ``active`` atoms' positions only.

        The other atoms stay where they are: their data are projected once,
        so an evaluation costs a projection of the active atoms only (plus the
        energy of all). Solvers use it to relax a region after a local change.

        Parameters
        ----------
        positions : (n, d) array
        weights : (n,) array
        active : (n,) bool array or index array
        local_energy : bool, optional
            If True, the energy is evaluated on the active atoms and the
            fixed atoms within two cut-off radii of them only (a neighbour
            list taken once), plus the constant energy of the rest: the cost
            of an evaluation then grows with the block, not with the whole
            configuration. Exact as long as no active atom moves farther
            than one cut-off radius from where it started (callers bound
            the move, see `ADCG.block_move`). Default False: the energy of
            all atoms at every evaluation.

        Returns
        -------
        fun : callable
            ``fun(active_positions) -> (F, dF/d active_positions)``, with
            ``active_positions`` of shape ``(k, d)``; the value is ``F`` of
            the whole configuration.
        """
        from odl_atoms import kernels
        from odl_atoms.projection import Stencil

        positions = np.array(positions, dtype=float)
        weights = np.asarray(weights, dtype=float)
        index = np.flatnonzero(np.isin(np.arange(len(weights)), active)
                               if np.asarray(active).dtype != bool else active)
        fixed = np.ones(len(weights), bool)
        fixed[index] = False
        op = self.operator
        background = -self.y
        if np.any(fixed):
            background = background + Stencil(
                op.frame, positions[fixed], op.sigma, op.truncate,
                op.mode).project(weights[fixed])
        projector = (kernels.Projector.of(op.frame, op.sigma, op.truncate,
                                          op.mode)
                     if kernels.backend() == 'numba' else None)
        target = -background
        w_active = weights[index]
        c = self.inner_weight
        energy_index = index
        energy_offset = 0.0
        energy_positions = positions
        if (local_energy and self.energy_weight and positions.shape[0] > 1
                and np.any(fixed)):
            from scipy.spatial import cKDTree

            # Neighbour list taken once: the fixed atoms within two cut-offs
            # of an active one. E(all) = E(local) + [E(all) - E(local)] with
            # the bracket (fixed-fixed pairs outside) constant while no
            # active atom moves more than a cut-off.
            reach = 2 * self.potential.cutoff
            near = cKDTree(positions[index]).query_ball_point(
                positions[fixed], reach, return_length=True) > 0
            local = np.concatenate([index, np.flatnonzero(fixed)[near]])
            energy_positions = positions[local].copy()
            energy_index = np.arange(index.size)
            energy_offset = (self.potential.energy(positions)
                             - self.potential.energy(energy_positions))

        def fun(active_positions):
            p = np.asarray(active_positions, dtype=float).reshape(-1, positions.shape[1])
            if projector is not None:
                half, grad, _ = projector.data_term(p, w_active, target)
                value = c * half
            else:
                stencil = Stencil(op.frame, p, op.sigma, op.truncate, op.mode)
                r = stencil.project(w_active) + background
                grad, _ = stencil.adjoint_jacobian(w_active, r)
                value = 0.5 * c * float(r @ r)
            grad *= c
            if self.energy_weight and positions.shape[0] > 1:
                energy_positions[energy_index] = p
                e, g = self.potential.energy(energy_positions, gradient=True)
                value += self.energy_weight * (e + energy_offset)
                grad += self.energy_weight * g[energy_index]
            return value, grad

        return fun

    def parts(self, positions, weights):
        """Return ``(data_misfit, energy)`` of a configuration."""
        return self.data_misfit(positions, weights), self.energy(positions)


def objective_functional(operator, data, n_atoms, alpha=0.0, potential=None,
                         reference_weight=1.0):
    """Return ``F`` as an ODL functional on ``n`` positions and weights.

    ``0.5 * L2NormSquared(Y).translated(y) @ R_n + lambda * V`` with ``R_n``
    the operator on ``n`` atoms (`GaussianRayTransform.parametrized`) and ``V``
    the potential on the same parameter space: an ODL ``FunctionalSum`` on
    ``ProductSpace(rn((n, d)), rn(n))`` with a gradient (the adjoint of
    ``R_n``'s derivative), the same values and gradients as `AtomObjective`.

    Minimise it with ``odl.solvers.bfgs_method`` and a line search,
    ``line_search=odl.solvers.BacktrackingLineSearch(func)`` (what
    `odl_atoms.descent.bfgs_descent` does). ``bfgs_method``'s default, a
    constant step of 1, overshoots and diverges on this functional. The
    line search raises ``ValueError`` once no step decreases ``F`` (at a
    minimum, up to rounding): catch it.

    Parameters
    ----------
    operator : `GaussianRayTransform`
    data : projection data
    n_atoms : int
    alpha, potential, reference_weight :
        As in `AtomObjective`.

    Returns
    -------
    func : `odl.functionals.Functional`

    Examples
    --------
    Two atoms seen from three angles, noise-free data. From positions and
    weights off by up to 0.2, BFGS with a backtracking line search finds
    the atoms again:

    >>> import odl
    >>> from odl.applications import tomo
    >>> from odl_atoms import SparseMeasureSpace, GaussianRayTransform
    >>> from odl_atoms.descent import bfgs_descent
    >>> space = SparseMeasureSpace([-5, -5], [5, 5])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-8, 8, 64))
    >>> op = GaussianRayTransform(space, geometry, sigma=0.5)
    >>> truth = space.element([[0, 0], [2, 1]])
    >>> func = objective_functional(op, op(truth), 2)
    >>> x = func.domain.element([[[0.2, -0.1], [1.9, 1.2]], [1.1, 0.9]])
    >>> reason = bfgs_descent(func, x)   # bfgs_method + BacktrackingLineSearch
    >>> bool(np.abs(x[0].data - truth.positions).max() < 1e-5)
    True
    >>> np.round(x[1].data, 5)
    array([ 1.,  1.])
    """
    from odl_atoms.functionals import LennardJones
    from odl_atoms.operators import GaussianRayTransform

    if not isinstance(operator, GaussianRayTransform):
        raise TypeError(
            f'`operator` must be a GaussianRayTransform (the operator on '
            f'measures), got {type(operator).__name__}')
    data = as_data(operator.range, data)
    try:
        alpha = float(alpha)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'`alpha` (the energy weight) must be a number >= 0, '
                         f'got {alpha!r}') from exc
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(
            f'`alpha` (the energy weight) must be a number >= 0, got {alpha}')
    if alpha > 0 and not isinstance(potential, LennardJones):
        raise ValueError('`alpha > 0` needs a LennardJones `potential`')
    atoms_op = operator.parametrized(n_atoms)
    func = 0.5 * (odl.functionals.L2NormSquared(operator.range).translated(data)
                  @ atoms_op)
    if alpha > 0:
        lam = alpha * atom_energy(operator, reference_weight) / potential.epsilon
        energy = potential.on_space(atoms_op.domain)
        func = func + lam * energy
    return func
