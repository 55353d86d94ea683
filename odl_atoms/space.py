"""Sparse measures: atomic configurations as weighted sums of Dirac deltas.

An atomic configuration with atoms at positions ``x_i`` inside a box ``X`` and
weights ``w_i`` is the finitely supported measure ``mu = sum_i w_i delta_{x_i}``.
Finitely supported measures on ``X`` form a real vector space: adding two
measures concatenates their atoms (atoms at the same point with the same label
merge), scaling a measure scales its weights. `SparseMeasureSpace` is that space
as an ODL `LinearSpace`; `SparseMeasure` is its element type.

Solvers that move atoms need a fixed-size parametrisation of the measures with
``n`` atoms. `SparseMeasureSpace.parameter_space` returns it as the ODL space
``ProductSpace(rn((n, d)), rn(n))`` (positions, weights), on which ODL's
operators, functionals, smooth solvers and diagnostics work unchanged.
"""

import numbers

import numpy as np
import odl
from odl.core.set.space import (
    LinearSpaceElement,
    LinearSpaceNotImplementedError,
    NumOperationParadigmSupport,
    SupportedNumOperationParadigms,
)

__all__ = ('SparseMeasureSpace', 'SparseMeasure')

#: Label of atoms whose species is not given (ASE's dummy element ``X``).
UNKNOWN_SPECIES = 'X'


def _array_repr(arr):
    """Compact, evaluable representation of a small or large array."""
    return np.array2string(np.asarray(arr), separator=', ', threshold=20,
                           edgeitems=2, precision=6, suppress_small=False)


