"""The abTEM tilt series shipped in tests/data, and its generator.

``tests/data/tiny_au5_vacancy_zone/`` was made by
``python benchmarks/realistic_data.py --case tiny_au5_vacancy_zone --out
tests/data`` (abTEM multislice HAADF-STEM, 6 frozen phonons per tilt). These
tests read it with RosettaSciIO, tifffile and ASE and check what the
generator's docstring promises: axes, units, angles, the coordinate
convention (against ODL's geometry), and data in fractions of the beam with
Poisson noise. Only the last test runs abTEM (skipped where it is not
installed).
"""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import odl
import pytest
from odl.applications import tomo

ROOT = Path(__file__).resolve().parents[1]
NAME = 'tiny_au5_vacancy_zone'
FOLDER = ROOT / 'tests' / 'data' / NAME
SUFFIXES = ('.hspy', '.tif', '.rawtlt', '.json', '_truth.extxyz',
            '_atoms.extxyz')


def _generator():
    spec = importlib.util.spec_from_file_location(
        'realistic_data', ROOT / 'benchmarks' / 'realistic_data.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def generator():
    return _generator()


@pytest.fixture(scope='module')
def meta():
    with open(FOLDER / f'{NAME}.json') as f:
        return json.load(f)


@pytest.fixture(scope='module')
def hspy():
    # RosettaSciIO and tifffile read microscope stacks; where they are not
    # installed, the tests that read the stacks skip.
    file_reader = pytest.importorskip('rsciio.hspy').file_reader
    (signal,) = file_reader(str(FOLDER / f'{NAME}.hspy'))
    return signal


@pytest.fixture(scope='module')
def truth():
    import ase.io
    return ase.io.read(FOLDER / f'{NAME}_truth.extxyz')


def _profiles(hspy):
    return np.asarray(hspy['data'], dtype=float).mean(axis=1)


def _x(meta):
    return meta['x_offset'] + meta['pixel_size'] * np.arange(meta['nx'])


def test_files_exist_and_are_small():
    sizes = {s: (FOLDER / f'{NAME}{s}').stat().st_size for s in SUFFIXES}
    assert all(size > 0 for size in sizes.values())
    assert sum(sizes.values()) < 200_000, sizes


def test_hspy_axes_and_units(hspy, meta):
    data = hspy['data']
    assert data.shape == tuple(meta['shape']) == (
        len(meta['angles_deg']), meta['ny'], meta['nx'])
    assert data.dtype == np.float32
    tilt, y, x = hspy['axes']
    assert [a['name'] for a in (tilt, y, x)] == ['tilt', 'y', 'x']
    assert tilt['navigate'] and not y['navigate'] and not x['navigate']
    assert tilt['units'] == 'deg'
    assert y['units'] == x['units'] == 'Å'
    angles = (tilt['axis'] if 'axis' in tilt else
              tilt['offset'] + tilt['scale'] * np.arange(tilt['size']))
    np.testing.assert_allclose(angles, meta['angles_deg'])
    for axis, offset in ((x, meta['x_offset']), (y, meta['y_offset'])):
        assert axis['scale'] == pytest.approx(meta['pixel_size'])
        assert axis['offset'] == pytest.approx(offset)
    tomography = hspy['metadata']['Tomography']
    np.testing.assert_allclose(tomography['tilts'], meta['angles_deg'])
    tem = hspy['metadata']['Acquisition_instrument']['TEM']
    assert tem['beam_energy'] == pytest.approx(meta['optics']['energy'] / 1e3)
    assert tem['convergence_angle'] == meta['optics']['semiangle_cutoff']


def test_tif_stack_and_rawtlt(hspy, meta):
    tifffile = pytest.importorskip('tifffile')
    with tifffile.TiffFile(FOLDER / f'{NAME}.tif') as tif:
        assert tif.is_imagej
        ij = tif.imagej_metadata
        data = tif.asarray()
        page = tif.pages[0]
        x_res = page.tags['XResolution'].value
        y_res = page.tags['YResolution'].value
    assert ij['unit'] == 'angstrom'
    assert ij['images'] == len(meta['angles_deg'])
    # resolution tags: pixels per unit (angstrom)
    for num, den in (x_res, y_res):
        assert den / num == pytest.approx(meta['pixel_size'], rel=1e-6)
    assert ij['xorigin'] == pytest.approx(-meta['x_offset'] / meta['pixel_size'])
    np.testing.assert_array_equal(data, hspy['data'])
    angles = np.loadtxt(FOLDER / f'{NAME}.rawtlt', ndmin=1)
    np.testing.assert_allclose(angles, meta['angles_deg'], atol=1e-4)
    for label, angle in zip(ij['Labels'], angles):
        assert float(label.split()[1]) == pytest.approx(angle, abs=0.01)


def test_json_documents_the_case(meta, generator):
    case = generator.CASES[NAME]
    # the shipped files are what the generator makes now
    assert meta['params_hash'] == generator.params_hash(case)
    assert meta['command'] == (f'python benchmarks/realistic_data.py --case '
                               f'{NAME} --out tests/data')
    assert meta['kind'] == '2d' and meta['intensity_unit'] == 'fraction of beam'
    assert meta['params']['phonons'] >= 6
    assert meta['tilt_axis_image'] == [0.0, 1.0]
    h, nx = meta['pixel_size'], meta['nx']
    assert meta['detector_min'] == pytest.approx([meta['x_offset'] - h / 2])
    assert meta['detector_max'] == pytest.approx(
        [meta['x_offset'] + (nx - 0.5) * h])
    assert all(t > 0 for t in meta['simulation']['cpu_seconds'])
    assert meta['optics']['detector_outer'] <= 1e3 * (
        # abTEM keeps 2/3 of the Nyquist angle of the potential sampling
        2 / 3 * _wavelength(meta['optics']['energy'])
        / (2 * max(meta['simulation']['potential_sampling'])))
    for key in ('dose', 'gain'):
        assert key in meta['detector']
    assert isinstance(meta['seed'], int)


def _wavelength(energy):
    """Relativistic electron wavelength (angstrom) at ``energy`` eV."""
    h, m, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    return h / math.sqrt(2 * m * e * energy * (1 + e * energy / (2 * m * c ** 2))) * 1e10


def test_truth_and_box_inside_field_of_view(truth, meta):
    positions = truth.positions[:, :2]
    assert len(positions) == meta['n_truth'] == 24  # 5 x 5 minus a vacancy
    assert np.all(truth.positions[:, 2] == 0)
    box_min, box_max = truth.info['box_min'], truth.info['box_max']
    np.testing.assert_allclose(box_min, meta['box_min'])
    assert np.all(positions > box_min) and np.all(positions < box_max)
    corners = np.array([[a, b] for a in (box_min[0], box_max[0])
                        for b in (box_min[1], box_max[1])])
    geometry = _geometry(meta)
    lo, hi = meta['detector_min'][0], meta['detector_max'][0]
    for k, theta in enumerate(geometry.angles):
        axis = geometry.det_axis(theta)
        shift = meta['shifts'][k]
        for points in (positions, corners):
            u = points @ axis + shift
            assert np.all(u > lo) and np.all(u < hi)


def test_truth_reads_as_odl_atoms(truth, meta):
    from odl_atoms import from_ase
    measure = from_ase(truth)
    assert measure.space.ndim == 2
    np.testing.assert_allclose(measure.space.min_pt, meta['box_min'])
    np.testing.assert_allclose(np.sort(measure.positions, axis=0),
                               np.sort(truth.positions[:, :2], axis=0))


def test_atoms_file_matches_columns(truth):
    import ase.io
    atoms = ase.io.read(FOLDER / f'{NAME}_atoms.extxyz')
    assert atoms.pbc.tolist() == [False, False, True]
    # fcc [001]: one atom per unit cell along each column, 2 cells
    assert len(atoms) == 2 * len(truth)
    columns = np.unique(np.round(atoms.positions[:, :2], 6), axis=0)
    np.testing.assert_allclose(np.sort(columns, axis=0),
                               np.sort(truth.positions[:, :2], axis=0),
                               atol=1e-6)


def test_data_in_beam_fraction_with_poisson_noise(hspy, meta):
    data = np.asarray(hspy['data'], dtype=float)
    assert np.all(np.isfinite(data)) and np.all(data >= 0)
    assert data.max() < 1
    # counts / dose: multiplied by the dose, every pixel is a whole number
    counts = data * meta['detector']['dose']
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3 * counts.max())
    # integral per projection: fractions of the beam, far below the number
    # of columns (the data are not in "atoms")
    integral = _profiles(hspy).sum(axis=1) * meta['pixel_size']
    assert np.all(integral > 0.01) and np.all(integral < 1.0)
    assert np.all(integral < meta['n_truth'] / 20)
    np.testing.assert_allclose(integral, meta['integral_data'], rtol=1e-5)
    # noise-free integrals within the Poisson noise of the data's
    assert np.allclose(meta['integral_clean'], integral, rtol=0.03)


