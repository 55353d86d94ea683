"""Tests of reading microscope tilt series and preparing projection data.

Independent references: files written with tifffile, mrcfile and
RosettaSciIO themselves (known pixel sizes in nm, angles in degrees); images
rendered here from the explicit projection formula of a point
(``u = x cos t + y sin t``, ``v = z``), compared with ODL's geometry through
the Gaussian-atom operator; data simulated by `odl_atoms.simulate` and
rendered into images.
"""

import argparse
import dataclasses
import importlib
import json
import warnings

import h5py
import numpy as np
import pytest
import tifffile

from odl_atoms.errors import ValidationError
from odl_atoms.io import (ProjectionData, TiltSeries, prepare_projections,
                          read_projections, read_tilt_series)
from odl_atoms.io.microscope import read_tilt_file
from odl_atoms.io.prepare import estimate_background
from odl_atoms.simulation import simulate
from odl_atoms.space import SparseMeasureSpace

rsciio_hspy = pytest.importorskip('rsciio.hspy')
mrcfile = pytest.importorskip('mrcfile')


# --- Writers of test files (the libraries' own)


def write_imagej(path, images, pixel_nm, angles_deg=None):
    tifffile.imwrite(path, np.asarray(images, dtype='float32'), imagej=True,
                     resolution=(1 / pixel_nm, 1 / pixel_nm),
                     metadata={'unit': 'nm', 'axes': 'ZYX'})
    if angles_deg is not None:
        path.with_suffix('.rawtlt').write_text(
            '\n'.join(f'{a:g}' for a in angles_deg) + '\n')


def write_hspy(path, images, pixel, units='nm', angles=None,
               angle_units='deg', metadata=None, nonuniform=False):
    images = np.asarray(images, dtype='float32')
    axes = []
    if images.ndim == 3:
        nav = dict(name='tilt', units=angle_units, navigate=True)
        if angles is None:
            nav.update(scale=1.0, offset=0.0, size=images.shape[0],
                       units='<undefined>')
        elif nonuniform:
            nav['axis'] = np.asarray(angles, dtype=float)
        else:
            step = angles[1] - angles[0] if len(angles) > 1 else 1.0
            nav.update(scale=float(step), offset=float(angles[0]),
                       size=len(angles))
        axes.append(nav)
    axes += [dict(name='y', scale=pixel, offset=0.0, units=units,
                  size=images.shape[-2], navigate=False),
             dict(name='x', scale=pixel, offset=0.0, units=units,
                  size=images.shape[-1], navigate=False)]
    meta = {'General': {'title': 'HAADF'},
            'Signal': {'signal_type': '', 'quantity': 'Intensity (counts)'}}
    meta.update(metadata or {})
    rsciio_hspy.file_writer(str(path), {
        'data': images, 'axes': axes, 'metadata': meta,
        'original_metadata': {}, 'learning_results': {}, 'models': {},
        'package_info': {}, 'attributes': {'_lazy': False},
        'tmp_parameters': {}})


def write_mrc(path, images, voxel_angstrom, exttyp=None, ext=None,
              extra1=None):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.asarray(images, dtype='float32'))
        mrc.voxel_size = voxel_angstrom
        if ext is not None:
            mrc.set_extended_header(ext)
            mrc.header.exttyp = exttyp
        if extra1 is not None:
            mrc.header.extra1 = extra1


def stack(n=3, ny=12, nx=16, seed=0):
    return np.random.default_rng(seed).uniform(1, 2, (n, ny, nx))


# --- Readers round-trip with units


def test_imagej_tiff_nm_and_rawtlt(tmp_path):
    images = stack()
    write_imagej(tmp_path / 'tilts.tif', images, 0.025, [-60, 5, 60])
    series = read_tilt_series(tmp_path / 'tilts.tif')
    np.testing.assert_allclose(series.pixel_size, [0.25, 0.25])
    np.testing.assert_allclose(np.degrees(series.angles), [-60, 5, 60])
    np.testing.assert_allclose(series.images, images.astype('float32'))
    assert series.metadata['angle_source'].endswith("tilts.rawtlt'")
    assert series.metadata['pixel_size_source'] == 'ImageJ metadata'
    # ImageJ's escape for the angstrom sign.
    tifffile.imwrite(tmp_path / 'a.tif', images.astype('float32'),
                     imagej=True, resolution=(4.0, 2.0),
                     metadata={'unit': '\\u00C5', 'axes': 'ZYX'})
    series = read_tilt_series(tmp_path / 'a.tif', angles=[0.1, 0.2, 0.3])
    np.testing.assert_allclose(series.pixel_size, [0.5, 0.25])  # (y, x)


