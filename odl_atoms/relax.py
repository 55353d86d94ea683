"""Relaxing a defect phantom: its neighbourhood at the potential's minimum.

A defect phantom built on an ideal lattice is not what a crystal holds: an
interstitial placed at the centre of a square cell sits ``a / sqrt(2)`` from
four atoms, so close that under a Lennard-Jones potential with equilibrium
distance ``a`` each of those pairs costs 48 well depths. A real crystal
pushes these neighbours outward. `relax_defect` does that: the atoms within a
radius of the defect move to the minimum of the potential energy while the
rest stay on the lattice (the far field of a larger crystal, which holds
them there).

Why it matters for reconstruction: a solver whose prior is that same
potential prefers the relaxed neighbourhood. From 2-3 tilt angles, shifts
along directions no projection resolves cost the data fit almost nothing,
so on the unrelaxed phantom the energy pushes a neighbour outward and the
answer misses the truth, with a lower objective than the truth has (see the
``relaxed_interstitial`` rows of ``benchmarks/results/random_angles.md``).
"""

import warnings

import numpy as np
from scipy.optimize import minimize

from odl_atoms.functionals import LennardJones
from odl_atoms.problem import default_lennard_jones

__all__ = ('relax_defect',)

#: Default relaxation radius in lattice spacings: between the first and the
#: second neighbour shell of an interstitial in the square lattice
#: (0.71 a and 1.58 a), so that its nearest neighbours move and the lattice
#: around them stays (a pair potential does not hold a square lattice
#: together on its own; relaxing far out would change the lattice).
DEFAULT_RELAX_RADIUS = 1.2

#: Shift (lattice spacings) beyond which the relaxation changed the
#: structure rather than relaxed it, and `relax_defect` warns.
LARGE_SHIFT = 0.5


def relax_defect(phantom, radius=DEFAULT_RELAX_RADIUS, potential=None,
                 gtol=1e-8):
    """Return ``phantom`` with the atoms near its defect relaxed.

    The atoms within ``radius`` lattice spacings of a defect position (the
    defect atoms and defect sites, `Phantom.defect_positions`) move to a
    minimum of the potential energy of the whole configuration (L-BFGS-B,
    `scipy.optimize.minimize`); all other atoms stay where they are.

    Parameters
    ----------
    phantom : `Phantom`
        A phantom that marks its defect (``defect_atoms`` or
        ``defect_sites``), e.g. from `defect_phantom`.
    radius : positive float, optional
        In units of ``phantom.lattice_spacing``.
    potential : `LennardJones`, optional
        The potential to relax under. Default: the solvers' default potential
        with equilibrium distance ``phantom.lattice_spacing``
        (`odl_atoms.problem.default_lennard_jones`), i.e. the prior of
        ``Problem(op, data, potential=phantom.lattice_spacing)``.
    gtol : positive float, optional
        Largest force component (well depths per angstrom) left on a moved
        atom.

    Returns
    -------
    relaxed : `Phantom`
        Same atoms, weights, species, box and defect markers; the moved
        atoms are listed in the description.

    Warns
    -----
    UserWarning
        If an atom moved by more than half a lattice spacing: the potential
        does not hold the defect (the square grain boundary, for one,
        rearranges under the default potential).

    Raises
    ------
    ValueError
        If the phantom marks no defect or no atom lies within ``radius``, if
        ``radius`` is not positive, or if the relaxation does not converge.
    TypeError
        If ``potential`` is not a `LennardJones` of the phantom's dimension.

    See Also
    --------
    defect_phantom : the phantoms to relax.

    Examples
    --------
    An interstitial at the centre of a square cell of side ``a`` is
    ``a / sqrt(2)`` from four atoms; under the default potential each of
    those pairs costs 48 well depths:

    >>> from odl_atoms.problem import default_lennard_jones
    >>> lj = default_lennard_jones(2, r_min=2.0)
    >>> lj.pair_energy(np.array([2.0 / np.sqrt(2), 2.0]))
    array([ 48.,  -1.])

    The four neighbours of an interstitial move outward by about 0.17
    lattice spacings, the interstitial itself hardly (the lattice around it
    is almost symmetric), and the rest of the lattice stays:

    >>> from odl_atoms import defect_phantom
    >>> p = defect_phantom('interstitial', shape=(5, 5), spacing=2.0)
    >>> relaxed = relax_defect(p)
    >>> shift = np.linalg.norm(relaxed.measure.positions
    ...                        - p.measure.positions, axis=1)
    >>> np.round(np.sort(shift)[-6:] / p.lattice_spacing, 2)
    array([ 0.  ,  0.  ,  0.17,  0.17,  0.17,  0.17])
    >>> relaxed.description.split('; ')[-1]
    'relaxed: 5 atoms within 1.2 lattice spacings of the defect'
    """
    radius = float(radius)
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f'`radius` must be a positive number of lattice '
                         f'spacings, got {radius!r}')
    spacing = phantom.lattice_spacing
    if potential is None:
        potential = default_lennard_jones(phantom.ndim, spacing)
    elif not isinstance(potential, LennardJones):
        raise TypeError(f'`potential` must be a LennardJones, got '
                        f'{type(potential).__name__}')
    elif potential.positions_space.shape[1] != phantom.ndim:
        raise TypeError(
            f'the potential is for {potential.positions_space.shape[1]}D '
            f'positions, the phantom is {phantom.ndim}D')
    marks = phantom.defect_positions
    if not len(marks):
        raise ValueError(
            f'the {phantom.name!r} phantom marks no defect (no defect atoms '
            f'or sites), so there is nothing to relax around')
    positions = np.array(phantom.measure.positions, dtype=float)
    distance = np.linalg.norm(positions[:, None] - marks[None], axis=2)
    free = distance.min(axis=1) < radius * spacing
    if not free.any():
        raise ValueError(f'no atom lies within {radius} lattice spacings of '
                         f'the defect; increase `radius`')

    def energy_and_gradient(x):
        trial = positions.copy()
        trial[free] = x.reshape(-1, phantom.ndim)
        energy, gradient = potential.energy(trial, gradient=True)
        return energy, gradient[free].ravel()

    result = minimize(energy_and_gradient, positions[free].ravel(), jac=True,
                      method='L-BFGS-B',
                      options=dict(gtol=gtol, ftol=1e-15, maxiter=10000))
    if not result.success:
        raise ValueError(f'the relaxation did not converge ({result.message});'
                         f' try a smaller `radius` or another `potential`')
    moved = result.x.reshape(-1, phantom.ndim)
    shift = np.linalg.norm(moved - positions[free], axis=1).max() / spacing
    if shift > LARGE_SHIFT:
        warnings.warn(
            f'relaxing the {phantom.name!r} phantom moved an atom by '
            f'{shift:.2f} lattice spacings: the defect is not stable under '
            f'this potential, and the relaxed phantom is another structure. '
            f'Use a smaller `radius` or a potential whose minimum is this '
            f'lattice.', UserWarning, stacklevel=2)
    positions[free] = moved
    measure = phantom.space.element(positions,
                                    weights=phantom.measure.weights,
                                    species=phantom.measure.species)
    return type(phantom)(
        measure, phantom.name, spacing, defect_atoms=phantom.defect_atoms,
        defect_sites=phantom.defect_sites,
        description=(f'{phantom.description}; relaxed: {free.sum()} atoms '
                     f'within {radius:g} lattice spacings of the defect'))
