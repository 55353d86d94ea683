"""``odl-atoms prepare``: microscope images -> projection-data file."""

from odl_atoms.cli.common import (UsageError, check_outputs, info,
                                  input_file, parse_numbers, positive,
                                  positive_int)

HELP = 'microscope tilt series (image stack) -> projection-data file'
DESCRIPTION = (
    'Read a tilt series of microscope images (a stack: .tif, .mrc/.st/.ali, '
    '.hspy, .emd, .dm3/.dm4, ...; or one image file per tilt) with its pixel '
    'size and tilt angles, put the images on the detector of the '
    'reconstruction geometry (2D: averaged along the tilt axis into '
    'profiles; 3D: as images), remove a background per projection and write '
    'a projection-data file (.npz or .h5) for "odl-atoms reconstruct". The '
    'atom width (sigma) and the noise level are left for calibration or '
    '--sigma/--noise-std there.')
EPILOG = (
    'angles come from --angles, else from an IMOD tilt file next to the stack\n'
    '(NAME.rawtlt or NAME.tlt: one angle in degrees per line), else from the\n'
    'file\'s metadata; the pixel size from --pixel-size, else the metadata.\n'
    'The tilt axis passes through the image centre; --tilt-axis y (default)\n'
    'means it runs along the image rows\' direction (the y axis).\n\n'
    'examples:\n'
    '  odl-atoms prepare tilts.tif -o tilts.npz            (tilts.rawtlt next '
    'to it)\n'
    '  odl-atoms prepare series.hspy --ndim 3 -o series.h5\n'
    '  odl-atoms prepare a.tif b.tif c.tif --angles 0 45 90 --pixel-size 0.25 '
    '-o abc.npz\n'
    '  odl-atoms prepare stack.mrc --angles=-60:60:5 --tilt-axis x '
    '-o stack.npz')


def add_arguments(parser):
    parser.add_argument('images', nargs='+', metavar='STACK',
                        help='one image stack, or one image file per tilt '
                             '(in the order of --angles)')
    parser.add_argument('-o', '--output', required=True, metavar='DATA',
                        help='projection-data file to write (.npz, .h5 or '
                             '.hdf5)')
    parser.add_argument('--angles', nargs='+', metavar='DEG', default=None,
                        help='tilt angles in degrees, one per image in file '
                             'order (ranges START:STOP:COUNT work); or the '
                             'path of an IMOD tilt file')
    parser.add_argument('--pixel-size', nargs='+', type=positive('--pixel-size'),
                        metavar='Å', default=None,
                        help='pixel size in Å (one value, or along y and '
                             'along x); overrides the metadata')
    parser.add_argument('--tilt-axis', default=None, metavar='AXIS',
                        help='direction of the tilt axis in the images: x, y, '
                             '-x, -y, or degrees from x towards y (other '
                             'angles resample the images); default: from the '
                             'file, else y')
    parser.add_argument('--ndim', type=int, choices=(2, 3), default=2,
                        help='2: columns of atoms along the tilt axis (each '
                             'image averaged along it); 3: a particle')
    parser.add_argument('--box', nargs='+', type=float, default=None,
                        metavar='Å',
                        help='where atoms may be: one edge length (a centred '
                             'square or cube), or the lower corner then the '
                             'upper corner (4 values in 2D, 6 in 3D); '
                             'default: the region every projection sees')
    parser.add_argument('--background', default='auto', metavar='B',
                        help="background removed from each projection: "
                             "'auto' (estimated: the vacuum level), 'none', "
                             "or a value in data units")
    parser.add_argument('--binning', type=positive_int('--binning'), default=1,
                        help='average blocks of N x N pixels first')
    parser.add_argument('--signal', default=None, metavar='NAME',
                        help='which image signal of a file holding several '
                             '(EMD): an index or part of its title')


def _angles(tokens):
    """``None``, radians in file order, or the path of a tilt file."""
    import os

    import numpy as np

    if tokens is None:
        return None
    if len(tokens) == 1 and os.path.exists(tokens[0]):
        return tokens[0]
    # In file order (not sorted): the i-th angle belongs to the i-th image.
    return np.radians(parse_numbers(tokens, '--angles'))