def test_ome_and_resolution_tag_tiffs(tmp_path):
    images = stack(n=2)
    tifffile.imwrite(tmp_path / 'a.ome.tif', images.astype('float32'),
                     photometric='minisblack',
                     metadata={'axes': 'ZYX', 'PhysicalSizeX': 0.03,
                               'PhysicalSizeXUnit': 'nm',
                               'PhysicalSizeY': 0.04,
                               'PhysicalSizeYUnit': 'nm'})
    (tmp_path / 'a.rawtlt').write_text('10\n-20\n')
    series = read_tilt_series(tmp_path / 'a.ome.tif')
    np.testing.assert_allclose(series.pixel_size, [0.4, 0.3])
    np.testing.assert_allclose(np.degrees(series.angles), [10, -20])
    assert series.metadata['pixel_size_source'] == 'OME metadata'
    # Resolution tags in pixels per centimetre, one image per file.
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f'img{i}.tif')
        tifffile.imwrite(paths[-1], image.astype('float32'),
                         resolution=(1 / 0.3e-8, 1 / 0.3e-8),
                         resolutionunit='CENTIMETER')
    series = read_tilt_series(paths, angles=np.radians([0.0, 30.0]))
    np.testing.assert_allclose(series.pixel_size, [0.3, 0.3], rtol=1e-6)
    assert series.n_tilts == 2 and series.source == tuple(map(str, paths))


def test_mrc_voxel_size_and_extended_header_angles(tmp_path):
    images = stack(n=4)
    write_mrc(tmp_path / 'tilts.st', images, 1.7)
    (tmp_path / 'tilts.rawtlt').write_text('-45\n-15\n15\n45\n')
    series = read_tilt_series(tmp_path / 'tilts.st')
    np.testing.assert_allclose(series.pixel_size, [1.7, 1.7], rtol=1e-6)
    np.testing.assert_allclose(series.images, images.astype('float32'))
    np.testing.assert_allclose(np.degrees(series.angles), [-45, -15, 15, 45])

    # FEI1 extended header: alpha tilt per image, in degrees.
    dtype = mrcfile.dtypes.get_ext_header_dtype(b'FEI1')
    ext = np.zeros(4, dtype=dtype)
    ext['Metadata size'] = dtype.itemsize
    ext['Alpha tilt'] = [-50, -10, 20, 55]
    write_mrc(tmp_path / 'fei.mrc', images, 2.0, exttyp=b'FEI1', ext=ext)
    series = read_tilt_series(tmp_path / 'fei.mrc')
    np.testing.assert_allclose(np.degrees(series.angles), [-50, -10, 20, 55],
                               rtol=1e-6)
    assert 'FEI' in series.metadata['angle_source']

    # SerialEM extended header: tilt * 100 as int16 (flag 1), 2 bytes each.
    tilts = np.array([-3000, -1000, 1000, 3050], dtype='<i2')
    write_mrc(tmp_path / 'seri.mrc', images, 2.0, exttyp=b'SERI',
              ext=np.frombuffer(tilts.tobytes(), dtype='V1'),
              extra1=np.frombuffer(np.array([2, 1, 0, 0], '<i2').tobytes(),
                                   dtype='V8')[0])
    series = read_tilt_series(tmp_path / 'seri.mrc')
    np.testing.assert_allclose(np.degrees(series.angles),
                               [-30, -10, 10, 30.5])

    # No voxel size: say what to give.
    write_mrc(tmp_path / 'bare.mrc', images, 0.0)
    with pytest.raises(ValidationError, match='pixel_size=.*--pixel-size'):
        read_tilt_series(tmp_path / 'bare.mrc', angles=[0, 1, 2, 3])
    series = read_tilt_series(tmp_path / 'bare.mrc', angles=[0, 1, 2, 3],
                              pixel_size=0.8)
    np.testing.assert_allclose(series.pixel_size, [0.8, 0.8])


def test_hspy_navigation_axis_in_degrees_and_nm(tmp_path):
    images = stack(n=3, ny=10, nx=14)
    write_hspy(tmp_path / 'a.hspy', images, 0.05, units='nm',
               angles=[-40.0, 0.0, 40.0])
    series = read_tilt_series(tmp_path / 'a.hspy')
    np.testing.assert_allclose(series.pixel_size, [0.5, 0.5])
    np.testing.assert_allclose(np.degrees(series.angles), [-40, 0, 40])
    np.testing.assert_allclose(series.images, images.astype('float32'))
    assert series.intensity_unit == 'counts'  # from 'Intensity (counts)'
    # A tilt file next to the stack wins, with a warning if the metadata
    # say otherwise.
    (tmp_path / 'a.rawtlt').write_text('-40\n0\n41\n')
    with pytest.warns(UserWarning, match="a.rawtlt' differ from those in "
                                         "the metadata"):
        series = read_tilt_series(tmp_path / 'a.hspy')
    np.testing.assert_allclose(np.degrees(series.angles), [-40, 0, 41])
    # A non-uniform axis, in Å (as benchmarks/realistic_data.py writes it).
    write_hspy(tmp_path / 'b.hspy', images, 0.3, units='Å',
               angles=[10.0, 70.0, 130.0], nonuniform=True)
    series = read_tilt_series(tmp_path / 'b.hspy')
    np.testing.assert_allclose(np.degrees(series.angles), [10, 70, 130])
    np.testing.assert_allclose(series.pixel_size, [0.3, 0.3])
    # Angles from metadata.Tomography.tilts when the axis has no units.
    write_hspy(tmp_path / 'c.hspy', images, 30.0, units='pm',
               metadata={'Tomography': {'tilts': np.array([-5.0, 0, 5])}})
    series = read_tilt_series(tmp_path / 'c.hspy')
    np.testing.assert_allclose(np.degrees(series.angles), [-5, 0, 5])
    np.testing.assert_allclose(series.pixel_size, [0.3, 0.3])
    assert 'Tomography' in series.metadata['angle_source']


