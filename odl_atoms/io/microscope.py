"""Microscope tilt series in: image stacks with their angles and pixel size.

`read_tilt_series` reads a stack of projection images (or one image file per
tilt) with the pixel size and tilt angles its metadata give, into a
`TiltSeries`: images ``(n_tilts, ny, nx)``, angles in radians, pixel size in
angstrom. `odl_atoms.io.prepare_projections` then turns it into projection
data.

Readers, by file suffix:

- ``.tif``, ``.tiff``: tifffile. Pixel size from ImageJ metadata (unit and
  resolution), OME metadata (``PhysicalSizeX/Y`` and their units, micrometre
  by default), FEI metadata (``PixelWidth``), Zeiss SEM metadata, or the
  resolution tags in centimetre or inch (screen resolutions such as 72 dpi
  are not taken for a pixel size).
- ``.mrc``, ``.mrcs``, ``.st``, ``.ali``, ``.preali``: mrcfile. Pixel size
  from the voxel size (angstrom; 0 means not set); angles from FEI extended
  headers (``FEI1``, ``FEI2``: ``Alpha tilt``; FEI's older 128-byte
  records) or SerialEM's (``SERI``, tilt angle flag).
- ``.hspy``, ``.hdf5``, ``.emd``, ``.dm3``, ``.dm4``, ``.ser``, ``.zspy`` and
  the other formats of RosettaSciIO (HyperSpy's readers): pixel size from
  the two signal axes' scale and units; angles from a navigation axis in
  angle units (degrees or radians, uniform or not), from
  ``metadata.Tomography.tilts`` (degrees), or from
  ``metadata.Acquisition_instrument.TEM.Stage.tilt_alpha`` (degrees; one
  per file for a list of files). A file holding several image signals
  (EMD) needs ``signal=``.

Angles come from, in this order: ``angles=`` given; an IMOD tilt file next to
a stack (``name.rawtlt`` or ``name.tlt``: one angle in degrees per line;
``.tlt`` first for aligned ``.ali`` stacks); the file's metadata (for a list
of files, every file's stage tilt). The pixel size comes from ``pixel_size=``
given, else from the metadata, converted to angstrom
(`odl_atoms.io.units`). Without either, or with units that are not lengths,
reading fails with a message that says what to give.

HDF5-based files are checked first: external links, external storage and
virtual datasets are refused (`odl_atoms.io.safety`), and the size each file
declares is checked before its data are read.
"""

import importlib
import json
import os
import struct
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from odl_atoms.errors import ValidationError
from odl_atoms.io.safety import (check_hdf5_self_contained, check_read_size,
                                 existing_file, one_line)
from odl_atoms.io.units import angstrom_per_unit, radians_per_unit

__all__ = ('TiltSeries', 'read_tilt_series', 'read_tilt_file',
           'TILT_SERIES_SUFFIXES')

#: Suffixes read with tifffile and mrcfile; others go to RosettaSciIO.
TILT_SERIES_SUFFIXES = {'.tif': 'tifffile', '.tiff': 'tifffile',
                        '.mrc': 'mrcfile', '.mrcs': 'mrcfile',
                        '.st': 'mrcfile', '.ali': 'mrcfile',
                        '.preali': 'mrcfile'}

#: RosettaSciIO plugins for suffixes several plugins claim.
_RSCIIO_PREFERRED = {'.hspy': 'HSPY', '.hdf5': 'HSPY', '.h5': 'HSPY',
                     '.emd': 'EMD', '.dm3': 'DigitalMicrograph',
                     '.dm4': 'DigitalMicrograph', '.zspy': 'ZSPY',
                     '.ser': 'TIA', '.emi': 'TIA'}
_HDF5_SUFFIXES = ('.hspy', '.hdf5', '.h5', '.emd', '.nxs')

_GIVE_PIXEL = 'give pixel_size= in angstrom (--pixel-size on the command line)'
_GIVE_ANGLES = ('give angles= in radians (--angles in degrees on the command '
                'line), or put an IMOD tilt file NAME.rawtlt (one angle in '
                'degrees per line) next to the stack')

#: Largest IMOD tilt file read (bytes): one short line per tilt.
_MAX_TILT_FILE_BYTES = 1 << 20


