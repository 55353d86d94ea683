"""Files that can be trusted: atomic writes and bounded, self-contained reads.

Writing
-------
`atomic_path` writes to a temporary file next to the target and moves it onto
the target only when the writing has succeeded, so that readers see either
the old file or the complete new one. A writer killed in the middle (SIGKILL,
power loss) cannot clean up after itself and leaves its temporary behind; the
next write to the same target removes such strays (see `atomic_path` for the
rule).

Reading
-------
`check_read_size` refuses to read more than a limit (by default the memory
available to this process, at most `MAX_READ_BYTES`) before anything is read.
`read_npz` and `read_hdf5` read named arrays from a NumPy ``.npz`` archive or
from the root of an HDF5 file with that check applied to the sizes the file
declares, and `check_hdf5_self_contained` refuses HDF5 files whose datasets
live in, or link to, other files.

All refusals are `odl_atoms.errors.ValidationError` (a `ValueError`) with
one line that names the file, what is
wrong and what to do.
"""

import contextlib
import hashlib
import os
import re
import secrets
import socket
import stat
import time
from pathlib import Path

import numpy as np

from odl_atoms.errors import ValidationError

__all__ = ('atomic_path', 'remove_stray_temporaries', 'available_memory',
           'check_read_size', 'read_npz', 'read_hdf5',
           'check_hdf5_self_contained',
           'MAX_READ_BYTES', 'STALE_TEMPORARY_SECONDS')

#: Largest number of bytes a reader here loads by default (also never more
#: than `available_memory`); readers take ``max_bytes=`` to override it.
MAX_READ_BYTES = 16 * 2 ** 30

#: A stray temporary of `atomic_path` that has not been modified for this
#: long is removed even when its writer cannot be checked (see `atomic_path`).
STALE_TEMPORARY_SECONDS = 24 * 3600


# --- Atomic writes


