"""tools/analysis_tools/plot_curves.py overlays the loss and AP / mIoU curves of several runs from mmengine's scalar
logs, reading the newest training run of each work dir, and says so when a work dir has none
(tests/visualization/test_training_curves.py tests the reading and plotting on their own)."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[3]
MATPLOTLIB_BLUE, MATPLOTLIB_ORANGE = (31, 119, 180), (255, 127, 14)  # the first two line colours (RGB)


def write_run(work_dir: Path, timestamp: str, records: list) -> Path:
    path = work_dir / timestamp / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    path.write_text(''.join(json.dumps(record) + '\n' for record in records))
    return path


def detection_run(epochs: int, iters_per_epoch: int, ap: float) -> list:
    """What mmengine logs for an epoch-based mmdet run: training losses by iteration, AP by epoch."""
    records = []
    for epoch in range(1, epochs + 1):
        for i in range(10, iters_per_epoch + 1, 10):
            step = (epoch - 1) * iters_per_epoch + i
            records.append(dict(lr=1e-4, loss=2.0 / step ** 0.3, loss_cls=0.5, epoch=epoch, iter=step, step=step))
        records.append({'coco/bbox_mAP': ap * epoch / epochs, 'coco/segm_mAP': 0.9 * ap * epoch / epochs,
                        'coco/bbox_mAP_50': 0.7, 'step': epoch})
    return records


def plot_curves(*args, cwd):
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'analysis_tools' / 'plot_curves.py'), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_two_runs_overlaid_from_their_newest_training_logs(tmp_path):
    convnext, swin = tmp_path / 'convnext_t', tmp_path / 'swin_t'
    write_run(convnext, '20240101_000000', [dict(loss=9.0, iter=1, step=1)])  # an older run
    newest = write_run(convnext, '20240102_000000', detection_run(3, 50, 0.46))
    write_run(convnext, '20240103_000000', [{'coco/bbox_mAP': 0.46, 'step': 0}])  # tools/test.py: no training loss
    write_run(swin, '20240105_120000', detection_run(3, 50, 0.44))
    result = plot_curves(convnext, swin, '--out', 'plots/curves.png', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f'convnext_t: {newest} (loss logged at 15 steps; coco/bbox_mAP, coco/segm_mAP)'
    assert lines[-1] == 'plots/curves.png'
    picture = cv2.imread(str(tmp_path / 'plots' / 'curves.png'))[..., ::-1]
    assert picture.shape == (400, 1500, 3)  # panels: loss, bbox mAP, segm mAP (no run logged mIoU)
    for colour in (MATPLOTLIB_BLUE, MATPLOTLIB_ORANGE):  # both runs drawn
        assert (np.abs(picture.astype(int) - colour).max(-1) <= 10).sum() > 200, colour


def test_a_work_dir_without_scalar_log_is_an_error(tmp_path):
    (tmp_path / 'empty').mkdir()
    result = plot_curves(tmp_path / 'empty', '--out', 'curves.png', cwd=tmp_path)
    assert result.returncode == 1
    assert f'error: no scalar log of a training run in {tmp_path / "empty"}: expected' in result.stderr
    assert not (tmp_path / 'curves.png').exists()
    result = plot_curves(tmp_path / 'missing', cwd=tmp_path)
    assert result.returncode == 1 and 'error: work dir not found' in result.stderr