@dataclass(frozen=True, eq=False, repr=False)
class TiltSeries:

    """A stack of projection images with angles and pixel size.

    Parameters
    ----------
    images : array-like, shape ``(n_tilts, ny, nx)``
        One image per tilt, in the order of ``angles``; rows along the image
        ``y``, columns along ``x``. Stored as float64.
    angles : array-like, shape ``(n_tilts,)``
        Tilt angles in radians (any order, distinct).
    pixel_size : float or array-like, shape ``(2,)``
        Pixel size in angstrom: one value, or ``(along y, along x)``.
    tilt_axis : float, optional
        Direction of the tilt axis in the images, as an angle in radians from
        the ``x`` axis (columns) towards the ``y`` axis (rows): ``0`` along
        ``x``, ``pi / 2`` along ``y``. ``None`` when the file does not say.
    intensity_unit : str, optional
        Unit of the image values, as the file gives it.
    source : sequence of str, optional
        The files read.
    metadata : dict, optional
        How the values were found (reader, where the angles and the pixel
        size came from, units in the file), for reports; JSON-serialisable.

    Examples
    --------
    >>> series = TiltSeries(np.zeros((3, 4, 5)), np.radians([-30, 0, 30]), 0.5)
    >>> series.n_tilts, series.shape, series.pixel_size.tolist()
    (3, (4, 5), [0.5, 0.5])
    >>> series
    TiltSeries(<3 images of 4 x 5>, angles_deg=[-30.0, 0.0, 30.0], pixel_size=[0.5, 0.5])
    """

    images: np.ndarray
    angles: np.ndarray
    pixel_size: np.ndarray
    tilt_axis: float = None
    intensity_unit: str = None
    source: tuple = ()
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        images = np.asarray(self.images)
        if images.dtype.kind == 'c':
            raise ValidationError(
                f'the images hold complex numbers (dtype {images.dtype}); a '
                f'tilt series must be real: pass the real part or the '
                f'modulus if that is what is meant')
        if images.dtype.kind not in 'fiub':
            raise ValidationError(f'the images must hold real numbers, got dtype '
                                  f'{images.dtype}')
        if images.ndim == 2:
            images = images[None]
        if images.ndim != 3 or min(images.shape) == 0:
            raise ValidationError(f'the images must have shape (n_tilts, ny, nx), '
                                  f'got shape {images.shape}')
        images = np.array(images, dtype=float)
        if not np.all(np.isfinite(images)):
            bad = int(np.sum(~np.isfinite(images)))
            raise ValidationError(f'the images contain {bad} NaN or inf value(s)')
        angles = np.array(self.angles, dtype=float, ndmin=1)
        if angles.ndim != 1 or angles.size != images.shape[0]:
            raise ValidationError(
                f'{angles.size} angle(s) for {images.shape[0]} image(s); give '
                f'one tilt angle per image')
        if not np.all(np.isfinite(angles)):
            raise ValidationError(f'the angles must be finite, got {angles.tolist()}')
        if np.unique(angles).size != angles.size:
            raise ValidationError(f'the angles must be distinct, got '
                                  f'{np.round(np.degrees(angles), 4).tolist()} '
                                  f'degrees')
        if np.max(np.abs(angles)) > 2 * np.pi:
            raise ValidationError(
                f'angles of up to {np.max(np.abs(angles)):g} radians: these '
                f'look like degrees; angles are in radians (np.radians(...))')
        pixel = np.array(self.pixel_size, dtype=float, ndmin=1)
        if pixel.size == 1:
            pixel = np.repeat(pixel, 2)
        if pixel.shape != (2,) or not np.all(np.isfinite(pixel)) \
                or np.any(pixel <= 0):
            raise ValidationError(
                f'pixel_size must be one positive number or two (along y, '
                f'along x), in angstrom, got {self.pixel_size!r}')
        tilt_axis = self.tilt_axis
        if tilt_axis is not None:
            tilt_axis = float(tilt_axis)
            if not np.isfinite(tilt_axis):
                raise ValidationError(f'tilt_axis must be finite, got {tilt_axis}')
        for name, value in (('images', images), ('angles', angles),
                            ('pixel_size', pixel)):
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        object.__setattr__(self, 'tilt_axis', tilt_axis)
        object.__setattr__(self, 'source', tuple(str(s) for s in self.source))
        object.__setattr__(self, 'metadata', dict(self.metadata))

    @property
    def n_tilts(self):
        """Number of images."""
        return self.images.shape[0]

    @property
    def shape(self):
        """Shape of one image, ``(ny, nx)``."""
        return self.images.shape[1:]

    def describe(self):
        """Return a few lines saying what was read and where it came from."""
        meta = self.metadata
        order = np.argsort(self.angles)
        degrees = np.round(np.degrees(self.angles[order]), 2).tolist()
        lines = [
            f'{self.n_tilts} tilts of {self.shape[0]} x {self.shape[1]} '
            f'pixels from {", ".join(self.source) or "memory"}'
            + (f' ({meta["reader"]})' if 'reader' in meta else ''),
            f'angles (degrees): {degrees}'
            + (f' from {meta["angle_source"]}' if 'angle_source' in meta
               else ''),
            f'pixel size: {self.pixel_size[0]:.6g} x {self.pixel_size[1]:.6g} '
            f'Å (y x)'
            + (f' from {meta["pixel_size_source"]}'
               if 'pixel_size_source' in meta else ''),
        ]
        if self.intensity_unit:
            lines.append(f'intensity unit: {self.intensity_unit}')
        if self.tilt_axis is not None:
            lines.append(f'tilt axis in the images: '
                         f'{np.degrees(self.tilt_axis):.4g} degrees from x')
        return '\n'.join(lines)

    def __repr__(self):
        degrees = np.round(np.degrees(self.angles), 4).tolist()
        parts = [f'<{self.n_tilts} images of {self.shape[0]} x '
                 f'{self.shape[1]}>', f'angles_deg={degrees}',
                 f'pixel_size={self.pixel_size.tolist()}']
        for f in fields(self)[3:]:
            value = getattr(self, f.name)
            if value not in (None, (), {}):
                parts.append(f'{f.name}={value!r}')
        return f'{type(self).__name__}({", ".join(parts)})'