@contextlib.contextmanager
def atomic_path(path):
    """Context manager: write to a temporary file, then move it onto ``path``.

    Yields the path of a new, empty temporary file in the directory of
    ``path`` (a hidden name with the same suffix, so that writers that look at
    suffixes still work). When the ``with`` block ends without an exception,
    the file is flushed to disk and moved onto ``path`` with `os.replace`, an
    atomic operation: readers see either the old file or the complete new one.
    If the block raises (including ``KeyboardInterrupt``), the temporary file
    is removed and ``path`` is left as it was.

    A writer that is killed (SIGKILL, power loss) leaves its temporary file
    behind. Before writing, this removes the temporaries that earlier writes
    to the same ``path`` left, namely those

    - made by a process of this machine (the same PID namespace) that no
      longer exists: the temporary's name holds its writer's process id and a
      tag of the machine, and a process that is gone can no longer finish its
      write. This removes the leftover of a killed run at the next run;
    - or not modified for `STALE_TEMPORARY_SECONDS` (a day): for writers on
      other machines sharing the folder, whose processes cannot be checked,
      and for temporaries named before process ids were recorded. A write
      lasts seconds to minutes, so no live writer is that idle.

    Only regular files of the current user with exactly this naming pattern
    for this ``path`` are touched; a live writer's temporary is never
    removed (a reused process id only delays the removal).

    A replaced file keeps its permission bits; a new one gets the usual ones
    (``0o666`` minus the umask).

    Parameters
    ----------
    path : str or os.PathLike
        Final destination. Its directory must exist.

    Yields
    ------
    tmp_path : pathlib.Path

    Raises
    ------
    FileNotFoundError
        If the directory of ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a directory.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     target = os.path.join(tmp, 'numbers.txt')
    ...     with atomic_path(target) as part:
    ...         _ = part.write_text('1 2 3')
    ...     print(open(target).read(), os.listdir(tmp))
    1 2 3 ['numbers.txt']
    """
    path = Path(os.fspath(path))
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(
            f'cannot write {str(path)!r}: the directory {str(directory)!r} does '
            f'not exist; create it first')
    if path.is_dir():
        raise IsADirectoryError(
            f'cannot write {str(path)!r}: it is a directory; give a file name')
    remove_stray_temporaries(path)
    tmp = _reserve_temporary(path)
    try:
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        yield tmp
        with open(tmp, 'rb+') as fobj:
            os.fsync(fobj.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(directory)


def _machine_tag():
    """8 hex digits naming this machine and PID namespace."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path('/proc/sys/kernel/random/boot_id').read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink('/proc/self/ns/pid'))
    return hashlib.sha256('|'.join(parts).encode()).hexdigest()[:8]


_MACHINE = _machine_tag()


def _temporary_pattern(path):
    """Regular expression of the temporary names of ``path`` (old and new)."""
    return re.compile(
        r'\.' + re.escape(path.stem) + r'\.[0-9a-f]{8}'
        r'(?:\.(?P<pid>[0-9]{1,10})\.(?P<machine>[0-9a-f]{8}))?'
        r'\.tmp' + re.escape(path.suffix))


def _reserve_temporary(path):
    """Create an empty, uniquely named file next to ``path``."""
    for _ in range(100):
        tmp = path.with_name(f'.{path.stem}.{secrets.token_hex(4)}.'
                             f'{os.getpid()}.{_MACHINE}.tmp{path.suffix}')
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(
        f'could not create a temporary file next to {str(path)!r}')


def _process_exists(pid):
    if pid <= 0 or os.name != 'posix':
        # (os.kill would terminate the process on Windows.)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove_stray_temporaries(path):
    """Remove the temporaries of killed writes to ``path`` (see `atomic_path`).

    Returns
    -------
    removed : list of pathlib.Path
    """
    path = Path(os.fspath(path))
    pattern = _temporary_pattern(path)
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    now = time.time()
    prefix = f'.{path.stem}.'
    for name in names:
        # (A cheap test first: folders such as a sweep's cache hold many
        # files and are written often.)
        match = pattern.fullmatch(name) if name.startswith(prefix) else None
        if match is None:
            continue
        candidate = path.parent / name
        try:
            info = os.lstat(candidate)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        if hasattr(os, 'getuid') and info.st_uid != os.getuid():
            continue
        dead_writer = (match['machine'] == _MACHINE
                       and not _process_exists(int(match['pid'])))
        stale = now - info.st_mtime > STALE_TEMPORARY_SECONDS
        if dead_writer or stale:
            with contextlib.suppress(OSError):
                os.unlink(candidate)
                removed.append(candidate)
    return removed


def _fsync_directory(directory):
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def existing_file(path, what):
    """Return ``path`` as a `Path`; raise unless it is an existing file."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f'no {what} file at {str(path)!r}')
    if path.is_dir():
        raise IsADirectoryError(
            f'{str(path)!r} is a directory, not a {what} file')
    return path


# --- Sizes


def available_memory():
    """Return the bytes of memory this process can still use, or ``None``.

    The kernel's estimate of available memory (``MemAvailable`` in
    ``/proc/meminfo``), lowered to what a cgroup memory limit (containers,
    batch jobs) leaves; ``None`` where neither can be read.

    Examples
    --------
    >>> free = available_memory()
    >>> free is None or free > 0
    True
    """
    candidates = []
    with contextlib.suppress(OSError, ValueError):
        for line in Path('/proc/meminfo').read_text().splitlines():
            if line.startswith('MemAvailable:'):
                candidates.append(int(line.split()[1]) * 1024)
                break
    with contextlib.suppress(OSError, ValueError):
        limit = Path('/sys/fs/cgroup/memory.max').read_text().strip()
        if limit != 'max':
            used = int(Path('/sys/fs/cgroup/memory.current').read_text())
            candidates.append(max(int(limit) - used, 0))
    return min(candidates) if candidates else None


def _size_text(nbytes):
    for unit, size in (('GiB', 2 ** 30), ('MiB', 2 ** 20), ('KiB', 2 ** 10)):
        if nbytes >= size:
            return f'{nbytes / size:.3g} {unit}'
    return f'{nbytes} bytes'


def check_read_size(nbytes, what, max_bytes=None):
    """Raise `ValidationError` if reading ``nbytes`` would exceed the limit.

    Parameters
    ----------
    nbytes : int
        Bytes the file declares.
    what : str
        What would be read, for the message (e.g. ``"'data' in 'a.h5'"``).
    max_bytes : int, optional
        The limit; default `MAX_READ_BYTES` or the `available_memory`,
        whichever is smaller. Given, it is used as it is (an override).

    Examples
    --------
    >>> check_read_size(2 ** 20, 'x', max_bytes=2 ** 21)
    >>> check_read_size(45 * 2 ** 30, "'data' in 'big.h5'", max_bytes=2 ** 30)
    Traceback (most recent call last):
    ...
    odl_atoms.errors.ValidationError: 'data' in 'big.h5' declares 45 GiB, more than the limit of 1 GiB...
    """
    nbytes = int(nbytes)
    if max_bytes is not None:
        if nbytes > max_bytes:
            raise ValidationError(
                f'{what} declares {_size_text(nbytes)}, more than the limit of '
                f'{_size_text(max_bytes)} (max_bytes); refusing to read it')
        return
    if nbytes > MAX_READ_BYTES:
        raise ValidationError(
            f'{what} declares {_size_text(nbytes)}, more than the limit of '
            f'{_size_text(MAX_READ_BYTES)}; refusing to read it (if the file is '
            f'genuine, pass max_bytes=)')
    free = available_memory()
    if free is not None and nbytes > free:
        raise ValidationError(
            f'{what} declares {_size_text(nbytes)}, more than the {_size_text(free)} of '
            f'memory available; refusing to read it (free memory, or pass '
            f'max_bytes= to try anyway)')


def one_line(exc):
    """The message of ``exc`` on one line."""
    return ' '.join(str(exc).split()) or type(exc).__name__


# --- NumPy archives


def read_npz(path, keys=None, max_bytes=None):
    """Read arrays from a NumPy ``.npz`` archive, checking sizes first.

    The sizes are checked before anything is decompressed: the uncompressed
    size of each member in the zip directory and the shape and dtype in its
    ``.npy`` header. A member whose header declares more data than the member
    holds is refused as damaged; pickled (object) arrays are refused.

    Parameters
    ----------
    path : pathlib.Path
    keys : collection of str, optional
        Names to read; default all. The others are listed, not read.
    max_bytes : int, optional
        Limit of the total (see `check_read_size`).

    Returns
    -------
    arrays : dict
        ``{name: array}`` of the names read.
    names : list of str
        Every array name in the archive.

    Raises
    ------
    ValueError
        If the file is not a valid archive of plain arrays, is damaged (a
        decompression or checksum error), or declares too much data.
    """
    import zipfile
    import zlib

    def fail(reason):
        return ValidationError(f'cannot read {str(path)!r} as a NumPy .npz archive '
                               f'of plain arrays: {reason}')

    try:
        with zipfile.ZipFile(path) as archive:
            members = {}
            for info in archive.infolist():
                name = info.filename
                if not name.endswith('.npy'):
                    raise fail(f'the member {name!r} is not a .npy array')
                members[name[:-len('.npy')]] = info
            wanted = [k for k in members if keys is None or k in keys]
            total = 0
            for key in wanted:
                info = members[key]
                check_read_size(info.file_size,
                                f'{key!r} in {str(path)!r}', max_bytes)
                with archive.open(info) as member:
                    declared = _npy_nbytes(member)
                if declared > info.file_size:
                    raise fail(
                        f'the array {key!r} declares {declared} bytes but '
                        f'its member holds {info.file_size}; the file is '
                        f'damaged, write it again')
                total += info.file_size
            check_read_size(total, f'{str(path)!r}', max_bytes)
            arrays = {}
            for key in wanted:
                with archive.open(members[key]) as member:
                    arrays[key] = np.lib.format.read_array(
                        member, allow_pickle=False)
            return arrays, list(members)
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise fail(one_line(exc)) from exc
    except (zlib.error, zipfile.BadZipFile, EOFError, OSError,
            NotImplementedError) as exc:
        # zlib's "Error -3 while decompressing" and zipfile's "Bad CRC-32"
        # mean a damaged file, not a bug.
        raise fail(f'the archive is damaged ({type(exc).__name__}: '
                   f'{one_line(exc)}); write it again') from exc


def _npy_nbytes(member):
    """Bytes declared by the header of a ``.npy`` stream."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValidationError(f'unsupported .npy format version {version}')
    if dtype.hasobject:
        raise ValidationError('it holds Python objects (pickles), which are not '
                              'read; store plain numbers and strings')
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


# --- HDF5


def _hdf5_refusal(path, name, obj):
    """Why the HDF5 dataset or link ``name`` must not be read, or ``None``."""
    import h5py

    if isinstance(obj, h5py.ExternalLink):
        return f'{name!r} is an external link to another file'
    if isinstance(obj, h5py.SoftLink):
        return f'{name!r} is a soft link'
    if isinstance(obj, h5py.Dataset):
        if obj.is_virtual:
            return f'{name!r} is a virtual dataset (its data are in other files)'
        if obj.id.get_create_plist().get_external_count() > 0:
            return (f'{name!r} keeps its data in external files (HDF5 '
                    f'external storage)')
    return None


def read_hdf5(path, keys=None, max_bytes=None):
    """Read datasets at the root of an HDF5 file, checking them first.

    Only datasets that are hard links and hold their data in this file are
    read: a soft or external link, external raw storage or a virtual dataset
    is refused before anything is read, as is a declared size (shape times
    item size) beyond the limit.

    Parameters
    ----------
    path : pathlib.Path
    keys : collection of str, optional
        Names to read; default all datasets at the root.
    max_bytes : int, optional
        Limit of the total (see `check_read_size`).

    Returns
    -------
    arrays : dict
        ``{name: array}``; strings come back as ``str`` arrays.
    names : list of str
        Every name at the root.

    Raises
    ------
    ValueError
        If the file is not HDF5, a wanted name is not a dataset, is a link or
        reaches outside the file, or the datasets declare too much data.
    """
    import h5py

    try:
        fobj = h5py.File(path, 'r')
    except OSError as exc:
        raise ValidationError(f'cannot read {str(path)!r} as an HDF5 file: '
                              f'{one_line(exc)}') from exc
    with fobj:
        names = list(fobj.keys())
        wanted = [n for n in names if keys is None or n in keys]
        items = {}
        total = 0
        for name in wanted:
            link = fobj.get(name, getlink=True)
            reason = _hdf5_refusal(path, name, link)
            if reason is None:
                item = fobj.get(name)  # a hard link: inside this file
                reason = _hdf5_refusal(path, name, item)
            if reason is not None:
                raise ValidationError(
                    f'{str(path)!r}: {reason}; a projection-data file must '
                    f'hold its datasets itself (refused without reading it)')
            if not isinstance(item, h5py.Dataset):
                raise ValidationError(
                    f'{str(path)!r}: {name!r} is an HDF5 '
                    f'{type(item).__name__.lower()}; a dataset is needed at '
                    f'the file root')
            nbytes = int(np.prod(item.shape, dtype=object)) * \
                item.dtype.itemsize
            check_read_size(nbytes, f'{name!r} in {str(path)!r}', max_bytes)
            total += nbytes
            items[name] = item
        check_read_size(total, f'{str(path)!r}', max_bytes)
        arrays = {}
        for name, item in items.items():
            try:
                if h5py.check_string_dtype(item.dtype) is not None:
                    arrays[name] = np.array(item.asstr()[()], dtype=str)
                else:
                    arrays[name] = item[()]
            except (OSError, ValueError, TypeError) as exc:
                raise ValidationError(
                    f'cannot read {name!r} from {str(path)!r}: '
                    f'{one_line(exc)}') from exc
    return arrays, names


def check_hdf5_self_contained(path):
    """Raise `ValidationError` if an HDF5 file reaches outside itself.

    Walks every link: external links, external raw storage and virtual
    datasets are refused (soft links stay inside the file and are allowed).
    Used before handing a microscope file (``.hspy``, ``.emd``) to a reader
    that would follow them.
    """
    import h5py

    try:
        fobj = h5py.File(path, 'r')
    except OSError as exc:
        raise ValidationError(f'cannot read {str(path)!r} as an HDF5 file: '
                              f'{one_line(exc)}') from exc
    reasons = []
    seen = set()

    def walk(group, prefix):
        # Hard links only lead further; each object is visited once (groups
        # can be linked from several places).
        for name in group:
            full = f'{prefix}/{name}'
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                reasons.append(f'{full!r} is an external link to another '
                               f'file')
                continue
            if not isinstance(link, h5py.HardLink):
                continue  # a soft link stays inside the file
            item = group.get(name)
            if item is None or item.id in seen:
                continue
            seen.add(item.id)
            reason = _hdf5_refusal(path, full, item)
            if reason is not None:
                reasons.append(reason)
            elif isinstance(item, h5py.Group):
                walk(item, full)

    with fobj:
        walk(fobj, '')
    if reasons:
        raise ValidationError(f'{str(path)!r}: {reasons[0]}; refusing to read a '
                              f'file that reaches into other files')
