"""Crash-safe checkpoints: a save interrupted at any point (killed, disk full) leaves the previous checkpoint and
last_checkpoint usable; --resume skips a missing or truncated checkpoint; stock configs keep mmengine's hook;
SIGTERM mid-epoch saves, exits for a requeue, and the resumed run ends exactly as an uninterrupted one."""
import errno
import logging
import os
import signal

import pytest
import torch
from conftest import ToyData, ToyModel, toy_train_dataloader
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.runner import Runner

from convnext_dense.engine.hooks import EXIT_REQUEUE
from convnext_dense.engine.hooks.safe_checkpoint_hook import CheckpointSpaceError, ResumeError, checkpoint_to_resume
from convnext_dense.engine.safeguards import apply_safeguards


def toy_runner(work_dir, max_iters, hook='SafeCheckpointHook', resume=False):
    return Runner(
        model=ToyModel(), work_dir=str(work_dir), resume=resume,
        train_dataloader=toy_train_dataloader(),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type=hook, interval=1, by_epoch=False, max_keep_ckpts=1), logger=None))


def fail_while_saving(monkeypatch, error, after=0):
    """Make checkpoint writes fail at their fsync, once their bytes are written, as a kill or a full disk would;
    the first ``after`` checkpoints are saved."""
    real_fsync, saved = os.fsync, []

    def fsync(fd):
        if os.readlink(f'/proc/self/fd/{fd}').endswith('.pth'):
            if len(saved) >= after:
                raise error
            saved.append(fd)
        return real_fsync(fd)
    monkeypatch.setattr(os, 'fsync', fsync)


def test_killed_while_saving_the_previous_checkpoint_survives_and_the_run_resumes(tmp_path, monkeypatch):
    toy_runner(tmp_path, max_iters=2).train()
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_2.pth'], 'max_keep_ckpts=1 removed iter_1.pth'
    saved = torch.load(tmp_path / 'iter_2.pth', weights_only=False)

    fail_while_saving(monkeypatch, SystemExit('killed'))
    runner = toy_runner(tmp_path, max_iters=4, resume=True)
    with pytest.raises(SystemExit):
        runner.train()
    monkeypatch.undo()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')
    # The partial iter_3 lies under a temporary name, as a kill would leave it; nothing else was touched.
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['.tmp-iter_3.pth', 'iter_2.pth']
    assert torch.equal(torch.load(tmp_path / 'iter_2.pth', weights_only=False)['state_dict']['linear.weight'],
                       saved['state_dict']['linear.weight'])

    runner = toy_runner(tmp_path, max_iters=4, resume=True)
    runner.train()
    assert runner.iter == 4
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_dir() and p.suffix != '.py') == \
        ['iter_4.pth', 'last_checkpoint'], 'no temporary file left behind'


def test_a_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    runner = toy_runner(tmp_path, max_iters=2)
    fail_while_saving(monkeypatch, OSError(errno.ENOSPC, 'No space left on device'), after=1)
    with pytest.raises(CheckpointSpaceError, match=rf'no space left in {tmp_path} to save iter_2\.pth: it needs '
                       r'[\d.]+ MiB and [\d.]+ MiB is free\. The previous checkpoint there is intact.*--resume'):
        runner.train()
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_1.pth')
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_1.pth']
    assert not list(tmp_path.glob('.tmp-*')), 'the partial file is removed, freeing its space'
    assert torch.load(tmp_path / 'iter_1.pth', weights_only=False)['meta']['iter'] == 1