def _geometry(meta):
    angles = np.radians(meta['angles_deg'])
    return tomo.Parallel2dGeometry(
        odl.nonuniform_partition(angles),
        odl.uniform_partition(meta['detector_min'][0],
                              meta['detector_max'][0], meta['nx']))


def _misfit(profile, x, centres):
    """Least-squares misfit of a sum of equal Gaussians at ``centres``
    (amplitude and background linear, the width the best of a grid)."""
    best = np.inf
    for width in np.linspace(0.25, 0.6, 15):
        peaks = np.exp(-(x[:, None] - centres[None]) ** 2
                       / (2 * width ** 2)).sum(axis=1)
        design = np.stack([peaks, np.ones_like(x)], axis=1)
        _, residual, *_ = np.linalg.lstsq(design, profile, rcond=None)
        best = min(best, float(residual[0]))
    return best


def test_columns_land_where_odl_geometry_says(hspy, meta, truth):
    """The y-averaged profiles fit ODL's projection of the truth better
    than mirror images of the geometry (tilt sense, detector direction)."""
    geometry = _geometry(meta)
    # the same geometry, evaluated at the opposite tilt sense too
    unchecked = tomo.Parallel2dGeometry(geometry.motion_partition,
                                        geometry.det_partition,
                                        check_bounds=False)
    q = truth.positions[:, :2]
    x = _x(meta)
    profiles = _profiles(hspy)
    for k, theta in enumerate(geometry.angles):
        shift = meta['shifts'][k]
        right = q @ geometry.det_axis(theta) + shift
        misfit = _misfit(profiles[k], x, right)
        alternatives = [q @ unchecked.det_axis(-theta) + shift,
                        -(q @ geometry.det_axis(theta)) + shift]
        for wrong in alternatives:
            if np.allclose(np.sort(wrong), np.sort(right), atol=1e-6):
                continue  # the same projection (e.g. theta = 0 mirrored)
            assert misfit < 0.7 * _misfit(profiles[k], x, wrong)


