"""tools/dist_train.sh trains the demo detector and segmentor with two processes on CPU (torchrun, gloo, SyncBN -> BN),
every rank training its own share of the data, with the safeguards (a cross-rank finite-loss check) on; SIGTERM to
the launcher saves one checkpoint, and --resume finishes the run."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_demo_data
from mmengine.runner.checkpoint import _load_checkpoint

import convnext_dense  # noqa: F401  our weights-only checkpoint loader

pytestmark = pytest.mark.slow  # end-to-end runs of the tools
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp('demo'), num_train=8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def dist_command(config, work_dir, options, *args):
    # log_level=DEBUG makes mmengine keep one log file per rank.
    command = ['bash', str(REPO / 'tools/dist_train.sh'), str(REPO / config), '2', '--work-dir', str(work_dir), *args,
               '--cfg-options', 'log_level=DEBUG', 'default_hooks.logger.interval=1', 'train_cfg.val_begin=1000',
               'train_dataloader.batch_size=2', *options]
    return dict(args=command, cwd=REPO, env={**os.environ, 'PORT': str(free_port()), 'PYTHON': sys.executable})


def dist_train(config, work_dir, options, *args):
    result = subprocess.run(**dist_command(config, work_dir, options, *args), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return rank_logs(work_dir)


def rank_logs(work_dir):
    """The latest run's log of each rank."""
    runs = sorted(p for p in work_dir.iterdir() if p.is_dir())
    logs = {int(re.search(r'rank(\d+)\.log$', p.name).group(1)): p.read_text() for p in runs[-1].glob('*_rank*.log')}
    assert sorted(logs) == [0, 1], 'one log per rank'
    return logs


def final_losses(logs, pattern):
    return [float(re.findall(pattern + r'.*?\bloss: ([\d.]+)', logs[rank])[-1]) for rank in (0, 1)]


def test_two_process_cpu_training_of_the_segmentor(demo_data, tmp_path):
    root = demo_data / 'ade/ADEChallengeData2016'
    logs = dist_train('configs/demo/upernet_convnext_atto_demo.py', tmp_path, [
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2'])
    assert 'SyncBN -> BN in 2 places: model.decode_head.norm_cfg, model.auxiliary_head.norm_cfg' in logs[0]
    assert 'safeguards: CheckFiniteLossHook, ReproducibleResumeHook' in logs[0]
    losses = final_losses(logs, r'Iter\(train\) \[2/2\]')
    assert losses[0] != losses[1], 'each rank trains on its own share of the data'
    checkpoint = _load_checkpoint(str(tmp_path / 'iter_2.pth'), map_location='cpu')
    assert checkpoint['meta']['iter'] == 2 and 'decode_head.conv_seg.weight' in checkpoint['state_dict']


def test_two_process_cpu_training_of_the_detector(demo_data, tmp_path):
    root = demo_data / 'coco'
    logs = dist_train('configs/demo/mask_rcnn_convnext_atto_demo.py', tmp_path, [
        f'train_dataloader.dataset.data_root={root}/', f'val_dataloader.dataset.data_root={root}/',
        f'val_evaluator.ann_file={root}/annotations/instances_val2017.json',
        'train_cfg.max_epochs=1', 'default_hooks.checkpoint.interval=1'])
    # 8 images, 2 per batch on each of 2 ranks: 2 iterations per epoch.
    losses = final_losses(logs, r'Epoch\(train\) \[1\]\[2/2\]')
    assert losses[0] != losses[1], 'each rank trains on its own share of the data'
    checkpoint = _load_checkpoint(str(tmp_path / 'epoch_1.pth'), map_location='cpu')
    assert checkpoint['meta']['epoch'] == 1 and 'roi_head.mask_head.conv_logits.weight' in checkpoint['state_dict']


def test_sigterm_to_the_launcher_saves_once_and_the_run_resumes(demo_data, tmp_path):
    """SIGTERM to torchrun (tools/dist_train.sh execs it): torchrun passes it on to both workers, which finish the
    iteration, save one checkpoint and exit with status 75; torchrun itself then exits with status 1 (it re-raises
    the signal as an exception, whatever its workers' statuses: see README, "Long runs and preemption")."""
    root = demo_data / 'coco'
    # 8 images, 1 per batch on each of 2 ranks: 4 iterations per epoch.
    options = [f'train_dataloader.dataset.data_root={root}/', f'val_dataloader.dataset.data_root={root}/',
               f'val_evaluator.ann_file={root}/annotations/instances_val2017.json', 'train_dataloader.batch_size=1',
               'train_cfg.max_epochs=1', 'default_hooks.checkpoint.interval=1']
    log = tmp_path / 'launcher.log'
    with open(log, 'w') as out:
        launcher = subprocess.Popen(**dist_command('configs/demo/mask_rcnn_convnext_atto_demo.py', tmp_path, options),
                                    stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while 'Epoch(train) [1][1/4]' not in log.read_text():
        assert launcher.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=120) == 1, log.read_text()[-3000:]
    assert 'Received 15 death signal, shutting down workers' in log.read_text()

    saved = sorted(tmp_path.glob('*.pth'))
    assert len(saved) == 1 and re.fullmatch(r'iter_[123]\.pth', saved[0].name), 'one checkpoint, mid-epoch'
    assert (tmp_path / 'last_checkpoint').read_text() == str(saved[0])
    for rank, text in rank_logs(tmp_path).items():
        # A rank that had not yet received the signal at the iteration's check stops with the other.
        assert re.search(rf'(SIGTERM|a signal on another rank): stopped after iteration {saved[0].stem[5:]}, '
                         rf'saved {saved[0]}; exiting with status 75', text), rank

    logs = dist_train('configs/demo/mask_rcnn_convnext_atto_demo.py', tmp_path, options, '--resume')
    done = int(saved[0].stem[5:])
    assert f'resuming epoch 1 at its batch {done + 1}: skipping the {done} batches' in logs[0]
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_1.pth']
    checkpoint = _load_checkpoint(str(tmp_path / 'epoch_1.pth'), map_location='cpu')
    assert checkpoint['meta']['epoch'] == 1 and checkpoint['meta']['iter'] == 4
