"""tools/test.py --tta, --show-dir and the per-class tables, end to end on the demo detector and segmentor: tiny models
trained for a few steps on a tiny synthetic data set, then tested as a user would."""
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_demo_data

pytestmark = pytest.mark.slow  # end-to-end runs of the tools
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / 'configs' / 'demo'
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_WAIT_POLICY='PASSIVE')
NUM_VAL = 2
CLASSES = ('circle', 'square', 'triangle')


def run(args, cwd) -> str:
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}'
    return result.stdout + result.stderr


def metrics_of(log: str) -> dict:
    lines = [line for line in log.splitlines() if line.startswith('metrics: ')]
    assert len(lines) == 1, log[-3000:]
    return json.loads(lines[0][len('metrics: '):])


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('tta')
    write_demo_data(root / 'data' / 'demo', num_train=4, num_val=NUM_VAL)
    return root


def train(workspace: Path, config: str, *short: str) -> str:
    work_dir = workspace / 'work_dirs' / Path(config).stem
    run([REPO / 'tools' / 'train.py', DEMO / config, '--work-dir', work_dir, '--cfg-options', *short], cwd=workspace)
    return (work_dir / 'last_checkpoint').read_text().strip()


@pytest.fixture(scope='module')
def detector(workspace) -> str:
    return train(workspace, 'mask_rcnn_convnext_atto_demo.py', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1')


@pytest.fixture(scope='module')
def segmentor(workspace) -> str:
    return train(workspace, 'upernet_convnext_atto_demo.py', 'train_cfg.max_iters=4', 'train_cfg.val_interval=4')


def run_test(workspace: Path, config: str, checkpoint: str, *args) -> str:
    return run([REPO / 'tools' / 'test.py', DEMO / config, checkpoint, '--work-dir', workspace / 'work_dirs' / 'test',
                *args], cwd=workspace)


def test_detector_log_has_per_class_ap_and_show_dir_draws_every_image(workspace, detector):
    show_dir = workspace / 'det_pictures'
    log = run_test(workspace, 'mask_rcnn_convnext_atto_demo.py', detector, '--show-dir', show_dir)
    metrics = metrics_of(log)
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(metrics)
    # mmdet's classwise table, once for boxes and once for masks: a header, then one row per class
    assert log.count('| category | mAP ') == 2, log[-5000:]
    for name in CLASSES:
        assert log.count(f'| {name} ') == 2 and f'coco/{name}_precision' in metrics
    pictures = sorted(show_dir.glob('*.jpg')) + sorted(show_dir.glob('*.png'))
    assert len(pictures) == NUM_VAL and all(p.stat().st_size > 0 for p in pictures)
    assert f'--show-dir: pictures of the predictions go to {show_dir}' in log


def test_detector_tta_merges_views_and_evaluates_boxes_only(workspace, detector):
    out = workspace / 'det_tta.pkl'
    log = run_test(workspace, 'mask_rcnn_convnext_atto_demo.py', detector, '--tta', '--out', out)
    assert '--tta: test pipeline = tta_pipeline (6 views per image), model wrapped in DetTTAModel' in log
    assert "DetTTAModel merges the boxes of the views (NMS), NOT the masks" in log
    assert 'For mask AP, run tools/test.py without --tta' in log
    metrics = metrics_of(log)
    assert 0 <= metrics['coco/bbox_mAP'] <= 1 and not any(key.startswith('coco/segm') for key in metrics), metrics
    assert log.count('| category | mAP ') == 1  # the box table only
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == NUM_VAL
    for prediction in predictions:
        # A merged prediction carries the meta of the first view: the smallest scale (96 px of 192), flipped.
        assert max(prediction['img_shape']) == 96 and prediction['flip'] is True
        assert 'masks' not in prediction['pred_instances']


def test_segmentor_tta_runs_the_ms_flip_views_and_draws(workspace, segmentor):
    show_dir = workspace / 'seg_pictures'
    log = run_test(workspace, 'upernet_convnext_atto_demo.py', segmentor, '--tta', '--show-dir', show_dir)
    assert '--tta: test pipeline = tta_pipeline (12 views per image), model wrapped in SegTTAModel' in log
    metrics = metrics_of(log)
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert 0 <= metrics[key] <= 100, metrics
    # mmseg's IoUMetric table: IoU and accuracy per class
    assert 'per class results:' in log
    assert all(re.search(rf'\|\s+{name}\s+\|', log) for name in ('background', *CLASSES)), log[-3000:]
    pictures = sorted((show_dir / 'vis_data' / 'vis_image').glob('*.png'))
    assert len(pictures) == NUM_VAL, pictures