# --- Entry point


def read_tilt_series(path, angles=None, pixel_size=None, signal=None,
                     max_bytes=None):
    """Read a tilt series of microscope images.

    Parameters
    ----------
    path : str or os.PathLike, or a sequence of them
        One stack (``.tif``, ``.mrc``/``.st``/``.ali``, ``.hspy``, ``.emd``,
        ``.dm4``, ...) or one image file per tilt.
    angles : array-like or str or os.PathLike, optional
        Tilt angles in radians, one per image in file order; or the path of
        an IMOD tilt file (degrees, one per line). Default: from a tilt file
        next to the stack or from the metadata (see the module notes).
    pixel_size : float or pair of float, optional
        Pixel size in angstrom (one value, or along y and along x); overrides
        the metadata.
    signal : int or str, optional
        Which signal of a file holding several (EMD): its index among the
        image signals or a part of its title.
    max_bytes : int, optional
        Most bytes of image data to read (as float64); default the memory
        available (`odl_atoms.io.safety.check_read_size`).

    Returns
    -------
    series : `TiltSeries`

    Raises
    ------
    FileNotFoundError
        If a file does not exist.
    ValueError
        For a file that cannot be read as images, images of different sizes
        or pixel sizes, no angles or the wrong number of them, no pixel size
        or units that are not lengths, or too much data. The message names
        the file and what to give.

    Examples
    --------
    >>> import os, tempfile, tifffile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     stack = os.path.join(tmp, 'tilts.tif')
    ...     tifffile.imwrite(stack, np.ones((3, 8, 8), 'float32'), imagej=True,
    ...                      resolution=(1 / 0.05, 1 / 0.05),
    ...                      metadata={'unit': 'nm', 'axes': 'ZYX'})
    ...     with open(os.path.join(tmp, 'tilts.rawtlt'), 'w') as f:
    ...         _ = f.write('-60\\n0\\n60\\n')
    ...     series = read_tilt_series(stack)
    >>> series.pixel_size.tolist(), np.degrees(series.angles).round(6).tolist()
    ([0.5, 0.5], [-60.0, 0.0, 60.0])
    """
    if isinstance(path, (str, os.PathLike)):
        paths = [existing_file(path, 'image')]
    else:
        paths = [existing_file(p, 'image') for p in path]
        if not paths:
            raise ValidationError('no image files given')
    budget = _Budget(max_bytes)
    raws = [_read_file(p, signal, budget) for p in paths]
    if len(raws) > 1:
        for i, raw in enumerate(raws):
            if raw['images'].shape[0] != 1:
                raise ValidationError(
                    f'{str(paths[i])!r} holds {raw["images"].shape[0]} images; '
                    f'give either one stack or one file per tilt')
    images, pixel, pixel_source, length_unit = _combine(paths, raws,
                                                        pixel_size)
    angles, angle_source = _find_angles(paths, raws, angles, images.shape[0])
    first = raws[0]
    metadata = {
        'reader': first['reader'],
        'angle_source': angle_source,
        'pixel_size_source': pixel_source,
    }
    if length_unit is not None:
        metadata['length_unit'] = length_unit
    if pixel_source != 'given' and 'offsets' in first:
        metadata['offsets'] = list(first['offsets'])
    metadata.update(first.get('extra', {}))
    tilt_axes = {raw.get('tilt_axis') for raw in raws}
    tilt_axis = tilt_axes.pop() if len(tilt_axes) == 1 else None
    return TiltSeries(images, angles, pixel, tilt_axis=tilt_axis,
                      intensity_unit=first.get('intensity_unit'),
                      source=[str(p) for p in paths],
                      metadata=_jsonable(metadata))


