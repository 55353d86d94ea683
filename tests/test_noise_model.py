"""Tests of the noise model in the data term and of the data-scale messages.

Independent references: the expected squared norm of simulated noise
(Monte Carlo over seeds), the data's integral computed here from the array,
and the calibration's noise model against the dose of the simulation.
"""

import warnings

import numpy as np
import pytest

import odl_atoms as oa
from odl_atoms.solvers.sirt import SIRT


def lattice_data(scale=1.0, angles=(0, 45, 90)):
    phantom = oa.defect_phantom('perfect', shape=(3, 3))
    measured = oa.simulate(phantom.measure, np.radians(angles), 0.43,
                           n_detector=64)
    return phantom, measured, scale * np.asarray(measured.data)


# --- SIRT + picking that finds nothing says so


def test_sirt_finds_nothing_in_microscope_units_and_says_why():
    phantom, measured, data = lattice_data(scale=0.004)   # fraction of beam
    op = measured.operator()
    cell = float(np.prod(op.range.partition.cell_sides[1:]))
    held = np.median(data.reshape(len(data), -1).sum(axis=1) * cell)
    assert held == pytest.approx(9 * 0.004, rel=1e-3)
    with pytest.warns(UserWarning, match='not in units of one atom') as rec:
        result = SIRT(n_iter=30).solve(oa.Problem(op, data))
    assert result.n_atoms == 0
    message = str(rec[0].message)
    assert f'hold {held:.2g} atoms' in message
    assert 'intensity' in message and 'calibrat' in message
    assert result.info['message'] == message


def test_sirt_finds_nothing_with_a_picker_threshold_above_the_image():
    phantom, measured, data = lattice_data()
    op = measured.operator()
    picker = oa.AtomPicker(0.43, threshold=1e6)
    with pytest.warns(UserWarning, match='although the data hold 9 atoms'):
        result = SIRT(n_iter=30, picker=picker).solve(oa.Problem(op, data))
    assert result.n_atoms == 0
    assert 'threshold' in result.info['message']


def test_sirt_that_finds_atoms_does_not_warn():
    phantom, measured, data = lattice_data(angles=np.linspace(0, 165, 12))
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)
        result = SIRT(n_iter=100).solve(oa.Problem(measured.operator(), data))
    assert result.n_atoms > 0 and 'message' not in result.info


# --- A data scale that disagrees with the atom intensity


def test_atom_fraction_against_single_atom_fits_on_the_grid():
    # Independent: the least-squares weight of one atom at each grid point,
    # <A x, y> / <A x, A x> with ODL's inner product of the operator's own
    # output, maximised over the same grid.
    from odl_atoms.calibration import atom_fraction
    from odl_atoms.solvers.grid import scoring_discr

    phantom, measured, data = lattice_data(scale=0.01)
    op = measured.operator()
    y = op.range.element(data)
    spacing = 0.6
    points = scoring_discr(op.domain, spacing).points()
    best = 0.0
    for point in points:
        g = op(op.domain.element(point[None, :]))
        if g.norm() > 0:
            best = max(best, y.inner(g) / g.inner(g))
    assert atom_fraction(op, data, spacing=spacing) == pytest.approx(best,
                                                                     rel=1e-6)
    # Linear in the data, inverse in the weight.
    assert atom_fraction(op, 100 * data, weight=2.0, spacing=spacing) == \
        pytest.approx(50 * best, rel=1e-6)


def test_scale_message_for_a_particle_in_fractions_of_the_beam():
    # The 3D case: a particle of ~80 atoms at 2 % of the beam per
    # atom integrates to more than one "atom", so the integral's check is
    # silent; no single atom fits anywhere, and the message says so.
    from odl_atoms.calibration import scale_message

    from odl_atoms.phantoms import nanoparticle

    phantom = nanoparticle('octahedron', size=4)
    measured = oa.simulate(phantom.measure, np.radians([-60, 0, 60]), 0.45,
                           detector_cell=0.4)
    op = measured.operator()
    data = 0.02 * np.asarray(measured.data)
    problem = oa.Problem(op, data)
    assert problem.expected_atoms() > 0.5          # the integral is fooled
    message = scale_message(op, data)
    assert message is not None and 'intensity of one atom' in message
    assert scale_message(op, np.asarray(measured.data)) is None
