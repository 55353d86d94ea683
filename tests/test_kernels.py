"""Tests of the compiled kernels (`odl_atoms.kernels`).

References, none of which share code with the kernels: the NumPy
implementation of `odl_atoms.projection` and `odl_atoms.functionals` (vector
code over window arrays, SciPy's ``ndtr``, a KD-tree pair list), central
finite differences, and ASE's Lennard-Jones calculator.
"""

import numpy as np
import odl
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones as AseLJ
from odl.applications import tomo

from odl_atoms import SparseMeasureSpace, kernels
from odl_atoms.functionals import LennardJones
from odl_atoms.objective import AtomObjective
from odl_atoms.operators import GaussianRayTransform
from odl_atoms.projection import Stencil

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE,
                                reason='numba is not installed')

RTOL = 1e-10


def assert_close(actual, reference, rtol=RTOL):
    """Agreement to ``rtol`` relative to the largest reference entry."""
    reference = np.asarray(reference, dtype=float)
    scale = max(float(np.abs(reference).max(initial=0.0)), 1e-300)
    np.testing.assert_allclose(actual, reference, rtol=rtol,
                               atol=rtol * scale)


# --- Problems


def geometry(kind):
    if kind == '2d':
        return tomo.Parallel2dGeometry(
            odl.nonuniform_partition([0.1, 0.9, 2.0, 2.9]),
            odl.uniform_partition(-9, 9, 70))
    if kind == '2d-nonuniform':
        # Cells of unequal width: the window search cannot guess from a step.
        edges = np.cumsum(np.r_[0, np.linspace(0.2, 0.4, 60)])
        edges -= edges.mean()
        det = odl.nonuniform_partition(0.5 * (edges[1:] + edges[:-1]),
                                       min_pt=edges[0], max_pt=edges[-1])
        return tomo.Parallel2dGeometry(odl.uniform_partition(0, np.pi, 3),
                                       det)
    if kind == '3d-axis':
        return tomo.Parallel3dAxisGeometry(
            odl.uniform_partition(-1.2, 1.2, 4),
            odl.uniform_partition([-7, -6], [7, 6], (30, 26)), axis=(0, 0, 1))
    if kind == '3d-tilted-axis':
        return tomo.Parallel3dAxisGeometry(
            odl.uniform_partition(-1.0, 1.3, 3),
            odl.uniform_partition([-7, -6], [7, 6], (28, 24)),
            axis=(0.3, 0.2, 1.0))
    if kind == '3d-euler':
        return tomo.Parallel3dEulerGeometry(
            odl.uniform_partition([0, 0.2], [np.pi, 1.2], (3, 2)),
            odl.uniform_partition([-7, -6], [7, 6], (24, 20)))
    raise ValueError(kind)


GEOMETRIES = ('2d', '2d-nonuniform', '3d-axis', '3d-tilted-axis', '3d-euler')


def configuration(d, n, species, rng, half=6.0):
    """Random atoms in the box, a few of them at or beyond its edge."""
    positions = rng.uniform(-half + 1, half - 1, (n, d))
    # Near the edge, partly off the detector, and entirely off it.
    positions[0] = half - 0.1
    positions[1, 0] = -half - 1.2
    positions[2] = 3 * half
    choices = np.array([1.0, 2.5, 0.7, 4.0])[:species]
    weights = rng.choice(choices, n) * rng.uniform(0.9, 1.1, n)
    return positions, weights


def problem(kind, mode='integrate', n=25, species=2, seed=0, alpha=1e-2):
    """Operator, objective (data from another configuration), x and w."""
    rng = np.random.default_rng(seed)
    geom = geometry(kind)
    d = geom.ndim
    space = SparseMeasureSpace([-6.0] * d, [6.0] * d)
    op = GaussianRayTransform(space, geom, sigma=0.45, mode=mode)
    true_pos, true_w = configuration(d, n, species, rng)
    with kernels.use_backend('numpy'):
        data = op.project(true_pos[3:], true_w[3:])
    data = data + 0.05 * rng.standard_normal(data.shape)
    potential = LennardJones.from_r_min(odl.rn((2, d)), 1.6, smooth=True)
    objective = AtomObjective(op, data, alpha=alpha, potential=potential)
    positions = true_pos + rng.normal(0, 0.2, true_pos.shape)
    return op, objective, positions, true_w


