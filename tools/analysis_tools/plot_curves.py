"""Plot training loss and validation AP / mIoU of one or more runs into one PNG, runs overlaid (e.g. ConvNeXt vs Swin).

    python tools/analysis_tools/plot_curves.py WORK_DIR [WORK_DIR ...] [--out FILE] [--metrics KEY ...]

Reads mmengine's scalar log of the newest training run in each work dir (``WORK_DIR/<timestamp>/vis_data/
scalars.json``, one JSON object per line; runs that logged no training loss, such as tools/test.py's, are passed
over). The loss is plotted against the iteration; each metric gets a panel of its own, against the epoch for
epoch-based runs (mmdet's schedules) and the iteration for iteration-based ones (mmseg's), as logged. Prints the PNG's
path.
"""
import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

DEFAULT_METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU')


class CurveError(RuntimeError):
    """A work dir without a usable scalar log; the message says what was looked for."""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dirs', nargs='+', metavar='WORK_DIR', help='work dirs of tools/train.py runs')
    parser.add_argument('--out', help='PNG to write (default: WORK_DIR/curves.png of the first work dir)')
    parser.add_argument('--metrics', nargs='+', default=list(DEFAULT_METRICS), metavar='KEY',
                        help='validation metrics to plot, as logged; those no run logged are left out '
                             f'(default: {" ".join(DEFAULT_METRICS)})')
    return parser.parse_args()


def read_scalars(path: Path) -> list:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CurveError(f'{path}, line {number}: not JSON ({exc}); is the file damaged?') from None
    return records


def newest_run(work_dir: Path) -> tuple:
    """(scalars.json path, its records) of the newest run in ``work_dir`` that logged a training loss."""
    if not work_dir.is_dir():
        raise CurveError(f'work dir not found: {work_dir}')
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'), key=lambda p: p.parent.parent.name, reverse=True)
    for path in logs:
        records = read_scalars(path)
        if any('loss' in record for record in records):
            return path, records
    found = f'; {len(logs)} scalar logs there hold no training loss' if logs else ''
    raise CurveError(f'no scalar log of a training run in {work_dir}: expected {work_dir}/<timestamp>/vis_data/'
                     f'scalars.json as tools/train.py writes it{found}. Give the --work-dir of a training run')


def run_curves(records: list, metrics) -> dict:
    """The loss against the iteration, and each metric against the logged step, with its unit."""
    train = [r for r in records if 'loss' in r]
    by_epoch = any('epoch' in r for r in train)
    curves = {'loss': ([r['step'] for r in train], [r['loss'] for r in train], 'iteration')}
    for key in metrics:
        points = [(r['step'], r[key]) for r in records if key in r]
        if points:
            steps, values = zip(*points)
            curves[key] = (list(steps), list(values), 'epoch' if by_epoch else 'iteration')
    return curves


def run_labels(work_dirs) -> list:
    """Each run by its work dir's name, or by its path where names repeat."""
    names = [Path(d).resolve().name for d in work_dirs]
    return [name if names.count(name) == 1 else str(d) for name, d in zip(names, work_dirs)]


def plot(runs: dict, metrics, out: Path) -> list:
    """One panel for the loss, one per metric that any run logged; returns the panels drawn."""
    panels = ['loss'] + [key for key in metrics if any(key in curves for curves in runs.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, key in zip(axes[0], panels):
        units = set()
        for label, curves in runs.items():
            if key in curves:
                steps, values, unit = curves[key]
                # Markers where points are few, so that a run with one logged value still shows.
                ax.plot(steps, values, marker='o' if len(steps) < 50 else None, markersize=4, label=label)
                units.add(unit)
        ax.set_title(key)
        ax.set_xlabel(' / '.join(sorted(units)))
        ax.grid(alpha=0.3)
        ax.legend(fontsize='small')
    axes[0][0].set_ylabel('training loss')
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return panels


def main():
    args = parse_args()
    runs = {}
    try:
        for label, work_dir in zip(run_labels(args.work_dirs), args.work_dirs):
            path, records = newest_run(Path(work_dir))
            runs[label] = run_curves(records, args.metrics)
            logged = [key for key in runs[label] if key != 'loss']
            print(f'{label}: {path} (loss logged at {len(runs[label]["loss"][0])} steps; '
                  f'{", ".join(logged) if logged else "no validation metrics yet"})')
    except CurveError as exc:
        sys.exit(f'error: {exc}')
    out = Path(args.out) if args.out else Path(args.work_dirs[0]) / 'curves.png'
    plot(runs, args.metrics, out)
    print(out)


if __name__ == '__main__':
    main()
