"""Atom files: configurations of atoms in and out, through ASE.

`read_atoms` and `write_atoms` go through ASE (``ase.io.read``,
``ase.io.write``) and `odl_atoms.from_ase` / `odl_atoms.to_ase`; see the
documentation of `odl_atoms.io` for what each format keeps.
"""

import numbers
import os
from pathlib import Path

import numpy as np

from odl_atoms.atoms import DEFAULT_MARGIN, from_ase, to_ase
from odl_atoms.errors import ValidationError
from odl_atoms.io.safety import atomic_path, existing_file
from odl_atoms.space import SparseMeasure, SparseMeasureSpace

__all__ = ('read_atoms', 'write_atoms')


def read_atoms(path, space=None, weights=None, ndim=None, index=-1,
               format=None):
    """Read an atomic configuration from any file ASE reads.

    Parameters
    ----------
    path : str or os.PathLike
    space : `SparseMeasureSpace`, optional
        Space of the result. Default: the box stored in the file (extended
        XYZ written by `write_atoms`), else the atoms' bounding box enlarged by
        3 angstrom.
    weights : mapping or float or array-like, optional
        Atom weights: by species (``{'Au': 1.0, 'Pt': 1.2}``), one for all, or
        one per atom. Default: the weights stored in the file, else 1.
    ndim : {2, 3}, optional
        Dimension; default that of ``space`` or of the stored box, else 3. A
        2D configuration needs all atoms at one ``z``.
    index : int, optional
        Which configuration of a multi-frame file (trajectory); default the
        last.
    format : str, optional
        ASE format name; default guessed from the suffix and contents.

    Returns
    -------
    measure : `SparseMeasure`

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If ASE cannot read the file (unknown format, malformed contents), or
        the atoms do not fit ``space``/``ndim``.

    Examples
    --------
    >>> import tempfile, os
    >>> space = SparseMeasureSpace([0, 0], [5, 5])
    >>> mu = space.element([[1, 2], [3, 3]], weights=[1, 2], species=['Au', 'Pt'])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_atoms(os.path.join(tmp, 'atoms.xyz'), mu)
    ...     back = read_atoms(os.path.join(tmp, 'atoms.xyz'))
    >>> back == mu
    True
    """
    import ase.io
    from ase.io.formats import UnknownFileTypeError

    path = existing_file(path, 'atom')
    if not isinstance(index, numbers.Integral):
        raise TypeError(
            f'`index` must be an integer (one configuration), got {index!r}')
    try:
        atoms = ase.io.read(path, index=int(index), format=format)
    except UnknownFileTypeError as exc:
        raise ValidationError(
            f'cannot read atoms from {str(path)!r}: ASE does not recognise the '
            f'format ({exc}); use a known suffix (.extxyz, .xyz, .cif, ...) or '
            f'pass format=...') from exc
    except Exception as exc:  # ASE's parsers raise many kinds of errors
        raise ValidationError(
            f'cannot read atoms from {str(path)!r}: {type(exc).__name__}: '
            f'{exc}') from exc
    _snap_to_box(atoms, space)
    return from_ase(atoms, space=space, weights=weights, ndim=ndim,
                    margin=DEFAULT_MARGIN)


#: Text formats round positions (extended XYZ: 8 decimals); atoms this close
#: outside the box are put back on its boundary when reading.
_ROUNDING_TOLERANCE = 1e-7


def _snap_to_box(atoms, space):
    """Undo text-format rounding that would put boundary atoms outside the box."""
    if space is not None:
        lo, hi = space.min_pt, space.max_pt
    elif 'box_min' in atoms.info and 'box_max' in atoms.info:
        lo = np.ravel(atoms.info['box_min']).astype(float)
        hi = np.ravel(atoms.info['box_max']).astype(float)
    else:
        return
    d = min(lo.size, 3)
    if len(atoms) == 0 or lo.size != hi.size:
        return
    positions = atoms.positions.copy()
    coords = positions[:, :d]
    near_lo = (coords < lo[:d]) & (coords >= lo[:d] - _ROUNDING_TOLERANCE)
    near_hi = (coords > hi[:d]) & (coords <= hi[:d] + _ROUNDING_TOLERANCE)
    if np.any(near_lo) or np.any(near_hi):
        coords[near_lo] = np.broadcast_to(lo[:d], coords.shape)[near_lo]
        coords[near_hi] = np.broadcast_to(hi[:d], coords.shape)[near_hi]
        atoms.positions = positions


def write_atoms(path, measure, format=None, extra=None):
    """Write an atomic configuration to a file, atomically, through ASE.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; an existing file is replaced only once the new one is
        completely written.
    measure : `SparseMeasure`
    format : str, optional
        ASE format name. Default: from the suffix (``.xyz`` and ``.extxyz``
        give extended XYZ, which keeps weights, species and box; ``.cif``
        gives CIF). See the module documentation for what each format keeps.
    extra : mapping, optional
        More per-atom arrays ``{name: array}``, one row per atom (e.g.
        ``AtomConfidence.arrays()`` of `odl_atoms.confidence`); extended XYZ
        keeps them as columns (``ase.io.read(path).arrays[name]``).

    Raises
    ------
    ValueError
        If the format is unknown or ASE cannot write it, or an ``extra``
        array does not have one row per atom.

    Examples
    --------
    >>> import tempfile, os
    >>> space = SparseMeasureSpace([-3, -3, -3], [3, 3, 3])
    >>> mu = space.element([[0, 0, 0], [1, 1, 1]], species='Au')
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_atoms(os.path.join(tmp, 'atoms.xyz'), mu, format='xyz')
    ...     lines = open(os.path.join(tmp, 'atoms.xyz')).read().splitlines()
    >>> lines[0], lines[1], lines[2].split()[0]
    ('2', '', 'Au')
    """
    import ase.io
    from ase.io.formats import UnknownFileTypeError, filetype, ioformats

    if not isinstance(measure, SparseMeasure):
        raise TypeError(
            f'`measure` must be a SparseMeasure, got {type(measure).__name__}')
    path = Path(os.fspath(path))
    if format is None:
        try:
            format = filetype(path, read=False)
        except UnknownFileTypeError as exc:
            raise ValidationError(
                f'cannot tell the atom file format of {str(path)!r} from its '
                f'name; add a suffix (.extxyz, .xyz, .cif, ...) or pass '
                f'format=...') from exc
    if format not in ioformats or not ioformats[format].can_write:
        raise ValidationError(
            f'ASE cannot write the format {format!r} (from {str(path)!r}); use '
            f'.extxyz or .xyz (keeps weights, species and box), .cif, or '
            f'another format ASE writes')
    atoms = _atoms_for_format(measure, format, extra)
    with atomic_path(path) as tmp:
        ase.io.write(tmp, atoms, format=format)


def _atoms_for_format(measure, format, extra=None):
    """`to_ase`, adapted to what CIF can represent (see the module notes)."""
    atoms = to_ase(measure, extra)
    if format == 'cif':
        space = measure.space
        shift = np.zeros(3)
        shift[:space.ndim] = space.min_pt
        atoms.positions = atoms.positions - shift
        extent = np.ones(3)
        extent[:space.ndim] = space.max_pt - space.min_pt
        atoms.set_cell(np.diag(extent))
    return atoms