class SparseMeasureSpace(odl.LinearSpace):

    """Space of atomic configurations (finitely supported measures) in a box.

    An element is a `SparseMeasure`: positions ``(n, d)`` inside the box, weights
    ``(n,)`` and a species label per atom, for any ``n >= 0``.

    Parameters
    ----------
    min_pt, max_pt : array-like of length d
        Lower and upper corners of the box where atoms may be, in angstrom.
        ``d`` must be 2 or 3.
    kernel_width : positive float, optional
        If given, the space gets the inner product of the measures blurred by a
        normalised Gaussian of this standard deviation,
        ``<mu, nu> = <G * mu, G * nu>_{L^2}``, and with it a norm and a
        distance. The Gaussian kernel is positive definite, so this is an honest
        inner product on finitely supported measures. Without it, the space has
        no inner product and equality is exact equality of measures.

    Notes
    -----
    **What the space claims, in the terms of** ``odl.diagnostics.SpaceTest``.
    An element is a finite list of atoms, read as a measure on the box
    times the set of species labels: atoms at exactly the same position
    with the same label are one atom (their weights add), atoms of weight
    0 are dropped, and nothing else is merged (two atoms 1e-12 apart are
    two atoms, as two distinct Dirac deltas are).

    - With ``kernel_width``: the vector-space axioms, the inner product,
      norm and distance, equality, containment and the element methods
      (``assign``, ``copy``, ``set_zero``): all of ``SpaceTest.run_tests()``
      passes. Pointwise multiplication of two elements is not claimed (a
      product of two Dirac deltas is not a measure): `multiply` raises, and
      ``SpaceTest`` reports "no vector multiplication".
    - Without ``kernel_width``: no inner product, norm or distance, so
      ``SpaceTest`` compares elements with ``==``, which is exact equality
      of measures. The axioms hold exactly in the positions and labels and
      up to floating-point rounding in the weights; two of ``SpaceTest``'s
      checks, ``a * (b * x) == (a * b) * x`` and
      ``(a + b) * x == a * x + b * x`` with ``a, b = 0.01, 0.5, ...``, see
      weights that differ in the last bit and report failures. Use
      ``kernel_width`` where a tolerant comparison is needed.

    Examples
    --------
    >>> space = SparseMeasureSpace([0, 0], [10, 10])
    >>> space
    SparseMeasureSpace([0.0, 0.0], [10.0, 10.0])
    >>> mu = space.element([[1, 2], [3, 4]], weights=[1.0, 2.0])
    >>> mu.n_atoms
    2
    >>> nu = space.element([[5, 5]])
    >>> (mu + nu).n_atoms
    3
    >>> (2 * mu).weights
    array([ 2.,  4.])
    >>> mu - mu == space.zero()
    True
    """

    def __init__(self, min_pt, max_pt, kernel_width=None):
        min_pt = np.array(min_pt, dtype=float, ndmin=1)
        max_pt = np.array(max_pt, dtype=float, ndmin=1)
        if min_pt.ndim != 1 or min_pt.shape != max_pt.shape:
            raise ValueError(
                f'`min_pt` and `max_pt` must be 1D and of equal length, got '
                f'shapes {min_pt.shape} and {max_pt.shape}')
        if min_pt.size not in (2, 3):
            raise ValueError(
                f'the box must be 2D or 3D, got {min_pt.size} coordinates; pass '
                f'e.g. min_pt=[0, 0], max_pt=[10, 10]')
        if not (np.all(np.isfinite(min_pt)) and np.all(np.isfinite(max_pt))):
            raise ValueError(f'box corners must be finite, got {min_pt}, {max_pt}')
        if np.any(max_pt <= min_pt):
            raise ValueError(
                f'`max_pt` must be larger than `min_pt` in every coordinate, '
                f'got min_pt={min_pt.tolist()}, max_pt={max_pt.tolist()}')
        if kernel_width is not None:
            kernel_width = float(kernel_width)
            if not kernel_width > 0:
                raise ValueError(
                    f'`kernel_width` must be positive, got {kernel_width}')
        super().__init__(field=odl.RealNumbers())
        self.__box = odl.IntervalProd(min_pt, max_pt)
        self.__kernel_width = kernel_width

    # --- Properties

    @property
    def box(self):
        """The box where atoms may be, an `odl.IntervalProd`."""
        return self.__box

    @property
    def min_pt(self):
        """Lower corner of the box."""
        return self.box.min_pt

    @property
    def max_pt(self):
        """Upper corner of the box."""
        return self.box.max_pt

    @property
    def ndim(self):
        """Spatial dimension ``d`` (2 or 3)."""
        return self.box.ndim

    @property
    def kernel_width(self):
        """Width of the Gaussian kernel of the inner product, or ``None``."""
        return self.__kernel_width

    @property
    def element_type(self):
        """Type of the elements, `SparseMeasure`."""
        return SparseMeasure

    @property
    def supported_num_operation_paradigms(self):
        """Both styles work; out-of-place is natural since sizes change."""
        return SupportedNumOperationParadigms(
            in_place=NumOperationParadigmSupport.SUPPORTED,
            out_of_place=NumOperationParadigmSupport.PREFERRED)

    # --- Elements

    def element(self, inp=None, weights=None, species=None, copy=None):
        """Create a `SparseMeasure` in this space.

        Parameters
        ----------
        inp : optional
            One of

            - ``None``: the empty measure (no atoms);
            - array-like of shape ``(n, d)``: atom positions;
            - a `SparseMeasure`: its atoms (they must lie in this box);
            - an element of ``parameter_space(n)`` or a pair
              ``(positions, weights)``.
        weights : array-like of shape ``(n,)`` or float, optional
            Atom weights. Default: 1 for every atom.
        species : str or sequence of str, optional
            A label per atom (chemical symbols, for example). Default: ``'X'``
            (unknown) for every atom.
        copy : bool, optional
            Ignored for new arrays, which are always copied; if ``inp`` is
            already an element of this space it is returned as is unless
            ``copy`` is true.

        Returns
        -------
        measure : `SparseMeasure`

        Raises
        ------
        ValueError
            If positions have the wrong shape, are not finite, or lie outside
            the box, or if weights/species do not match the number of atoms.

        Examples
        --------
        >>> space = SparseMeasureSpace([0, 0], [4, 4])
        >>> space.element()
        SparseMeasureSpace([0.0, 0.0], [4.0, 4.0]).element(np.zeros((0, 2)))
        >>> space.element([[1, 1]], weights=2, species='Au')
        SparseMeasureSpace([0.0, 0.0], [4.0, 4.0]).element(
            [[ 1.,  1.]], weights=[ 2.], species=['Au']
        )
        """
        if isinstance(inp, odl.DiscretizedSpaceElement):
            # What ODL hands over when an operator's adjoint lands in
            # functions (e.g. the gradient of a functional composed with
            # GaussianRayTransform): say so instead of a shape error.
            raise TypeError(
                f'{inp.space!r} holds functions, not atomic configurations: '
                f'the dual of measures is functions, so a gradient or '
                f'adjoint on measures lands there. For gradients over atoms, '
                f'use the operator on n atoms, op.parametrized(n)')
        if isinstance(inp, SparseMeasure):
            if inp.space == self and weights is None and species is None:
                return inp.copy() if copy else inp
            if weights is None:
                weights = inp.weights
            if species is None:
                species = inp.species
            inp = inp.positions
        elif isinstance(inp, odl.core.space.pspace.ProductSpaceElement) or (
                isinstance(inp, tuple) and len(inp) == 2):
            if weights is not None:
                raise TypeError(
                    'weights given twice: in the (positions, weights) pair and '
                    'as `weights`')
            inp, weights = inp
        if inp is None:
            positions = np.zeros((0, self.ndim))
        else:
            positions = _as_numpy(inp, 'positions')
        return SparseMeasure(self, positions, weights, species)

    def zero(self):
        """Return the empty measure (no atoms)."""
        return self.element()

    @property
    def examples(self):
        """Example measures: empty, one atom, random configurations."""
        rng = np.random.default_rng(1)
        extent = self.max_pt - self.min_pt
        yield ('Zero', self.zero())  # the name ODL's diagnostics expect
        yield ('Centre atom', self.element([self.box.mid_pt]))
        for n in (3, 20):
            pos = self.min_pt + extent * rng.uniform(0.1, 0.9, (n, self.ndim))
            yield (f'{n} random atoms',
                   self.element(pos, weights=rng.uniform(0.5, 2, n)))

    def multiply(self, x1, x2, out=None):
        """Raise: the pointwise product of two measures is not defined.

        ODL's `SpaceTest` calls this to find out whether the space has a
        vector multiplication; it has none.
        """
        raise LinearSpaceNotImplementedError(
            'the pointwise product of two measures is not defined; scale a '
            'measure by a real number instead (2.0 * mu)')

    def __contains__(self, other):
        """Return ``other in self``: a `SparseMeasure` of an equal space."""
        return isinstance(other, SparseMeasure) and other.space == self

    # --- Fixed-size parametrisation

    def parameter_space(self, n_atoms):
        """Return the fixed-size ODL space of ``n`` positions and weights.

        Parameters
        ----------
        n_atoms : int
            Number of atoms.

        Returns
        -------
        pspace : `odl.ProductSpace`
            ``ProductSpace(rn((n, d)), rn(n))``, float64.

        Examples
        --------
        >>> SparseMeasureSpace([0, 0], [1, 1]).parameter_space(3)
        ProductSpace(rn((3, 2)), rn(3))
        """
        n_atoms = _check_n_atoms(n_atoms)
        return odl.ProductSpace(odl.rn((n_atoms, self.ndim)), odl.rn(n_atoms))

    def from_parameters(self, params, species=None):
        """Return the measure with given positions and weights.

        Parameters
        ----------
        params : `odl.ProductSpaceElement` or pair of array-likes
            ``(positions, weights)``, e.g. an element of `parameter_space`.
        species : str or sequence of str, optional
            Labels of the atoms.
        """
        positions, weights = params
        return self.element(_as_numpy(positions, 'positions'),
                            weights=_as_numpy(weights, 'weights'),
                            species=species)

    # --- Linear-space arithmetic

    def _lincomb(self, a, x1, b, x2, out):
        """``out = a * x1 + b * x2``: concatenate atoms, scale weights."""
        positions = np.concatenate([x1.positions, x2.positions])
        weights = np.concatenate([float(a) * x1.weights, float(b) * x2.weights])
        species = np.concatenate([x1.species, x2.species])
        if out is None:
            out = SparseMeasure(self, np.zeros((0, self.ndim)))
        out._set(*_canonical(positions, weights, species))
        return out

    def _inner(self, x1, x2):
        """Inner product of the Gaussian-blurred measures."""
        if self.kernel_width is None:
            raise LinearSpaceNotImplementedError(
                f'{self!r} has no inner product; create the space with '
                f'`kernel_width=...` to compare measures through their blurred '
                f'densities')
        s2 = self.kernel_width ** 2
        if x1.n_atoms == 0 or x2.n_atoms == 0:
            return 0.0
        diff = x1.positions[:, None, :] - x2.positions[None, :, :]
        kernel = np.exp(-np.sum(diff ** 2, axis=-1) / (4 * s2))
        kernel /= (4 * np.pi * s2) ** (self.ndim / 2)
        return float(x1.weights @ kernel @ x2.weights)

    def _elementwise_num_operation(self, operation, x1, x2=None, out=None,
                                   namespace=None, **kwargs):
        """Arithmetic that makes sense for measures: ``+``, ``-``, scalar ``*`` and ``/``."""
        if operation in ('negative', 'positive') and x2 is None:
            result = self.lincomb(-1.0 if operation == 'negative' else 1.0, x1)
        elif operation in ('add', 'subtract') and x1 in self and x2 in self:
            result = self.lincomb(1.0, x1, 1.0 if operation == 'add' else -1.0,
                                  x2)
        elif operation == 'multiply' and _is_scalar(x2) and x1 in self:
            result = self.lincomb(float(x2), x1)
        elif operation == 'multiply' and _is_scalar(x1) and x2 in self:
            result = self.lincomb(float(x1), x2)
        elif operation == 'divide' and _is_scalar(x2) and x1 in self:
            result = self.lincomb(1.0 / float(x2), x1)
        else:
            raise TypeError(
                f'sparse measures support +, - with measures of the same space '
                f'and *, / with real scalars; got {operation!r} with '
                f'{type(x1).__name__} and {type(x2).__name__}')
        if out is None:
            return result
        out.assign(result)
        return out

    def _element_reduction(self, operation, x, **kwargs):
        raise TypeError(
            f'reductions such as {operation!r} are not defined for measures; '
            f'use the `positions` and `weights` arrays')

    # --- Comparison and printing

    def __eq__(self, other):
        if other is self:
            return True
        return (type(other) is type(self)
                and self.box == other.box
                and self.kernel_width == other.kernel_width)

    def __hash__(self):
        return hash((type(self), self.box, self.kernel_width))

    def __repr__(self):
        args = f'{self.min_pt.tolist()}, {self.max_pt.tolist()}'
        if self.kernel_width is not None:
            args += f', kernel_width={self.kernel_width!r}'
        return f'{type(self).__name__}({args})'

    __str__ = __repr__