def test_emd_stack(tmp_path):
    from rsciio.emd import file_writer

    images = stack(n=3)
    file_writer(str(tmp_path / 'a.emd'), {
        'data': images.astype('float32'),
        'axes': [dict(name='tilt', scale=30.0, offset=-30.0, units='deg',
                      size=3, navigate=True),
                 dict(name='y', scale=0.05, offset=0, units='nm', size=12,
                      navigate=False),
                 dict(name='x', scale=0.05, offset=0, units='nm', size=16,
                      navigate=False)],
        'metadata': {'General': {'title': 'HAADF'}, 'Signal': {}},
        'original_metadata': {}, 'attributes': {'_lazy': False},
        'tmp_parameters': {}})
    series = read_tilt_series(tmp_path / 'a.emd')
    np.testing.assert_allclose(series.pixel_size, [0.5, 0.5])
    np.testing.assert_allclose(np.degrees(series.angles), [-30, 0, 30])
    np.testing.assert_allclose(series.images, images.astype('float32'))


def test_list_of_files_with_stage_tilts(tmp_path):
    images = stack(n=3)
    paths = []
    for i, (image, tilt) in enumerate(zip(images, [20.0, -10.0, 50.0])):
        paths.append(tmp_path / f't{i}.hspy')
        write_hspy(paths[-1], image, 0.02, units='µm' if i == 5 else 'nm',
                   metadata={'Acquisition_instrument': {
                       'TEM': {'Stage': {'tilt_alpha': tilt}}}})
    series = read_tilt_series(paths)
    np.testing.assert_allclose(np.degrees(series.angles), [20, -10, 50])
    np.testing.assert_allclose(series.images, images.astype('float32'))
    np.testing.assert_allclose(series.pixel_size, [0.2, 0.2])


def test_tilt_file_format(tmp_path):
    (tmp_path / 'a.tlt').write_text(' -60.5\n\n0\n  59.25  \n')
    np.testing.assert_allclose(np.degrees(read_tilt_file(tmp_path / 'a.tlt')),
                               [-60.5, 0, 59.25])
    (tmp_path / 'b.tlt').write_text('-60\n0 1\n')
    with pytest.raises(ValidationError, match=r"b.tlt', line 2: '0 1'"):
        read_tilt_file(tmp_path / 'b.tlt')
    # Given as angles=, a tilt file beats the one next to the stack.
    write_imagej(tmp_path / 's.tif', stack(), 0.05, [1, 2, 3])
    series = read_tilt_series(tmp_path / 's.tif', angles=tmp_path / 'a.tlt')
    np.testing.assert_allclose(np.degrees(series.angles), [-60.5, 0, 59.25])
    assert series.metadata['angle_source'].endswith("a.tlt'")


# --- Bad stacks: messages that say what to give