def both(func):
    """``func()`` with the NumPy reference, then compiled."""
    with kernels.use_backend('numpy'):
        reference = func()
    with kernels.use_backend('numba'):
        compiled = func()
    return compiled, reference


# --- The objective


@pytest.mark.parametrize('mode', ['integrate', 'sample'])
@pytest.mark.parametrize('kind', GEOMETRIES)
@pytest.mark.parametrize('species', [1, 3])
def test_value_and_gradient_match_numpy(kind, mode, species):
    _, objective, x, w = problem(kind, mode, species=species)
    (value, gx, gw), (ref_value, ref_gx, ref_gw) = both(
        lambda: objective.value_and_gradient(x, w))
    assert value == pytest.approx(ref_value, rel=RTOL)
    assert_close(gx, ref_gx)
    assert_close(gw, ref_gw)
    # The pieces the solvers read.
    compiled, reference = both(lambda: objective.residual(x, w))
    assert_close(compiled, reference)
    compiled, reference = both(lambda: objective.data_misfit(x, w))
    assert compiled == pytest.approx(reference, rel=RTOL)


@pytest.mark.parametrize('kind', ['2d', '3d-euler'])
def test_data_term_with_reused_scratch(kind):
    """Calls with more, fewer, then more atoms again (scratch grows, views)."""
    op, objective, x, w = problem(kind, n=40)
    proj = kernels.Projector.of(op.frame, op.sigma, op.truncate, op.mode)
    for n in (10, 3, 40, 0, 25):
        half, gx, gw, r = proj.data_term(x[:n], w[:n], objective.y,
                                         residual=True)
        with kernels.use_backend('numpy'):
            st = Stencil(op.frame, x[:n], op.sigma, op.truncate, op.mode)
            ref_r = st.project(w[:n]) - objective.y
            ref_gx, ref_gw = st.adjoint_jacobian(w[:n], ref_r)
        assert_close(r, ref_r)
        assert half == pytest.approx(0.5 * float(ref_r @ ref_r), rel=RTOL)
        assert gx.shape == (n, x.shape[1]) and gw.shape == (n,)
        if n:
            assert_close(gx, ref_gx)
            assert_close(gw, ref_gw)


@pytest.mark.parametrize('kind', ['2d', '3d-axis', '3d-euler'])
@pytest.mark.parametrize('local_energy', [False, True])
def test_restricted_matches_numpy(kind, local_energy):
    _, objective, x, w = problem(kind, n=30)
    active = np.array([0, 4, 5, 11])
    moved = x[active] + 0.1

    def evaluate():
        fun = objective.restricted(x, w, active, local_energy=local_energy)
        return fun(moved)

    (value, grad), (ref_value, ref_grad) = both(evaluate)
    assert value == pytest.approx(ref_value, rel=RTOL)
    assert_close(grad, ref_grad)


@pytest.mark.parametrize('mode', ['integrate', 'sample'])
@pytest.mark.parametrize('kind', ['2d', '3d-tilted-axis', '3d-euler'])
def test_gradient_matches_finite_differences(kind, mode):
    """Central differences of the compiled value, in positions and weights."""
    _, objective, x, w = problem(kind, mode, n=8)
    x = x[3:]  # atoms well inside, no core contacts: a smooth neighbourhood
    w = w[3:]
    with kernels.use_backend('numba'):
        _, gx, gw = objective.value_and_gradient(x, w)
        h = 1e-6
        for i, j in [(0, 0), (1, x.shape[1] - 1), (3, 1)]:
            step = np.zeros_like(x)
            step[i, j] = h
            diff = (objective(x + step, w) - objective(x - step, w)) / (2 * h)
            assert diff == pytest.approx(gx[i, j], rel=1e-6,
                                         abs=1e-7 * np.abs(gx).max())
        for i in (0, 2):
            step = np.zeros_like(w)
            step[i] = h
            diff = (objective(x, w + step) - objective(x, w - step)) / (2 * h)
            assert diff == pytest.approx(gw[i], rel=1e-6,
                                         abs=1e-7 * np.abs(gw).max())


