"""Learned post-processing: targets and decoding, training, picker, imports.

Decoding is checked against atoms placed by hand on synthetic probability /
offset maps (not against `encode_targets`); the 180-degree augmentation
against SIRT images of point-reflected configurations; that the core
package works without torch in a subprocess where torch cannot be imported.
Tests that run the network are skipped when torch is not installed. Full
training runs only in ``benchmarks/compare.py``.
"""

import ast
import pathlib
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import odl
import pytest

import odl_atoms as oa
from odl_atoms.learned.data import (decode_maps, encode_targets, from_index,
                                    normalise_image, random_crystal, to_index)

PACKAGE = pathlib.Path(oa.__file__).parent


def run_python(code):
    out = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


# --- Imports: torch only on demand


def test_no_module_imports_torch_at_top_level():
    """Every ``import torch`` in the package sits inside a function."""
    offenders = []
    for path in PACKAGE.rglob('*.py'):
        tree = ast.parse(path.read_text())
        scopes = [tree]
        while scopes:
            node = scopes.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                      ast.Lambda)):
                    continue
                names = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    names = [child.module or '']
                if any(n == 'torch' or n.startswith('torch.') for n in names):
                    offenders.append(f'{path.relative_to(PACKAGE)}:'
                                     f'{child.lineno}')
                scopes.append(child)
    assert offenders == []


def test_package_works_without_torch():
    """With torch unimportable: import, data tools work, clear ImportError."""
    lines = run_python("""
        import builtins, sys
        sys.modules['torch'] = None  # as if torch were not installed
        asked = []
        real_import = builtins.__import__
        def spy(name, *args, **kwargs):
            if name == 'torch' or name.startswith('torch.'):
                asked.append(sys._getframe(1).f_globals.get('__name__'))
            return real_import(name, *args, **kwargs)
        builtins.__import__ = spy
        import numpy as np
        import odl_atoms, odl_atoms.learned
        from odl_atoms.learned import (LearnedPicker, decode_maps,
                                       random_crystal)
        space = odl_atoms.SparseMeasureSpace([-8, -8], [8, 8])
        random_crystal(space, seed=0)
        decode_maps(np.zeros((4, 4)), np.zeros((2, 4, 4)))
        print('asked for torch:', sorted(set(map(str, asked))))
        try:
            LearnedPicker()
        except ImportError as exc:
            print('ImportError:', exc)
    """)
    assert lines[0] == 'asked for torch: []'
    assert lines[1].startswith('ImportError:')
    assert 'odl_atoms[learn]' in lines[1]


def test_importing_odl_atoms_imports_no_torch():
    """``import odl_atoms`` loads no torch module that ODL does not load.

    ODL 1.0 itself imports torch when it is installed (its PyTorch array
    backend, ``odl/core/space/entry_points.py``), so the check is relative
    to ``import odl`` alone: where ODL does not load torch, odl_atoms must
    not either.
    """
    count = 'print(sum(m == "torch" or m.startswith("torch.") ' \
            'for m in sys.modules))'
    [odl_only] = run_python(f'import sys, odl\n{count}')
    [ours] = run_python(f'import sys, odl_atoms, odl_atoms.learned\n{count}')
    assert ours == odl_only


# --- Coordinates, targets and decoding (NumPy only)


def test_index_coordinates_are_odl_pixel_centres():
    grid = odl.uniform_discr([-3, 1], [5, 4], (16, 6))
    points = grid.points()
    index = to_index(points, grid)
    expected = np.stack(np.meshgrid(np.arange(16), np.arange(6),
                                    indexing='ij'), -1).reshape(-1, 2)
    assert np.allclose(index, expected)
    assert np.allclose(from_index(index, grid), points)


def synthetic_maps(atoms, shape, peak=0.95):
    """Probability spread bilinearly over the 4 pixels around each atom,
    offsets from every pixel within 2 of it pointing at it (by hand)."""
    prob = np.zeros(shape)
    offsets = np.zeros((2,) + shape)
    for x in atoms:
        base = np.floor(x).astype(int)
        frac = x - base
        for di in (0, 1):
            for dj in (0, 1):
                w = ((frac[0] if di else 1 - frac[0])
                     * (frac[1] if dj else 1 - frac[1]))
                prob[base[0] + di, base[1] + dj] += peak * w
        for i in range(base[0] - 2, base[0] + 4):
            for j in range(base[1] - 2, base[1] + 4):
                offsets[:, i, j] = x - (i, j)
    return prob, offsets