def test_bad_stacks_name_what_to_give(tmp_path):
    images = stack()
    write_imagej(tmp_path / 'noangles.tif', images, 0.05)
    with pytest.raises(ValidationError, match=r"no tilt angles for .*"
                                              r"noangles.tif.*give angles=.*"
                                              r"--angles.*\.rawtlt"):
        read_tilt_series(tmp_path / 'noangles.tif')
    with pytest.raises(ValidationError, match=r'2 angle\(s\) given for 3 '
                                              r'image\(s\)'):
        read_tilt_series(tmp_path / 'noangles.tif', angles=[0.0, 1.0])
    (tmp_path / 'noangles.rawtlt').write_text('0\n10\n')
    with pytest.raises(ValidationError, match=r'lists 2 angle\(s\) for the 3'):
        read_tilt_series(tmp_path / 'noangles.tif')
    with pytest.raises(ValidationError, match='look like degrees'):
        read_tilt_series(tmp_path / 'noangles.tif', angles=[-60, 0, 60])

    # Unknown or missing units.
    for units in ('<undefined>', 'px', '1/nm'):
        write_hspy(tmp_path / 'u.hspy', images, 1.0, units=units,
                   angles=[0.0, 10.0, 20.0])
        with pytest.raises(ValidationError, match=r'no pixel size in known '
                                                  r'units.*give pixel_size=.*'
                                                  r'--pixel-size'):
            read_tilt_series(tmp_path / 'u.hspy')
    series = read_tilt_series(tmp_path / 'u.hspy', pixel_size=0.4)
    np.testing.assert_allclose(series.pixel_size, [0.4, 0.4])
    tifffile.imwrite(tmp_path / 'plain.tif', images.astype('float32'),
                     photometric='minisblack')
    with pytest.raises(ValidationError, match='pixel_size='):
        read_tilt_series(tmp_path / 'plain.tif', angles=[0, 0.1, 0.2])
    tifffile.imwrite(tmp_path / 'dpi.tif', images[0].astype('float32'),
                     resolution=(72, 72), resolutionunit='INCH')
    with pytest.raises(ValidationError, match="not a microscope's"):
        read_tilt_series(tmp_path / 'dpi.tif', angles=[0.0])

    # Images of different sizes; different pixel sizes; per-file angles
    # missing.
    write_imagej(tmp_path / 'a.tif', images[:1], 0.05)
    write_imagej(tmp_path / 'b.tif', images[:1, :, :-2], 0.05)
    with pytest.raises(ValidationError, match=r"b.tif' has images of 12 x 14 "
                                              r"pixels.*same size"):
        read_tilt_series([tmp_path / 'a.tif', tmp_path / 'b.tif'],
                         angles=[0.0, 0.5])
    write_imagej(tmp_path / 'c.tif', images[:1], 0.06)
    with pytest.raises(ValidationError, match='different pixel sizes'):
        read_tilt_series([tmp_path / 'a.tif', tmp_path / 'c.tif'],
                         angles=[0.0, 0.5])
    write_imagej(tmp_path / 'd.tif', images[1:2], 0.05)
    with pytest.raises(ValidationError, match=r'no tilt angle in the metadata '
                                              r'of 2 of the 2 files.*angles='):
        read_tilt_series([tmp_path / 'a.tif', tmp_path / 'd.tif'])
    with pytest.raises(ValidationError, match='one stack or one file per tilt'):
        read_tilt_series([tmp_path / 'noangles.tif', tmp_path / 'a.tif'])
    with pytest.raises(FileNotFoundError, match='missing.tif'):
        read_tilt_series(tmp_path / 'missing.tif')
    (tmp_path / 'junk.tif').write_bytes(b'not a tiff')
    with pytest.raises(ValidationError, match="junk.tif' as microscope images"):
        read_tilt_series(tmp_path / 'junk.tif', angles=[0.0])
    (tmp_path / 'x.unknownformat').write_bytes(b'?')
    with pytest.raises(ValidationError, match='unknown image format'):
        read_tilt_series(tmp_path / 'x.unknownformat', angles=[0.0])


def test_complex_and_oversized_and_linked_stacks_refused(tmp_path):
    images = stack()
    with mrcfile.new(tmp_path / 'c.mrc') as mrc:
        mrc.set_data(images.astype('complex64'))
        mrc.voxel_size = 1.0
    with pytest.raises(ValidationError, match='complex'):
        read_tilt_series(tmp_path / 'c.mrc', angles=[0, 1, 2])
    with pytest.raises(ValueError, match='complex'):
        TiltSeries(images + 1j, [0, 1, 2], 1.0)

    write_imagej(tmp_path / 'big.tif', images, 0.05, [0, 10, 20])
    with pytest.raises(ValidationError, match='declares .* more than the '
                                              'limit'):
        read_tilt_series(tmp_path / 'big.tif', max_bytes=1000)
    # An MRC header that declares more data than the file holds.
    write_mrc(tmp_path / 'cut.mrc', images, 1.0)
    data = (tmp_path / 'cut.mrc').read_bytes()
    (tmp_path / 'cut.mrc').write_bytes(data[:-100])
    with pytest.raises(ValidationError, match='damaged or incomplete'):
        read_tilt_series(tmp_path / 'cut.mrc', angles=[0, 1, 2])

    # A HyperSpy file whose data are an external link to another file.
    write_hspy(tmp_path / 'ok.hspy', images, 0.05, angles=[0.0, 5.0, 10.0])
    write_hspy(tmp_path / 'linked.hspy', images, 0.05, angles=[0.0, 5.0, 10.0])
    with h5py.File(tmp_path / 'linked.hspy', 'a') as f:
        name = [k for k in f['Experiments']][0]
        del f['Experiments'][name]['data']
        f['Experiments'][name]['data'] = h5py.ExternalLink(
            str(tmp_path / 'ok.hspy'), f'/Experiments/{name}/data')
    with pytest.raises(ValidationError, match='external link'):
        read_tilt_series(tmp_path / 'linked.hspy')


# --- prepare_projections: geometry conventions


SIGMA = 0.6