# --- The projector's linear maps (forward, Jacobian, adjoint)


@pytest.mark.parametrize('mode', ['integrate', 'sample'])
@pytest.mark.parametrize('kind', GEOMETRIES)
def test_stencil_maps_match_numpy(kind, mode):
    op, _, x, w = problem(kind, mode, n=20)
    rng = np.random.default_rng(1)
    data = rng.standard_normal(op.range.shape).ravel()
    dx = rng.standard_normal(x.shape)
    dw = rng.standard_normal(w.shape)

    def maps():
        st = Stencil(op.frame, x, op.sigma, op.truncate, op.mode)
        gx, gw = st.adjoint_jacobian(w, data)
        idx, vals = st.windows()
        pidx, derivs = st.position_derivatives(w)
        return (st.project(w), st.apply_jacobian(w, dx, dw), gx, gw,
                st.correlate(data), st.self_inner(), idx, vals, pidx, derivs,
                st.profiles[0][1].shape)

    compiled, reference = both(maps)
    for got, expected in zip(compiled[:-3], reference[:-3]):
        assert_close(got, expected)
    np.testing.assert_array_equal(compiled[6], reference[6])  # indices
    np.testing.assert_array_equal(compiled[8], reference[8])
    assert_close(compiled[9], reference[9])
    assert compiled[-1] == reference[-1]  # the same windows


@pytest.mark.parametrize('kind', ['2d', '3d-euler'])
def test_operator_and_jacobian_adjoint_match_numpy(kind):
    """The ODL operator, its Jacobian and the Jacobian's adjoint."""
    op, _, x, w = problem(kind, n=15)
    x = np.clip(x, -5.9, 5.9)  # measures live in the box
    measure = op.domain.element(x, weights=w)
    params = op.domain.parameter_space(len(w)).element([x, w])
    residual = op.range.element(
        np.random.default_rng(2).standard_normal(op.range.shape))

    def maps():
        op.stencil(np.zeros((1, x.shape[1])))  # drop the cached stencil
        jac = op.parametrized(len(w)).derivative(params)
        grad = jac.adjoint(residual)
        return (op(measure).data, jac(params).data, grad[0].data,
                grad[1].data, op.correlation(residual, x[:5]))

    for got, expected in zip(*both(maps)):
        assert_close(got, expected)


def test_many_atoms_3d_match_numpy():
    """Enough atoms that the NumPy path works in chunks."""
    op, _, _, _ = problem('3d-axis', n=5)
    rng = np.random.default_rng(4)
    x = rng.uniform(-6, 6, (3000, 3))
    w = rng.uniform(0.5, 2, 3000)
    data = rng.standard_normal(op.range.shape).ravel()

    def maps():
        st = Stencil(op.frame, x, op.sigma, op.truncate, op.mode)
        st.chunk_values = 50_000  # several chunks for the NumPy path
        gx, gw = st.adjoint_jacobian(w, data)
        return st.project(w), gx, gw

    for got, expected in zip(*both(maps)):
        assert_close(got, expected)


def test_numpy_scatter_index_is_cached_and_bounded(monkeypatch):
    """The NumPy path reuses a stencil's 3D flat index, within a budget."""
    import odl_atoms.projection as projection

    op, _, x, w = problem('3d-axis', n=20)
    st = Stencil(op.frame, x, op.sigma, op.truncate, op.mode, backend='numpy')
    first = st.project(w)
    assert len(st._index_cache) == 1
    cached = next(iter(st._index_cache.values()))
    np.testing.assert_array_equal(st.project(w), first)
    assert next(iter(st._index_cache.values())) is cached
    monkeypatch.setattr(projection, '_CACHED_INDEX_VALUES', 10)
    small = Stencil(op.frame, x, op.sigma, op.truncate, op.mode,
                    backend='numpy')
    np.testing.assert_array_equal(small.project(w), first)
    assert not small._index_cache


