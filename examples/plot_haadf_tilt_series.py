"""
From a HAADF tilt series to atoms
=================================

A microscope gives images, not atoms: a HAADF-STEM tilt series in fractions
of the beam, with an unknown atom width, an unknown intensity of one atom,
a background, Poisson noise and some drift. This example starts from such a
series, made with `abTEM <https://abtem.readthedocs.io>`_ (multislice
HAADF-STEM of 5 x 5 gold columns with one column missing, 0/45/90 degrees,
six frozen phonons, Poisson noise: ``benchmarks/realistic_data.py``, shipped
in ``tests/data``), a physics code independent of odl_atoms' own model.

Nothing is given but the image stack: its metadata hold the pixel size and
the angles. The command line does the same in two steps::

    odl-atoms prepare tiny_au5_vacancy_zone.hspy -o tilts.npz
    odl-atoms reconstruct tilts.npz -o atoms.extxyz --figure atoms.png
"""

import os

import matplotlib.pyplot as plt
import numpy as np

import odl_atoms as oa

try:
    here = os.path.dirname(os.path.abspath(__file__))
except NameError:   # sphinx-gallery runs examples from their folder, without __file__
    here = os.getcwd()
folder = os.path.join(here, '..', 'tests', 'data', 'tiny_au5_vacancy_zone')
stack = os.path.join(folder, 'tiny_au5_vacancy_zone.hspy')

# %%
# Read the tilt series (RosettaSciIO reads HyperSpy's ``.hspy``; ``.emd``,
# ``.dm4``, ``.mrc`` and ``.tif`` stacks work alike) and prepare it: in 2D
# the columns run along the tilt axis, so every image is averaged along it
# into one profile; the box is what every projection sees; the background
# (the vacuum level) is removed.

series = oa.read_tilt_series(stack)
print(series.describe())
measured = oa.prepare_projections(series, ndim=2)
print(f'profiles {measured.data.shape}, unit: {measured.intensity_unit}')

# %%
# The atom model from the data alone (`odl_atoms.calibration.calibrate`):
# the atom width from the projections whose columns are resolved, the
# intensity of one atom as the unit that makes the isolated peaks whole
# numbers of atoms, a factor and a background per projection, and the
# Poisson-Gaussian noise from the images.

calibration = oa.calibration.calibrate(measured, images=series)
print(calibration)

# %%
# `odl_atoms.reconstruct` does that by itself for data in a microscope's
# units, aligns the projections, reconstructs, fits the intensity, factors,
# backgrounds and shifts again at the atoms it found and reconstructs from
# there, until they settle (the width of the resolved peaks stays in 2D:
# refitted at the atoms it drifts low as the columns spread to mimic the
# non-Gaussian HAADF profile). Until then the searches leave out ADCG's
# escape moves, most of a search's time; the last one has them.

result = oa.reconstruct(measured, images=series)
for k, step in enumerate(result.info['calibration_rounds'], 1):
    print(f"round {k}: {step['n_atoms']} atoms, sigma {step['sigma']:.3f} A, "
          f"intensity {step['intensity']:.5f}, escapes: {step['escapes']}")
print(oa.verdict(result, oa.Problem(result.info['calibrated'].operator(),
                                    result.info['calibrated'].element())))

# %%
# The ground truth (the column positions abTEM was given) scores it: every
# column is found and the missing one stays missing.

truth = oa.read_atoms(os.path.join(folder, 'tiny_au5_vacancy_zone_truth.'
                                   'extxyz'), ndim=2)
print(oa.match_atoms(truth, result.measure))

calibrated = result.info['calibrated']
operator = calibrated.operator().shifted(result.info['alignment']['shifts'])
fig = oa.plot_comparison({'ADCG from the images': result}, truth,
                         calibrated.element(), operator)
os.makedirs('odl_atoms_examples', exist_ok=True)
fig.savefig('odl_atoms_examples/haadf_tilt_series.png')

# %%
# The images themselves, and how far the Gaussian model is from
# multislice data: the residual at the zone axes is several times the
# noise (channelling sharpens the columns' cores and adds tails), which is
# why the certificate reports a misfit above the noise's.

fig, axes = plt.subplots(1, 3, figsize=(9, 2.2))
for ax, image, angle in zip(axes, series.images, np.degrees(series.angles)):
    ax.imshow(image, cmap='gray', aspect='auto')
    ax.set_title(f'{angle:.0f} degrees')
    ax.set_axis_off()
fig.tight_layout()
fig.savefig('odl_atoms_examples/haadf_tilt_series_images.png')
plt.show()