def render_point(point, angles, shape, pixel, tilt_axis_deg=90.0):
    """Images of a Gaussian atom, by the documented convention.

    At tilt ``t`` the atom projects to ``u = x cos t + y sin t``, ``v = z``;
    ``v`` runs along the tilt axis ``(cos phi, sin phi)`` of the image's
    ``(x, y)`` and ``u`` along ``(sin phi, -cos phi)``. The value is the
    normalised 2D Gaussian of std SIGMA at each pixel centre.
    """
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    x = (x - (nx - 1) / 2) * pixel
    y = (y - (ny - 1) / 2) * pixel
    phi = np.radians(tilt_axis_deg)
    u_img = x * np.sin(phi) - y * np.cos(phi)
    v_img = x * np.cos(phi) + y * np.sin(phi)
    images = []
    for t in angles:
        u = point[0] * np.cos(t) + point[1] * np.sin(t)
        v = point[2]
        r2 = (u_img - u) ** 2 + (v_img - v) ** 2
        images.append(np.exp(-r2 / (2 * SIGMA ** 2)) / (2 * np.pi * SIGMA ** 2))
    return np.array(images)


@pytest.mark.parametrize('tilt_axis_deg, option, atol', [
    (90.0, 'y', 1e-6), (0.0, 'x', 1e-6), (-90.0, '-y', 1e-6),
    (180.0, '-x', 1e-6),
    # Resampled with linear interpolation: an error below 1 % of the peak.
    (30.0, np.radians(30.0), 1e-2)])
def test_prepare_3d_puts_an_off_centre_atom_where_odl_projects_it(
        tmp_path, tilt_axis_deg, option, atol):
    point = np.array([2.3, -1.1, 1.7])
    angles = np.radians([-50.0, 10.0, 65.0])
    pixel = 0.1 if atol > 1e-5 else 0.25
    shape = (160, 200) if atol > 1e-5 else (64, 80)
    images = render_point(point, angles, shape, pixel, tilt_axis_deg)
    write_imagej(tmp_path / 'p.tif', images, pixel / 10,
                 np.degrees(angles))
    series = read_tilt_series(tmp_path / 'p.tif')
    measured = prepare_projections(series, ndim=3, tilt_axis=option,
                                   background=None)
    assert measured.sigma is None and measured.ndim == 3
    # ODL's Parallel3dAxisGeometry with the default axis: the detector is
    # where the explicit formula put the atom.
    op = dataclasses.replace(measured, sigma=SIGMA).operator(mode='sample')
    atom = measured.measure_space().element([point])
    peak = 1 / (2 * np.pi * SIGMA ** 2)
    np.testing.assert_allclose(op(atom).data, measured.data, rtol=0,
                               atol=atol * peak)
    # The detector is centred on the image centre.
    np.testing.assert_allclose(measured.detector_min, -measured.detector_max)


