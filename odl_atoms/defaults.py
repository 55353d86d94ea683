"""Default values shared by the library and the command line.

This module imports nothing heavy (no ODL, no SciPy), so that the command
line can show these defaults, and offer the built-in phantoms by name, in
its help without loading the toolkit.
"""

__all__ = ('DEFAULT_ALPHA', 'DISCREPANCY_TAU', 'DEFAULT_SEED',
           'DEFAULT_SIGMA', 'DEFAULT_N_DETECTOR', 'DEFAULT_GRID_PER_SIGMA_3D',
           'PHANTOM_NAMES_2D', 'NANOPARTICLE_SHAPES', 'PHANTOM_NAMES')
# LATTICE_RESIDUAL, LATTICE_TIE, SPLIT_TRIGGER, SPLIT_RESIDUAL and
# LATTICE_NAMES are not (yet) in the package's export table
# (odl_atoms/__init__.py); import them from here.

#: Default dimensionless energy weight (see `odl_atoms.objective`): small
#: enough not to distort a lattice that is not the potential's minimum, large
#: enough to rule out the many atom arrangements that fit 2-3 projections
#: equally well.
DEFAULT_ALPHA = 1e-3

#: Morozov's safety factor ``tau`` of the discrepancy principle: an answer is
#: accepted while its data residual is at most ``tau`` times the expected
#: noise norm (`odl_atoms.parameter_choice`).
DISCREPANCY_TAU = 1.1

#: Seed of everything random when none is given (`odl_atoms.reconstruct`
#: and the command line alike, so that both give the same answer).
DEFAULT_SEED = 0

#: How many of ADCG's starts continue with the escape moves in 2D (the best
#: after a search without them; `odl_atoms.ADCG`'s ``escape_starts='auto'``).
#: 2, not 1: the best start before escapes is often not the one that ends
#: best. Measured on hexagonal crystals (``benchmarks/zone_axes.py
#: --hexagonal``, the 12 runs where the defaults lost to every start told the
#: lattice): a single lattice start with every atom in place stopped at an
#: objective of 0.30 before escapes, the split start at -0.096 with 4 atoms
#: wrong, and only the split start got the escapes (F1 0.92; with both:
#: exact, -0.109). 2 made 7 of the 12 exact, every start with escapes 8.
#: In 3D one (`ESCAPE_STARTS_3D`): there the escapes are most of a search's
#: time (72-85 % at 145-343 atoms) and no 3D case was measured to need more.
ESCAPE_STARTS = 2

#: ``escape_starts='auto'`` in 3D.
ESCAPE_STARTS_3D = 1

#: How many starts continue with the escape moves when `odl_atoms.reconstruct`
#: (``lattice='auto'``) explains 2D data by two domains of a lattice (a grain
#: boundary, an edge dislocation): its three lattice starts, not
#: `ESCAPE_STARTS`. Their objectives before the escapes do not rank them
#: there: measured on hexagonal crystals at generic 3-angle sets (``python
#: benchmarks/zone_axes.py --hexagonal``), the split start had the most atoms
#: right (F1 0.978 for an edge dislocation, 0.918 for a displaced crystal)
#: but the highest objective of the three (its seam lacks atoms until the
#: escape moves regrow them), so it did not continue; every start
#: continuing made both exact, and a grain boundary whose 2 x 2 patch start
#: was third (see doc/benchmarks.md, hexagonal crystals).
ESCAPE_STARTS_SPLIT = 3

#: Default Gaussian std of an atom (angstrom) of simulated data: 0.15 of
#: gold's nearest-neighbour distance (thermal motion plus the microscope's
#: blur). ``odl-atoms simulate`` and `odl_atoms.sweep.SweepTask` use it.
DEFAULT_SIGMA = 0.43

#: Default number of detector cells of the built-in example (``odl-atoms
#: demo``) and of `odl_atoms.sweep.SweepTask`.
DEFAULT_N_DETECTOR = 96

#: ADCG's candidate grid spacing in 3D, in units of sigma, when
#: `odl_atoms.reconstruct` chooses it. ADCG's own default (sigma) scores
#: ~33 000 candidates per addition for a 19-atom octahedron and took 28 s
#: (41 s with the r_min estimate); 2 sigma found the same atoms in 4 s:
#: candidates are refined to the local maximum of the correlation before
#: they are added, so the grid only needs to land near each atom.
DEFAULT_GRID_PER_SIGMA_3D = 2.0

#: Names of the 2D defect phantoms (`odl_atoms.defect_phantom`).
PHANTOM_NAMES_2D = ('perfect', 'vacancy', 'interstitial', 'substitution',
                    'edge_dislocation', 'grain_boundary', 'displaced')

