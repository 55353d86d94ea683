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