class _Budget:
    """The bytes still allowed to be read, shared by the files of a list."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.used = 0

    def check(self, n_values, what, file_bytes=0):
        # Images become float64.
        nbytes = max(int(n_values) * 8, int(file_bytes))
        check_read_size(self.used + nbytes, what, self.max_bytes)
        self.used += nbytes


def _read_file(path, signal, budget):
    suffix = path.suffix.lower()
    reader = TILT_SERIES_SUFFIXES.get(suffix)
    try:
        if reader == 'tifffile':
            raw = _read_tiff(path, budget)
        elif reader == 'mrcfile':
            raw = _read_mrc(path, budget)
        else:
            raw = _read_rsciio(path, signal, budget)
    except (ValidationError, FileNotFoundError):
        raise
    except Exception as exc:  # the readers raise many kinds of errors
        raise ValidationError(f'cannot read {str(path)!r} as microscope images: '
                              f'{type(exc).__name__}: {one_line(exc)}') from exc
    images = raw['images']
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValidationError(
            f'{str(path)!r} holds data of shape {images.shape}; a tilt series '
            f'is one image per tilt, (n_tilts, ny, nx)')
    if images.dtype.kind == 'c':
        raise ValidationError(
            f'{str(path)!r} holds complex images (dtype {images.dtype}); a '
            f'tilt series must be real (refusing to drop the imaginary part)')
    if images.dtype.kind not in 'fiub':
        raise ValidationError(f'{str(path)!r} holds {images.dtype} data, not '
                              f'image intensities')
    raw['images'] = images
    return raw


# --- TIFF (tifffile)


def _read_tiff(path, budget):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, axes = tuple(series.shape), series.axes
        budget.check(np.prod(shape, dtype=object), f'{str(path)!r}')
        if 'S' in axes and shape[axes.index('S')] > 1:
            raise ValidationError(
                f'{str(path)!r} is a colour image ({axes} {shape}); save the '
                f'images as grey values (one channel)')
        data = series.asarray()
        keep = [i for i, (a, n) in enumerate(zip(axes, shape))
                if n > 1 or a in 'YX']
        data = data.reshape([shape[i] for i in keep])
        pixel, unit, where = _tiff_pixel_size(tif)
        ij = tif.imagej_metadata or {}
    raw = dict(images=data, pixel=pixel, length_unit=unit,
               pixel_source=where, reader='tifffile')
    if pixel is not None and ('xorigin' in ij or 'yorigin' in ij):
        # ImageJ's origin is in pixels: coordinate 0 at pixel 'xorigin'.
        raw['offsets'] = (-float(ij.get('yorigin', 0.0)) * pixel[0],
                          -float(ij.get('xorigin', 0.0)) * pixel[1])
    return raw


def _tiff_pixel_size(tif):
    """``((dy, dx) in angstrom or None, unit, where)`` from TIFF metadata."""
    page = tif.pages[0]
    tags = page.tags

    def resolution():
        try:
            xr, yr = tags['XResolution'].value, tags['YResolution'].value
        except KeyError:
            return None
        per_x, per_y = xr[0] / xr[1], yr[0] / yr[1]
        if not (per_x > 0 and per_y > 0):
            return None
        return 1 / per_y, 1 / per_x

    ij = tif.imagej_metadata
    if ij and ij.get('unit'):
        unit = ij['unit']
        size = resolution()
        scale = angstrom_per_unit(unit)
        if scale is None or size is None:
            return None, unit, f'ImageJ metadata (unit {unit!r})'
        return (size[0] * scale, size[1] * scale), unit, 'ImageJ metadata'
    if tif.ome_metadata:
        found = _ome_pixel_size(tif.ome_metadata)
        if found is not None:
            return found
    fei = tif.fei_metadata
    if fei:
        scan = fei.get('Scan') or fei.get('EScan') or {}
        width, height = scan.get('PixelWidth'), scan.get('PixelHeight')
        if width:
            height = height or width
            return ((float(height) * 1e10, float(width) * 1e10), 'm',
                    'FEI metadata')
    sem = tif.sem_metadata
    if sem and 'ap_image_pixel_size' in sem:
        entry = sem['ap_image_pixel_size']
        value, unit = entry[1], entry[2] if len(entry) > 2 else None
        scale = angstrom_per_unit(unit)
        if scale is not None:
            return ((float(value) * scale,) * 2, unit,
                    'Zeiss SEM metadata')
    unit_tag = tags.get('ResolutionUnit')
    unit_code = int(unit_tag.value) if unit_tag is not None else 2
    size = resolution()
    if size is not None and unit_code in (2, 3) and size != (1.0, 1.0):
        unit = 'inch' if unit_code == 2 else 'cm'
        scale = 2.54e8 if unit_code == 2 else 1e8
        dy, dx = size[0] * scale, size[1] * scale
        if max(dy, dx) > 1e4:
            # 72 or 300 dots per inch: a screen or print resolution.
            return None, unit, (f'TIFF resolution tags ({1 / size[1]:g} '
                                f'pixels per {unit}, not a microscope\'s)')
        return (dy, dx), unit, 'TIFF resolution tags'
    return None, None, 'no pixel size in the TIFF metadata'


def _ome_pixel_size(xml):
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit('}', 1)[-1] != 'Pixels':
            continue
        attrs = element.attrib
        if 'PhysicalSizeX' not in attrs:
            return None
        # The OME schema's default unit is the micrometre.
        unit_x = attrs.get('PhysicalSizeXUnit', '\u00b5m')
        unit_y = attrs.get('PhysicalSizeYUnit', unit_x)
        sx, sy = angstrom_per_unit(unit_x), angstrom_per_unit(unit_y)
        if sx is None or sy is None:
            return None, unit_x, f'OME metadata (unit {unit_x!r})'
        dx = float(attrs['PhysicalSizeX']) * sx
        dy = float(attrs.get('PhysicalSizeY', attrs['PhysicalSizeX'])) * sy
        return (dy, dx), unit_x, 'OME metadata'
    return None


# --- MRC (mrcfile)

#: Bytes per value of the MRC modes; 3 and 4 are complex.
_MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}


def _read_mrc(path, budget):
    import mrcfile

    with open(path, 'rb') as fobj:
        head = fobj.read(1024)
    if len(head) < 1024:
        raise ValidationError(f'{str(path)!r} is too short to be an MRC file')
    # The machine stamp says the byte order (0x11: big-endian).
    order = '>' if head[212] == 0x11 else '<'
    nx, ny, nz, mode = struct.unpack(order + '4i', head[:16])
    nsymbt, = struct.unpack(order + 'i', head[92:96])
    if mode in (3, 4):
        raise ValidationError(
            f'{str(path)!r} holds complex values (MRC mode {mode}); a tilt '
            f'series must be real (refusing to drop the imaginary part)')
    if mode not in _MRC_MODE_BYTES or min(nx, ny, nz) <= 0 or nsymbt < 0:
        raise ValidationError(f'{str(path)!r} is not a valid MRC file (mode '
                              f'{mode}, size {nx} x {ny} x {nz})')
    declared = 1024 + nsymbt + nx * ny * nz * _MRC_MODE_BYTES[mode]
    if declared > os.path.getsize(path):
        raise ValidationError(
            f'{str(path)!r}: its header declares {declared} bytes but the '
            f'file holds {os.path.getsize(path)}; the file is damaged or '
            f'incomplete')
    budget.check(nx * ny * nz, f'{str(path)!r}')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        with mrcfile.mmap(path, mode='r', permissive=True) as mrc:
            if mrc.data is None:
                raise ValidationError(f'{str(path)!r}: mrcfile cannot read the '
                                      f'data block')
            data = np.array(mrc.data, dtype=float)
            voxel = mrc.voxel_size
            dx, dy = float(voxel.x), float(voxel.y)
            angles = _mrc_angles(mrc, nz)
    if data.ndim == 2:
        data = data[None]
    pixel = (dy, dx) if dx > 0 and dy > 0 else None
    raw = dict(images=data, pixel=pixel, length_unit='Å',
               pixel_source='MRC header' if pixel else
               'no pixel size in the MRC header (voxel size 0)',
               reader='mrcfile')
    if angles is not None:
        raw['angles'], raw['angle_source'] = angles
    return raw


def _mrc_angles(mrc, nz):
    """``(radians, where)`` from an FEI or SerialEM extended header, or None."""
    header = mrc.header
    ext = mrc.extended_header
    if ext is None or ext.nbytes == 0:
        return None
    exttyp = bytes(header.exttyp).strip(b'\0 ')
    raw = ext.tobytes()
    if exttyp in (b'FEI1', b'FEI2'):
        try:
            tilts = np.asarray(mrc.indexed_extended_header['Alpha tilt'],
                               dtype=float)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if tilts.size >= nz:
            return np.radians(tilts[:nz]), 'FEI extended header (Alpha tilt)'
        return None
    if exttyp == b'SERI':
        order = '>' if header.dtype.byteorder == '>' else '<'
        nint, nreal = struct.unpack(order + '2h', bytes(header.extra1)[:4])
        if nreal & 1 and nint >= 2 and len(raw) >= nint * nz:
            tilts = [struct.unpack(order + 'h', raw[i * nint:i * nint + 2])[0]
                     / 100 for i in range(nz)]
            return np.radians(tilts), 'SerialEM extended header (tilt angle)'
        return None
    if not exttyp and len(raw) == 1024 * 128 and nz <= 1024:
        # FEI's older layout: 1024 records of 128 bytes, alpha tilt first
        # (degrees, float32).
        order = '>' if header.dtype.byteorder == '>' else '<'
        tilts = [struct.unpack(order + 'f', raw[i * 128:i * 128 + 4])[0]
                 for i in range(nz)]
        if np.all(np.isfinite(tilts)) and np.unique(tilts).size == nz:
            return np.radians(tilts), 'FEI extended header (a_tilt)'
    return None


# --- RosettaSciIO


def _rsciio_reader(path):
    import rsciio

    suffix = path.suffix.lower()
    extension = suffix.lstrip('.')
    plugins = {p['name']: p for p in rsciio.IO_PLUGINS}
    name = _RSCIIO_PREFERRED.get(suffix)
    if name is None:
        matches = [p['name'] for p in rsciio.IO_PLUGINS
                   if extension in [e.lower() for e in p['file_extensions']]]
        if not matches:
            raise ValidationError(
                f'{str(path)!r}: unknown image format {suffix!r}; use a stack '
                f'(.tif, .mrc, .st, .ali, .hspy, .emd, .dm3, .dm4) or one '
                f'image file per tilt')
        name = matches[0]
    plugin = plugins[name]
    return importlib.import_module(plugin['api']).file_reader, name


def _read_rsciio(path, signal, budget):
    file_reader, name = _rsciio_reader(path)
    if path.suffix.lower() in _HDF5_SUFFIXES:
        check_hdf5_self_contained(path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            signals = file_reader(str(path), lazy=True)
        except TypeError:
            signals = file_reader(str(path))
    images = [s for s in signals if _image_axes(s) is not None]
    if not images:
        raise ValidationError(
            f'{str(path)!r} holds no images (signals with two signal axes '
            f'and at most one navigation axis)')
    chosen = _choose_signal(path, images, signal)
    nav, sig_axes = _image_axes(chosen)
    data = chosen['data']
    budget.check(np.prod(data.shape, dtype=object), f'{str(path)!r}')
    # (Axes are listed in the order of the array's dimensions.)
    data = np.asarray(data.compute() if hasattr(data, 'compute') else data)
    metadata = chosen.get('metadata', {}) or {}
    raw = dict(images=data, reader=f'RosettaSciIO ({name})',
               intensity_unit=_intensity_unit(
                   _get(metadata, 'Signal', 'quantity')))
    scales = [angstrom_per_unit(a.get('units')) for a in sig_axes]
    units = [a.get('units') for a in sig_axes]
    if any(s is None for s in scales):
        bad = next(u for u, s in zip(units, scales) if s is None)
        raw.update(pixel=None, length_unit=str(bad),
                   pixel_source=f'signal axes in units {str(bad)!r}')
    else:
        raw.update(pixel=tuple(float(a.get('scale', 1.0)) * s
                               for a, s in zip(sig_axes, scales)),
                   length_unit=str(units[1]), pixel_source='signal axes')
        # Where the calibrated coordinate 0 is: prepare_projections checks
        # it against its assumption (the tilt axis through the centre).
        raw['offsets'] = tuple(float(a.get('offset', 0.0)) * s
                               for a, s in zip(sig_axes, scales))
    n = data.shape[0] if data.ndim == 3 else 1
    found = _rsciio_angles(nav, metadata, n)
    if found is not None:
        raw['angles'], raw['angle_source'] = found
    raw['extra'] = {'title': str(_get(metadata, 'General', 'title') or '')}
    return raw


def _intensity_unit(quantity):
    """``'counts'`` from HyperSpy's ``'Intensity (counts)'``."""
    if not quantity:
        return None
    text = str(quantity).strip()
    if text.endswith(')') and '(' in text:
        return text[text.rindex('(') + 1:-1].strip() or None
    return text