def test_decode_recovers_sub_pixel_positions():
    rng = np.random.default_rng(3)
    # Atoms on a jittered grid 8 pixels apart, anywhere within their pixel.
    centres = np.stack(np.meshgrid(np.arange(6, 40, 8), np.arange(6, 30, 8),
                                   indexing='ij'), -1).reshape(-1, 2)
    atoms = centres + rng.uniform(-0.5, 0.5, centres.shape)
    prob, offsets = synthetic_maps(atoms, (46, 36))
    # Distractors: isolated weak pixels, below the decision threshold.
    prob[1, 1] = prob[44, 20] = 0.3
    found, scores = decode_maps(prob, offsets)
    assert len(found) == len(atoms)
    match = oa.match_atoms(atoms, found, tolerance=0.5)
    assert match.n_matched == len(atoms)
    assert match.max_distance < 1e-9
    assert np.allclose(scores, 0.95)
    # A lower threshold accepts the distractors; a higher one nothing.
    assert len(decode_maps(prob, offsets, threshold=0.25)[0]) == len(atoms) + 2
    assert len(decode_maps(prob, offsets, threshold=0.99)[0]) == 0


def test_decode_merges_close_peaks_and_checks_shapes():
    prob = np.zeros((10, 10))
    offsets = np.zeros((2, 10, 10))
    prob[3, 3], prob[3, 5] = 0.9, 0.8  # 2 pixels apart
    assert len(decode_maps(prob, offsets, min_distance=1.5)[0]) == 2
    found, _ = decode_maps(prob, offsets, min_distance=2.5)
    assert np.allclose(found, [[3, 3]])
    with pytest.raises(ValueError, match='offsets of shape'):
        decode_maps(prob, offsets[:1])


def test_encode_then_decode_round_trip():
    rng = np.random.default_rng(0)
    atoms = np.stack(np.meshgrid(np.arange(4, 30, 6), np.arange(4, 30, 6),
                                 indexing='ij'), -1).reshape(-1, 2)
    atoms = atoms + rng.uniform(-0.5, 0.5, atoms.shape)
    prob, offsets, mask = encode_targets(atoms, (34, 34))
    assert prob.sum() == len(atoms) and mask.sum() == 9 * len(atoms)
    found, _ = decode_maps(prob, offsets)
    assert oa.match_atoms(atoms, found, tolerance=0.5).max_distance < 1e-6


def test_point_reflection_flips_sirt_images():
    """The training augmentation: a configuration rotated by 180 degrees
    about the box centre has the SIRT image rotated by 180 degrees, for any
    angle set (here an asymmetric one), and targets whose offsets change
    sign."""
    space = oa.SparseMeasureSpace([-6, -6], [6, 6])
    atoms = random_crystal(space, seed=5)
    flipped = space.element(-atoms.positions)
    images = []
    for m in (atoms, flipped):
        measured = oa.simulate(m, np.radians([0, 35, 110]), 0.43,
                               n_detector=48)
        images.append(oa.SIRT(n_iter=50).solve(oa.Problem(
            measured.operator(), measured.element())).image)
    a, b = (np.asarray(im.data) for im in images)
    assert np.abs(a[::-1, ::-1] - b).max() < 1e-4 * a.max()
    grid = images[0].space
    p, o, m = encode_targets(to_index(atoms.positions, grid), grid.shape)
    pf, of, mf = encode_targets(to_index(flipped.positions, grid), grid.shape)
    assert np.array_equal(p[::-1, ::-1], pf)
    assert np.array_equal(m[::-1, ::-1], mf)
    assert np.allclose(-o[:, ::-1, ::-1], of, atol=1e-6)