def test_resume_falls_back_from_a_truncated_or_missing_checkpoint_to_the_newest_intact_one(tmp_path, caplog):
    toy_runner(tmp_path, max_iters=3, hook='CheckpointHook').train()  # mmengine's hook with max_keep_ckpts=1 ...
    older = tmp_path / 'iter_2.pth'
    torch.save(torch.load(tmp_path / 'iter_3.pth', weights_only=False) | dict(meta=dict(epoch=0, iter=2)), older)
    os.utime(older, (1, 1))
    newest = tmp_path / 'iter_3.pth'
    newest.write_bytes(newest.read_bytes()[:300])  # ... killed while writing iter_3.pth
    logger = logging.getLogger('test_resume')
    with caplog.at_level(logging.WARNING, logger='test_resume'):
        assert checkpoint_to_resume(str(tmp_path), logger) == str(older)
    assert f'names {newest}, which is truncated or corrupted (300 bytes); resuming from {older} instead' in caplog.text

    newest.unlink()
    assert checkpoint_to_resume(str(tmp_path), logger) == str(older)
    runner = toy_runner(tmp_path, max_iters=4, resume=True)
    runner.train()
    assert runner.iter == 4  # resumed at iteration 2, then trained 2 more

    for path in tmp_path.glob('*.pth'):
        path.write_bytes(b'')
    with pytest.raises(ResumeError, match=rf'cannot resume: no intact checkpoint in {tmp_path} \(.*last_checkpoint '
                       r'names .*iter_4\.pth, which is truncated or corrupted \(0 bytes\); unreadable: \S*iter_2.pth '
                       r'\(truncated or corrupted \(0 bytes\)\)\)\. Start the '
                       'run anew without --resume'):
        toy_runner(tmp_path, max_iters=5, resume=True).train()
    with pytest.raises(ResumeError, match=r'no last_checkpoint file; no \*\.pth files'):
        toy_runner(tmp_path / 'empty', max_iters=5, resume=True).train()


def test_configs_keep_mmengines_hook_unless_they_or_our_tools_opt_in(tmp_path):
    runner = toy_runner(tmp_path, max_iters=1, hook='CheckpointHook')
    assert [type(h) for h in runner.hooks if isinstance(h, CheckpointHook)] == [CheckpointHook]
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)), custom_hooks=[],
                      default_scope='mmdet'))
    assert any('SafeCheckpointHook' in note for note in apply_safeguards(cfg))
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'


class NoisyData(ToyData):
    """Random augmentation from the global torch generator; sends SIGTERM to this process at its ``signal_at``-th
    sample load, as SLURM would mid-iteration."""

    def __init__(self, signal_at=None):
        self.signal_at, self.loads = signal_at, 0

    def __getitem__(self, i):
        self.loads += 1
        if self.loads == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return dict(inputs=torch.tensor([float(i), 1.0]) + torch.rand(2))


def preemptible_runner(work_dir, signal_at=None, resume=False):
    torch.manual_seed(0)  # the model's initial weights
    return Runner(
        model=ToyModel(), work_dir=str(work_dir), resume=resume, randomness=dict(seed=0),
        train_dataloader=dict(dataset=NoisyData(signal_at), sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=2, num_workers=0, collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=3),
        default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=1), logger=None),
        custom_hooks=[dict(type='ReproducibleResumeHook'), dict(type='PreemptionHook')])


def test_sigterm_mid_epoch_saves_exits_for_requeue_and_the_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    uninterrupted = preemptible_runner(tmp_path / 'uninterrupted')
    uninterrupted.train()
    expected = uninterrupted.model.linear.weight.detach().clone()

    work_dir = tmp_path / 'preempted'
    # The 11th sample is in the 6th batch: iteration 2 of epoch 2 (of 3, 4 iterations each).
    runner = preemptible_runner(work_dir, signal_at=11)
    previous_handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        runner.train()
    assert stop.value.code == EXIT_REQUEUE
    assert signal.getsignal(signal.SIGTERM) is previous_handler, 'the handlers are put back'
    stopped = 6
    assert runner.iter + 1 == stopped, 'the iteration in progress is finished, nothing more'
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / f'iter_{stopped}.pth')
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_1.pth', f'iter_{stopped}.pth']

    resumed = preemptible_runner(work_dir, resume=True)
    resumed.train()
    assert resumed.iter == 12
    assert torch.equal(resumed.model.linear.weight, expected)
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_3.pth'], 'the mid-epoch checkpoint is removed'