def _image_axes(signal):
    axes = list(signal.get('axes', []))
    if all('index_in_array' in a for a in axes):
        axes.sort(key=lambda a: int(a['index_in_array']))
    if len(axes) == 3 and not any(a.get('navigate', False) for a in axes):
        # Readers that do not tell (NCEM EMD): a stack of images.
        return axes[0], axes[1:]
    sig = [a for a in axes if not a.get('navigate', False)]
    nav = [a for a in axes if a.get('navigate', False)]
    if len(sig) != 2 or len(nav) > 1:
        return None
    return (nav[0] if nav else None), sig


def _choose_signal(path, images, signal):
    titles = [str(_get(s.get('metadata', {}), 'General', 'title') or '')
              for s in images]
    if signal is None:
        if len(images) == 1:
            return images[0]
        raise ValidationError(
            f'{str(path)!r} holds {len(images)} image signals '
            f'({", ".join(repr(t) for t in titles)}); choose one with '
            f'signal= (an index or part of the title)')
    if isinstance(signal, (int, np.integer)):
        if not 0 <= signal < len(images):
            raise ValidationError(f'signal={signal}: {str(path)!r} holds '
                                  f'{len(images)} image signal(s)')
        return images[signal]
    hits = [s for s, t in zip(images, titles) if str(signal) in t]
    if len(hits) != 1:
        raise ValidationError(
            f'signal={signal!r} matches {len(hits)} of the image signals of '
            f'{str(path)!r} ({", ".join(repr(t) for t in titles)}); give an '
            f'index or a part of one title')
    return hits[0]