def test_empty_and_single_atom():
    op, objective, x, w = problem('3d-euler', n=5)
    value, gx, gw = objective.value_and_gradient(np.zeros((0, 3)),
                                                 np.zeros(0))
    assert value == pytest.approx(0.5 * objective.inner_weight
                                  * float(objective.y @ objective.y))
    assert gx.shape == (0, 3) and gw.shape == (0,)
    compiled, reference = both(
        lambda: objective.value_and_gradient(x[3:4], w[3:4]))
    for got, expected in zip(compiled, reference):
        assert_close(got, expected)


def test_bad_shapes_raise():
    op, objective, x, w = problem('2d', n=5)
    with kernels.use_backend('numba'):
        with pytest.raises(ValueError, match='shape'):
            objective.value_and_gradient(np.zeros((3, 3)), np.ones(3))
        with pytest.raises(ValueError, match='weights'):
            objective.value_and_gradient(x, w[:-1])
        st = Stencil(op.frame, x, op.sigma)
        with pytest.raises(ValueError, match='values'):
            st.adjoint_jacobian(w, np.ones(7))
    with pytest.raises(ValueError, match='backend'):
        Stencil(op.frame, x, op.sigma, backend='cuda')
    with pytest.raises(ValueError, match='numba'):
        with kernels.use_backend('fortran'):
            pass


