"""Chaos test of tools/train.py: the demo detector, with a checkpoint every epoch and max_keep_ckpts=1, is killed
(SIGKILL) at random moments, once while a checkpoint is being written, and preempted (SIGTERM) in the middle of an
epoch; resumed with --resume after each, it ends with exactly the weights and optimizer state of an uninterrupted run
with the same seed. --resume with no intact checkpoint is a one-line error."""
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_demo_data
from mmengine.runner.checkpoint import _load_checkpoint

from convnext_dense.engine.hooks import EXIT_REQUEUE
from convnext_dense.engine.hooks.safe_checkpoint_hook import unreadable

pytestmark = pytest.mark.slow  # end-to-end runs of the tools
REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs/demo/mask_rcnn_convnext_atto_demo.py'
EPOCHS, ITERS_PER_EPOCH = 3, 4  # 4 images, batch 1
SLOW_WRITE_S = 1.5  # each checkpoint write is held this long before its fsync, long enough to be killed during it
CHAOS_SEED = 15  # the seed of the kill moments: the test is repeatable
# Loaded before tools/train.py by the interpreter (sitecustomize on PYTHONPATH): checkpoint writes, which go to
# '.tmp-<name>.pth' until they are complete, are held SLOW_CHECKPOINT_WRITE seconds before their fsync.
SLOW_WRITE = '''import os, time

_delay, _fsync = float(os.environ['SLOW_CHECKPOINT_WRITE']), os.fsync


def _slow_fsync(fd):
    name = os.path.basename(os.readlink(f'/proc/self/fd/{fd}'))
    if name.startswith('.tmp-') and name.endswith('.pth'):
        time.sleep(_delay)
    return _fsync(fd)


os.fsync = _slow_fsync
'''


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp('demo'), num_train=ITERS_PER_EPOCH, num_val=1) / 'coco'


def train_command(work_dir, coco, *extra):
    """The Mask R-CNN demo (random flips, drop path), deterministic, a checkpoint every epoch, no validation."""
    return [sys.executable, str(REPO / 'tools/train.py'), str(CONFIG), '--work-dir', str(work_dir), *extra,
            '--cfg-options', f'train_dataloader.dataset.data_root={coco}/', f'val_dataloader.dataset.data_root={coco}/',
            f'val_evaluator.ann_file={coco}/annotations/instances_val2017.json', 'train_dataloader.batch_size=1',
            f'train_cfg.max_epochs={EPOCHS}', 'train_cfg.val_begin=1000', 'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=1', 'default_hooks.logger.interval=1', 'randomness.seed=0',
            'randomness.deterministic=True']


def environment(tmp_path) -> dict:
    """CPU runs with slow checkpoint writes."""
    customize = tmp_path / 'slow_write'
    customize.mkdir()
    (customize / 'sitecustomize.py').write_text(SLOW_WRITE)
    path = os.pathsep.join(filter(None, [str(customize), os.environ.get('PYTHONPATH')]))
    return dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_WAIT_POLICY='PASSIVE', PYTHONPATH=path,
                SLOW_CHECKPOINT_WRITE=str(SLOW_WRITE_S))


class Training:
    """tools/train.py in a subprocess, its output in a file."""

    def __init__(self, command, env, log: Path):
        self.log = log
        with open(log, 'w') as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)

    def wait_for(self, ready, what: str, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while not ready():
            assert self.process.poll() is None, f'training ended before {what}:\n{self.output()[-3000:]}'
            assert time.time() < deadline, f'no {what} within {timeout} s:\n{self.output()[-3000:]}'
            time.sleep(0.02)

    def kill(self, signum=signal.SIGKILL) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=120)

    def output(self) -> str:
        return self.log.read_text()


def tensors(obj, name=''):
    """(name, tensor) for every tensor in a nested checkpoint."""
    if isinstance(obj, torch.Tensor):
        yield name, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from tensors(value, f'{name}.{key}')
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from tensors(value, f'{name}[{i}]')


def resumable_checkpoint(work_dir: Path) -> Path:
    """What --resume starts from: last_checkpoint names an intact checkpoint (no fallback needed)."""
    named = Path((work_dir / 'last_checkpoint').read_text())
    assert unreadable(str(named)) is None, f'{named} is {unreadable(str(named))}'
    return named