def _get(tree, *keys):
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _numbers(value):
    """A flat float array from metadata (lazy arrays computed), or None."""
    if value is None:
        return None
    if hasattr(value, 'compute'):
        if np.prod(value.shape, dtype=object) > 100_000:
            return None
        value = value.compute()
    try:
        values = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    return values if np.all(np.isfinite(values)) else None


def _rsciio_angles(nav, metadata, n):
    """``(radians, where)`` from a HyperSpy signal's axes or metadata."""
    if nav is not None:
        scale = radians_per_unit(nav.get('units'))
        if scale is not None:
            if 'axis' in nav:
                values = np.asarray(nav['axis'], dtype=float)
            else:
                values = (float(nav.get('offset', 0.0))
                          + float(nav.get('scale', 1.0)) * np.arange(n))
            if values.size == n:
                return (values * scale,
                        f'the navigation axis {nav.get("name")!r} '
                        f'({nav.get("units")})')
    tilts = _numbers(_get(metadata, 'Tomography', 'tilts'))
    if tilts is not None and tilts.size == n:
        return (np.radians(tilts), 'metadata Tomography.tilts (degrees)')
    instrument = _get(metadata, 'Acquisition_instrument') or {}
    for kind in ('TEM', 'SEM'):
        tilt = _numbers(_get(instrument, kind, 'Stage', 'tilt_alpha'))
        if tilt is not None and tilt.size == n:
            return (np.radians(tilt),
                    f'metadata Acquisition_instrument.{kind}.Stage.'
                    f'tilt_alpha (degrees)')
    return None