def test_vacancy_row_is_darker(hspy, meta):
    """At 0 and 90 degrees the row of columns holding the vacancy has one
    column less: its peak integrates lower than its neighbours'."""
    x = _x(meta)
    profiles = _profiles(hspy)
    spacing = meta['lattice_constant'] / 2
    vacancy = np.asarray(meta['defect']['position'])
    for k, angle in enumerate(meta['angles_deg']):
        if angle not in (0.0, 90.0):
            continue
        u_vac = vacancy @ [math.cos(math.radians(angle)),
                           math.sin(math.radians(angle))]

        def row(u):
            return profiles[k][np.abs(x - u) < spacing / 2].sum()

        rows = [row(u_vac + n * spacing) for n in (-1, 0, 1)]
        assert rows[1] < 0.95 * min(rows[0], rows[2])


def test_generator_structures(generator):
    """Column crystals: counts and defect geometry against ASE's fcc."""
    from ase.build import bulk
    for name in ('au7_vacancy_zone', 'au7_interstitial_zone',
                 'au7_displaced_zone', 'pt8_vacancy_zone'):
        case = generator.CASES[name]
        atoms, columns, defect = generator.column_crystal(case)
        n = case.columns[0] * case.columns[1]
        expected = {'vacancy': n - 1, 'interstitial': n + 1,
                    'displaced': n}[case.defect]
        assert len(columns) == expected
        assert len(atoms) == expected * case.cells
        # fcc nearest-neighbour distance a / sqrt(2) (ASE's bulk), except
        # around the interstitial
        a = case.lattice_constant
        cell = bulk(case.element, 'fcc', a=a, cubic=True)
        nn = np.min(cell.get_all_distances(mic=True)[
            ~np.eye(len(cell), dtype=bool)])
        assert nn == pytest.approx(a / math.sqrt(2))
        distances = atoms.get_all_distances(mic=True)[
            ~np.eye(len(atoms), dtype=bool)]
        if case.defect == 'vacancy':
            assert distances.min() == pytest.approx(nn)
        elif case.defect == 'interstitial':
            # tetrahedral site: sqrt(3) / 4 a from its four neighbours
            assert distances.min() == pytest.approx(math.sqrt(3) / 4 * a)
        else:
            assert np.linalg.norm(np.subtract(defect['position'],
                                              defect['from'])) == pytest.approx(
                np.linalg.norm(case.displacement))