class SparseMeasure(LinearSpaceElement):

    """An atomic configuration: ``sum_i w_i delta_{x_i}`` in a box.

    Create instances with `SparseMeasureSpace.element`. The arrays are exposed
    read-only, so that a measure cannot silently leave its box; build a new
    measure (``space.element(new_positions, weights=...)``) to change it.

    Attributes
    ----------
    positions : numpy.ndarray, shape ``(n, d)``
    weights : numpy.ndarray, shape ``(n,)``
    species : numpy.ndarray of str, shape ``(n,)``
    """

    def __init__(self, space, positions, weights=None, species=None):
        super().__init__(space)
        self._set(*_validated(space, positions, weights, species))

    def _set(self, positions, weights, species):
        for arr in (positions, weights, species):
            arr.flags.writeable = False
        self.__positions = positions
        self.__weights = weights
        self.__species = species

    # --- Data

    @property
    def positions(self):
        """Atom positions, read-only array of shape ``(n, d)``."""
        return self.__positions

    @property
    def weights(self):
        """Atom weights, read-only array of shape ``(n,)``."""
        return self.__weights

    @property
    def species(self):
        """Atom labels, read-only array of str of shape ``(n,)``."""
        return self.__species

    @property
    def n_atoms(self):
        """Number of atoms."""
        return self.__weights.shape[0]

    @property
    def ndim(self):
        """Spatial dimension."""
        return self.space.ndim

    def __len__(self):
        return self.n_atoms

    def __getitem__(self, index):
        """Return the sub-measure of the selected atoms (slice, mask or indices).

        Examples
        --------
        >>> space = SparseMeasureSpace([0, 0], [4, 4])
        >>> mu = space.element([[1, 1], [2, 2], [3, 3]], weights=[1, 2, 3])
        >>> mu[mu.weights > 1].positions
        array([[ 2.,  2.],
               [ 3.,  3.]])
        """
        if isinstance(index, numbers.Integral):
            index = slice(index, index + 1 if index != -1 else None)
        return SparseMeasure(self.space, self.positions[index],
                             self.weights[index], self.species[index])

    # --- Conversions

    def to_parameters(self):
        """Return ``(positions, weights)`` as an element of the parameter space.

        Examples
        --------
        >>> space = SparseMeasureSpace([0, 0], [4, 4])
        >>> p = space.element([[1, 2]], weights=3).to_parameters()
        >>> p.space
        ProductSpace(rn((1, 2)), rn(1))
        >>> space.from_parameters(p) == space.element([[1, 2]], weights=3)
        True
        """
        pspace = self.space.parameter_space(self.n_atoms)
        return pspace.element([self.positions.copy(), self.weights.copy()])

    def to_ase(self):
        """Return the configuration as `ase.Atoms` (see `odl_atoms.to_ase`).

        Positions (2D ones at ``z = 0``), chemical symbols from the species
        labels, the per-atom array ``'weights'`` and the box in
        ``atoms.info`` (``'box_min'``, ``'box_max'``); the cell is the box,
        not periodic. `odl_atoms.from_ase` reads all of it back.
        """
        # Here rather than in odl_atoms.atoms, which builds measures from
        # ase.Atoms and so imports this module.
        import ase

        positions = np.zeros((self.n_atoms, 3))
        positions[:, :self.ndim] = self.positions
        extent = np.zeros(3)
        extent[:self.ndim] = self.space.max_pt - self.space.min_pt
        atoms = ase.Atoms(symbols=list(self.species), positions=positions,
                          cell=np.diag(extent), pbc=False)
        atoms.set_array('weights', np.array(self.weights))
        atoms.info['box_min'] = np.array(self.space.min_pt)
        atoms.info['box_max'] = np.array(self.space.max_pt)
        return atoms

    # --- LinearSpaceElement interface

    def _assign(self, other, avoid_deep_copy=False):
        self._set(other.positions.copy(), other.weights.copy(),
                  other.species.copy())

    def copy(self):
        """Return a copy of this measure."""
        return SparseMeasure(self.space, self.positions, self.weights,
                             self.species)

    def __eq__(self, other):
        """Equality as measures: same atoms up to order (merged duplicates)."""
        if other is self:
            return True
        if not isinstance(other, SparseMeasure) or other.space != self.space:
            return False
        a = _sorted_atoms(*_canonical(self.positions, self.weights,
                                      self.species))
        b = _sorted_atoms(*_canonical(other.positions, other.weights,
                                      other.species))
        return all(np.array_equal(u, v) for u, v in zip(a, b))

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None

    def __repr__(self):
        space = repr(self.space)
        if self.n_atoms == 0:
            return f'{space}.element(np.zeros((0, {self.ndim})))'
        parts = [_array_repr(self.positions)]
        if not np.all(self.weights == 1):
            parts.append(f'weights={_array_repr(self.weights)}')
        if not np.all(self.species == UNKNOWN_SPECIES):
            labels = self.species
            if labels.size > 20:
                parts.append(f'species=[{labels[0]!r}, ..., {labels[-1]!r}]')
            else:
                parts.append(f'species={[str(s) for s in labels]}')
        inner = ', '.join(parts)
        return f'{space}.element(\n    {inner}\n)'

    def __str__(self):
        return (f'SparseMeasure with {self.n_atoms} atom(s) in '
                f'{self.space.box!r}')


