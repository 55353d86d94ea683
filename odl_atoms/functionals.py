"""Physical priors on atomic configurations as ODL functionals.

`LennardJones` is the Lennard-Jones energy ``V(x)`` of a configuration of
atoms, the physical prior of the reconstruction objective::

    ||R(mu) - y||^2 + alpha * V(x)

It is an `odl.functionals.Functional` with a gradient, so it composes with
ODL's functionals, operators and smooth solvers::

    objective = L2NormSquared(Y).translated(y) @ forward_op + alpha * lj

Its domain is either the positions space ``rn((n, d))`` or the parameter space
``ProductSpace(rn((n, d)), rn(n))`` (positions, weights) of
`odl_atoms.SparseMeasureSpace.parameter_space`. Cut-off conventions follow
`ase.calculators.lj.LennardJones`, which therefore serves as an independent
reference.
"""

import numpy as np
import odl
from odl.core.space.base_tensors import TensorSpace
from scipy.spatial import cKDTree

from odl_atoms import kernels

__all__ = ('LennardJones',)

#: Ratio of the equilibrium distance to ``sigma``: ``r_min = 2**(1/6) sigma``.
R_MIN_OVER_SIGMA = 2.0 ** (1.0 / 6.0)

#: Default cut-off radius in units of ``sigma`` (ASE's default ``rc``).
DEFAULT_CUTOFF = 3.0

#: Default smooth-cutoff onset in units of the cut-off (ASE's default ``ro``).
DEFAULT_ONSET = 0.66

#: Default inner core radius in units of ``sigma``; see `LennardJones` Notes.
DEFAULT_CORE_RADIUS = 0.8

#: Crystal structures whose nearest-neighbour distance ``from_element`` knows,
#: as a function of ASE's reference state (lattice constant ``a``, ``c/a``).
_NN_DISTANCE = {
    'fcc': lambda ref: ref['a'] / np.sqrt(2.0),
    'bcc': lambda ref: ref['a'] * np.sqrt(3.0) / 2.0,
    'sc': lambda ref: ref['a'],
    'diamond': lambda ref: ref['a'] * np.sqrt(3.0) / 4.0,
    # In-plane neighbours at a, out-of-plane at sqrt(a^2 / 3 + c^2 / 4).
    'hcp': lambda ref: ref['a'] * min(
        1.0, np.sqrt(1.0 / 3.0 + ref['c/a'] ** 2 / 4.0)),
}