def test_microscope_frame_is_a_rotation_matching_odl(generator):
    geometry = tomo.Parallel3dAxisGeometry(
        odl.nonuniform_partition(np.radians([-70, 10, 135])),
        odl.uniform_partition([-1, -1], [1, 1], (2, 2)))
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 3))
    for theta in geometry.angles:
        xyz = generator.to_microscope(q, theta, shift=0.3)
        u, v = geometry.det_axes(theta) @ q.T
        np.testing.assert_allclose(xyz[:, 0], u + 0.3)
        np.testing.assert_allclose(xyz[:, 1], v)
        # The sample frame (x0, y0, z0) = (q1, q3, q2) at 0 degrees goes to
        # the microscope's (x, y, z) by a right-handed rotation about +y.
        sample_axes = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=float)
        rotation = generator.to_microscope(sample_axes, theta).T
        c, s = math.cos(theta), math.sin(theta)
        np.testing.assert_allclose(
            rotation, [[c, 0, s], [0, 1, 0], [-s, 0, c]], atol=1e-12)
        # the beam (+z) runs along ODL's ray direction, -det_to_src
        beam = generator.to_microscope(np.eye(3), theta)[:, 2]
        ray = -geometry.det_to_src(theta, [0, 0])
        np.testing.assert_allclose(beam, ray, atol=1e-12)


def test_generator_command_line_errors(generator, capsys):
    for argv in ([], ['--case', 'no_such_case'], ['--all', '--workers', '0']):
        with pytest.raises(SystemExit) as info:
            generator.main(argv)
        assert info.value.code == 2
    assert 'no_such_case' in capsys.readouterr().err


def test_every_case_has_a_unique_hash(generator):
    hashes = [generator.params_hash(c) for c in generator.CASES.values()]
    assert len(set(hashes)) == len(hashes)
    quick = [generator.params_hash(c.quick()) for c in generator.CASES.values()]
    assert not set(quick) & set(hashes)


def test_read_tilt_series_reads_the_shipped_stacks(meta):
    """odl_atoms' own reader finds the angles and pixel size in both files."""
    microscope = pytest.importorskip('odl_atoms.io.microscope')
    for suffix in ('.hspy', '.tif'):
        series = microscope.read_tilt_series(FOLDER / f'{NAME}{suffix}')
        np.testing.assert_allclose(np.degrees(series.angles),
                                   meta['angles_deg'], atol=1e-4)
        np.testing.assert_allclose(series.pixel_size, meta['pixel_size'])
        assert series.images.shape == tuple(meta['shape'])


@pytest.mark.slow
def test_images_follow_odl_geometry_abtem(generator):
    """One atom / one column simulated by both pipelines lands at ODL's
    detector coordinate (abTEM)."""
    pytest.importorskip('abtem')
    # cos and sin of both signs between the two angles
    rows = generator.check_convention(angles=(-60.0, 100.0))
    assert len(rows) == 4
    for row in rows:
        np.testing.assert_allclose(row['found'], row['odl'], atol=0.01)
