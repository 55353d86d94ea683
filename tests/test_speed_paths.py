"""The fast paths of the reconstruction give what the slow ones gave.

- `GrowPath` (greedy additions kept for any threshold) against the plain
  greedy loop written out here, at two thresholds, fresh and continued;
- `_box_qp` with groups (several lattice batches in one stack) against one
  call per group, bit for bit;
- the lattice stacks (every offset of a basis at once) against
  `_LatticeFit.lattice` one offset at a time, bit for bit;
- torch on the CPU runs with one thread inside the package
  (`cpu_threads`) and gives the same projection as with torch's default.

The lattice search against a loop over lattices is in ``test_starts.py``;
a failing escape leaving the configuration unchanged in ``test_moves.py``.
"""

import numpy as np
import pytest

import odl_atoms as oa
from odl_atoms.solvers.adcg.context import GrowPath
from odl_atoms.solvers.configuration import Configuration
from odl_atoms.solvers.starts import _box_qp
from problems import defect_problem, problem_of


def greedy_loop(context, config, threshold, max_new=None, region=None):
    """ADCG's greedy growth as a plain loop (the reference for GrowPath)."""
    count = 0
    while max_new is None or count < max_new:
        more = context.add_atom(config)
        if more is None:
            break
        active = None
        if region is not None:
            active = region(more.positions)
            active[-1] = True
        more = context.local_move(more, active=active)
        if config.value - more.value <= threshold:
            break
        config = more
        count += 1
    return config


def test_grow_path_equals_the_greedy_loop_at_any_threshold():
    """4 x 4 interstitial at 0/60/120 degrees, 1 % noise: six atoms around
    the centre removed and regrown (regional relaxation), at a high and a
    low threshold; the path continued from the high threshold to the low
    one ends where a fresh loop at the low one does, bit for bit."""
    phantom, measured = defect_problem()
    a = phantom.lattice_spacing
    problem = problem_of(measured, potential=a, noise_std=measured.noise_std)
    context = oa.ADCG().context(problem)
    objective = context.objective
    x = np.array(phantom.measure.positions)
    centre = x.mean(axis=0)
    far = np.argsort(np.linalg.norm(x - centre, axis=1))[6:]
    start = Configuration(x[far], np.ones(len(far)),
                          np.full(len(far), problem.labels[0]))
    start.value = objective(start.positions, start.weights)

    def region(p):
        return np.linalg.norm(p - centre, axis=1) < 2 * a

    unit = objective.atom_energy
    path = GrowPath(context, start, max_new=8, region=region)
    for threshold in (2.0 * unit, 0.2 * unit):
        want = greedy_loop(context, start, threshold, 8, region)
        got = path.grow(threshold)
        assert got.value == want.value
        assert np.array_equal(got.positions, want.positions)
    # The low threshold took more atoms than the high one: the path was
    # continued, not restarted.
    assert path.grow(0.2 * unit).n_atoms > path.grow(2.0 * unit).n_atoms
    # The finished trial of one end point is kept.
    current = start.copy()
    assert path.finish(0.2 * unit, current) is path.finish(0.2 * unit,
                                                            current)


def test_grouped_box_qp_equals_one_call_per_group():
    """Three groups of random box QPs of one size in one stack, each
    stopping on its own: the same occupations, bit for bit, as a call per
    group (and the groups do stop at different iterations)."""
    rng = np.random.default_rng(3)
    groups, stacks = [], []
    for g, count in enumerate((4, 7, 2)):
        a = rng.normal(size=(count, 40, 12)) + 1.5 * np.eye(40, 12)
        h = np.einsum('kji,kjl->kil', a, a) * (1 + g)
        b = np.einsum('kji,kj->ki', a, rng.normal(size=(count, 40)))
        stacks.append((h, b))
        groups += [g] * count
    together = _box_qp(np.concatenate([h for h, _ in stacks]),
                       np.concatenate([b for _, b in stacks]),
                       groups=np.array(groups))
    alone = np.concatenate([_box_qp(h, b) for h, b in stacks])
    assert np.array_equal(together, alone)
    iterations = [_box_qp(h, b, n_iter=n) for h, b in stacks[:1]
                  for n in (3, 4)]
    assert not np.array_equal(*iterations)


