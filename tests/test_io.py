"""Tests of atom files, projection-data files and atomic writes.

Independent references: ODL's own ``RayTransform`` (projection spaces), ASE's
readers (written atom files), NumPy and h5py opened directly (file contents).
"""

import dataclasses
import os
import pickle
import stat
import warnings

import ase.io
import h5py
import numpy as np
import odl
import pytest
from odl.applications import tomo

import odl_atoms.io as oio
from odl_atoms.geometry import projection_space
from odl_atoms.io import (ProjectionData, atomic_path, read_atoms,
                          read_projections, write_atoms, write_projections)
from odl_atoms.operators import GaussianRayTransform
from odl_atoms.space import SparseMeasureSpace

SUFFIXES = ['.npz', '.h5', '.hdf5']


# --- Fixtures


def geometry_2d(angles=(0.1, 0.9, 2.0, 2.2), n_det=40):
    return tomo.Parallel2dGeometry(odl.nonuniform_partition(list(angles)),
                                   odl.uniform_partition(-8, 8, n_det))


def geometry_3d(axis=(1.0, 0.5, 0.0)):
    return tomo.Parallel3dAxisGeometry(
        odl.nonuniform_partition([-1.0, -0.3, 0.4, 1.2]),
        odl.uniform_partition([-7, -6], [7, 6], (20, 16)), axis=axis)


