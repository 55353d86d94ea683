"""Shared helpers of the benchmark scripts: machine description, tables."""

import argparse
import csv
import datetime
import multiprocessing
import os
import platform

from odl_atoms import tables


def machine():
    """One line describing this machine (CPU model, cores)."""
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{model}, {os.cpu_count()} cores, Python {platform.python_version()}'


def stamp():
    """Date and machine, for the header of a results table."""
    return f'{datetime.date.today().isoformat()} on {machine()}'


def markdown_table(header, rows):
    """Return a compact markdown table (`odl_atoms.tables.markdown_table`)."""
    return tables.markdown_table(header, rows, align=None)


def write_result(path, title, text, measured=None):
    """Write a results file (markdown) next to the benchmarks.

    ``measured``: the date-and-machine line (default `stamp`, today's); a
    table written again from an earlier run's data keeps that run's line.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(f'# {title}\n\n{measured or stamp()}\n\n{text}\n')
    print(f'wrote {path}')


def write_rows(path, rows):
    """Write result rows (dicts with the same keys) as CSV."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_rows(path):
    """The rows `write_rows` wrote, with their types back (bool, None,
    int, float, else str)."""
    def value(text):
        if text in ('True', 'False'):
            return text == 'True'
        if text in ('', 'None'):
            return None
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text
    with open(path, newline='') as f:
        return [{k: value(v) for k, v in row.items()}
                for row in csv.DictReader(f)]


def reconstruction_parser(doc):
    """Command line of the reconstruction benchmarks (``--quick``, ...)."""
    parser = argparse.ArgumentParser(description=doc.split('\n')[0])
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--output', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'results'))
    return parser


def run_parallel(func, tasks, workers, desc='reconstructions'):
    """Return ``[func(t) for t in tasks]`` (in completion order), in
    ``workers`` processes; in this process, in order, for one worker.

    'spawn': forked workers can deadlock in BLAS thread pools the parent
    already started; each worker builds its own operators anyway.
    """
    from tqdm import tqdm

    if workers <= 1:
        return [func(t) for t in tqdm(tasks, desc=desc)]
    context = multiprocessing.get_context('spawn')
    with context.Pool(workers) as pool:
        return list(tqdm(pool.imap_unordered(func, tasks), total=len(tasks),
                         desc=desc))
