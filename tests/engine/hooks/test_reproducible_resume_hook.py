"""A training killed mid-run (SIGKILL) and resumed with --resume reaches exactly the weights of an uninterrupted run;
mmengine's checkpoint reads go through our weights-only loader."""
import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

from convnext_dense import CheckpointError, patches
from convnext_dense.apis.runner_setup import add_runner_args

pytestmark = pytest.mark.slow  # end-to-end runs of the tools
REPO = Path(__file__).resolve().parents[3]
SEG_CONFIG = REPO / 'configs/demo/upernet_convnext_atto_demo.py'
ITERS, INTERVAL = 4, 2


def train_command(work_dir, data, *extra, seed='0'):
    """The UperNet demo, iteration-based with random crops, flips, photometric distortion and drop path, in
    deterministic mode; no validation."""
    root = data / 'ade/ADEChallengeData2016'
    return [sys.executable, str(REPO / 'tools/train.py'), str(SEG_CONFIG), '--work-dir', str(work_dir), *extra,
            '--cfg-options', f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            'train_dataloader.batch_size=2', f'train_cfg.max_iters={ITERS}', 'train_cfg.val_begin=1000',
            f'default_hooks.checkpoint.interval={INTERVAL}', 'default_hooks.checkpoint.max_keep_ckpts=1',
            f'randomness.seed={seed}', 'randomness.deterministic=True']


@pytest.fixture(scope='module')
def uninterrupted(demo_data, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    subprocess.run(train_command(work_dir, demo_data), check=True, capture_output=True, cwd=REPO)
    return _load_checkpoint(str(work_dir / f'iter_{ITERS}.pth'), map_location='cpu')


def test_sigkilled_training_resumes_to_the_weights_of_an_uninterrupted_run(demo_data, uninterrupted, tmp_path):
    work_dir = tmp_path / 'killed'
    process = subprocess.Popen(train_command(work_dir, demo_data), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=REPO)
    # mmengine writes last_checkpoint once the checkpoint file is complete.
    deadline = time.time() + 300
    while not (work_dir / 'last_checkpoint').exists():
        assert process.poll() is None, 'training ended before its first checkpoint'
        assert time.time() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert (work_dir / 'last_checkpoint').read_text().endswith(f'iter_{INTERVAL}.pth')
    assert not (work_dir / f'iter_{ITERS}.pth').exists(), 'killed too late to test anything'

    # Resumed with no seed in the config: mmengine takes the checkpoint's, and so must the data sampler.
    resumed = subprocess.run(train_command(work_dir, demo_data, '--resume', seed='None'), capture_output=True,
                             text=True, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'random states restored from the checkpoint of iteration {INTERVAL}' in resumed.stdout
    result = _load_checkpoint(str(work_dir / f'iter_{ITERS}.pth'), map_location='cpu')
    assert result['meta']['iter'] == uninterrupted['meta']['iter'] == ITERS
    for name, expected in uninterrupted['state_dict'].items():
        assert torch.equal(result['state_dict'][name], expected), name
    for (i, expected), (j, state) in zip(uninterrupted['optimizer']['state'].items(),
                                         result['optimizer']['state'].items()):
        assert i == j and torch.equal(state['exp_avg'], expected['exp_avg']), f'AdamW state of parameter {i}'


def test_our_training_checkpoints_load_weights_only_and_foreign_objects_are_refused(uninterrupted, tmp_path,
                                                                                     monkeypatch):
    assert CheckpointLoader._get_checkpoint_loader('/any/local.pth') is patches.load_from_local, \
        'importing convnext_dense installs the safe loader'
    ours = tmp_path / 'ours.pth'
    torch.save(uninterrupted, ours)
    assert 'random_states' in _load_checkpoint(str(ours), map_location='cpu')  # numpy/mmengine objects allowlisted

    foreign = tmp_path / 'foreign.pth'
    torch.save(dict(uninterrupted, args=argparse.Namespace(lr=0.1)), foreign)
    with pytest.raises(CheckpointError, match=r'refused to load.*argparse\.Namespace.*--unsafe-load.*'
                                              'CONVNEXT_DENSE_UNSAFE_LOAD=1'):
        _load_checkpoint(str(foreign), map_location='cpu')
    monkeypatch.setenv(patches.UNSAFE_LOAD_ENV, '1')
    assert _load_checkpoint(str(foreign), map_location='cpu')['args'].lr == 0.1

    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(ours.read_bytes()[:ours.stat().st_size // 2])
    with pytest.raises(CheckpointError, match='truncated, corrupted or not a PyTorch checkpoint'):
        _load_checkpoint(str(truncated), map_location='cpu')


def test_resuming_from_a_truncated_checkpoint_says_so(demo_data, uninterrupted, tmp_path):
    checkpoint = tmp_path / 'iter_2.pth'
    torch.save(uninterrupted, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100_000])
    result = subprocess.run(train_command(tmp_path / 'work', demo_data, '--resume', str(checkpoint)),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    assert f'{checkpoint}: cannot be read; it is truncated, corrupted or not a PyTorch checkpoint' in result.stderr


def test_unsafe_load_flag_of_the_tools_lets_a_trusted_checkpoint_through(uninterrupted, tmp_path, monkeypatch):
    trusted = tmp_path / 'trusted.pth'
    torch.save(dict(uninterrupted, args=argparse.Namespace(lr=0.1)), trusted)
    monkeypatch.setenv(patches.UNSAFE_LOAD_ENV, '0')  # restored after the test, whatever the flag sets
    parser = argparse.ArgumentParser()
    add_runner_args(parser)
    assert parser.parse_args([]).unsafe_load is False
    with pytest.raises(CheckpointError, match='refused to load'):
        _load_checkpoint(str(trusted), map_location='cpu')
    assert parser.parse_args(['--unsafe-load']).unsafe_load is True
    assert _load_checkpoint(str(trusted), map_location='cpu')['args'].lr == 0.1