@pytest.mark.parametrize('batch', [None, 50], ids=['one batch', 'chunks'])
def test_lattice_stack_equals_each_lattice(batch, monkeypatch):
    """Every offset of every basis at once (`_LatticeFit.stack`, in one
    batch or in chunks of offsets) against `_LatticeFit.lattice` one
    offset at a time: the same sites, windows and Gram matrices, bit for
    bit, with and without the occupancy fit."""
    from odl_atoms.solvers import starts

    if batch is not None:
        monkeypatch.setattr(starts, '_STACK_SITES', batch)
    phantom, measured = defect_problem('vacancy', shape=(5, 5))
    op, data = measured.operator(), measured.element()
    for occupancy in (True, False):
        start = oa.LatticeStart('square', n_orientations=5, n_offsets=3,
                                occupancy=occupancy)
        fit, bases, offsets, _, _ = start._search(
            op, data, phantom.lattice_spacing)
        for basis in bases:
            stack = fit.stack(basis, offsets)
            for k, offset in enumerate(offsets @ basis):
                points, index, values, gram = fit.lattice(basis, offset)
                n = len(points)
                assert stack.valid[k].sum() == n
                assert np.array_equal(stack.points[k, :n], points)
                if occupancy and n:
                    assert np.array_equal(stack.index[k, :n], index)
                    assert np.array_equal(stack.values[k, :n], values)
                    assert np.array_equal(stack.gram[k, :n, :n], gram)


def test_torch_runs_on_one_cpu_thread_inside_the_package(monkeypatch):
    """A `TorchStencil` on the CPU computes with one torch thread (two
    outside), restores torch's setting, and projects what it did with
    torch's default; ``ODL_ATOMS_TORCH_THREADS`` changes the count."""
    torch = pytest.importorskip('torch')
    import odl
    from odl.applications import tomo

    from odl_atoms import projection_torch
    from odl_atoms.geometry import DetectorFrame
    from odl_atoms.projection import Stencil
    from odl_atoms.projection_torch import (TorchFrame, TorchStencil,
                                            cpu_threads)

    geometry = tomo.Parallel2dGeometry(odl.uniform_partition(0, np.pi, 3),
                                       odl.uniform_partition(-8, 8, 64))
    frame = DetectorFrame.from_geometry(geometry)
    x = np.random.default_rng(0).uniform(-5, 5, (30, 2))
    w = np.ones(30)
    seen = []
    profile = projection_torch._profile_1d

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return profile(*args, **kwargs)

    monkeypatch.setattr(projection_torch, '_profile_1d', spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        stencil = TorchStencil(TorchFrame(frame, 'cpu'), x, 0.4)
        data = stencil.project(w).numpy()
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
        reference = Stencil(frame, x, 0.4).project(w)
        assert np.allclose(data, reference, rtol=1e-12, atol=1e-14)
        monkeypatch.setenv('ODL_ATOMS_TORCH_THREADS', '2')
        seen.clear()
        TorchStencil(TorchFrame(frame, 'cpu'), x, 0.4)
        assert set(seen) == {2}
        monkeypatch.setenv('ODL_ATOMS_TORCH_THREADS', 'many')
        with pytest.raises(ValueError, match='ODL_ATOMS_TORCH_THREADS'):
            with cpu_threads('cpu'):
                pass
    finally:
        torch.set_num_threads(before)


def test_learned_picker_predicts_on_one_cpu_thread(monkeypatch):
    """`LearnedModel.predict` runs its network with one torch thread on
    the CPU and restores torch's setting."""
    torch = pytest.importorskip('torch')
    from odl_atoms.learned.model import LearnedModel

    model = LearnedModel(dict(width=4, sigma=0.43, pixel_size=0.2,
                              angles=[0.0, 1.0]), device='cpu')
    seen = []
    forward = model.network.forward

    def spy(x):
        seen.append(torch.get_num_threads())
        return forward(x)

    monkeypatch.setattr(model.network, 'forward', spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        prob, offsets = model.predict(np.zeros((16, 16)))
        assert prob.shape == (16, 16) and offsets.shape == (2, 16, 16)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