# --- Putting files together


def _combine(paths, raws, pixel_size):
    """Stack the images; return them with the pixel size and its source."""
    first = raws[0]['images'].shape[1:]
    for path, raw in zip(paths, raws):
        if raw['images'].shape[1:] != first:
            raise ValidationError(
                f'{str(path)!r} has images of {raw["images"].shape[1]} x '
                f'{raw["images"].shape[2]} pixels, {str(paths[0])!r} of '
                f'{first[0]} x {first[1]}; all images of a tilt series need '
                f'the same size (crop or pad them)')
    images = np.concatenate([raw['images'] for raw in raws], axis=0)
    unit = raws[0].get('length_unit')
    if pixel_size is not None:
        pixel = np.array(pixel_size, dtype=float, ndmin=1)
        if pixel.size == 1:
            pixel = np.repeat(pixel, 2)
        if pixel.shape != (2,) or not np.all(np.isfinite(pixel)) \
                or np.any(pixel <= 0):
            raise ValidationError(f'pixel_size must be one positive number or two '
                                  f'(along y, along x) in angstrom, got '
                                  f'{pixel_size!r}')
        found = raws[0].get('pixel')
        if found is not None and not np.allclose(found, pixel, rtol=1e-3):
            warnings.warn(
                f'the given pixel_size {pixel.tolist()} Å differs from '
                f'{np.round(found, 6).tolist()} Å in the metadata of '
                f'{str(paths[0])!r}; using the given one', UserWarning,
                stacklevel=3)
        return images, pixel, 'given', unit
    for path, raw in zip(paths, raws):
        if raw.get('pixel') is None:
            raise ValidationError(
                f'{str(path)!r}: no pixel size in known units '
                f'({raw.get("pixel_source")}); {_GIVE_PIXEL}')
    pixels = np.array([raw['pixel'] for raw in raws])
    if not np.allclose(pixels, pixels[0], rtol=1e-3):
        raise ValidationError(
            f'the files have different pixel sizes '
            f'({np.unique(np.round(pixels, 6), axis=0).tolist()} Å); all '
            f'images of a tilt series need the same one (or {_GIVE_PIXEL})')
    return images, pixels[0], raws[0]['pixel_source'], unit