def test_without_numba_the_numpy_path_runs():
    """A Python without numba imports odl_atoms and uses the NumPy path."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['numba'] = None\n"
        "import numpy as np, odl\n"
        "from odl.applications import tomo\n"
        "from odl_atoms import kernels\n"
        "from odl_atoms.functionals import LennardJones\n"
        "from odl_atoms.geometry import DetectorFrame\n"
        "from odl_atoms.projection import Stencil\n"
        "assert not kernels.AVAILABLE and kernels.backend() == 'numpy'\n"
        "g = tomo.Parallel2dGeometry(odl.uniform_partition(0, 3, 3),\n"
        "                            odl.uniform_partition(-8, 8, 64))\n"
        "st = Stencil(DetectorFrame.from_geometry(g), np.zeros((2, 2)), 0.5)\n"
        "assert st.backend == 'numpy' and st.project(np.ones(2)).size == 192\n"
        "lj = LennardJones(odl.rn((2, 2)))\n"
        "print(lj.energy([[0.0, 0.0], [1.2, 0.0]]))\n")
    out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lj = LennardJones(odl.rn((2, 2)))
    with kernels.use_backend('numpy'):
        expected = lj.energy([[0.0, 0.0], [1.2, 0.0]])
    assert float(out.stdout.split()[-1]) == pytest.approx(expected, rel=1e-12)


def test_environment_selects_numpy(monkeypatch):
    monkeypatch.setenv('ODL_ATOMS_KERNELS', 'numpy')
    assert kernels._initial_backend() == 'numpy'
    monkeypatch.setenv('ODL_ATOMS_KERNELS', '')
    assert kernels._initial_backend() == 'numba'


# --- Lennard-Jones


def ase_energy_and_gradient(lj, positions):
    n, d = positions.shape
    pos3 = np.zeros((n, 3))
    pos3[:, :d] = positions
    atoms = Atoms(['Ar'] * n, positions=pos3, pbc=False)
    params = dict(epsilon=lj.epsilon, sigma=lj.sigma, rc=lj.cutoff,
                  smooth=lj.smooth)
    if lj.smooth:
        params['ro'] = lj.onset
    atoms.calc = AseLJ(**params)
    return atoms.get_potential_energy(), -atoms.get_forces()[:, :d]


def lattice(d, n, spacing, jitter, rng):
    side = int(np.ceil(n ** (1 / d)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * d, indexing='ij'), -1)
    pos = grid.reshape(-1, d)[:n] * spacing
    return pos + rng.normal(0, jitter, pos.shape)


@pytest.mark.parametrize('smooth', [False, True])
@pytest.mark.parametrize('d', [2, 3])
@pytest.mark.parametrize('n', [20, kernels.DENSE_PAIRS_MAX_ATOMS + 150])
def test_lennard_jones_matches_ase(d, n, smooth):
    """Dense pair sums (few atoms) and the cell list (many) against ASE."""
    rng = np.random.default_rng(d * n)
    positions = lattice(d, n, 1.15, 0.04, rng)  # no pair in the core
    lj = LennardJones(odl.rn((2, d)), epsilon=0.6, sigma=1.0, cutoff=2.6,
                      smooth=smooth)
    with kernels.use_backend('numba'):
        energy, grad = lj.energy(positions, gradient=True)
    ref_energy, ref_grad = ase_energy_and_gradient(lj, positions)
    assert energy == pytest.approx(ref_energy, rel=RTOL)
    assert_close(grad, ref_grad, rtol=1e-9)


@pytest.mark.parametrize('d', [2, 3])
def test_lennard_jones_core_and_outliers_match_numpy(d):
    """Core contacts and atoms far away: cell list = dense = NumPy."""
    rng = np.random.default_rng(d)
    positions = lattice(d, 300, 1.1, 0.1, rng)
    positions[5] = positions[6] + 0.2  # inside the core
    positions[7] = positions[8]        # coincident
    positions[9] = 1e4                 # far-flung atoms widen the cells
    positions[10] = -3e3
    lj = LennardJones(odl.rn((2, d)), sigma=1.0, smooth=True,
                      core_radius=0.7)
    params = lj._LennardJones__kernel_parameters
    dense = kernels.lj_dense(positions, params, True)
    cells = kernels.lj_cells(positions, params, True)
    with kernels.use_backend('numpy'):
        reference = lj.energy(positions, gradient=True)
    for got in (dense, cells):
        assert got[0] == pytest.approx(reference[0], rel=RTOL)
        assert_close(got[1], reference[1])
    # Pair energies (core, well, cut-off) and removal energies dispatch too.
    r = np.linspace(0.0, 1.2 * lj.cutoff, 301)
    assert_close(*both(lambda: lj.pair_energy(r)))
    assert_close(*both(lambda: lj.removal_energies(positions)))
    # The ODL interface dispatches too.
    space = odl.rn(positions.shape)
    lj_n = lj.on_space(space)
    x = space.element(positions)
    assert lj_n(x) == pytest.approx(reference[0], rel=RTOL)
    assert_close(lj_n.gradient(x).data, reference[1])


# --- The lattice searches: residuals of many site sets, occupation QPs


@pytest.mark.parametrize('kind', ['2d', '2d-nonuniform', '3d-axis'])
def test_group_residuals_match_numpy_projections(kind):
    """Each row of `Projector.group_residuals` against the NumPy projection
    of its atoms alone plus the background (empty groups included)."""
    op, _, x, _ = problem(kind, n=12)
    rng = np.random.default_rng(2)
    background = rng.standard_normal(op.range.shape).ravel()
    starts = np.array([0, 3, 3, 10, 12])  # the second group is empty
    proj = kernels.Projector.of(op.frame, op.sigma, op.truncate, op.mode)
    got = proj.group_residuals(proj.profiles(x), starts, background)
    assert got.shape == (4, background.size)
    for g in range(4):
        part = x[starts[g]:starts[g + 1]]
        with kernels.use_backend('numpy'):
            expected = background + Stencil(
                op.frame, part, op.sigma, op.truncate, op.mode).project(
                    np.ones(len(part)))
        assert_close(got[g], expected)
    with pytest.raises(ValueError, match='background'):
        proj.group_residuals(proj.profiles(x), starts, background[:-1])


def random_box_qps(rng, count, n, scale=1.0):
    """Least-squares box QPs ``G^T G``, ``G^T y`` of random sizes <= n,
    zero-padded to n: the shape of the lattice occupation problems."""
    hessians = np.zeros((count, n, n))
    linear = np.zeros((count, n))
    systems = []
    for k in range(count):
        size = int(rng.integers(1, n + 1))
        g = np.abs(rng.normal(size=(3 * size, size))) * scale
        y = g @ rng.uniform(-0.3, 1.3, size) + rng.normal(0, 0.1, 3 * size)
        hessians[k, :size, :size] = g.T @ g
        linear[k, :size] = g.T @ y
        systems.append((g, y))
    return hessians, linear, systems


@pytest.mark.parametrize('grouped', [False, True])
def test_box_qp_matches_the_numpy_iteration_and_scipy(grouped):
    """`kernels.box_qp` against the batched NumPy iteration it compiles
    (the same iterates to rounding, groups stopping on their own) and, run
    to convergence, against SciPy's bounded least squares."""
    from scipy.optimize import lsq_linear

    from odl_atoms.solvers.starts import _box_qp_numpy

    rng = np.random.default_rng(3)
    hessians, linear, systems = random_box_qps(rng, 40, 9)
    groups = rng.integers(0, 5, 40) if grouped else None
    got = kernels.box_qp(hessians, linear, groups=groups)
    expected = _box_qp_numpy(hessians, linear, groups=groups)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    assert np.array_equal(got > 0.5, expected > 0.5)
    exact = kernels.box_qp(hessians, linear, n_iter=20000, tol=1e-13,
                           groups=groups)
    for k, (g, y) in enumerate(systems):
        n = g.shape[1]
        reference = lsq_linear(g, y, bounds=(0, 1), tol=1e-13).x
        np.testing.assert_allclose(exact[k, :n], reference, atol=1e-6)
        assert np.all(exact[k, n:] == 0)