def _box(values, ndim):
    if values is None:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) != 2 * ndim:
        raise UsageError(f'--box takes one edge length or {2 * ndim} values '
                         f'(lower corner, then upper corner) for {ndim}D, got '
                         f'{len(values)}')
    return values[:ndim], values[ndim:]


def _background(text):
    text = str(text).strip().lower()
    if text == 'auto':
        return 'auto'
    if text == 'none':
        return None
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--background must be 'auto', 'none' or a number, "
                         f"got {text!r}") from None


def _tilt_axis(text):
    if text is None:
        return None
    import numpy as np

    if text.strip().lower() in ('x', 'y', '-x', '-y'):
        return text.strip().lower()
    try:
        return np.radians(float(text))
    except ValueError:
        raise UsageError(f'--tilt-axis must be x, y, -x, -y or an angle in '
                         f'degrees, got {text!r}') from None


def run(args):
    import warnings

    import numpy as np

    from odl_atoms.cli.common import warn
    from odl_atoms.io import (prepare_projections, read_tilt_series,
                              write_projections)

    inputs = [input_file(p, 'image') for p in args.images]
    out, = check_outputs([('-o', args.output, 'projections')],
                         inputs=[('IMAGES', p) for p in inputs])
    angles = _angles(args.angles)
    box = _box(args.box, args.ndim)
    background = _background(args.background)
    tilt_axis = _tilt_axis(args.tilt_axis)
    pixel_size = args.pixel_size
    if pixel_size is not None and len(pixel_size) not in (1, 2):
        raise UsageError('--pixel-size takes one value, or two (along y and '
                         'along x)')

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', UserWarning)
        series = read_tilt_series(inputs[0] if len(inputs) == 1 else inputs,
                                  angles=angles, pixel_size=pixel_size,
                                  signal=_signal(args.signal))
        info(args, series.describe())
        measured = prepare_projections(series, ndim=args.ndim,
                                       tilt_axis=tilt_axis, box=box,
                                       background=background,
                                       binning=args.binning)
    for w in caught:
        warn(str(w.message))
    measured = _with_noise_model(args, series, measured)

    if measured.background is not None:
        b = measured.background
        info(args, f'background removed: {np.min(b):.4g} to {np.max(b):.4g} '
                   f'(median {np.median(b):.4g})'
                   + (f' {measured.intensity_unit}'
                      if measured.intensity_unit else ''))
    det = ' x '.join(f'{lo:.4g}..{hi:.4g}' for lo, hi in
                     zip(measured.detector_min, measured.detector_max))
    box_text = ' x '.join(f'{lo:.4g}..{hi:.4g}' for lo, hi in
                          zip(measured.box_min, measured.box_max))
    info(args, f'{measured.ndim}D data {"x".join(map(str, measured.data.shape))}'
               f', detector {det} Å, box {box_text} Å')
    write_projections(out, measured)
    print(f'wrote {out} ({measured.n_angles} projections, '
          f'{measured.ndim}D; the atom width, the intensity of one atom and '
          f'the noise level are estimated by reconstruct, or give --sigma, '
          f'--intensity, --noise-std)')
    return 0


def _with_noise_model(args, series, measured):
    """``measured`` with the noise model of the images in its ``source``.

    The images hold the noise better than the averaged profiles do
    (`odl_atoms.calibration.estimate_noise`), and reconstruct, which reads
    only the projection-data file, calibrates with it.
    """
    import dataclasses
    import json

    from odl_atoms.calibration import estimate_noise
    from odl_atoms.errors import ValidationError

    try:
        noise = estimate_noise(series)
    except ValidationError as exc:
        info(args, f'noise model not estimated from the images ({exc})')
        return measured
    info(args, f'noise model of the images: {noise}')
    try:
        source = json.loads(measured.source) if measured.source else {}
    except json.JSONDecodeError:
        source = {'text': measured.source}
    if not isinstance(source, dict):
        source = {'source': source}
    source['noise_model'] = noise.to_dict()
    return dataclasses.replace(measured, source=json.dumps(
        source, ensure_ascii=False, default=str))


def _signal(text):
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return text
