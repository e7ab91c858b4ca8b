"""convnext_dense.visualization.training_curves: the newest training run of a work dir is read from mmengine's scalar
logs, metrics keep the unit their run logged them in, and runs are told apart by name."""
import json
from pathlib import Path

import cv2
import pytest

from convnext_dense.visualization.training_curves import (
    CurveError,
    describe_run,
    newest_run,
    plot,
    run_curves,
    run_labels,
)


def write_run(work_dir: Path, timestamp: str, records: list) -> Path:
    path = work_dir / timestamp / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    path.write_text(''.join(json.dumps(record) + '\n' for record in records))
    return path


def detection_records() -> list:
    """An epoch-based run as mmengine logs it: losses by iteration, 20 iterations an epoch, AP after each epoch."""
    records = []
    for epoch in (1, 2):
        records += [dict(loss=1.0 / step, epoch=epoch, iter=step, step=step) for step in (20 * epoch - 10, 20 * epoch)]
        records.append({'coco/bbox_mAP': 0.2 * epoch, 'coco/bbox_mAP_50': 0.5, 'step': epoch})
    return records


def test_metric_steps_keep_the_unit_of_the_run():
    detection = run_curves(detection_records(), ['coco/bbox_mAP', 'mIoU'])
    assert detection['loss'][0] == [10, 20, 30, 40] and detection['loss'][2] == 'iteration'
    assert detection['coco/bbox_mAP'] == ([1, 2], [0.2, 0.4], 'epoch')
    assert 'mIoU' not in detection
    segmentation = [dict(loss=1.5, iter=i, step=i) for i in (50, 100)] + [dict(mIoU=30.0, aAcc=80.0, step=100)]
    assert run_curves(segmentation, ['mIoU'])['mIoU'] == ([100], [30.0], 'iteration')
    assert describe_run('seg', Path('log.json'), run_curves(segmentation, [])) == (
        'seg: log.json (loss logged at 2 steps; no validation metrics yet)')


def test_the_newest_run_with_a_training_loss_is_read(tmp_path):
    write_run(tmp_path, '20240101_000000', [dict(loss=9.0, step=1)])
    newest = write_run(tmp_path, '20240102_000000', detection_records())
    write_run(tmp_path, '20240103_000000', [{'coco/bbox_mAP': 0.4, 'step': 0}])  # a test run: no training loss
    assert newest_run(tmp_path) == (newest, detection_records())

    damaged = write_run(tmp_path / 'damaged', '20240101_000000', [dict(loss=1.0, step=1)])
    damaged.write_text(damaged.read_text() + '{"loss": \n')
    with pytest.raises(CurveError, match=r'scalars\.json, line 2: not JSON'):
        newest_run(tmp_path / 'damaged')
    write_run(tmp_path / 'tested', '20240101_000000', [{'mIoU': 30.0, 'step': 0}])
    with pytest.raises(CurveError, match='no scalar log of a training run in .*; 1 scalar logs there hold no training'):
        newest_run(tmp_path / 'tested')
    with pytest.raises(CurveError, match='work dir not found'):
        newest_run(tmp_path / 'missing')


def test_runs_are_labelled_by_name_or_by_path_where_names_repeat(tmp_path):
    assert run_labels([tmp_path / 'a' / 'convnext', tmp_path / 'swin']) == ['convnext', 'swin']
    assert run_labels([tmp_path / 'a' / 'run', tmp_path / 'b' / 'run']) == [
        str(tmp_path / 'a' / 'run'), str(tmp_path / 'b' / 'run')]


def test_plot_has_a_panel_for_the_loss_and_each_metric_logged(tmp_path):
    runs = {'convnext': run_curves(detection_records(), ['coco/bbox_mAP', 'mIoU'])}
    assert plot(runs, ['coco/bbox_mAP', 'mIoU'], tmp_path / 'plots' / 'curves.png') == ['loss', 'coco/bbox_mAP']
    assert cv2.imread(str(tmp_path / 'plots' / 'curves.png')).shape == (400, 1000, 3)