def test_killed_and_preempted_training_resumes_to_the_weights_of_an_uninterrupted_run(coco, tmp_path):
    subprocess.run(train_command(tmp_path / 'uninterrupted', coco), check=True, capture_output=True, cwd=REPO,
                   env=dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_WAIT_POLICY='PASSIVE'))
    expected = _load_checkpoint(str(tmp_path / f'uninterrupted/epoch_{EPOCHS}.pth'), map_location='cpu')

    rng, env, work_dir = random.Random(CHAOS_SEED), environment(tmp_path), tmp_path / 'chaos'
    first, resume = train_command(work_dir, coco), train_command(work_dir, coco, '--resume')

    # SIGKILL at a random moment of epoch 2, once epoch_1.pth is complete.
    run = Training(first, env, tmp_path / 'run1.log')
    run.wait_for(lambda: (work_dir / 'last_checkpoint').exists(), 'the first checkpoint')
    time.sleep(rng.uniform(0, 1.2))
    assert run.kill() == -signal.SIGKILL
    resumable_checkpoint(work_dir)

    # A fast machine may have been killed while writing epoch_2.pth: the resumed run removes what that left.
    leftovers = sorted(work_dir.glob('.tmp-*'))

    # SIGKILL while the next checkpoint is being written: the one before is still complete and named.
    run = Training(resume, env, tmp_path / 'run2.log')
    run.wait_for(lambda: 'Saving checkpoint at' in run.output() and list(work_dir.glob('.tmp-epoch_*.pth')),
                 'a checkpoint write')
    for leftover in leftovers:
        assert f'removing {leftover}, left by a run that stopped while saving' in run.output()
    time.sleep(rng.uniform(0, SLOW_WRITE_S - 0.5))
    assert run.kill() == -signal.SIGKILL
    [partial] = work_dir.glob('.tmp-epoch_*.pth')
    saved = resumable_checkpoint(work_dir)
    assert saved.name != partial.name[len('.tmp-'):], 'killed while writing, so last_checkpoint names the one before'
    assert f'Saving checkpoint at {int(saved.stem[len("epoch_"):]) + 1} epochs' in run.output()

    # SIGTERM after the first or second iteration of an epoch: saved after the iteration in progress, status 75.
    run = Training(resume, env, tmp_path / 'run3.log')
    after = rng.choice([1, 2])
    run.wait_for(lambda: re.search(rf'Epoch\(train\) +\[\d\]\[{after}/{ITERS_PER_EPOCH}\]', run.output()),
                 f'iteration {after} of an epoch')
    assert run.kill(signal.SIGTERM) == EXIT_REQUEUE, run.output()[-3000:]
    stopped = int(re.search(r'SIGTERM: stopped after iteration (\d+), saved', run.output()).group(1))
    assert stopped % ITERS_PER_EPOCH in (after, after + 1), 'stopped in the middle of the epoch'
    assert resumable_checkpoint(work_dir) == work_dir / f'iter_{stopped}.pth'
    assert not list(work_dir.glob('.tmp-*')), 'the partial checkpoint of the killed run was removed'

    run = Training(resume, env, tmp_path / 'run4.log')
    assert run.process.wait(timeout=300) == 0, run.output()[-3000:]
    done = stopped % ITERS_PER_EPOCH
    assert f'resuming epoch {stopped // ITERS_PER_EPOCH + 1} at its batch {done + 1}: skipping the {done}' \
        in run.output()
    assert sorted(p.name for p in work_dir.glob('*.pth')) == [f'epoch_{EPOCHS}.pth'], \
        'max_keep_ckpts=1 and the mid-epoch checkpoint removed'

    result = _load_checkpoint(str(work_dir / f'epoch_{EPOCHS}.pth'), map_location='cpu')
    assert result['meta']['iter'] == expected['meta']['iter'] == EPOCHS * ITERS_PER_EPOCH
    for part in ('state_dict', 'optimizer'):
        expected_tensors, result_tensors = dict(tensors(expected[part])), dict(tensors(result[part]))
        assert result_tensors.keys() == expected_tensors.keys() and expected_tensors
        for name, tensor in expected_tensors.items():
            assert torch.equal(result_tensors[name], tensor), f'{part}{name}'


def test_resume_without_an_intact_checkpoint_is_a_one_line_error(coco, tmp_path):
    truncated = b'PK\x03\x04 cut short'
    (tmp_path / 'epoch_1.pth').write_bytes(truncated)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    result = subprocess.run(train_command(tmp_path, coco, '--resume'), capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f'error: cannot resume: no intact checkpoint in {tmp_path} ({tmp_path}/last_checkpoint names '
        f'{tmp_path}/epoch_1.pth, which is truncated or corrupted ({len(truncated)} bytes); no other *.pth files). '
        'Start the run anew without --resume (resume=False), or give a checkpoint with --resume PATH')
    assert 'Traceback' not in result.stderr
