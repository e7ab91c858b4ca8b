"""Crash-safe checkpoints: a save interrupted at any point (killed, disk full) leaves the previous checkpoint and
last_checkpoint usable; --resume skips a missing or truncated checkpoint; stock configs keep mmengine's hook."""
import errno
import logging
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from convnext_dense.engine.hooks import safe_checkpoint_hook
from convnext_dense.engine.hooks.safe_checkpoint_hook import (CheckpointSpaceError, ResumeError, SafeCheckpointHook,
                                                              checkpoint_to_resume)
from convnext_dense.tooling.safeguards import apply_safeguards


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out


class ToyData(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([float(i), 1.0]))


def toy_runner(work_dir, max_iters, hook='SafeCheckpointHook', resume=False):
    return Runner(
        model=ToyModel(), work_dir=str(work_dir), resume=resume,
        train_dataloader=dict(dataset=ToyData(), sampler=dict(type='DefaultSampler', shuffle=False), batch_size=1,
                              num_workers=0, collate_fn=dict(type='pseudo_collate')),
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
