"""The user-defaults runs where `lattice='auto'` fits two domains, again.

A change that only acts when two domains are fitted (``ESCAPE_STARTS_SPLIT``
in ``odl_atoms/defaults.py``) leaves every other run of the benchmarks as it
was (the same code path), so it is measured on these runs alone, with the
code on ``PYTHONPATH`` (run it once per code version, e.g. main's and a
branch's, into separate files, then ``--compare``).

Usage::

    # the runs of the committed CSVs whose 'user defaults' row has 2 domains
    python benchmarks/two_domains.py run OUT.jsonl benchmarks/results/hexagonal.csv \\
        benchmarks/results/generic_angles_user_defaults.csv \\
        benchmarks/results/zone_axes_user_defaults.csv
    python benchmarks/two_domains.py compare MAIN.jsonl BRANCH.jsonl   # markdown

``run`` appends one JSON row per reconstruction (``zone_axes.run_case``'s
row plus the load average) and skips runs already in ``OUT.jsonl``.
"""

import csv
import json
import os
import sys

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))

GENERIC_HEX = ('32.2/84.1/115.2', '63.9/66.7/142.3', '31.9/117.5/162.9')
SQUARE_ZONE = ('0/90', '0/45/90')


def key(row):
    return (row['crystal'], row['defect'], row['angles'], float(row['noise']),
            int(row['seed']))


def run(out, csvs):
    from zone_axes import run_case
    done = set()
    if os.path.exists(out):
        done = {key(json.loads(line)) for line in open(out)}
    for path in csvs:
        for r in csv.DictReader(open(path)):
            if (r['config'] != 'user defaults' or not r.get('domains')
                    or float(r['domains']) < 2 or key(r) in done):
                continue
            row = run_case(('user defaults', r['defect'], r['angles'],
                            float(r['noise']), int(r['seed']), r['crystal']))
            row['load'] = os.getloadavg()[0]
            with open(out, 'a') as fh:
                fh.write(json.dumps(row, default=str) + '\n')
            print(key(r), f"F1 {row['f1']:.3f}", f"{row['cpu_time']:.1f} s CPU",
                  flush=True)


def group(k):
    crystal, _, angles = k[:3]
    if crystal == 'hexagonal':
        return ('hexagonal generic' if angles in GENERIC_HEX
                else 'hexagonal zone axes')
    return 'square zone axes' if angles in SQUARE_ZONE else 'square generic'


def compare(main_path, branch_path):
    def load(path):
        return {key(r): r for r in map(json.loads, open(path))}
    main, new = load(main_path), load(branch_path)
    keys = [k for k in main if k in new]
    lines = ['| runs | exact before | exact after | became exact | became '
             'inexact | median CPU before (s) | after (s) | ratio |',
             '|---|---|---|---|---|---|---|---|']
    for g in ('hexagonal generic', 'hexagonal zone axes', 'square generic',
              'square zone axes', 'all'):
        ks = [k for k in keys if g == 'all' or group(k) == g]
        if not ks:
            continue
        a, b = [main[k] for k in ks], [new[k] for k in ks]
        up = sum(not x['exact'] and y['exact'] for x, y in zip(a, b))
        down = sum(x['exact'] and not y['exact'] for x, y in zip(a, b))
        ca = np.median([x['cpu_time'] for x in a])
        cb = np.median([y['cpu_time'] for y in b])
        lines.append(f'| {g}: {len(ks)} | {sum(x["exact"] for x in a)} | '
                     f'{sum(y["exact"] for y in b)} | {up} | {down} | '
                     f'{ca:.1f} | {cb:.1f} | {cb / ca:.2f} |')
    lines += ['', '| crystal | defect | angles | noise | seed | domains | F1 before '
              '-> after | objective before -> after | truth relaxed (after) | '
              'best start before -> after | alpha before -> after | '
              'CPU s before -> after |',
              '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for k in sorted(keys, key=lambda k: (group(k), k)):
        x, y = main[k], new[k]
        if abs(x['f1'] - y['f1']) < 1e-9:
            continue
        lines.append(
            f"| {k[0]} | {k[1]} | {k[2]} | {100 * k[3]:.0f} % | {k[4]} | "
            f"{x['domains']}/{y['domains']} | {x['f1']:.3f} -> {y['f1']:.3f} | "
            f"{x['objective']:.4f} -> {y['objective']:.4f} | "
            f"{y['truth_objective']:.4f} | {x['best_start']} -> "
            f"{y['best_start']} | {x['alpha']:.2g} -> {y['alpha']:.2g} | "
            f"{x['cpu_time']:.1f} -> {y['cpu_time']:.1f} |")
    same = sum(abs(main[k]['f1'] - new[k]['f1']) < 1e-9 for k in keys)
    one = [k for k in keys if min(main[k]['domains'] or 0,
                                  new[k]['domains'] or 0) < 2]
    lines += ['', f'{len(keys)} runs in both files, the same F1 in {same}; '
              f'{len(one)} of them fitted one domain this time (the change '
              f'does not act there).']
    print('\n'.join(lines))


if __name__ == '__main__':
    if len(sys.argv) < 3 or sys.argv[1] not in ('run', 'compare'):
        sys.exit(__doc__)
    if sys.argv[1] == 'run':
        run(sys.argv[2], sys.argv[3:])
    else:
        compare(sys.argv[2], sys.argv[3])
