"""Training loss and validation AP / mIoU curves of one or more runs, read from mmengine's scalar logs and overlaid.

mmengine's ``LocalVisBackend`` writes ``WORK_DIR/<timestamp>/vis_data/scalars.json``, one JSON object per line, per
run: training records hold ``loss`` (and ``epoch`` for epoch-based runs), validation records the metrics, each with
the ``step`` it was logged at. The loss is plotted against the iteration; each metric gets a panel of its own, against
the epoch for epoch-based runs (mmdet's schedules) and the iteration for iteration-based ones (mmseg's), as logged.
"""
import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

DEFAULT_METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU')


class CurveError(RuntimeError):
    """A work dir without a usable scalar log; the message says what was looked for."""


def read_scalars(path: Path) -> List[dict]:
    """The records of one scalar log, in order."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CurveError(f'{path}, line {number}: not JSON ({exc}); is the file damaged?') from None
    return records


def newest_run(work_dir: Path) -> Tuple[Path, List[dict]]:
    """(scalars.json path, its records) of the newest run in ``work_dir`` that logged a training loss; runs that
    logged none, such as tools/test.py's, are passed over."""
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


def run_curves(records: Sequence[dict], metrics: Sequence[str]) -> Dict[str, tuple]:
    """The loss against the iteration, and each metric logged against the logged step, as (steps, values, unit)."""
    train = [r for r in records if 'loss' in r]
    by_epoch = any('epoch' in r for r in train)
    curves = {'loss': ([r['step'] for r in train], [r['loss'] for r in train], 'iteration')}
    for key in metrics:
        points = [(r['step'], r[key]) for r in records if key in r]
        if points:
            steps, values = zip(*points)
            curves[key] = (list(steps), list(values), 'epoch' if by_epoch else 'iteration')
    return curves


def describe_run(label: str, path: Path, curves: Dict[str, tuple]) -> str:
    """One line on what a run's log holds."""
    logged = [key for key in curves if key != 'loss']
    return (f'{label}: {path} (loss logged at {len(curves["loss"][0])} steps; '
            f'{", ".join(logged) if logged else "no validation metrics yet"})')


def run_labels(work_dirs: Sequence) -> List[str]:
    """Each run by its work dir's name, or by its path where names repeat."""
    names = [Path(d).resolve().name for d in work_dirs]
    return [name if names.count(name) == 1 else str(d) for name, d in zip(names, work_dirs)]


def plot(runs: Dict[str, dict], metrics: Sequence[str], out: Path) -> List[str]:
    """A PNG at ``out`` with one panel for the loss and one per metric that any run logged, runs (label -> curves)
    overlaid; returns the panels drawn."""
    from matplotlib.figure import Figure  # no pyplot: draws to the file without touching the display backend
    panels = ['loss'] + [key for key in metrics if any(key in curves for curves in runs.values())]
    fig = Figure(figsize=(5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
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
    return panels