def test_random_crystals_are_seeded_and_physical():
    space = oa.SparseMeasureSpace([-11.54, -11.54], [11.54, 11.54])
    a = 2.885
    first = random_crystal(space, a, seed=7)
    assert np.array_equal(first.positions,
                          random_crystal(space, a, seed=7).positions)
    counts = []
    for seed in range(20):
        atoms = random_crystal(space, a, seed=seed)
        counts.append(atoms.n_atoms)
        pos = atoms.positions
        assert np.all(np.abs(pos) <= 11.54 - a / 2 * (1 - 0.15) + 1e-9)
        if len(pos) > 1:
            d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
            assert d[np.triu_indices(len(pos), 1)].min() >= 0.5 * a * 0.85
    assert min(counts) >= 5 and max(counts) > 40


def test_normalised_atom_peak_is_one():
    grid = odl.uniform_discr([-3, -3], [3, 3], (20, 20))
    space = oa.SparseMeasureSpace([-3, -3], [3, 3])
    image = oa.render_atoms(space.element([[0.15, 0.15]]), grid, 0.4)
    assert normalise_image(image.data, 0.4, grid.cell_sides).max() == \
        pytest.approx(1.0, rel=1e-5)


# --- With torch


@pytest.fixture
def torch():
    torch = pytest.importorskip('torch')
    torch.set_num_threads(1)
    return torch


TINY = dict(angles=np.radians([0, 45, 90]), n_detector=32,
            box=[11.54, 11.54], n_samples=12, batch_size=4, validation=0.25,
            width=4, progress=False, device='cpu', seed=1)


def test_training_a_few_steps_lowers_the_loss(torch):
    from odl_atoms.learned import train
    model = train(n_steps=60, learning_rate=5e-3, **TINY)
    loss = np.array(model.history['loss'])
    assert loss.size == 60
    assert loss[-10:].mean() < 0.85 * loss[:5].mean()
    val = model.history['val_loss']
    assert len(val) == 10 and val[-1] < val[0]
    config = model.config
    # SIRT's pixel is a detector cell: the box's diagonal over 32 cells
    # (the 45-degree shadow); the grid covers the box in whole pixels.
    pixel = 11.54 * np.sqrt(2) / 32
    assert config['pixel_size'] == pytest.approx(pixel, rel=1e-6)
    assert config['image_shape'] == [int(np.ceil(11.54 / pixel))] * 2
    assert config['sigma'] == pytest.approx(0.15 * 2.885)


def test_training_is_seeded(torch):
    from odl_atoms.learned import train
    kwargs = dict(TINY, n_samples=6, validation=0.0)
    a = train(n_steps=5, **kwargs).history['loss']
    b = train(n_steps=5, **kwargs).history['loss']
    assert np.allclose(a, b, rtol=1e-5)


def test_save_load_round_trip_and_errors(torch, tmp_path):
    from odl_atoms.learned import load_model, train
    model = train(n_steps=3, **dict(TINY, n_samples=4, validation=0.0))
    path = model.save(tmp_path / 'm.pt')
    again = load_model(path, device='cpu')
    assert again.config == model.config
    x = np.random.default_rng(0).random((23, 23)).astype(np.float32)
    p0, o0 = model.predict(x)
    p1, o1 = again.predict(x)
    # Weights are stored as float16.
    assert np.abs(p0 - p1).max() < 1e-2 and np.abs(o0 - o1).max() < 1e-2
    with pytest.raises(FileNotFoundError, match='train one'):
        load_model(tmp_path / 'missing.pt')
    (tmp_path / 'bad.pt').write_bytes(b'not a model')
    with pytest.raises(ValueError, match='not a model file'):
        load_model(tmp_path / 'bad.pt')
    # A model whose inputs were normalised otherwise is refused.
    model.config['normalisation'] = 'density / max'
    model.save(tmp_path / 'other.pt')
    with pytest.raises(ValueError, match='normalised as'):
        load_model(tmp_path / 'other.pt')


def test_symmetrised_prediction_is_rotation_equivariant(torch):
    """Averaging over the 180-degree rotation makes the answer exactly
    equivariant: rotating the image rotates the maps and negates offsets."""
    from odl_atoms.learned import LearnedModel
    from odl_atoms.learned.training import default_training_config
    torch.manual_seed(0)
    config = dict(default_training_config(width=4), pixel_size=0.34)
    model = LearnedModel(config, device='cpu')
    x = np.random.default_rng(1).random((2, 21, 26)).astype(np.float32)
    p, o = model.predict(x)
    pr, orot = model.predict(x[:, ::-1, ::-1])
    assert p.shape == (2, 21, 26) and o.shape == (2, 2, 21, 26)
    assert np.allclose(pr, p[:, ::-1, ::-1], atol=1e-6)
    assert np.allclose(orot, -o[:, :, ::-1, ::-1], atol=1e-6)
    # Without the average, a random network is not equivariant.
    p1, _ = model.predict(x, symmetrise=False)
    p2, _ = model.predict(x[:, ::-1, ::-1], symmetrise=False)
    assert not np.allclose(p2, p1[:, ::-1, ::-1], atol=1e-6)


