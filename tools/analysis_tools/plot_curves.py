"""Plot training loss and validation AP / mIoU of one or more runs into one PNG, runs overlaid (e.g. ConvNeXt vs Swin).

    python tools/analysis_tools/plot_curves.py WORK_DIR [WORK_DIR ...] [--out FILE] [--metrics KEY ...]

Reads mmengine's scalar log of the newest training run in each work dir (``WORK_DIR/<timestamp>/vis_data/
scalars.json``, one JSON object per line; runs that logged no training loss, such as tools/test.py's, are passed
over). The loss is plotted against the iteration; each metric gets a panel of its own, against the epoch for
epoch-based runs (mmdet's schedules) and the iteration for iteration-based ones (mmseg's), as logged. Prints the PNG's
path.
"""
import argparse
import sys
from pathlib import Path

from convnext_dense.visualization.training_curves import (
    DEFAULT_METRICS,
    CurveError,
    describe_run,
    newest_run,
    plot,
    run_curves,
    run_labels,
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dirs', nargs='+', metavar='WORK_DIR', help='work dirs of tools/train.py runs')
    parser.add_argument('--out', help='PNG to write (default: WORK_DIR/curves.png of the first work dir)')
    parser.add_argument('--metrics', nargs='+', default=list(DEFAULT_METRICS), metavar='KEY',
                        help='validation metrics to plot, as logged; those no run logged are left out '
                             f'(default: {" ".join(DEFAULT_METRICS)})')
    return parser.parse_args()


def main():
    args = parse_args()
    runs = {}
    try:
        for label, work_dir in zip(run_labels(args.work_dirs), args.work_dirs):
            path, records = newest_run(Path(work_dir))
            runs[label] = run_curves(records, args.metrics)
            print(describe_run(label, path, runs[label]))
    except CurveError as exc:
        sys.exit(f'error: {exc}')
    out = Path(args.out) if args.out else Path(args.work_dirs[0]) / 'curves.png'
    plot(runs, args.metrics, out)
    print(out)


if __name__ == '__main__':
    main()