def _find_angles(paths, raws, angles, n):
    """Angles in radians and where they came from (see the module notes)."""
    if angles is not None:
        if isinstance(angles, (str, os.PathLike)):
            values = read_tilt_file(angles)
            where = f'{str(angles)!r}'
        else:
            values = np.array(angles, dtype=float, ndmin=1)
            where = 'given'
            if values.ndim != 1 or not np.all(np.isfinite(values)):
                raise ValidationError(f'angles must be a list of numbers, got '
                                      f'{angles!r}')
        if values.size != n:
            raise ValidationError(f'{values.size} angle(s) {where} for {n} '
                                  f'image(s); give one tilt angle per image')
        return values, where
    if len(paths) == 1:
        tilt_file = _tilt_file_next_to(paths[0])
        if tilt_file is not None:
            values = read_tilt_file(tilt_file)
            found = raws[0].get('angles')
            if found is not None and (np.shape(found) != values.shape or
                                      not np.allclose(found, values,
                                                      atol=1e-6)):
                warnings.warn(
                    f'the angles of {str(tilt_file)!r} differ from those in '
                    f'the metadata of {str(paths[0])!r} '
                    f'({raws[0]["angle_source"]}); using the tilt file\'s',
                    UserWarning, stacklevel=3)
            if values.size != n:
                raise ValidationError(
                    f'{str(tilt_file)!r} lists {values.size} angle(s) for the '
                    f'{n} image(s) of {str(paths[0])!r}; it needs one per '
                    f'image (or give angles=)')
            return values, f'{str(tilt_file)!r}'
        if 'angles' in raws[0]:
            return raws[0]['angles'], raws[0]['angle_source']
        raise ValidationError(f'no tilt angles for {str(paths[0])!r} (no angle '
                              f'axis or tilt in its metadata, no tilt file next '
                              f'to it); {_GIVE_ANGLES}')
    if all('angles' in raw for raw in raws):
        values = np.concatenate([np.ravel(raw['angles']) for raw in raws])
        return values, f'each file\'s {raws[0]["angle_source"]}'
    missing = [str(p) for p, raw in zip(paths, raws) if 'angles' not in raw]
    raise ValidationError(
        f'no tilt angle in the metadata of {len(missing)} of the {len(paths)} '
        f'files (e.g. {missing[0]!r}); give angles= in radians, one per file '
        f'in the order given (--angles in degrees on the command line)')


def _tilt_file_next_to(path):
    names = [path.with_suffix(s) for s in ('.rawtlt', '.tlt')]
    if path.suffix.lower() == '.ali':
        names.reverse()
    # 'tilts.ome.tif' -> 'tilts.rawtlt' too.
    base = path.name.split('.')[0]
    names += [path.with_name(base + s) for s in ('.rawtlt', '.tlt')]
    for name in names:
        if name.is_file():
            return name
    return None


def read_tilt_file(path):
    """Read an IMOD tilt file (``.rawtlt``, ``.tlt``): degrees -> radians.

    One angle in degrees per line; blank lines are ignored.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    angles : numpy.ndarray
        In radians, in file order.

    Raises
    ------
    ValueError
        If a line is not one number; the message names the file and line.
    """
    path = existing_file(path, 'tilt-angle')
    size = path.stat().st_size
    if size > _MAX_TILT_FILE_BYTES:
        raise ValidationError(f'{str(path)!r} has {size} bytes; a tilt file lists '
                              f'one angle per line and is far smaller')
    values = []
    for number, line in enumerate(path.read_text(errors='replace')
                                  .splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        try:
            value = float(text.split()[0]) if len(text.split()) == 1 else None
        except ValueError:
            value = None
        if value is None or not np.isfinite(value):
            raise ValidationError(
                f'{str(path)!r}, line {number}: {text[:40]!r} is not an angle; '
                f'a tilt file has one angle in degrees per line')
        values.append(value)
    if not values:
        raise ValidationError(f'{str(path)!r} lists no angles')
    return np.radians(values)


def _jsonable(value):
    """``value`` with NumPy scalars and arrays turned into plain Python."""
    return json.loads(json.dumps(value, default=lambda v: np.asarray(v)
                                 .tolist()))