def test_device_choice(torch):
    from odl_atoms.learned import resolve_device
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert resolve_device().type == expected
    assert resolve_device('cpu').type == 'cpu'
    with pytest.raises(ValueError, match='torch device'):
        resolve_device('abacus')


def demo_problem(angles=(0, 45, 90), noise=0.01):
    phantom = oa.defect_phantom('vacancy')
    measured = oa.simulate(phantom.measure, np.radians(angles), 0.43,
                           n_detector=96, noise=noise, seed=0)
    return phantom, measured


def test_picker_returns_a_measure_in_the_space(torch):
    from odl_atoms.learned import LearnedPicker
    phantom, measured = demo_problem()
    op = measured.operator()
    problem = oa.Problem(op, measured.element())
    image = oa.SIRT().solve(problem).image
    picker = LearnedPicker(device='cpu')
    atoms = picker.pick(image, op.domain)
    assert isinstance(atoms, oa.SparseMeasure)
    assert atoms.space == op.domain
    assert np.all(atoms.weights == 1.0)
    assert oa.match_atoms(phantom.measure, atoms).f1 >= 0.95
    # Same call as AtomPicker, so it plugs into SIRT.
    result = oa.SIRT(picker=picker).solve(problem)
    assert np.allclose(result.measure.positions, atoms.positions)
    # Species: one allowed weight labels every atom.
    named = LearnedPicker(device='cpu', atom_weights={'Au': 1.0})
    assert set(named.pick(image, op.domain).species) == {'Au'}
    assert repr(named) == \
        "LearnedPicker(device='cpu', atom_weights={'Au': 1.0})"
    with pytest.raises(ValueError, match='2D'):
        picker.pick(image, oa.SparseMeasureSpace([-1] * 3, [1] * 3))
    with pytest.raises(TypeError, match='odl.uniform_discr'):
        picker.pick(np.asarray(image.data), op.domain)


def test_learned_sirt_is_a_solver_and_warns_on_other_problems(torch):
    from odl_atoms.learned import LearnedSIRT, learned_sirt
    phantom, measured = demo_problem()
    problem = oa.Problem(measured.operator(), measured.element())
    solver = LearnedSIRT(device='cpu')
    assert solver.sirt().n_iter == 200  # what the model was trained with
    result = solver.solve(problem)
    assert result.n_atoms == 48
    assert result.solver == repr(solver)
    # The operator is the problem's now: the repr holds the options only.
    assert repr(solver) == "LearnedSIRT(device='cpu')"
    same = learned_sirt(problem, device='cpu')
    assert np.allclose(same.measure.positions, result.measure.positions)
    # The problem is checked against the model's when it is solved.
    _, other = demo_problem(angles=(0, 60, 120))
    with pytest.warns(UserWarning, match='trained for'):
        solver.solve(oa.Problem(other.operator(), other.element()))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        solver.solve(problem)


def test_command_line_train_and_info(torch, tmp_path, capsys):
    from odl_atoms.learned.__main__ import main
    out = tmp_path / 'tiny.pt'
    assert main(['train', '--angles', '0,90', '--detector', '24', '--box',
                 '8', '--samples', '4', '--steps', '3', '--width', '4',
                 '--device', 'cpu', '-q', '-o', str(out)]) == 0
    assert out.is_file() and 'wrote' in capsys.readouterr().out
    assert main(['info', str(out)]) == 0
    text = capsys.readouterr().out
    assert 'angles (degrees): [0.0, 90.0]' in text
    assert main(['train', '--angles', '0,90', '--box', '1,2,3', '-o',
                 str(out)]) == 2
    assert '--box' in capsys.readouterr().err