def test_prepare_3d_sense_of_rotation_is_odl_det_axes(tmp_path):
    """A positive tilt moves a point at +y towards +u (ODL's det_axes)."""
    point = np.array([0.0, 2.0, 0.0])
    angles = np.radians([0.0, 30.0])
    images = render_point(point, angles, (40, 64), 0.25)
    series = TiltSeries(images, angles, 0.25)
    measured = prepare_projections(series, ndim=3, background=None)
    u = measured.geometry.det_partition.coord_vectors[0]
    peaks = [u[np.unravel_index(np.argmax(p), p.shape)[0]]
             for p in measured.data]
    # ODL's own detector axes say where the point goes.
    axes = measured.geometry.det_axes(angles)
    expected = axes[:, 0, :] @ point
    np.testing.assert_allclose(expected, [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(peaks, expected, atol=0.125)


def simulated_images_2d(background, noise_std, seed=0):
    space = SparseMeasureSpace([-6, -6], [6, 6])
    truth = space.element([[-2.5, 1.0], [0.5, -2.0], [2.0, 2.5], [3.1, -0.4]])
    angles = np.radians([-40.0, 15.0, 70.0])
    measured = simulate(truth, angles, 0.45, detector_cell=0.2)
    rng = np.random.default_rng(seed)
    n_rows = 24
    # Each profile repeated along the tilt axis (the image y), in a shuffled
    # order of the stack.
    order = [2, 0, 1]
    images = np.stack([np.tile(measured.data[i], (n_rows, 1))
                       for i in order])
    images = images + background + rng.normal(0, noise_std, images.shape)
    return truth, measured, images, angles[order]


def test_prepare_2d_from_simulation_recovers_geometry_and_background(
        tmp_path):
    truth, measured, images, angles = simulated_images_2d(7.5, 0.0)
    write_imagej(tmp_path / 'cols.tif', images, 0.02, np.degrees(angles))
    series = read_tilt_series(tmp_path / 'cols.tif')
    prepared = prepare_projections(series, ndim=2)
    # Sorted by angle, the simulation's detector, its data.
    np.testing.assert_allclose(prepared.angles, measured.angles, atol=1e-12)
    np.testing.assert_allclose(prepared.detector_min, measured.detector_min,
                               rtol=1e-6)
    np.testing.assert_allclose(prepared.detector_max, measured.detector_max,
                               rtol=1e-6)
    np.testing.assert_allclose(prepared.background, 7.5, atol=1e-5)
    np.testing.assert_allclose(prepared.data, measured.data, atol=2e-5)
    # The known atoms land where the rebuilt operator puts them.
    op = dataclasses.replace(prepared, sigma=0.45).operator()
    np.testing.assert_allclose(op(measured.measure_space().element(
        truth.positions)).data, prepared.data, atol=2e-5)
    # Every corner of the default box projects onto the detector at every
    # angle (the region every projection sees), and the box is the largest
    # such centred square: one corner touches the detector edge.
    corners = np.array([[x, y] for x in (prepared.box_min[0],
                                         prepared.box_max[0])
                        for y in (prepared.box_min[1], prepared.box_max[1])])
    u = (np.cos(prepared.angles)[:, None] * corners[:, 0]
         + np.sin(prepared.angles)[:, None] * corners[:, 1])
    assert np.all(np.abs(u) <= prepared.detector_max[0] + 1e-9)
    assert np.isclose(np.abs(u).max(), prepared.detector_max[0])
    # What was done is kept in the file.
    assert prepared.pixels_averaged == 24
    np.testing.assert_allclose(prepared.pixel_size, [0.2, 0.2], rtol=1e-6)
    source = json.loads(prepared.source)
    assert source['files'] == [str(tmp_path / 'cols.tif')]
    assert source['tilt_axis_in_image_deg'] == 90.0
    path = tmp_path / 'prepared.h5'
    from odl_atoms.io import write_projections
    write_projections(path, prepared)
    back = read_projections(path)
    assert back == prepared and back.sigma is None


def test_prepare_background_with_noise_and_per_image(tmp_path):
    truth, measured, images, angles = simulated_images_2d(3.0, 0.02, seed=4)
    series = TiltSeries(images, angles, 0.2)
    prepared = prepare_projections(series, ndim=2)
    # The vacuum level to a fraction of the noise (0.02 per pixel).
    np.testing.assert_allclose(prepared.background, 3.0, atol=0.005)
    # Given per image, in the order of the series (sorted with the images).
    given = np.array([3.0, 3.1, 3.2])
    prepared = prepare_projections(series, ndim=2, background=given)
    np.testing.assert_allclose(prepared.background,
                               given[np.argsort(angles)])
    prepared = prepare_projections(series, ndim=2, background=None)
    assert prepared.background is None
    np.testing.assert_allclose(prepared.data.mean(), 3.0 + measured.data.mean(),
                               atol=0.005)


def test_estimate_background_against_the_vacuum_mean():
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:128, 0:128]
    atoms = sum(np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 10)
                for cx, cy in rng.uniform(20, 70, (25, 2)))
    counts = rng.poisson(0.8 + 30 * atoms)  # Poisson counts, dark level 0.8
    vacuum = counts[:, 96:]                 # no atom within 26 pixels
    level = estimate_background(counts)
    assert abs(level - 0.8) < 0.05
    assert abs(level - vacuum.mean()) < 0.05
    # The median or the mean would be pulled up by the atoms.
    assert np.median(counts) > 1.5 or counts.mean() > 1.5


def _smoothed_half_sample_mode(image):
    """The former estimate: the half-sample mode of all smoothed values."""
    from scipy.ndimage import gaussian_filter

    from odl_atoms.io.prepare import _half_sample_mode

    return _half_sample_mode(np.sort(gaussian_filter(
        np.asarray(image, float), 2.0, mode='nearest').ravel()))


def test_estimate_background_at_generic_tilts_of_a_crystal():
    # The project's 7 x 7 crystal at 10/70/130 degrees: overlapping columns
    # form a plateau wider than the vacuum around the crystal. Known
    # backgrounds, Poisson counts of the beam (1e5 electrons per unit).
    from odl_atoms import lattice_with_vacancy

    phantom = lattice_with_vacancy(spacing=2.04)   # box +-8.16 A
    clean = simulate(phantom.measure, np.radians([10.0, 70.0, 130.0]),
                     sigma=0.33, detector_cell=0.29)
    backgrounds = np.array([0.004, 0.0025, 0.006])
    rng = np.random.default_rng(5)
    fooled = 0
    for profile, b in zip(clean.data, backgrounds):
        expected = b + 0.0045 * np.tile(profile, (14, 1))
        image = rng.poisson(1e5 * expected) / 1e5
        plateau = float(np.median(0.0045 * profile[profile > 0.5 * profile.max()]))
        level = estimate_background(image)
        assert abs(level - b) < 0.05 * plateau, (level, b, plateau)
        # The most common value overall is the crystal's plateau instead.
        fooled += abs(_smoothed_half_sample_mode(image) - b) > 0.3 * plateau
    assert fooled >= 1


@pytest.mark.parametrize('case', ['au7_vacancy_generic',
                                  'au7_interstitial_generic',
                                  'au7_displaced_generic'])