# --- Helpers


def _is_scalar(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_numpy(value, name):
    """Turn array-likes and ODL elements into a float64 NumPy array."""
    if isinstance(value, odl.core.set.space.LinearSpaceElement) and hasattr(
            value, 'data'):
        value = value.data
    try:
        return np.array(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'`{name}` must be a real array, got {value!r}') from exc


def _check_n_atoms(n_atoms):
    if not isinstance(n_atoms, numbers.Integral) or n_atoms < 0:
        raise ValueError(f'number of atoms must be an integer >= 0, got {n_atoms!r}')
    return int(n_atoms)


def _validated(space, positions, weights, species):
    """Check and copy the arrays of a new measure; errors say what to fix."""
    positions = np.array(positions, dtype=float)
    d = space.ndim
    if positions.ndim == 1 and positions.size == d:
        positions = positions[None, :]
    if positions.ndim != 2 or positions.shape[1] != d:
        raise ValueError(
            f'positions must have shape (n, {d}) for this {d}D space, got shape '
            f'{positions.shape}')
    n = positions.shape[0]
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
        raise ValueError(
            f'positions must be finite; atom(s) {bad[:5].tolist()} have NaN or '
            f'inf coordinates')
    outside = ~np.all((positions >= space.min_pt) & (positions <= space.max_pt),
                      axis=1)
    if np.any(outside):
        idx = np.flatnonzero(outside)
        raise ValueError(
            f'{idx.size} atom(s) lie outside the box [{space.min_pt.tolist()}, '
            f'{space.max_pt.tolist()}], e.g. atom {idx[0]} at '
            f'{positions[idx[0]].tolist()}; enlarge the box or drop those atoms')

    if weights is None:
        weights = np.ones(n)
    else:
        weights = np.array(weights, dtype=float)
        if weights.ndim == 0:
            weights = np.full(n, float(weights))
    if weights.shape != (n,):
        raise ValueError(
            f'weights must have shape ({n},) for {n} atom(s), got shape '
            f'{weights.shape}')
    if not np.all(np.isfinite(weights)):
        raise ValueError('weights must be finite, got NaN or inf')

    if species is None:
        species = np.full(n, UNKNOWN_SPECIES)
    elif isinstance(species, str):
        species = np.full(n, species)
    else:
        species = np.array(species, dtype=str)
        if species.shape != (n,):
            raise ValueError(
                f'species must be a str or have shape ({n},), got shape '
                f'{species.shape}')
    return positions, weights, species.astype(str)


def _canonical(positions, weights, species):
    """Merge atoms with equal position and label, drop zero weights.

    First occurrences keep their order, so that atom indices stay stable.
    """
    if positions.shape[0] > 1:
        keys = np.rec.fromarrays(list(positions.T) + [species])
        _, first, inverse = np.unique(keys, return_index=True,
                                      return_inverse=True)
        if first.size < positions.shape[0]:
            order = np.argsort(first)
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            merged = np.bincount(rank[inverse.ravel()], weights=weights,
                                 minlength=first.size)
            positions = positions[first[order]]
            species = species[first[order]]
            weights = merged
    keep = weights != 0
    return positions[keep].copy(), weights[keep].copy(), species[keep].copy()


def _sorted_atoms(positions, weights, species):
    """Atoms in lexicographic order, for order-independent comparison."""
    order = np.lexsort(tuple(positions.T[::-1]) + (weights, species))
    return positions[order], weights[order], species[order]
