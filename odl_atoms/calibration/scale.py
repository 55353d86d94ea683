"""Does one atom fit the data at all? The data scale against the atom model.

Data in a microscope's units (fractions of the beam, detector counts) given
to a solver as if they were in units of one atom hold a few percent of an
atom at their brightest place: no atom lowers the misfit, the solvers
return nothing, and what fails next (the nearest-neighbour distance of no
atoms, an empty SIRT picking) names the wrong cause. The integral of the
data (`odl_atoms.checks.expected_atoms`) misses it in 3D, where a particle
of hundreds of atoms in fractions of the beam still integrates to "1.8
atoms" per projection.

`atom_fraction` asks the question ADCG asks before it adds an atom: the
least-squares weight of a single atom of weight ``w`` at the best place,
``max_x <g_x, y> / (w ||g_x||^2)`` (``g_x`` the data of a unit atom at
``x``, on the scoring grid of the solvers). Adding the atom there lowers the
misfit exactly when this is above one half. `scale_message` turns a value
below one half into a message that names the cause and the fix.
"""

import numpy as np

__all__ = ('atom_fraction', 'scale_message', 'MIN_ATOM_FRACTION')

#: Below this `atom_fraction` no atom of the smallest weight lowers the
#: misfit anywhere (ADCG's criterion for adding one).
MIN_ATOM_FRACTION = 0.5


def atom_fraction(operator, data, weight=1.0, spacing=None):
    """Largest fraction of one atom of weight ``weight`` that the data hold.

    Parameters
    ----------
    operator : `~odl_atoms.GaussianRayTransform`
    data : array-like or element of ``operator.range``
    weight : positive float, optional
        Weight of the atom (the smallest allowed weight, in the operator's
        units).
    spacing : positive float, optional
        Spacing of the grid of candidate places (default ``sigma``: a peak
        is then within ``sigma / 2`` of a grid point in each coordinate).

    Returns
    -------
    fraction : float
        ``max_x <g_x, y> / (weight ||g_x||^2)``: about the number of atoms
        of weight ``weight`` at the brightest place (1 for an isolated atom
        in data of the right scale, more where atoms overlap), 0.004 for
        data in fractions of a beam that one atom scatters 0.4 % of.

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> import odl_atoms as oa
    >>> space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-6, 6, 48))
    >>> op = oa.GaussianRayTransform(space, geometry, sigma=0.3)
    >>> atom = space.element([[0.6, -0.3]])
    >>> round(atom_fraction(op, op(atom), spacing=0.1), 2)
    1.0
    >>> round(atom_fraction(op, 0.004 * op(atom).data, spacing=0.1), 4)
    0.004
    """
    from odl_atoms.solvers.grid import scoring_grid

    y = np.asarray(getattr(data, 'data', data), dtype=float).ravel()
    spacing = float(operator.sigma if spacing is None else spacing)
    _, stencil, norms = scoring_grid(operator, spacing)
    corr = np.asarray(stencil.correlate(y), dtype=float)
    usable = norms > 1e-3 * norms.max()
    if not np.any(usable):
        return 0.0
    return float(np.max(corr[usable] / norms[usable]) / float(weight))


def scale_message(operator, data, weight=1.0, names=None):
    """A message if no atom of weight ``weight`` fits the data, else None.

    Parameters
    ----------
    operator, data, weight :
        As in `atom_fraction`.
    names : dict, optional
        How to name the settings a user can change (keys ``'intensity'``,
        ``'weights'`` and ``'calibration'``; default the library's,
        `odl_atoms.checks.API_NAMES`).

    Examples
    --------
    >>> import odl
    >>> from odl.applications import tomo
    >>> import odl_atoms as oa
    >>> space = oa.SparseMeasureSpace([-4, -4], [4, 4])
    >>> geometry = tomo.Parallel2dGeometry(
    ...     odl.uniform_partition(0, np.pi, 3), odl.uniform_partition(-6, 6, 48))
    >>> op = oa.GaussianRayTransform(space, geometry, sigma=0.3)
    >>> atoms = space.element([[0.6, -0.3], [-1.5, 1.0]])
    >>> scale_message(op, op(atoms)) is None
    True
    >>> print(scale_message(op, 0.004 * op(atoms).data))
    no atom of weight 1 fits these data: at their brightest place they hold 0.0041 of one atom's data (an atom is added where they hold more than half), so the data are on another scale than the atom model, about 1/247 of it (microscope units: fractions of the beam or counts?). Give the intensity of one atom in data units (intensity) or the atom weights in data units (weights), or let calibration estimate it (odl_atoms.calibration.calibrate; odl_atoms.reconstruct does for data whose intensity_unit is not 'atoms')
    """
    from odl_atoms.checks import API_NAMES

    names = dict(API_NAMES, **(names or {}))
    fraction = atom_fraction(operator, data, weight)
    if fraction >= MIN_ATOM_FRACTION:
        return None
    if fraction > 0:
        ratio = (f', about 1/{1 / fraction:.3g} of it' if fraction < 0.1
                 else f', about {fraction:.2g} of it')
    else:
        ratio = ''
    return (f'no atom of weight {weight:g} fits these data: at their '
            f'brightest place they hold {fraction:.2g} of one atom\'s data '
            f'(an atom is added where they hold more than half), so the '
            f'data are on another scale than the atom model{ratio} '
            f'(microscope units: fractions of the beam or counts?). Give the '
            f'intensity of one atom in data units ({names["intensity"]}) or '
            f'the atom weights in data units ({names["weights"]}), or let '
            f'calibration estimate it ({names["calibration"]}; '
            f'odl_atoms.reconstruct does for data whose intensity_unit is not '
            f"'atoms')")