#: Shapes of the 3D nanoparticle phantoms (`odl_atoms.nanoparticle`).
NANOPARTICLE_SHAPES = ('octahedron', 'decahedron', 'icosahedron')

#: Every built-in phantom by name: the 2D defects, the nanoparticles and the
#: 3D ``'slab'`` (`odl_atoms.fcc_slab`), as the command line offers them.
PHANTOM_NAMES = PHANTOM_NAMES_2D + NANOPARTICLE_SHAPES + ('slab',)

#: ``lattice='auto'`` (`odl_atoms.reconstruct`, ``odl-atoms reconstruct``)
#: starts from a crystal lattice only when the best-fitting named lattice
#: leaves at most this fraction of the data's energy (``0.5 c ||y||^2``)
#: unexplained. Measured on 7 x 7 crystals with a defect (0/60/120,
#: 0/45/90, 0/90 and generic 3-angle sets, noise 0 and 1 %): at most 4.1 %
#: (an edge dislocation, which a single lattice cannot fit); amorphous sets
#: of 40 atoms with a minimum distance: 5.9 % and more.
LATTICE_RESIDUAL = 0.05

#: In 2D, ``lattice='auto'`` also fits two domains of each lattice that meet
#: at a line (`odl_atoms.solvers.starts.fit_split_lattice`: a grain
#: boundary, an edge dislocation) when the best single lattice leaves more
#: than this fraction unexplained (benchmarks/results/lattice_choice.md, 7 x
#: 7 crystals at zone-axis and generic sets: a vacancy or an interstitial at
#: most 0.53 %, a displaced lattice 0.55-2.38 %, edge dislocations
#: 1.2-4.5 %, grain boundaries up to 9.8 %). Two domains of a displaced
#: lattice are one lattice again (the same spacing to 0.2 %).
SPLIT_TRIGGER = 0.02

#: ... and takes the two-domain fit that leaves the least unexplained, if
#: at most this fraction. Measured (lattice_choice.md) on 7 x 7 crystals at
#: 0/90, 0/45/90, 0/60/120 and three generic 3-angle sets, noise 0 and 1 %:
#: grain boundaries 0-2.1 %, edge dislocations 0.5-1.7 %; 30 amorphous sets
#: of 30-40 atoms with a minimum distance of 2.5-2.9 A: at 0/60/120 and the
#: generic sets 3.35 % and more (none explained), but at 0/90 and 0/45/90
#: 4 of 12 are explained by a hexagonal lattice anyway (single fits
#: 2.1-3.7 %, within `LATTICE_RESIDUAL`): two or three zone-axis
#: projections do not tell 40 random atoms from a crystal.
SPLIT_RESIDUAL = 0.025

#: Lattice fits whose misfits differ by less than this fraction of the
#: data's energy explain the data equally: the crystal's own lattice (its
#: occupied sites nearest neighbours) is taken among them. Measured (1 %
#: noise): a simple cubic particle left 0.01 % to both the sc and the bcc
#: fit; the runner-up of a real choice is further away (square against
#: hexagonal crystals: > 8 %; fcc against bcc particles: > 20 %).
LATTICE_TIE = 0.005

#: ``lattice='auto'`` does not take a rectangular, centred rectangular or
#: honeycomb lattice whose occupied sites are more than this many spacings
#: from their nearest neighbours (median): a sparse subset of a fine
#: lattice, not its crystal. Measured: crystals of these lattices 1.0;
#: a honeycomb fit of 1.38 A to 40 random atoms >= 2.5 A apart at 0/90
#: degrees (1.2 % left unexplained) 1.73, a rectangular one 1.40.
#: (`odl_atoms.solvers.starts.fit_lattice` refits at this ratio already,
#: and keeps the finer fit when it explains more.)
LATTICE_STRETCH = 1.3

#: The named 2D lattices, of the phantoms (`odl_atoms.phantoms`) and of the
#: lattice starts (`odl_atoms.solvers.starts`): the five Bravais lattices
#: but the oblique one - square, hexagonal (triangular), ``'rectangular'``
#: and ``'centred_rectangular'`` (a rectangular cell with an atom at its
#: centre: the columns of fcc and bcc crystals seen down [110]) - and
#: ``'honeycomb'`` (graphene: a hexagonal lattice of ``sqrt(3)`` spacings
#: with two atoms per cell).
LATTICES_2D = ('square', 'hexagonal', 'rectangular', 'centred_rectangular',
               'honeycomb')

#: The named lattices of ``lattice=`` / ``--lattice``: 2D ones, then 3D
#: (cubic) ones (`odl_atoms.solvers.starts.LATTICES_BY_NDIM`).
LATTICE_NAMES = LATTICES_2D + ('fcc', 'bcc', 'sc')
