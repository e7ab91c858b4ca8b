"""tools/train.py and tools/test.py (and their torchrun launchers) train and evaluate the demo configs end to end on
the synthetic data: short runs that must finish, save a checkpoint and report real COCO AP / mIoU numbers."""
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end runs of the tools
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / 'configs' / 'demo'
# CPU runs, as in CI. Spinning OpenMP threads crawl when another process holds the second core; passive waiting
# costs little otherwise.
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_WAIT_POLICY='PASSIVE')
SHORT_DET = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1']
SHORT_SEG = ['train_cfg.max_iters=4', 'train_cfg.val_interval=4']


def run(args, cwd, timeout=300, **env):
    result = subprocess.run(args, cwd=cwd, env=dict(ENV, **env), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}'
    return result.stdout + result.stderr


def tool(name):
    return [sys.executable, str(REPO / 'tools' / name)]


def metrics_of(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith('metrics: ')]
    assert len(lines) == 1, output[-3000:]
    return json.loads(lines[0][len('metrics: '):])


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    """A folder with the demo data where the configs expect it (data/demo/, relative to the working directory)."""
    root = tmp_path_factory.mktemp('workspace')
    run(tool('misc/make_demo_data.py') + ['--num-train', '8', '--num-val', '4'], cwd=root)
    return root


def train_then_test(workspace: Path, config: str, short: list, extra_test_args=()) -> tuple:
    work_dir = workspace / 'work_dirs' / Path(config).stem
    train_log = run(tool('train.py') + [str(DEMO / config), '--work-dir', str(work_dir), '--cfg-options', *short],
                    cwd=workspace)
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    assert Path(checkpoint).is_file()
    test_log = run(tool('test.py') + [str(DEMO / config), checkpoint, '--work-dir', str(work_dir / 'test'),
                                      *extra_test_args], cwd=workspace)
    return train_log, metrics_of(test_log)


def assert_coco_metrics(metrics: dict):
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert isinstance(metrics[key], float) and 0 <= metrics[key] <= 1, (key, metrics)


@pytest.mark.parametrize('config', ['mask_rcnn_convnext_atto_demo.py', 'cascade_rcnn_convnext_atto_demo.py'])
def test_detection_demo_trains_and_reports_ap(workspace, config):
    out = workspace / f'{config}.pkl'
    train_log, metrics = train_then_test(workspace, config, SHORT_DET, ['--out', str(out)])
    assert 'LearningRateDecayOptimizerConstructor: layer_wise, decay_rate=0.9, num_layers=6' in train_log
    assert 'coco/bbox_mAP' in train_log  # validation ran after the epoch too
    assert_coco_metrics(metrics)
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 4 and all('bboxes' in p['pred_instances'] for p in predictions)


def test_segmentation_demo_trains_and_reports_miou(workspace):
    train_log, metrics = train_then_test(workspace, 'upernet_convnext_atto_demo.py', SHORT_SEG)
    assert 'LearningRateDecayOptimizerConstructor: stage_wise, decay_rate=0.9, num_layers=6' in train_log
    # mmseg's SyncBN heads run as BN in one process, and the log says so.
    assert 'SyncBatchNorm (SyncBN) layers in the model will be automatically reverted' in train_log
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert isinstance(metrics[key], float) and 0 <= metrics[key] <= 100, (key, metrics)


def test_resume_continues_from_the_last_checkpoint(workspace):
    config = str(DEMO / 'upernet_convnext_atto_demo.py')
    work_dir = workspace / 'work_dirs' / 'resume'
    run(tool('train.py') + [config, '--work-dir', str(work_dir), '--cfg-options', 'train_cfg.max_iters=2',
                            'train_cfg.val_interval=100'], cwd=workspace)
    log = run(tool('train.py') + [config, '--work-dir', str(work_dir), '--resume', '--cfg-options',
                                  'train_cfg.max_iters=4', 'train_cfg.val_interval=100'], cwd=workspace)
    assert f'Load checkpoint from {work_dir / "iter_2.pth"}' in log  # the one last_checkpoint names
    assert 'resumed epoch: 0, iter: 2' in log
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(work_dir / 'iter_4.pth')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_distributed_launchers_run_two_processes(workspace):
    config = str(DEMO / 'mask_rcnn_convnext_atto_demo.py')
    work_dir = workspace / 'work_dirs' / 'dist'
    train_log = run([str(REPO / 'tools' / 'dist_train.sh'), config, '2', '--work-dir', str(work_dir),
                     '--cfg-options', 'train_cfg.max_epochs=1'], cwd=workspace, PORT=str(free_port()))
    assert 'Distributed training is not used' not in train_log
    assert 'no GPU: distributed over gloo with DDP on CPU' in train_log
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    test_log = run([str(REPO / 'tools' / 'dist_test.sh'), config, checkpoint, '2', '--work-dir',
                    str(work_dir / 'test')], cwd=workspace, PORT=str(free_port()))
    assert_coco_metrics(metrics_of(test_log))  # printed once, by rank 0, over the images of both ranks