def test_box_qp_groups_stop_on_their_own():
    """A group that converges at once keeps its first iterate whatever the
    others do: solved together or alone, the same answer."""
    rng = np.random.default_rng(4)
    hessians, linear, _ = random_box_qps(rng, 12, 7)
    groups = np.repeat([2, 0, 1], 4)
    together = kernels.box_qp(hessians, linear, n_iter=50, groups=groups)
    for label in (0, 1, 2):
        rows = groups == label
        alone = kernels.box_qp(hessians[rows], linear[rows], n_iter=50)
        np.testing.assert_array_equal(together[rows], alone)
    assert kernels.box_qp(np.zeros((0, 3, 3)), np.zeros((0, 3))).shape == \
        (0, 3)
    with pytest.raises(ValueError, match='hessian'):
        kernels.box_qp(np.zeros((2, 3, 3)), np.zeros((2, 4)))


def test_box_qp_bound_drops_only_groups_that_cannot_win():
    """`kernels.box_qp` with ``bound``: the groups it solves have the
    answers of the plain call bit for bit, the lowest objective at a
    rounded answer is found where the plain call finds it, and every group
    it drops has, for each problem, a minimum over the box (SciPy's bounded
    least squares, run to convergence) above that lowest objective."""
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(6)
    count, n = 60, 8
    hessians, linear, systems = random_box_qps(rng, count, n)
    # Near ties: groups of the best problem with its data scaled by 1 +-
    # 1e-7, objectives 1e-7 apart (a bound that is off by more drops the
    # best of them).
    plain = kernels.box_qp(hessians, linear)
    o = (plain > 0.5).astype(float)
    k = np.argmin(0.5 * np.einsum('kn,knm,km->k', o, hessians, o)
                  - np.einsum('kn,kn->k', linear, o))
    factors = 1 + 1e-7 * np.arange(-8, 8)
    hessians = np.concatenate([hessians, np.repeat(hessians[k:k + 1], 16, 0)])
    linear = np.concatenate([linear, factors[:, None] * linear[k]])
    systems += [(systems[k][0], f * systems[k][1]) for f in factors]
    count += 16
    groups = np.repeat(np.arange(count // 4), 4)

    def rounded(w):
        # 0.5 o^T H o - b^T o at o = (w > 1/2), problem by problem.
        o = (w > 0.5).astype(float)
        return (0.5 * np.einsum('kn,knm,km->k', o, hessians, o)
                - np.einsum('kn,kn->k', linear, o))

    plain = kernels.box_qp(hessians, linear, groups=groups)
    lowest = rounded(plain).min()
    for bound in (np.inf, lowest, lowest + 1e-4, lowest + 1.0):
        w, solved = kernels.box_qp(hessians, linear, groups=groups,
                                   bound=bound)
        assert not solved.all() and solved.any()
        # Whole groups are solved or dropped.
        assert np.array_equal(solved, np.repeat(solved[::4], 4))
        np.testing.assert_array_equal(w[solved], plain[solved])
        assert rounded(w)[solved].min() == lowest
        assert solved[np.argmin(rounded(plain))]
        for k in np.flatnonzero(~solved):
            g, y = systems[k]
            x = lsq_linear(g, y, bounds=(0, 1), tol=1e-13).x
            # The QP objective is 0.5 ||G x - y||^2 - 0.5 ||y||^2.
            minimum = 0.5 * np.sum((g @ x - y) ** 2) - 0.5 * y @ y
            assert minimum > min(bound, lowest)
    # A bound nothing reaches drops every group; none given, none dropped.
    assert not kernels.box_qp(hessians, linear, groups=groups,
                              bound=-np.inf)[1].any()
    np.testing.assert_array_equal(
        kernels.box_qp(hessians, linear, groups=groups, bound=None), plain)


def test_box_qp_symmetric_hessians_are_their_own_columns():
    """`kernels.box_qp(symmetric=True)` (no transposed copy) on exactly
    symmetric Hessians: the iterates of the default path bit for bit, with
    and without a bound; on Hessians symmetric only to rounding the two
    paths differ (so the test can tell them apart)."""
    rng = np.random.default_rng(9)
    hessians, linear, _ = random_box_qps(rng, 24, 9)
    skew = hessians.copy()
    hessians = 0.5 * (hessians + hessians.transpose(0, 2, 1))
    assert np.array_equal(hessians, hessians.transpose(0, 2, 1))
    groups = np.repeat(np.arange(6), 4)
    for bound in (None, np.inf, 0.0):
        want = kernels.box_qp(hessians, linear, groups=groups, bound=bound)
        got = kernels.box_qp(hessians, linear, groups=groups, bound=bound,
                             symmetric=True)
        for a, b in zip(*(x if isinstance(x, tuple) else (x,)
                          for x in (got, want))):
            np.testing.assert_array_equal(a, b)
    skew[:, 0, 1] += 1e-3  # not symmetric: the columns are the transpose
    assert not np.array_equal(
        kernels.box_qp(skew, linear, n_iter=5),
        kernels.box_qp(skew, linear, n_iter=5, symmetric=True))


def test_lattice_problems_match_numpy_gathers():
    """`kernels.lattice_problems` against NumPy fancy indexing: the Gram
    matrices of the selected sites (zero at padding) and ``-G^T r``."""
    rng = np.random.default_rng(5)
    m, n, k, size = 6, 9, 7, 40
    gram = rng.standard_normal((m, n, n))
    index = rng.integers(0, size, (m, n, k))
    values = rng.standard_normal((m, n, k))
    background = rng.standard_normal(size)
    lattices = np.array([0, 2, 3, 5])
    order = np.stack([rng.permutation(n)[:5] for _ in lattices])
    filled = rng.random(order.shape) < 0.7
    filled[0] = False  # a lattice without sites
    hessian, linear = kernels.lattice_problems(
        gram, index, values, lattices, order, filled, background)
    rows = lattices[:, None]
    pair = filled[:, :, None] & filled[:, None, :]
    want = np.where(pair, gram[rows[:, :, None], order[:, :, None],
                               order[:, None, :]], 0.0)
    np.testing.assert_array_equal(hessian, want)
    expected = np.where(filled, -(values[rows, order]
                                  * background[index[rows, order]]).sum(-1),
                        0.0)
    assert_close(linear, expected)


def test_lattice_problems_profiles_equal_lattice_problems_on_windows():
    """`kernels.lattice_problems_profiles` (windows read from shared 1D
    profiles through each site's row) against `kernels.lattice_problems`
    on the flat window index and values the same profiles give: bit for
    bit (the same sums in the same order)."""
    rng = np.random.default_rng(8)
    m, n, rows, angles, width, nu = 5, 8, 30, 3, 6, 20
    first = rng.integers(0, nu - width + 1, (rows, angles))
    profile = rng.standard_normal((rows, angles, width))
    site = rng.integers(0, rows, (m, n))
    gram = rng.standard_normal((m, n, n))
    background = rng.standard_normal(angles * nu)
    index = (np.arange(angles)[:, None] * nu + first[site][..., None]
             + np.arange(width)).reshape(m, n, -1)
    values = profile[site].reshape(m, n, -1)
    lattices = np.array([0, 1, 4])
    order = np.stack([rng.permutation(n)[:6] for _ in lattices])
    filled = rng.random(order.shape) < 0.8
    want = kernels.lattice_problems(gram, index, values, lattices, order,
                                    filled, background)
    got = kernels.lattice_problems_profiles(gram, site, first, profile, nu,
                                            lattices, order, filled,
                                            background, np.zeros((0, 0)))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert np.any(got[1] != 0)
    # Every site's linear term computed once (`site_linear`), then gathered.
    valid = rng.random((m, n)) < 0.9
    every = kernels.site_linear(site, valid, first, profile, nu, background)
    assert np.all(every[~valid] == 0)
    both = filled & valid[lattices[:, None], order]
    known = kernels.lattice_problems_profiles(
        gram, site, first, profile, nu, lattices, order, both, background,
        every)
    alone = kernels.lattice_problems_profiles(
        gram, site, first, profile, nu, lattices, order, both, background,
        np.zeros((0, 0)))
    np.testing.assert_array_equal(known[0], alone[0])
    np.testing.assert_array_equal(known[1], alone[1])


# --- The oracle's addition energies


def brute_force_addition_energies(lj, positions, points, attractive_only):
    """Every point against every atom, NumPy pair energies (no tree)."""
    r = np.linalg.norm(points[:, None, :] - positions[None, :, :], axis=-1)
    pair = lj.pair_energy(r.ravel()).reshape(r.shape)
    if attractive_only:
        pair = np.minimum(pair, 0.0)
    return pair.sum(axis=1), r.min(axis=1)


@pytest.mark.parametrize('attractive_only', [False, True])
@pytest.mark.parametrize('d, n', [(2, 48), (2, 400), (3, 300)])
def test_addition_energies_match_brute_force_and_numpy(d, n, attractive_only):
    """`kernels.addition_energies` (cell list) against a sum over all pairs
    and against the oracle's NumPy path (KD-trees): points inside, around
    and far outside the atoms (those find their nearest atom by the full
    scan), an atom on a point, atoms in the core and far-flung ones that
    widen the cells."""
    from odl_atoms.solvers.adcg.oracle import addition_energies

    rng = np.random.default_rng(d * n)
    positions = lattice(d, n, 1.1, 0.1, rng)
    positions[5] = positions[6] + 0.2  # a pair inside the core
    if n > 100:
        positions[9] = 1e3  # far-flung atoms widen the cells
        positions[10] = -3e2
    lj = LennardJones(odl.rn((2, d)), sigma=1.0, smooth=True,
                      core_radius=0.7)
    body = positions[11:]  # not the far-flung ones
    points = rng.uniform(body.min() - 3 * lj.cutoff,
                         body.max() + 3 * lj.cutoff, size=(500, d))
    points[0] = positions[3]  # an atom on a point (distance 0)
    energies, nearest = kernels.addition_energies(
        positions, points, lj.kernel_parameters, attractive_only)
    want, want_nearest = brute_force_addition_energies(
        lj, positions, points, attractive_only)
    assert_close(energies, want)
    np.testing.assert_allclose(nearest, want_nearest, rtol=1e-14, atol=0)
    assert nearest[0] == 0
    assert np.any(nearest > np.sqrt(lj.kernel_parameters[2]))  # full scans
    # The oracle's function on both paths (the NumPy one had counted an atom
    # on a point twice with SciPy 1.17, whose sparse distance matrix keeps
    # zero distances).
    with kernels.use_backend('numba'):
        compiled = addition_energies(lj, positions, points, attractive_only)
    with kernels.use_backend('numpy'):
        reference = addition_energies(lj, positions, points, attractive_only)
    assert_close(compiled[0], reference[0])
    assert_close(reference[0], want)
    np.testing.assert_allclose(compiled[1], reference[1], rtol=1e-14, atol=0)


def test_addition_energies_without_atoms():
    lj = LennardJones(odl.rn((2, 2)), sigma=1.0, smooth=True)
    energies, nearest = kernels.addition_energies(
        np.zeros((0, 2)), np.ones((3, 2)), lj.kernel_parameters)
    np.testing.assert_array_equal(energies, 0.0)
    np.testing.assert_array_equal(nearest, np.inf)