def test_estimate_background_of_abtem_generic_tilts(case):
    # abTEM multislice (benchmarks/realistic_data.py, cached when generated):
    # the reference is the mean of the pixels farther than 2 A from every
    # true column's projection (the vacuum the simulation actually has).
    import os

    from odl_atoms.io import read_atoms

    root = os.path.join(os.path.dirname(__file__), '..', 'benchmarks', 'data',
                        'realistic', case)
    if not os.path.exists(os.path.join(root, case + '.hspy')):
        pytest.skip(f'{case} not generated (benchmarks/realistic_data.py)')
    series = read_tilt_series(os.path.join(root, case + '.hspy'))
    truth = read_atoms(os.path.join(root, case + '_truth.extxyz'), ndim=2)
    x = (np.arange(series.shape[1]) - (series.shape[1] - 1) / 2) \
        * series.pixel_size[1]
    for image, angle in zip(series.images, series.angles):
        u = truth.positions @ np.array([np.cos(angle), np.sin(angle)])
        vacuum = np.abs(x[:, None] - u[None, :]).min(axis=1) > 2.0
        assert vacuum.sum() >= 4
        reference = float(image[:, vacuum].mean())
        plateau = float(np.median(image[image > 0.5 * image.max()]))
        level = estimate_background(image)
        # (The most common value, the former estimate, was the plateau:
        # 0.0102 of the beam at 10 degrees, half the peak signal.)
        assert abs(level - reference) < 0.02 * plateau, \
            (np.degrees(angle), level, reference, plateau)


def test_prepare_warns_when_the_file_puts_the_axis_off_centre(tmp_path):
    images = stack(n=3, ny=6, nx=21)
    centred = -10 * 0.5  # coordinate of the first pixel centre, x = 0 at 10
    for x_offset, warns in ((centred, False), (0.0, False), (-2.5, True)):
        tifffile.imwrite(tmp_path / 'o.tif', images.astype('float32'),
                         imagej=True, resolution=(2.0, 2.0),
                         metadata={'axes': 'ZYX', 'unit': 'angstrom',
                                   'xorigin': -x_offset / 0.5})
        series = read_tilt_series(tmp_path / 'o.tif', angles=[0, 0.5, 1.0])
        assert series.metadata['offsets'][1] == pytest.approx(x_offset)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            prepare_projections(series, ndim=3)
        messages = [str(w.message) for w in caught]
        assert any('at pixel 5, not at the image centre (10)' in m
                   for m in messages) == warns, messages


