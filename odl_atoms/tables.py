"""Tables as text: Markdown and CSV, for results printed or written to files.

One writer of each kind for the whole toolkit: the command line's tables,
`odl_atoms.sweep.SweepResult` and the benchmark scripts use them. This
module imports only the standard library.
"""

import csv
import io

__all__ = ('markdown_table', 'csv_table')


def markdown_table(header, rows, align='right'):
    """Return a Markdown table.

    Parameters
    ----------
    header : sequence
        Column titles.
    rows : sequence of sequence
        Cells; each is written as ``str(cell)``.
    align : {'right', None}, optional
        ``'right'``: every column padded to its widest cell and marked
        right-aligned (``---:``), readable as plain text too (what the
        command line prints). ``None``: cells as they are, separators
        ``---`` (compact; the benchmarks' result files).

    Returns
    -------
    table : str
        Lines separated by ``'\\n'``, without a final newline.

    Examples
    --------
    >>> print(markdown_table(['solver', 'F1'], [['adcg', '1.000'],
    ...                                         ['sirt', '0.875']]))
    | solver |    F1 |
    |-------:|------:|
    |   adcg | 1.000 |
    |   sirt | 0.875 |
    >>> print(markdown_table(['solver', 'F1'], [['adcg', 1.0]], align=None))
    | solver | F1 |
    |---|---|
    | adcg | 1.0 |
    """
    if align is None:
        lines = ['| ' + ' | '.join(map(str, header)) + ' |',
                 '|' + '|'.join('---' for _ in header) + '|']
        lines += ['| ' + ' | '.join(str(c) for c in row) + ' |'
                  for row in rows]
        return '\n'.join(lines)
    if align != 'right':
        raise ValueError(f"`align` must be 'right' or None, got {align!r}")
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ['| ' + ' | '.join(c.rjust(w) for c, w in zip(row, widths)) + ' |'
             for row in cells]
    lines.insert(1, '|' + '|'.join('-' * (w + 1) + ':' for w in widths) + '|')
    return '\n'.join(lines)


def csv_table(header, rows):
    """Return a CSV table (the `csv` module's quoting, ``'\\n'`` line ends).

    Parameters
    ----------
    header : sequence
        Column titles.
    rows : sequence of sequence

    Returns
    -------
    table : str
        Ends with a newline.

    Examples
    --------
    >>> print(csv_table(['alpha', 'note'], [[0.001, 'a, b']]), end='')
    alpha,note
    0.001,"a, b"
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