def atoms_in(space, n=5, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(space.min_pt + 1, space.max_pt - 1, (n, space.ndim))
    species = np.array(['Au', 'Pt', 'X', 'Au', 'Cu', 'Pt'][:n])
    return space.element(pos, weights=rng.uniform(0.5, 2, n), species=species)


def simulated(ndim, dtype='float64', noise_std=0.01, axis=(1.0, 0.5, 0.0)):
    """A full measurement (every optional field set)."""
    if ndim == 2:
        space = SparseMeasureSpace([-5, -5], [5, 5])
        geometry = geometry_2d()
    else:
        space = SparseMeasureSpace([-5, -4, -4], [5, 4, 4])
        geometry = geometry_3d(axis)
    truth = atoms_in(space)
    op = GaussianRayTransform(space, geometry, 0.45, dtype=dtype)
    data = op(truth)
    return ProjectionData.from_element(data, geometry, space, 0.45,
                                       ground_truth=truth,
                                       noise_std=noise_std), geometry, truth


def minimal_fields():
    return dict(data=np.ones((3, 10)), angles=[0.0, 0.5, 1.0],
                detector_min=[-5.0], detector_max=[5.0], box_min=[-4, -4],
                box_max=[4, 4], sigma=0.5)


def file_contents(path):
    """The keys of a projection file, read with NumPy or h5py directly."""
    if path.suffix == '.npz':
        with np.load(path) as archive:
            return {k: archive[k] for k in archive.files}
    with h5py.File(path, 'r') as f:
        return {k: (f[k].asstr()[()] if h5py.check_string_dtype(f[k].dtype)
                    else f[k][()]) for k in f}


def write_raw(path, contents):
    """Write keys as they are, bypassing the module's checks."""
    if path.suffix == '.npz':
        np.savez(path, **contents)
    else:
        with h5py.File(path, 'w') as f:
            for k, v in contents.items():
                v = np.asarray(v)
                if v.dtype.kind == 'U':
                    f.create_dataset(k, data=v.astype(object),
                                     dtype=h5py.string_dtype())
                else:
                    f.create_dataset(k, data=v)


# --- Projection files: round trips


@pytest.mark.parametrize('suffix', SUFFIXES)
@pytest.mark.parametrize('ndim, dtype', [(2, 'float64'), (2, 'float32'),
                                         (3, 'float64')])
def test_round_trip_every_field(tmp_path, suffix, ndim, dtype):
    pd, _, truth = simulated(ndim, dtype)
    path = tmp_path / f'proj{suffix}'
    write_projections(path, pd)
    raw = file_contents(path)
    expected_keys = {'data', 'angles', 'detector_min', 'detector_max',
                     'box_min', 'box_max', 'sigma', 'angle_min', 'angle_max',
                     'noise_std', 'positions', 'weights', 'species'}
    if ndim == 3:
        expected_keys.add('axis')
    assert set(raw) == expected_keys
    assert raw['data'].dtype == np.dtype(dtype)

    back = read_projections(path)
    assert back == pd
    for name in expected_keys:
        np.testing.assert_array_equal(getattr(back, name), getattr(pd, name),
                                      err_msg=name)
    assert back.data.dtype == np.dtype(dtype)
    assert back.species.tolist() == truth.species.tolist()
    assert back.ground_truth() == truth
    assert back.noise_std == 0.01
    if ndim == 3:
        # ODL normalises the axis; the file stores the geometry's.
        np.testing.assert_array_equal(back.axis, [2, 1, 0] / np.sqrt(5))
    else:
        assert back.axis is None


@pytest.mark.parametrize('suffix', ['.npz', '.h5'])
def test_round_trip_minimal_and_unicode_species(tmp_path, suffix):
    pd = ProjectionData(**minimal_fields())
    write_projections(tmp_path / f'a{suffix}', pd)
    back = read_projections(tmp_path / f'a{suffix}')
    assert back == pd
    for name in ('angle_min', 'angle_max', 'axis', 'noise_std', 'positions',
                 'weights', 'species'):
        assert getattr(back, name) is None
    assert back.ground_truth() is None

    labels = ['Au', 'Pt', 'Ångström-α']
    pd = ProjectionData(**minimal_fields(), positions=[[0, 0], [1, 1], [2, 2]],
                        species=labels)
    write_projections(tmp_path / f'b{suffix}', pd)
    back = read_projections(tmp_path / f'b{suffix}')
    assert back.species.tolist() == labels
    assert back.weights is None
    np.testing.assert_array_equal(back.ground_truth().weights, [1, 1, 1])

    # Zero ground-truth atoms round-trip too.
    pd = ProjectionData(**minimal_fields(), positions=np.zeros((0, 2)),
                        weights=np.zeros(0), species=np.array([], dtype=str))
    write_projections(tmp_path / f'c{suffix}', pd)
    back = read_projections(tmp_path / f'c{suffix}')
    assert back.positions.shape == (0, 2) and back.species.shape == (0,)
    assert back.ground_truth().n_atoms == 0


# --- Projection files: geometry


@pytest.mark.parametrize('apart', [
    odl.uniform_partition(0, np.pi, 7),
    odl.nonuniform_partition([-1.0, -0.4, 0.1, 1.3]),
    odl.uniform_partition(-1.2, 1.2, 4),
    odl.uniform_partition(0.3, 0.5, 1),
    odl.nonuniform_partition([0.2, 0.3], min_pt=-1.0, max_pt=1.0),
])
def test_rebuilt_geometry_has_odl_projection_space_2d(tmp_path, apart):
    geometry = tomo.Parallel2dGeometry(apart, odl.uniform_partition(-8, 8, 40))
    vol = odl.uniform_discr([-5, -5], [5, 5], [20, 20], dtype='float32')
    ray = tomo.RayTransform(vol, geometry)
    space = SparseMeasureSpace([-5, -5], [5, 5])
    data = ray.range.element(np.ones(ray.range.shape, dtype='float32'))
    pd = ProjectionData.from_element(data, geometry, space, 0.4)
    write_projections(tmp_path / 'p.npz', pd)
    back = read_projections(tmp_path / 'p.npz')
    assert back.projection_space('float32') == ray.range
    assert back.element('float32') in ray.range
    np.testing.assert_array_equal(back.element('float32').data, data.data)
    assert back.geometry.partition == geometry.partition


def test_rebuilt_geometry_3d_equal_partitions(tmp_path):
    pd, geometry, _ = simulated(3)
    write_projections(tmp_path / 'p.h5', pd)
    back = read_projections(tmp_path / 'p.h5')
    assert isinstance(back.geometry, tomo.Parallel3dAxisGeometry)
    assert back.geometry.partition == geometry.partition
    assert back.geometry.det_partition == geometry.det_partition
    np.testing.assert_allclose(back.geometry.axis, geometry.axis)
    np.testing.assert_allclose(back.geometry.det_axes_init,
                               geometry.det_axes_init)
    assert back.projection_space() == projection_space(geometry)


def test_single_angle_default_partition():
    """Without stored edges, one angle gets the cell of uniform_partition(0, pi, 1)."""
    fields = minimal_fields()
    fields.update(data=np.ones((1, 10)), angles=[0.7])
    pd = ProjectionData(**fields)
    apart = pd.geometry.motion_partition
    assert apart.extent[0] == pytest.approx(np.pi)
    assert apart.coord_vectors[0].tolist() == [0.7]
    ref = tomo.Parallel2dGeometry(
        odl.uniform_partition(0.7 - np.pi / 2, 0.7 + np.pi / 2, 1),
        odl.uniform_partition(-5, 5, 10))
    # (Cells of area != 1: ODL leaves the range of a volume with unit cells
    # unweighted.)
    vol = odl.uniform_discr([-4, -4], [4, 4], [16, 16], dtype='float32')
    assert pd.projection_space('float32') == tomo.RayTransform(vol, ref).range
    # Several angles without edges: ODL's nonuniform_partition rule.
    fields.update(data=np.ones((3, 10)), angles=[0.0, 0.2, 1.0])
    np.testing.assert_allclose(
        ProjectionData(**fields).geometry.motion_partition.cell_boundary_vecs[0],
        [-0.1, 0.1, 0.6, 1.4])


@pytest.mark.parametrize('ndim, axis, rtol', [
    (2, None, 0), (3, (0, 0, 1), 0),
    # ODL normalises the tilt axis again when the file is read, which moves
    # a normalised axis like (2, 1, 0) / sqrt(5) by one ulp.
    (3, (1.0, 0.5, 0.0), 1e-13)])
def test_operator_from_file_reproduces_data(tmp_path, ndim, axis, rtol):
    pd, geometry, truth = simulated(ndim, axis=axis)
    write_projections(tmp_path / 'p.npz', pd)
    back = read_projections(tmp_path / 'p.npz')
    op = back.operator()
    assert op.sigma == 0.45 and op.domain == back.measure_space()
    scale = np.abs(back.data).max()
    np.testing.assert_allclose(op(back.ground_truth()).data, back.data,
                               rtol=0, atol=rtol * scale)
    # ... which is what the original operator gave on the original geometry.
    orig = GaussianRayTransform(truth.space, geometry, 0.45)
    np.testing.assert_array_equal(orig(truth).data, back.data)
    assert op.range.partition == orig.range.partition
    assert op.range == orig.range


def test_from_element_accepts_equivalent_and_rejects_other_geometries():
    space = SparseMeasureSpace([-5, -5], [5, 5])
    apart = odl.uniform_partition(0, np.pi, 3)
    dpart = odl.uniform_partition(-8, 8, 40)
    data = np.zeros((3, 40))
    # A detector further along the ray measures the same: accepted.
    g = tomo.Parallel2dGeometry(apart, dpart, det_pos_init=(0, 3))
    ProjectionData.from_element(data, g, space, 0.4)

    g = tomo.Parallel2dGeometry(apart, dpart, translation=(1.0, 0.0))
    with pytest.raises(ValueError, match='translation'):
        ProjectionData.from_element(data, g, space, 0.4)
    g = tomo.Parallel2dGeometry(apart, dpart, det_pos_init=(0, -1))
    with pytest.raises(ValueError, match='cannot represent'):
        ProjectionData.from_element(data, g, space, 0.4)
    g = tomo.Parallel2dGeometry(apart, odl.nonuniform_partition(
        np.linspace(-8, 8, 40) ** 3 / 64))
    with pytest.raises(ValueError, match='uniform'):
        ProjectionData.from_element(data, g, space, 0.4)
    # Data of another geometry.
    with pytest.raises(ValueError, match='shape'):
        ProjectionData.from_element(np.zeros((3, 41)), geometry_2d(), space,
                                    0.4)

    space3 = SparseMeasureSpace([-5, -5, -5], [5, 5, 5])
    euler = tomo.Parallel3dEulerGeometry(
        odl.uniform_partition([0, 0.2], [np.pi, 1.2], (3, 2)),
        odl.uniform_partition([-7, -6], [7, 6], (10, 8)))
    with pytest.raises(ValueError, match='Parallel3dEulerGeometry'):
        ProjectionData.from_element(np.zeros((3, 2, 10, 8)), euler, space3,
                                    0.4)
    g = tomo.Parallel3dAxisGeometry(
        apart, odl.uniform_partition([-7, -6], [7, 6], (10, 8)),
        det_axes_init=[(0, 0, 1), (1, 0, 0)])
    with pytest.raises(ValueError, match='detector axes'):
        ProjectionData.from_element(np.zeros((3, 10, 8)), g, space3, 0.4)
    # Dimension mismatch between atoms and geometry.
    with pytest.raises(ValueError, match='3D'):
        ProjectionData.from_element(data, geometry_2d(), space3, 0.4)


# --- Projection files: errors name the key


def test_validation_errors_name_key_and_shape():
    def check(match, **changes):
        fields = minimal_fields()
        fields.update(changes)
        with pytest.raises(ValueError, match=match):
            ProjectionData(**fields)

    check(r"'angles' must have shape \(3,\)", angles=[0.0, 1.0])
    check(r"'angles' must be strictly increasing", angles=[0.0, 1.0, 0.5])
    check(r"'detector_min' must have shape \(1,\)", detector_min=[-5, -5])
    check(r"'detector_max' must be larger", detector_max=[-6.0])
    check(r"'box_min' must have shape \(2,\)", box_min=[-4, -4, -4])
    check(r"'box_max' must be larger", box_max=[4, -5])
    check(r"'data' must have shape \(n_angles, n_det\)", data=np.ones(3))
    check(r"'data' contains 3 NaN", data=np.where(np.eye(3, 10) > 0, np.nan,
                                                   1.0))
    check(r"'sigma' .* must be positive", sigma=-0.5)
    check(r"'sigma' .* must be positive", sigma=0.0)
    check(r"'sigma' must be finite", sigma=np.inf)
    check(r"'sigma' must be a single number", sigma=[0.5, 0.6])
    check(r"'noise_std' must be >= 0", noise_std=-1.0)
    check(r"'axis' .* only defined for 3D", axis=[0, 0, 1])
    check(r"'angle_min' .* must be <= the first angle", angle_min=0.1)
    check(r"'angle_max' .* must be >= the last angle", angle_max=0.9)
    check(r"'positions' must have shape \(n, 2\)", positions=np.zeros((2, 3)))
    check(r"'positions': 1 atom\(s\) lie outside the box",
          positions=[[0, 0], [5, 0]])
    check(r"'positions' contains 1 NaN", positions=[[0, np.nan]])
    check(r"'weights' must have shape \(2,\)", positions=[[0, 0], [1, 1]],
          weights=[1.0])
    check(r"'species' must have shape \(2,\)", positions=[[0, 0], [1, 1]],
          species=['Au'])
    check(r"'weights' is given without 'positions'", weights=[1.0])
    check(r"'species' must hold strings", positions=[[0, 0]], species=[1.0])

    fields = minimal_fields()
    fields.update(data=np.ones((3, 4, 5)), detector_min=[-1, -1],
                  detector_max=[1, 1], box_min=[-1, -1, -1], box_max=[1, 1, 1])
    ProjectionData(**fields)
    fields['axis'] = [0, 0, 0]
    with pytest.raises(ValueError, match="'axis' must be a nonzero"):
        ProjectionData(**fields)
    fields['axis'] = [0, 1]
    with pytest.raises(ValueError, match=r"'axis' must have shape \(3,\)"):
        ProjectionData(**fields)


def test_fields_are_read_only_and_copied():
    fields = minimal_fields()
    pd = ProjectionData(**fields)
    with pytest.raises(ValueError):
        pd.data[0, 0] = 5
    with pytest.raises(AttributeError):
        pd.sigma = 2.0
    fields['data'][0, 0] = 7.0  # the caller's array stays writable, unshared
    assert pd.data[0, 0] == 1.0
    changed = dataclasses.replace(pd, noise_std=0.2)
    assert changed.noise_std == 0.2 and changed.data is not None
    with pytest.raises(ValueError, match="'sigma'"):
        dataclasses.replace(pd, sigma=-1.0)
    # Pickles (to worker processes) as plain fields, validated again.
    back = pickle.loads(pickle.dumps(pd))
    assert back == pd and not back.data.flags.writeable
    with pytest.raises(TypeError, match='from_element'):
        ProjectionData(**dict(fields, data=pd.element()))


@pytest.mark.parametrize('suffix', ['.npz', '.h5'])
@pytest.mark.parametrize('key, value, match', [
    ('detector_min', None, r"missing the required key\(s\) 'detector_min'"),
    ('box_max', None, r"missing the required key\(s\) 'box_max'"),
    ('angles', np.zeros(5), r"'angles' must have shape \(3,\)"),
    ('data', np.full((3, 10), np.nan), r"'data' contains 30 NaN"),
    ('sigma', np.array(-1.0), r"'sigma' .* must be positive"),
    ('positions', np.zeros((2, 3)), r"'positions' must have shape \(n, 2\)"),
])
def test_file_errors_name_key(tmp_path, suffix, key, value, match):
    contents = {k: np.asarray(v) for k, v in minimal_fields().items()}
    if value is None:
        del contents[key]
    else:
        contents[key] = value
    path = tmp_path / f'bad{suffix}'
    write_raw(path, contents)
    with pytest.raises(ValueError, match=match) as info:
        read_projections(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize('suffix', ['.npz', '.h5'])
def test_unknown_keys_warn_and_are_ignored(tmp_path, suffix):
    contents = {k: np.asarray(v) for k, v in minimal_fields().items()}
    contents['noise_sdt'] = np.array(0.1)
    contents['instrument'] = np.array('Titan')
    path = tmp_path / f'extra{suffix}'
    write_raw(path, contents)
    with pytest.warns(UserWarning, match="'instrument', 'noise_sdt'"):
        pd = read_projections(path)
    assert pd == ProjectionData(**minimal_fields())


def test_suffix_and_missing_file_errors(tmp_path):
    pd = ProjectionData(**minimal_fields())
    with pytest.raises(ValueError, match=r"'\.mat'.*\.npz, \.h5, \.hdf5"):
        write_projections(tmp_path / 'p.mat', pd)
    assert os.listdir(tmp_path) == []
    (tmp_path / 'p.mat').write_text('x')
    with pytest.raises(ValueError, match=r"\.npz, \.h5, \.hdf5"):
        read_projections(tmp_path / 'p.mat')
    with pytest.raises(FileNotFoundError, match='nothere.npz'):
        read_projections(tmp_path / 'nothere.npz')
    for name in ('junk.npz', 'junk.h5'):
        (tmp_path / name).write_bytes(b'not an archive at all')
        with pytest.raises(ValueError, match='junk'):
            read_projections(tmp_path / name)
    with pytest.raises(TypeError, match='ProjectionData'):
        write_projections(tmp_path / 'p.npz', {'data': 1})
    with pytest.raises(FileNotFoundError, match='does not exist'):
        write_projections(tmp_path / 'no_dir' / 'p.npz', pd)


# --- Atomic writes


def failing_writer(real):
    """Wrap a writer: write something to the file, then fail."""
    def fail(target, *args, **kwargs):
        with open(target, 'wb') as f:
            f.write(b'half-written')
        raise RuntimeError('disk full')
    return fail


@pytest.mark.parametrize('target', ['p.npz', 'p.h5', 'atoms.extxyz'])
def test_failing_write_keeps_existing_file(tmp_path, monkeypatch, target):
    path = tmp_path / target
    pd = ProjectionData(**minimal_fields())
    space = SparseMeasureSpace([0, 0, 0], [5, 5, 5])
    mu = space.element([[1, 1, 1]])

    def write():
        if target.endswith('extxyz'):
            write_atoms(path, mu)
        else:
            write_projections(path, pd)

    write()
    before = path.read_bytes()
    if target.endswith('npz'):
        monkeypatch.setattr(np, 'savez', lambda f, **kw: (
            f.write(b'half-written'), 1 / 0))
        error = ZeroDivisionError
    elif target.endswith('h5'):
        real = h5py.Group.create_dataset
        calls = []

        def create_dataset(self, name, **kwargs):
            calls.append(name)
            if len(calls) > 2:  # after two datasets
                raise OSError('disk full')
            return real(self, name, **kwargs)
        monkeypatch.setattr(h5py.Group, 'create_dataset', create_dataset)
        error = OSError
    else:
        monkeypatch.setattr(ase.io, 'write', failing_writer(ase.io.write))
        error = RuntimeError
    with pytest.raises(error):
        write()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [target]
    # No file at all when there was none before.
    path.unlink()
    with pytest.raises(error):
        write()
    assert os.listdir(tmp_path) == []


def test_atomic_path_interrupt_permissions_and_errors(tmp_path):
    target = tmp_path / 'out.txt'
    target.write_text('old')
    os.chmod(target, 0o640)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == '.txt'
            tmp.write_text('new, partial')
            raise KeyboardInterrupt
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['out.txt']
    with atomic_path(target) as tmp:
        tmp.write_text('new')
    assert target.read_text() == 'new'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert os.listdir(tmp_path) == ['out.txt']
    with pytest.raises(FileNotFoundError, match='missing'):
        with atomic_path(tmp_path / 'missing' / 'x.txt'):
            pass
    with pytest.raises(IsADirectoryError):
        with atomic_path(tmp_path):
            pass


# --- Atom files


def test_atoms_extxyz_round_trip_3d(tmp_path):
    space = SparseMeasureSpace([-5, -4, -3], [5, 4, 3])
    mu = atoms_in(space, 6)
    for name in ('a.extxyz', 'a.xyz'):
        write_atoms(tmp_path / name, mu)
        back = read_atoms(tmp_path / name)
        assert back.space == space
        # Extended XYZ keeps 8 decimals.
        np.testing.assert_allclose(back.positions, mu.positions, rtol=0,
                                   atol=1e-8)
        np.testing.assert_allclose(back.weights, mu.weights, rtol=0,
                                   atol=1e-8)
        assert back.species.tolist() == mu.species.tolist()
        # Other tools read it: ASE directly.
        atoms = ase.io.read(tmp_path / name)
        np.testing.assert_allclose(atoms.positions, mu.positions)
        assert atoms.get_chemical_symbols() == mu.species.tolist()


def test_atoms_2d_round_trip(tmp_path):
    space = SparseMeasureSpace([-5, -4], [5, 4])
    mu = atoms_in(space, 4)
    write_atoms(tmp_path / 'flat.extxyz', mu)
    back = read_atoms(tmp_path / 'flat.extxyz')
    assert back.ndim == 2 and back.space == space
    np.testing.assert_allclose(back.positions, mu.positions, rtol=0, atol=1e-8)
    np.testing.assert_allclose(back.weights, mu.weights, rtol=0, atol=1e-8)
    assert back.species.tolist() == mu.species.tolist()
    # Without a stored box, ndim=2 reads the plane z = 0.
    write_atoms(tmp_path / 'flat.xyz', mu, format='xyz')
    back = read_atoms(tmp_path / 'flat.xyz', ndim=2)
    assert back.ndim == 2
    np.testing.assert_allclose(back.positions, mu.positions)
    assert back.species.tolist() == mu.species.tolist()


def test_atoms_on_box_boundary_survive_rounding(tmp_path):
    space = SparseMeasureSpace([-2 / 3, 0, 0], [1 / 3, 2 / 3, 1])
    mu = space.element([[1 / 3, 2 / 3, 0.5], [-2 / 3, 0.1, 1.0]])
    write_atoms(tmp_path / 'edge.extxyz', mu)
    # Rounded to 8 decimals, both atoms lie just outside the box.
    rounded = ase.io.read(tmp_path / 'edge.extxyz').positions
    assert rounded[0, 1] > 2 / 3 and rounded[1, 0] < -2 / 3
    back = read_atoms(tmp_path / 'edge.extxyz')
    np.testing.assert_allclose(back.positions, mu.positions, atol=1e-8)
    assert back.space == space


def test_atoms_plain_xyz_keeps_positions_and_species(tmp_path):
    space = SparseMeasureSpace([-5, -4, -3], [5, 4, 3])
    mu = atoms_in(space, 5)
    write_atoms(tmp_path / 'a.xyz', mu, format='xyz')
    text = (tmp_path / 'a.xyz').read_text().splitlines()
    assert text[0] == '5' and text[1] == ''  # plain: empty comment line
    back = read_atoms(tmp_path / 'a.xyz')
    np.testing.assert_allclose(back.positions, mu.positions, atol=1e-8)
    assert back.species.tolist() == mu.species.tolist()
    np.testing.assert_array_equal(back.weights, 1.0)  # weights are lost
    np.testing.assert_allclose(back.space.min_pt,
                               mu.positions.min(axis=0) - 3.0, atol=1e-8)
    # Weights by species on reading.
    back = read_atoms(tmp_path / 'a.xyz',
                      weights={'Au': 1.0, 'Pt': 1.2, 'X': 0.5, 'Cu': 0.8})
    assert back.weights.tolist() == [
        {'Au': 1.0, 'Pt': 1.2, 'X': 0.5, 'Cu': 0.8}[s] for s in mu.species]
    # Read into a given box.
    back = read_atoms(tmp_path / 'a.xyz', space=space)
    assert back.space == space


@pytest.mark.parametrize('box_min', [(0, 0, 0), (-5, -4, -3)])
def test_atoms_cif_keeps_positions_relative_to_box(tmp_path, box_min):
    space = SparseMeasureSpace(box_min, np.add(box_min, (10, 8, 6)))
    mu = atoms_in(space, 5)
    write_atoms(tmp_path / 'a.cif', mu)
    back = read_atoms(tmp_path / 'a.cif')
    np.testing.assert_allclose(back.positions, mu.positions - space.min_pt,
                               atol=1e-8)
    assert back.species.tolist() == mu.species.tolist()
    atoms = ase.io.read(tmp_path / 'a.cif')
    np.testing.assert_allclose(atoms.cell.lengths(), [10, 8, 6])
    # 2D configurations get a third cell side of 1 angstrom.
    flat = SparseMeasureSpace([0, 0], [6, 6]).element([[1, 2], [3, 4]],
                                                      species='Au')
    write_atoms(tmp_path / 'flat.cif', flat)
    back = read_atoms(tmp_path / 'flat.cif', ndim=2)
    np.testing.assert_allclose(back.positions, flat.positions, atol=1e-8)


def test_atom_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='none.xyz'):
        read_atoms(tmp_path / 'none.xyz')
    (tmp_path / 'a.unknownformat').write_text('hello')
    with pytest.raises(ValueError, match='a.unknownformat'):
        read_atoms(tmp_path / 'a.unknownformat')
    (tmp_path / 'broken.xyz').write_text('3\n\nAu 0 0\n')
    with pytest.raises(ValueError, match='broken.xyz'):
        read_atoms(tmp_path / 'broken.xyz')
    mu = SparseMeasureSpace([0, 0, 0], [1, 1, 1]).element([[0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match='format'):
        write_atoms(tmp_path / 'a.unknownformat', mu)
    with pytest.raises(ValueError, match='suffix'):
        write_atoms(tmp_path / 'no_suffix', mu)
    with pytest.raises(TypeError, match='SparseMeasure'):
        write_atoms(tmp_path / 'a.xyz', np.zeros((2, 3)))
    with pytest.raises(TypeError, match='index'):
        read_atoms(tmp_path / 'broken.xyz', index=slice(None))
    assert sorted(os.listdir(tmp_path)) == ['a.unknownformat', 'broken.xyz']


def test_module_names_are_exported():
    for name in oio.__all__:
        assert hasattr(oio, name)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        repr(ProjectionData(**minimal_fields()))


# --- Optional sigma and the keys of prepared data


@pytest.mark.parametrize('suffix', ['.npz', '.h5'])
def test_file_without_sigma_reads_and_operator_needs_sigma(tmp_path, suffix):
    fields = minimal_fields()
    del fields['sigma']
    path = tmp_path / f'nosigma{suffix}'
    write_raw(path, {k: np.asarray(v) for k, v in fields.items()})
    pd = read_projections(path)
    assert pd.sigma is None
    assert pd.projection_space().shape == (3, 10)
    with pytest.raises(ValueError, match='sigma.*estimate it.*give it'):
        pd.operator()
    op = dataclasses.replace(pd, sigma=0.5).operator()
    assert op.sigma == 0.5
    # Written back, the file has no 'sigma' key.
    write_projections(tmp_path / f'again{suffix}', pd)
    assert 'sigma' not in file_contents(tmp_path / f'again{suffix}')
    assert read_projections(tmp_path / f'again{suffix}') == pd


@pytest.mark.parametrize('suffix', ['.npz', '.h5'])
def test_prepared_keys_round_trip(tmp_path, suffix):
    extra = dict(intensity_unit='counts (Å⁻²)', background=[0.5, 0.25, 0.0],
                 pixel_size=[0.3, 0.35], pixels_averaged=96,
                 source='{"files": ["tilts.tif"]}')
    pd = ProjectionData(**minimal_fields(), **extra)
    path = tmp_path / f'prepared{suffix}'
    write_projections(path, pd)
    raw = file_contents(path)
    assert set(extra) <= set(raw)
    back = read_projections(path)
    assert back == pd
    assert back.intensity_unit == 'counts (Å⁻²)'
    assert isinstance(back.source, str) and back.pixels_averaged == 96
    np.testing.assert_array_equal(back.background, [0.5, 0.25, 0.0])
    np.testing.assert_array_equal(back.pixel_size, [0.3, 0.35])
    # A changed value makes them unequal.
    assert dataclasses.replace(pd, intensity_unit='e') != pd


def test_prepared_keys_validation():
    def check(match, **changes):
        with pytest.raises(ValueError, match=match):
            ProjectionData(**minimal_fields(), **changes)

    check(r"'background' must have shape \(3,\)", background=[1.0, 2.0])
    check(r"'background' contains 1 NaN", background=[1.0, np.nan, 0.0])
    check(r"'pixel_size' must be positive", pixel_size=[0.3, -0.3])
    check(r"'pixel_size' must have shape \(2,\)", pixel_size=[0.3, 0.3, 0.3])
    check(r"'pixels_averaged' must be a positive integer", pixels_averaged=2.5)
    check(r"'pixels_averaged' must be a positive integer", pixels_averaged=0)
    check(r"'intensity_unit' must be a single string", intensity_unit=3.0)
    check(r"'source' must be a single string", source=['a', 'b'])


# --- Complex values are refused, not cast (issue 22, item 10)


def test_complex_values_refused_without_complex_warning(tmp_path):
    space = SparseMeasureSpace([-5, -5], [5, 5])
    geometry = geometry_2d()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a ComplexWarning would fail here
        with pytest.raises(ValueError, match="'data' holds complex numbers"):
            ProjectionData.from_element(np.ones((4, 40)) * (1 + 1j), geometry,
                                        space, 0.4)
        for key, value in (('data', np.ones((3, 10)) + 0j),
                           ('positions', [[0.5j, 0.0]]),
                           ('sigma', 0.5 + 0j), ('noise_std', 1j)):
            fields = dict(minimal_fields(), **{key: value})
            with pytest.raises(ValueError, match=f"'{key}' holds complex"):
                ProjectionData(**fields)
        for suffix in ('.npz', '.h5'):
            contents = {k: np.asarray(v) for k, v in minimal_fields().items()}
            contents['data'] = contents['data'] * (1 + 2j)
            path = tmp_path / f'complex{suffix}'
            write_raw(path, contents)
            with pytest.raises(ValueError, match="'data' holds complex") as info:
                read_projections(path)
            assert str(path) in str(info.value)


# --- Damaged and oversized files (issue 22, items 1, 2 and 3)


def test_corrupted_compressed_npz_is_a_one_line_error(tmp_path):
    rng = np.random.default_rng(1)
    contents = {k: np.asarray(v) for k, v in minimal_fields().items()}
    contents['data'] = rng.normal(size=(3, 4000))
    contents['detector_min'], contents['detector_max'] = [-5.0], [5.0]
    path = tmp_path / 'tilts.npz'
    np.savez_compressed(path, **contents)
    raw = bytearray(path.read_bytes())
    # Damage the compressed stream of 'data' (the largest member) in the
    # middle: zlib's "Error -3 while decompressing" or a bad CRC-32.
    start = raw.index(b'data.npy') + 200
    for i in range(start, start + 64):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError) as info:
        read_projections(path)
    message = str(info.value)
    assert str(path) in message and '\n' not in message
    assert 'damaged' in message
    assert isinstance(info.value, oio.projections.ValidationError)


def test_npz_sizes_checked_before_decompressing(tmp_path, monkeypatch):
    import zipfile

    # 48 MiB of zeros compress to 48 KiB: refused from the zip directory's
    # uncompressed size, before anything is decompressed.
    contents = {k: np.asarray(v) for k, v in minimal_fields().items()}
    contents['data'] = np.zeros((3, 2 ** 21))
    path = tmp_path / 'bomb.npz'
    np.savez_compressed(path, **contents)
    assert path.stat().st_size < 2 ** 20
    calls = []
    monkeypatch.setattr(np.lib.format, 'read_array',
                        lambda *a, **k: calls.append(a) or 1 / 0)
    with pytest.raises(ValueError, match=r"'data' in .*bomb.npz.* declares "
                                         r"48 MiB, more than the limit of "
                                         r"32 MiB"):
        read_projections(path, max_bytes=2 ** 25)
    assert calls == []
    monkeypatch.undo()
    assert read_projections(path, max_bytes=2 ** 26).data.shape == (3, 2 ** 21)

    # A member whose .npy header declares far more than the member holds (a
    # huge shape): refused without allocating it.
    header = {'descr': '<f8', 'fortran_order': False,
              'shape': (3, 10 ** 9)}
    with zipfile.ZipFile(tmp_path / 'liar.npz', 'w') as archive:
        for key, value in minimal_fields().items():
            if key == 'data':
                continue
            with archive.open(f'{key}.npy', 'w') as member:
                np.lib.format.write_array(member, np.asarray(value))
        with archive.open('data.npy', 'w', force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(b'\0' * 64)
    with pytest.raises(ValueError, match='declares 24000000000 bytes but its '
                                         'member holds'):
        read_projections(tmp_path / 'liar.npz')


def test_hdf5_declaring_45_gib_refused_without_reading(tmp_path, monkeypatch):
    path = tmp_path / 'huge.h5'
    contents = {k: np.asarray(v) for k, v in minimal_fields().items()}
    with h5py.File(path, 'w') as f:
        for k, v in contents.items():
            if k != 'data':
                f.create_dataset(k, data=v)
        # Declared, never written: the file stays tiny.
        f.create_dataset('data', shape=(3, 45 * 2 ** 30 // 24), dtype='f8')
    assert path.stat().st_size < 40_000
    reads = []
    real = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, '__getitem__',
                        lambda self, key: reads.append(self.name)
                        or real(self, key))
    with pytest.raises(ValueError, match=r"'data' in .*huge.h5.* declares "
                                         r"45 GiB") as info:
        read_projections(path)
    assert 'max_bytes' in str(info.value)
    assert reads == []
    with pytest.raises(ValueError, match='declares 45 GiB, more than the '
                                         'limit of 1 GiB'):
        read_projections(path, max_bytes=2 ** 30)
    assert reads == []


@pytest.mark.parametrize('kind', ['external_link', 'soft_link',
                                  'external_storage', 'virtual'])
def test_hdf5_links_and_external_data_refused_without_reading(
        tmp_path, monkeypatch, kind):
    secret = np.full((3, 10), 271828.0)
    other = tmp_path / 'other.h5'
    with h5py.File(other, 'w') as f:
        f.create_dataset('secret', data=secret)
    raw = tmp_path / 'secret.raw'
    secret.tofile(raw)

    path = tmp_path / f'{kind}.h5'
    contents = {k: np.asarray(v) for k, v in minimal_fields().items()}
    with h5py.File(path, 'w') as f:
        for k, v in contents.items():
            if k != 'data':
                f.create_dataset(k, data=v)
        if kind == 'external_link':
            f['data'] = h5py.ExternalLink(str(other), '/secret')
        elif kind == 'soft_link':
            f.create_dataset('hidden', data=secret)
            f['data'] = h5py.SoftLink('/hidden')
        elif kind == 'external_storage':
            f.create_dataset('data', shape=(3, 10), dtype='<f8',
                             external=[(str(raw), 0, secret.nbytes)])
        else:
            layout = h5py.VirtualLayout(shape=(3, 10), dtype='f8')
            layout[:] = h5py.VirtualSource(str(other), 'secret', shape=(3, 10))
            f.create_virtual_dataset('data', layout)
    # Reached through h5py directly, the crafted file does read the secret.
    with h5py.File(path, 'r') as f:
        assert f['data'][0, 0] == 271828.0
    reads = []
    real = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, '__getitem__',
                        lambda self, key: reads.append(self.name)
                        or real(self, key))
    match = {'external_link': 'external link', 'soft_link': 'soft link',
             'external_storage': 'external files',
             'virtual': 'virtual dataset'}[kind]
    with pytest.raises(ValueError, match=match) as info:
        read_projections(path)
    assert '271828' not in str(info.value) and str(path) in str(info.value)
    assert reads == []


# --- Stray temporaries of killed writes (issue 22, item 8)


KILLED_WRITER = '''
import sys, time
from odl_atoms.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b'half of a file')
    print(tmp, flush=True)
    time.sleep(120)
'''


def test_sigkill_during_write_leaves_old_file_and_next_write_cleans(tmp_path):
    import signal
    import subprocess
    import sys

    target = tmp_path / 'tilts.npz'
    pd = ProjectionData(**minimal_fields())
    write_projections(target, pd)
    before = target.read_bytes()
    proc = subprocess.Popen([sys.executable, '-c', KILLED_WRITER, str(target)],
                            stdout=subprocess.PIPE, text=True)
    try:
        tmp = proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # The killed write left the old file intact and its temporary behind.
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == sorted(['tilts.npz',
                                                   os.path.basename(tmp)])
    assert os.path.basename(tmp).startswith('.tilts.')
    assert str(proc.pid) in os.path.basename(tmp)
    # The next write to the same place removes it.
    changed = dataclasses.replace(pd, noise_std=0.5)
    write_projections(target, changed)
    assert os.listdir(tmp_path) == ['tilts.npz']
    assert read_projections(target) == changed


def test_stray_temporaries_which_are_removed(tmp_path):
    import subprocess
    import sys
    import time

    from odl_atoms.io import safety

    target = tmp_path / 'atoms.extxyz'
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    here, other = safety._MACHINE, 'f' * 8 if safety._MACHINE != 'f' * 8 \
        else 'e' * 8
    names = {
        'dead_here': f'.atoms.0123abcd.{dead.pid}.{here}.tmp.extxyz',
        'alive_here': f'.atoms.0123abce.{os.getpid()}.{here}.tmp.extxyz',
        'other_machine_fresh': f'.atoms.0123abcf.{dead.pid}.{other}.tmp.extxyz',
        'other_machine_old': f'.atoms.0123abd0.{dead.pid}.{other}.tmp.extxyz',
        'old_style_fresh': '.atoms.0123abd1.tmp.extxyz',
        'old_style_old': '.atoms.0123abd2.tmp.extxyz',
        'other_target': f'.atom.0123abd3.{dead.pid}.{here}.tmp.extxyz',
        'other_suffix': f'.atoms.0123abd4.{dead.pid}.{here}.tmp.xyz',
    }
    for name in names.values():
        (tmp_path / name).write_text('partial')
    two_days_ago = time.time() - 2 * 86400
    for key in ('other_machine_old', 'old_style_old'):
        os.utime(tmp_path / names[key], (two_days_ago, two_days_ago))
    # A symbolic link with a matching name is never followed or removed.
    victim = tmp_path / 'keep.txt'
    victim.write_text('keep')
    link = tmp_path / f'.atoms.0123abd5.{dead.pid}.{here}.tmp.extxyz'
    link.symlink_to(victim)

    mu = SparseMeasureSpace([0, 0, 0], [5, 5, 5]).element([[1, 2, 3]])
    write_atoms(target, mu)
    left = set(os.listdir(tmp_path))
    removed = {'dead_here', 'other_machine_old', 'old_style_old'}
    for key, name in names.items():
        assert (name in left) == (key not in removed), key
    assert link.is_symlink() and victim.read_text() == 'keep'
    assert read_atoms(target) == mu