def test_prepare_binning_box_and_errors(tmp_path):
    images = render_point([1.0, 0.5, -0.5], np.radians([0.0, 40.0]),
                          (41, 50), 0.25)
    series = TiltSeries(images, np.radians([0.0, 40.0]), 0.25)
    plain = prepare_projections(series, ndim=3, background=None)
    binned = prepare_projections(series, ndim=3, background=None, binning=2)
    # 50 x 41 cells -> 25 x 20: the odd row is dropped at one end.
    assert binned.data.shape == (2, 25, 20)
    np.testing.assert_allclose(
        binned.data, plain.data[:, :, :40].reshape(2, 25, 2, 20, 2)
        .mean(axis=(2, 4)))
    np.testing.assert_allclose(binned.detector_min, [-6.25, -5.125])
    np.testing.assert_allclose(binned.detector_max, [6.25, 4.875])
    assert binned.pixels_averaged == 4
    boxed = prepare_projections(series, ndim=3, box=4.0)
    np.testing.assert_allclose(boxed.box_min, [-2, -2, -2])
    boxed = prepare_projections(series, ndim=3,
                                box=([-1, -2, -3], [1, 2, 3]))
    np.testing.assert_allclose(boxed.box_max, [1, 2, 3])
    with pytest.warns(UserWarning, match='beyond the region every projection '
                                         'sees'):
        prepare_projections(series, ndim=3, box=40.0)
    with pytest.raises(ValueError, match='ndim must be 2'):
        prepare_projections(series, ndim=4)
    with pytest.raises(ValueError, match="tilt_axis must be 'x', 'y'"):
        prepare_projections(series, tilt_axis='z')
    with pytest.raises(ValueError, match='box must be'):
        prepare_projections(series, ndim=3, box=([0, 0], [1, 1]))
    with pytest.raises(ValueError, match='background must be'):
        prepare_projections(series, background=[1.0])
    with pytest.raises(TypeError, match='TiltSeries'):
        prepare_projections(images)
    # Two columns at (x, z) = (-1, 0) and (1, 1) seen at 0 and 60 degrees,
    # each a row of resolved atoms along the tilt axis y (period 2): the
    # profile along y is the same in both images, the one across it is not.
    x, y = np.linspace(-4, 4, 40), np.linspace(-4, 4, 30)
    rows = 1 + np.cos(np.pi * y)[:, None]

    def image(angle):
        u = [-np.cos(angle) + 0.0, np.cos(angle) + np.sin(angle)]
        return rows * sum(np.exp(-(x - c) ** 2 / 0.5) for c in u)[None, :]

    tilted = TiltSeries([image(0.0), image(np.pi / 3)], [0.0, np.pi / 3], 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter('error')      # modulated along y: no warning
        prepare_projections(tilted, ndim=2, tilt_axis='y')
    with pytest.warns(UserWarning, match='tilted about the other axis'):
        prepare_projections(tilted, ndim=2, tilt_axis='x')
    with pytest.warns(UserWarning, match='tilted about the other axis'):
        # Columns along x (flat across y), but the tilt axis said to be y.
        cols = np.tile(np.exp(-np.linspace(-3, 3, 30) ** 2)[:, None], (1, 20))
        prepare_projections(TiltSeries([cols, cols], [0.0, 1.0], 0.2),
                            ndim=2, tilt_axis='y')


# --- The command line: odl-atoms prepare


def prepare_main(argv, monkeypatch):
    """Run ``odl-atoms prepare ...`` through the CLI's main (registered)."""
    main_module = importlib.import_module('odl_atoms.cli.main')
    if not any(name == 'prepare' for name, _ in main_module.COMMANDS):
        monkeypatch.setattr(main_module, 'COMMANDS', main_module.COMMANDS
                            + [('prepare', 'odl_atoms.cli.prepare')])
    return main_module.main(['prepare'] + list(argv))


def test_cli_prepare_writes_file_and_reports(tmp_path, monkeypatch, capsys):
    truth, measured, images, angles = simulated_images_2d(2.0, 0.0)
    write_imagej(tmp_path / 'cols.tif', images, 0.02)
    out = tmp_path / 'tilts.npz'
    degrees = [f'{a:g}' for a in np.degrees(angles)]
    status = prepare_main([str(tmp_path / 'cols.tif'), '-o', str(out),
                           '--angles', *degrees], monkeypatch)
    captured = capsys.readouterr()
    assert status == 0, captured.err
    n_det = measured.data.shape[1]
    assert f'3 tilts of 24 x {n_det} pixels' in captured.err
    assert 'background removed: 2 to 2' in captured.err
    assert 'wrote' in captured.out
    prepared = read_projections(out)
    np.testing.assert_allclose(prepared.data, measured.data, atol=2e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cols.tif',
                                                          'tilts.npz']
    # 3D with a given pixel size and box.
    status = prepare_main([str(tmp_path / 'cols.tif'), '-o',
                           str(tmp_path / 't3.h5'), '--angles', *degrees,
                           '--ndim', '3', '--pixel-size', '0.2', '--box',
                           '-2', '-2', '-2', '2', '2', '2', '--background',
                           'none', '-q'], monkeypatch)
    assert status == 0
    prepared = read_projections(tmp_path / 't3.h5')
    assert prepared.data.shape == (3, n_det, 24)
    assert prepared.background is None
    np.testing.assert_allclose(prepared.box_max, [2, 2, 2])


@pytest.mark.parametrize('case, match', [
    ('no_angles', r'--angles'),
    ('unknown_units', r'--pixel-size'),
    ('sizes', r'same size'),
    ('suffix', r'\.npz, \.h5'),
])
def test_cli_prepare_bad_stacks_exit_2(tmp_path, monkeypatch, capsys, case,
                                       match):
    images = stack()
    write_imagej(tmp_path / 'a.tif', images, 0.05)
    out = str(tmp_path / 'out.npz')
    if case == 'no_angles':
        argv = [str(tmp_path / 'a.tif'), '-o', out]
    elif case == 'unknown_units':
        write_hspy(tmp_path / 'u.hspy', images, 1.0, units='px',
                   angles=[0.0, 10.0, 20.0])
        argv = [str(tmp_path / 'u.hspy'), '-o', out]
    elif case == 'sizes':
        write_imagej(tmp_path / 'b.tif', images[:1], 0.05)
        write_imagej(tmp_path / 'c.tif', images[:1, :-1], 0.05)
        argv = [str(tmp_path / 'b.tif'), str(tmp_path / 'c.tif'), '-o', out,
                '--angles', '0', '10']
    else:
        argv = [str(tmp_path / 'a.tif'), '-o', str(tmp_path / 'out.mat'),
                '--angles', '0', '10', '20']
    status = prepare_main(argv, monkeypatch)
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith('odl-atoms: error: ') and len(err.splitlines()) == 1
    assert pytest.importorskip('re').search(match, err), err
    assert not (tmp_path / 'out.npz').exists()


def test_cli_prepare_arguments_parse_without_heavy_imports():
    from odl_atoms.cli import prepare

    parser = argparse.ArgumentParser()
    prepare.add_arguments(parser)
    args = parser.parse_args(['s.tif', '-o', 'o.npz', '--angles=-60:60:5',
                              '--tilt-axis', '30'])
    assert args.angles == ['-60:60:5'] and args.ndim == 2
    np.testing.assert_allclose(np.degrees(prepare._angles(args.angles)),
                               [-60, -30, 0, 30, 60])
    # File order is kept (the i-th angle is the i-th image's).
    np.testing.assert_allclose(np.degrees(prepare._angles(['10', '-5'])),
                               [10, -5])
    assert prepare._tilt_axis('30') == pytest.approx(np.radians(30))
    assert prepare._background('none') is None
    assert prepare._box([1, 2, 3, 4], 2) == ([1, 2], [3, 4])