def _positive_float(value, name, hint=''):
    """Return ``float(value)`` or raise a ValueError that says what to pass."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f'`{name}` must be a real number, got {value!r}') \
            from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f'`{name}` must be a positive finite number, got '
                         f'{value!r}{hint}')
    return value


def _positions_space(space):
    """Return the positions space of a valid LJ domain, else raise TypeError."""
    def is_positions_space(spc):
        return (isinstance(spc, TensorSpace) and spc.is_real
                and len(spc.shape) == 2 and spc.shape[1] in (2, 3))

    if is_positions_space(space):
        return space
    if (isinstance(space, odl.ProductSpace) and len(space) == 2
            and is_positions_space(space[0])
            and isinstance(space[1], TensorSpace) and space[1].is_real
            and space[1].shape == space[0].shape[:1]):
        return space[0]
    raise TypeError(
        f'`space` must be the positions space `odl.rn((n, d))` with d = 2 or '
        f'3, or the parameter space `odl.ProductSpace(odl.rn((n, d)), '
        f'odl.rn(n))` (positions, weights), e.g. from '
        f'`SparseMeasureSpace.parameter_space(n)`; got {space!r}')


class LennardJones(odl.functionals.Functional):

    r"""Lennard-Jones energy of an atomic configuration.

    The energy of atoms at positions ``x_1, ..., x_n`` is the sum over pairs
    ``V(x) = sum_{i<j} phi(|x_i - x_j|)`` of a pair energy ``phi`` built from
    the Lennard-Jones potential

    .. math::
        e(r) = 4 \varepsilon \left[ (\sigma / r)^{12} - (\sigma / r)^6 \right],

    which has its minimum ``-epsilon`` at ``r_min = 2**(1/6) sigma``. Pairs
    farther apart than ``cutoff`` do not interact, and pairs closer than
    ``core_radius`` see a bounded quadratic core (see Notes).

    Parameters
    ----------
    space : `odl.TensorSpace` or `odl.ProductSpace`
        Domain: the positions space ``odl.rn((n, d))`` (d = 2 or 3) or the
        parameter space ``odl.ProductSpace(odl.rn((n, d)), odl.rn(n))`` of
        positions and weights. On the parameter space the energy depends on
        the positions only and the weight part of the gradient is zero.
    epsilon : positive float, optional
        Depth of the potential well.
    sigma : positive float, optional
        Distance at which ``e`` vanishes, in the units of the positions.
    cutoff : positive float, optional
        Cut-off radius ``rc``; pairs at distance ``>= rc`` do not interact.
        Default: ``3 * sigma``, as in ASE.
    smooth : bool, optional
        How the energy is brought to zero at the cut-off, as in ASE:

        - ``False``: the pair energy is shifted, ``e(r) - e(rc)``, so that it
          is continuous at ``rc``; the forces are not shifted and jump to
          zero at ``rc``.
        - ``True``: the pair energy is multiplied by a cut-off function that
          falls from 1 at ``onset`` to 0 at ``rc`` such that energy and
          forces are continuous.
    onset : float, optional
        Onset ``ro`` of the smooth cut-off, ``0 <= onset < cutoff``. Only
        with ``smooth=True``. Default: ``0.66 * cutoff``, as in ASE.
    core_radius : positive float, optional
        Inner core radius ``r_c0 < r_min`` below which the pair energy is
        replaced by a bounded quadratic (see Notes). Default:
        ``0.8 * sigma``.

    See Also
    --------
    ase.calculators.lj.LennardJones : the same potential as an ASE calculator.
    odl_atoms.SparseMeasureSpace.parameter_space : the parameter space.

    Notes
    -----
    **Cut-off.** With ``g(r) = e(r) - e(rc)`` (``smooth=False``) or
    ``g(r) = f_c(r) e(r)`` (``smooth=True``), where, as in ASE (and JAX-MD,
    HOOMD-blue), the cut-off function in terms of squared distances is

    .. math::
        f_c = \frac{(r_c^2 - r^2)^2 (r_c^2 + 2 r^2 - 3 r_o^2)}
                   {(r_c^2 - r_o^2)^3}, \quad r_o \le r < r_c,

    (1 below ``ro``, 0 from ``rc`` on), the pair energy is ``phi(r) = g(r)``
    for ``r_c0 <= r < rc`` and 0 for ``r >= rc``. Outside the core, energies
    and forces equal those of ``ase.calculators.lj.LennardJones(
    sigma=sigma, epsilon=epsilon, rc=cutoff, ro=onset, smooth=smooth)``.

    **Inner core.** ``e(r)`` grows like ``r^-12``, so two atoms that come
    close during a reconstruction (a new atom placed next to an old one, a
    large gradient step) would give huge energies and gradients, and
    coincident atoms ``inf`` or NaN. Like the potential of Ganguly et al.,
    which also has an inner cut-off radius, this functional replaces the pair
    energy below the core radius ``r_c0`` by its ``C^1`` continuation

    .. math::
        \phi(r) = A - B r^2, \quad r < r_{c0},\qquad
        B = -\frac{g'(r_{c0})}{2 r_{c0}} > 0, \quad
        A = g(r_{c0}) + B r_{c0}^2,

    matched in value and slope at ``r_c0``. It is repulsive (decreasing in
    ``r``), finite at ``r = 0``, where its gradient is zero, so two atoms at
    exactly the same point have a finite energy ``A`` and feel no force from
    each other; the Hessian stays bounded, which keeps gradient steps and
    quasi-Newton updates sane.

    The default ``r_c0 = 0.8 sigma`` leaves the physics untouched: at
    ``0.8 sigma`` the pair energy is already ``e = 43 epsilon`` (and
    ``6.6 epsilon`` at ``0.9 sigma``), so distances below it are never
    visited by a relaxed or thermally vibrating crystal (``kT`` is a fraction
    of ``epsilon``), and it is well below the minimum at ``r_min = 1.12
    sigma``, whose neighbourhood the prior is for. The core still forms a
    barrier of ``A = 346 epsilon`` at ``r = 0`` and pushes apart with force
    up to ``759 epsilon / sigma``, while the pure potential would reach
    ``3.9 * 10^5 epsilon / sigma`` at ``0.5 sigma`` (infinite at 0). A
    larger ``core_radius`` (up to ``r_min``) gives a softer, better
    conditioned prior; a smaller one a harder core.

    **Cost.** Energy and gradient cost ``O(n)`` for a crystal
    (``O(n * neighbours)``). With numba (the default backend,
    `odl_atoms.kernels.backend`) both come from one compiled pass: a sum
    over all pairs for up to 100 atoms, a cell list above. The NumPy
    path (and `removal_energies`) finds neighbours with
    `scipy.spatial.cKDTree` and caches the pair list and pair terms of the
    last point, so that the gradient at the point where the energy was just
    evaluated (as in a line search) only scatters the cached terms.

    References
    ----------
    Ganguly, P. S., Lucka, F., Hupkes, H. J., and Batenburg, K. J. *Atomic
    super-resolution tomography*. arXiv:2002.00710.

    Examples
    --------
    Two atoms at the equilibrium distance have energy ``-epsilon``, up to the
    shift ``-e(rc)`` that makes the pair energy vanish at the cut-off:

    >>> space = odl.rn((2, 3))
    >>> lj = LennardJones(space, epsilon=2.0)
    >>> lj.r_min
    1.122462...
    >>> x = space.element([[0, 0, 0], [lj.r_min, 0, 0]])
    >>> lj(x)
    -1.98904...
    >>> abs(lj.pair_energy(lj.cutoff - 1e-9)) < 1e-9  # continuous at rc
    True

    With the smooth cut-off there is no shift (``r_min < onset``), and at the
    minimum the gradient vanishes:

    >>> lj_smooth = LennardJones(space, epsilon=2.0, smooth=True)
    >>> lj_smooth(x)
    -2.0
    >>> abs(lj_smooth.gradient(x).data).max() < 1e-12
    True

    Coincident atoms have a finite energy, ``A = 346.4 epsilon`` (plus the
    shift), and no force:

    >>> lj(space.zero())
    692.847...
    >>> lj.gradient(space.zero())
    rn((2, 3)).element(
        [[ 0.,  0.,  0.],
         [ 0.,  0.,  0.]]
    )

    On the parameter space of a measure space the weights are ignored, and
    the energy composes with other ODL functionals:

    >>> pspace = odl.ProductSpace(odl.rn((2, 2)), odl.rn(2))
    >>> lj = LennardJones.from_r_min(pspace, r_min=2.5)
    >>> p = pspace.element([[[0, 0], [2.5, 0]], [1.0, 3.0]])
    >>> lj(p) == lj(pspace.element([[[0, 0], [2.5, 0]], [0.0, 0.0]]))
    True
    >>> objective = odl.functionals.L2NormSquared(pspace) + 0.5 * lj
    >>> objective.gradient(p)[1]
    rn(2).element([ 2.,  6.])
    """

    def __init__(self, space, epsilon=1.0, sigma=1.0, cutoff=None,
                 smooth=False, onset=None, core_radius=None):
        positions_space = _positions_space(space)
        super().__init__(space=space, linear=False)
        self.__positions_space = positions_space
        self.__args = dict(epsilon=epsilon, sigma=sigma, cutoff=cutoff,
                           smooth=smooth, onset=onset,
                           core_radius=core_radius)

        self.__epsilon = _positive_float(epsilon, 'epsilon')
        self.__sigma = _positive_float(sigma, 'sigma')
        if cutoff is None:
            cutoff = DEFAULT_CUTOFF * self.__sigma
        self.__cutoff = _positive_float(cutoff, 'cutoff')
        if not isinstance(smooth, (bool, np.bool_)):
            raise TypeError(f'`smooth` must be True or False, got {smooth!r}')
        self.__smooth = bool(smooth)

        if onset is not None and not self.__smooth:
            raise ValueError(
                f'`onset` ({onset!r}) is only used by the smooth cut-off; pass '
                f'`smooth=True` as well, or drop `onset`')
        if self.__smooth:
            if onset is None:
                onset = DEFAULT_ONSET * self.__cutoff
            try:
                onset = float(onset)
            except (TypeError, ValueError):
                raise TypeError(
                    f'`onset` must be a real number, got {onset!r}') from None
            if not 0 <= onset < self.__cutoff:
                raise ValueError(
                    f'`onset` must satisfy 0 <= onset < cutoff = '
                    f'{self.__cutoff!r}, got {onset!r}; leave it out for '
                    f'ASE\'s default 0.66 * cutoff')
        self.__onset = onset

        if core_radius is None:
            core_radius = DEFAULT_CORE_RADIUS * self.__sigma
        core_radius = _positive_float(core_radius, 'core_radius')
        if core_radius >= self.r_min:
            raise ValueError(
                f'`core_radius` must be smaller than the equilibrium distance '
                f'r_min = 2**(1/6) * sigma = {self.r_min!r} so that the '
                f'minimum of the potential is unchanged, got {core_radius!r}; '
                f'the default is {DEFAULT_CORE_RADIUS} * sigma')
        if core_radius >= self.__cutoff:
            raise ValueError(
                f'`core_radius` ({core_radius!r}) must be smaller than '
                f'`cutoff` ({self.__cutoff!r}); increase the cut-off or pass a '
                f'smaller `core_radius`')
        self.__core_radius = core_radius

        # C^1 quadratic continuation A - B r^2 inside the core.
        r2_core = np.array([core_radius ** 2])
        phi_core, g_core = self._outer_terms(r2_core)
        self.__core_b = -0.5 * float(g_core[0])
        self.__core_a = float(phi_core[0]) + self.__core_b * core_radius ** 2
        if not self.__core_b > 0:
            raise ValueError(
                f'the pair energy is not repulsive at `core_radius` = '
                f'{core_radius!r} (the smooth cut-off starts too early); pass '
                f'a smaller `core_radius` or a larger `onset`')

        self.__cache = None
        # The parameters as the compiled kernels read them.
        sr6 = (self.__sigma / self.__cutoff) ** 6
        self.__kernel_parameters = np.array([
            self.__epsilon, self.__sigma ** 2, self.__cutoff ** 2,
            float(self.__smooth),
            self.__onset ** 2 if self.__smooth else 0.0,
            4 * self.__epsilon * (sr6 * sr6 - sr6),
            core_radius ** 2, self.__core_a, self.__core_b])

    # --- Alternative constructors

    @classmethod
    def from_r_min(cls, space, r_min, epsilon=1.0, **kwargs):
        """Return the potential with minimum at the distance ``r_min``.

        Parameters
        ----------
        space : `odl.TensorSpace` or `odl.ProductSpace`
            Domain, as in `LennardJones`.
        r_min : positive float
            Equilibrium distance, ``sigma = r_min / 2**(1/6)``.
        epsilon : positive float, optional
            Depth of the potential well.
        **kwargs
            ``cutoff``, ``smooth``, ``onset``, ``core_radius`` as in
            `LennardJones` (``sigma`` is given by ``r_min``).

        Examples
        --------
        >>> lj = LennardJones.from_r_min(odl.rn((3, 2)), r_min=2.0)
        >>> lj.sigma
        1.781797...
        >>> lj.r_min
        2.0
        """
        if 'sigma' in kwargs:
            raise TypeError('`sigma` is given by `r_min`; pass one of the two')
        r_min = _positive_float(r_min, 'r_min')
        return cls(space, epsilon=epsilon, sigma=r_min / R_MIN_OVER_SIGMA,
                   **kwargs)

    @classmethod
    def from_lattice(cls, space, nn_distance, epsilon=1.0, **kwargs):
        """Return the potential whose equilibrium is a lattice's bond length.

        Parameters
        ----------
        space : `odl.TensorSpace` or `odl.ProductSpace`
            Domain, as in `LennardJones`.
        nn_distance : positive float
            Nearest-neighbour distance of the lattice; it becomes ``r_min``.
        epsilon : positive float, optional
            Depth of the potential well (bond energy).
        **kwargs
            ``cutoff``, ``smooth``, ``onset``, ``core_radius`` as in
            `LennardJones`.

        Examples
        --------
        A square lattice of spacing 3 angstrom:

        >>> lj = LennardJones.from_lattice(odl.rn((9, 2)), 3.0)
        >>> lj.r_min
        3.0
        """
        return cls.from_r_min(space, r_min=nn_distance, epsilon=epsilon,
                              **kwargs)

    @classmethod
    def from_element(cls, space, symbol, **kwargs):
        """Return the potential with an element's crystal bond length.

        The equilibrium distance is the nearest-neighbour distance of the
        element's reference crystal in ASE (`ase.data.reference_states`):
        ``a / sqrt(2)`` for fcc, ``a sqrt(3) / 2`` for bcc, ``a`` for simple
        cubic, ``a sqrt(3) / 4`` for diamond, ``min(a, sqrt(a^2/3 + c^2/4))``
        for hcp. ASE has no Lennard-Jones well depths, so ``epsilon`` is a
        free parameter (default 1).

        Parameters
        ----------
        space : `odl.TensorSpace` or `odl.ProductSpace`
            Domain, as in `LennardJones`.
        symbol : str
            Chemical symbol, e.g. ``'Au'``.
        **kwargs
            ``epsilon``, ``cutoff``, ``smooth``, ``onset``, ``core_radius``
            as in `LennardJones`.

        Raises
        ------
        ValueError
            If ``symbol`` is not an element, or if ASE has no fcc, bcc, sc,
            diamond or hcp reference crystal for it (e.g. ``'H'``, ``'Ga'``);
            use `from_lattice` with a nearest-neighbour distance then.

        Examples
        --------
        Gold is fcc with ``a = 4.08``:

        >>> lj = LennardJones.from_element(odl.rn((13, 3)), 'Au')
        >>> lj.r_min  # 4.08 / sqrt(2)
        2.88499...
        """
        from ase.data import atomic_numbers, reference_states

        if symbol not in atomic_numbers or atomic_numbers[symbol] == 0:
            raise ValueError(f'{symbol!r} is not a chemical symbol; pass e.g. '
                             f'\'Au\' or \'Si\'')
        ref = reference_states[atomic_numbers[symbol]]
        structure = None if ref is None else ref.get('symmetry')
        if structure not in _NN_DISTANCE or 'basis' in ref:
            raise ValueError(
                f'ASE has no simple crystal reference state for {symbol!r} '
                f'(its reference structure is {structure!r}; supported: '
                f'{", ".join(sorted(_NN_DISTANCE))}); use '
                f'`LennardJones.from_lattice(space, nn_distance)` with the '
                f'nearest-neighbour distance instead')
        return cls.from_lattice(space, float(_NN_DISTANCE[structure](ref)),
                                **kwargs)

    # --- Properties

    @property
    def positions_space(self):
        """The space ``rn((n, d))`` of the positions."""
        return self.__positions_space

    @property
    def n_atoms(self):
        """Number of atoms ``n``."""
        return self.__positions_space.shape[0]

    @property
    def epsilon(self):
        """Depth of the potential well."""
        return self.__epsilon

    @property
    def sigma(self):
        """Distance where the Lennard-Jones potential is zero."""
        return self.__sigma

    @property
    def r_min(self):
        """Equilibrium distance ``2**(1/6) * sigma`` (minimum of ``e``)."""
        return R_MIN_OVER_SIGMA * self.__sigma

    @property
    def cutoff(self):
        """Cut-off radius ``rc``."""
        return self.__cutoff

    @property
    def smooth(self):
        """Whether the smooth cut-off function is used (else: a shift)."""
        return self.__smooth

    @property
    def onset(self):
        """Onset of the smooth cut-off, or ``None`` if not `smooth`."""
        return self.__onset

    @property
    def core_radius(self):
        """Radius below which the pair energy is the quadratic ``A - B r^2``."""
        return self.__core_radius

    @property
    def kernel_parameters(self):
        """The parameters as `odl_atoms.kernels` reads them (9 floats)."""
        return self.__kernel_parameters

    # --- Pair energy

    def _outer_terms(self, r2):
        """Pair energy ``g`` and ``g'(r) / r`` outside the core, for ``r^2``."""
        eps, rc = self.__epsilon, self.__cutoff
        c6 = (self.__sigma ** 2 / r2) ** 3
        c12 = c6 * c6
        energy = 4 * eps * (c12 - c6)
        deriv = -24 * eps * (2 * c12 - c6) / r2   # e'(r) / r
        if self.__smooth:
            rc2, ro2 = rc ** 2, self.__onset ** 2
            denom = (rc2 - ro2) ** 3
            inside = r2 > ro2
            fc = np.where(
                inside, (rc2 - r2) ** 2 * (rc2 + 2 * r2 - 3 * ro2) / denom, 1.0)
            dfc = np.where(inside, 6 * (rc2 - r2) * (ro2 - r2) / denom, 0.0)
            deriv = fc * deriv + 2 * dfc * energy
            energy = fc * energy
        else:
            sr6 = (self.__sigma / rc) ** 6
            energy = energy - 4 * eps * (sr6 * sr6 - sr6)
        return energy, deriv

    def _pair_terms(self, r2):
        """Pair energy ``phi`` and ``phi'(r) / r`` for squared distances."""
        r2 = np.asarray(r2, dtype=float)
        if kernels.backend() == 'numba':
            energy, deriv = kernels.lj_pair_terms(r2.ravel(),
                                                  self.__kernel_parameters)
            return energy.reshape(r2.shape), deriv.reshape(r2.shape)
        core = r2 < self.__core_radius ** 2
        outer = r2 < self.__cutoff ** 2
        outer &= ~core
        energy = np.zeros_like(r2)
        deriv = np.zeros_like(r2)
        energy[outer], deriv[outer] = self._outer_terms(r2[outer])
        energy[core] = self.__core_a - self.__core_b * r2[core]
        deriv[core] = -2.0 * self.__core_b
        return energy, deriv

    def pair_energy(self, r):
        """Return the pair energy ``phi(r)`` at distances ``r``.

        Parameters
        ----------
        r : float or array-like
            Non-negative distances.

        Returns
        -------
        phi : float or numpy.ndarray
            Pair energy, including the cut-off (shift or smooth cut-off
            function) and the inner core.

        Examples
        --------
        >>> lj = LennardJones(odl.rn((2, 2)), smooth=True)
        >>> lj.pair_energy([lj.r_min, lj.cutoff])
        array([-1.,  0.])
        """
        r = np.asarray(r, dtype=float)
        if np.any(r < 0) or not np.all(np.isfinite(r)):
            raise ValueError('distances `r` must be finite and non-negative')
        energy = self._pair_terms(r * r)[0]
        return float(energy) if energy.ndim == 0 else energy

    # --- Evaluation

    def _positions(self, x):
        """Positions of a domain element as a float64 array."""
        if isinstance(self.domain, odl.ProductSpace):
            x = x[0]
        pos = np.asarray(x.data, dtype=float)
        if not np.all(np.isfinite(pos)):
            bad = np.flatnonzero(~np.all(np.isfinite(pos), axis=1))
            raise ValueError(
                f'positions must be finite; atom(s) {bad[:5].tolist()} have '
                f'NaN or inf coordinates')
        return pos

    def _evaluate(self, x):
        """Return the (cached) pair list and pair terms at ``x``."""
        return self._evaluate_array(self._positions(x))

    def _evaluate_array(self, pos):
        """Return the (cached) pair list and pair terms at positions ``pos``.

        Returns ``(positions, i, j, energy, deriv)`` where ``deriv`` is
        ``phi'(r_ij) / r_ij`` for the interacting pairs ``i < j``.
        """
        cache = self.__cache
        if cache is not None and np.array_equal(cache[0], pos):
            return cache
        if pos.shape[0] < 2:
            i = j = np.zeros(0, dtype=np.intp)
            energy, deriv = 0.0, np.zeros(0)
        else:
            pairs = cKDTree(pos).query_pairs(self.__cutoff,
                                             output_type='ndarray')
            if pos.shape[0] < 2 ** 31:  # halve the memory of the cache
                pairs = pairs.astype(np.int32)
            i, j = pairs[:, 0], pairs[:, 1]
            diff = pos[i] - pos[j]
            r2 = np.einsum('ij,ij->i', diff, diff)
            keep = r2 < self.__cutoff ** 2
            i, j, r2 = i[keep], j[keep], r2[keep]
            pair_energy, deriv = self._pair_terms(r2)
            energy = float(np.sum(pair_energy))
        self.__cache = (pos.copy(), i, j, energy, deriv)
        return self.__cache

    def _compiled(self, pos, gradient):
        """Energy and gradient from `odl_atoms.kernels`, or None to use NumPy."""
        if kernels.backend() != 'numba':
            return None
        return kernels.lennard_jones(pos, self.__kernel_parameters, gradient)

    def _call(self, x):
        """Return the energy ``V(x)``."""
        pos = self._positions(x)
        compiled = self._compiled(pos, False)
        if compiled is not None:
            return compiled[0]
        return self._evaluate_array(pos)[3]

    def _gradient_array(self, x):
        """Return the gradient with respect to the positions, ``(n, d)``."""
        pos = self._positions(x)
        compiled = self._compiled(pos, True)
        if compiled is not None:
            return compiled[1]
        return self._gradient_of(self._evaluate_array(pos))

    @staticmethod
    def _gradient_of(evaluated):
        pos, i, j, _, deriv = evaluated
        n, d = pos.shape
        contrib = deriv[:, None] * (pos[i] - pos[j])
        grad = np.empty((n, d))
        for k in range(d):
            grad[:, k] = (np.bincount(i, contrib[:, k], minlength=n)
                          - np.bincount(j, contrib[:, k], minlength=n))
        return grad

    def energy(self, positions, gradient=False):
        """Return the energy of positions given as an array, of any size.

        This is the fast path for solvers whose number of atoms changes (the
        ODL interface, ``lj(x)`` and ``lj.gradient(x)``, is tied to the
        functional's domain of ``n`` atoms).

        Parameters
        ----------
        positions : array-like, shape ``(m, d)``
            Any number ``m`` of atoms, same ``d`` as the domain.
        gradient : bool, optional
            If True, also return the gradient ``(m, d)``.

        Examples
        --------
        >>> lj = LennardJones(odl.rn((2, 2)))
        >>> e, g = lj.energy([[0, 0], [lj.r_min, 0], [0, lj.r_min]], gradient=True)
        >>> g.shape
        (3, 2)
        """
        pos = self._checked(positions)
        compiled = self._compiled(pos, gradient)
        if compiled is not None:
            return compiled if gradient else compiled[0]
        evaluated = self._evaluate_array(pos)
        if gradient:
            return evaluated[3], self._gradient_of(evaluated)
        return evaluated[3]

    def _checked(self, positions):
        """``positions`` as a float array ``(m, d)``, checked (any ``m``)."""
        # Not copied (nothing keeps it); the array methods, not np.all's
        # wrapper: this runs once per evaluation of a local move.
        pos = np.asarray(positions, dtype=float)
        if pos.ndim < 2:
            pos = pos.reshape((1,) * (2 - pos.ndim) + pos.shape)
        d = self.positions_space.shape[1]
        if pos.ndim != 2 or pos.shape[1] != d:
            raise ValueError(
                f'positions must have shape (m, {d}), got {pos.shape}')
        if not np.isfinite(pos).all():
            raise ValueError('positions must be finite (no NaN or inf)')
        return pos

    def on_space(self, space):
        """Return the same potential on another domain (e.g. more atoms).

        Examples
        --------
        >>> lj = LennardJones(odl.rn((2, 3)), sigma=2.0)
        >>> lj.on_space(odl.rn((5, 3)))
        LennardJones(rn((5, 3)), epsilon=1.0, sigma=2.0)
        """
        return type(self)(space, **self.__args)

    def removal_energies(self, positions):
        """Return, for every atom, the energy change if it were removed.

        That is ``-sum_j phi(r_ij)``, the negative sum of its pair energies;
        solvers use it to decide whether an atom earns its place.

        Examples
        --------
        >>> lj = LennardJones(odl.rn((2, 2)), smooth=True)
        >>> lj.removal_energies([[0, 0], [lj.r_min, 0], [10, 10]])
        array([ 1.,  1.,  0.])
        """
        pos, i, j, _, _ = self._evaluate_array(self._checked(positions))
        diff = pos[i] - pos[j]
        pair = self._pair_terms(np.einsum('ij,ij->i', diff, diff))[0]
        n = pos.shape[0]
        return 0.0 - (np.bincount(i, pair, minlength=n)
                      + np.bincount(j, pair, minlength=n))

    @property
    def gradient(self):
        """Gradient operator, ``x -> grad V(x)`` (minus the forces).

        On the parameter space, the weight component is zero.

        Examples
        --------
        >>> space = odl.rn((2, 2))
        >>> lj = LennardJones(space)
        >>> lj.gradient
        LennardJones(rn((2, 2)), epsilon=1.0, sigma=1.0).gradient
        >>> grad = lj.gradient(space.element([[0, 0], [1, 0]]))
        >>> grad.data[0]  # r = sigma < r_min: moving away (-x) lowers V
        array([ 24.,   0.])
        """
        return _LennardJonesGradient(self)

    # --- Printing

    def __repr__(self):
        """Return ``repr(self)``, which reproduces the constructor call.

        Examples
        --------
        >>> LennardJones(odl.rn((4, 3)), sigma=2.5, smooth=True)
        LennardJones(rn((4, 3)), epsilon=1.0, sigma=2.5, smooth=True)
        """
        parts = [repr(self.domain), f'epsilon={self.epsilon!r}',
                 f'sigma={self.sigma!r}']
        for name in ('cutoff', 'smooth', 'onset', 'core_radius'):
            value = self.__args[name]
            if value is not None and value is not False:
                value = getattr(self, name)
                parts.append(f'{name}={value!r}')
        return f'{type(self).__name__}({", ".join(parts)})'

    def __str__(self):
        return repr(self)


class _LennardJonesGradient(odl.Operator):

    """Gradient of `LennardJones`, an operator from its domain to itself."""

    def __init__(self, functional):
        super().__init__(functional.domain, functional.domain, linear=False)
        self.__functional = functional

    @property
    def functional(self):
        """The `LennardJones` functional of which this is the gradient."""
        return self.__functional

    def _call(self, x):
        grad = self.__functional._gradient_array(x)
        if isinstance(self.domain, odl.ProductSpace):
            return self.range.element(
                [grad, np.zeros(self.range[1].shape)])
        return self.range.element(grad)

    def __repr__(self):
        return f'{self.__functional!r}.gradient'
