"""Resuming continues the interrupted run exactly: same data order, same augmentations, same drop-path masks.

mmengine restores the weights, optimizer, schedulers and the sampler position, but not the random generators: a
resumed run re-seeds them as at the start, so its augmentations and stochastic depth differ from the run it continues.
And without a configured seed, each run draws a new one and the sampler (built before the checkpoint is read) shuffles
in an order the checkpoint's run never used, repeating some images and skipping others.

This hook saves the torch (CPU and CUDA), numpy and Python random states in every checkpoint and puts them back just
before the resumed run fetches its first batch to train on (after the batches already trained are skipped: official
mmengine skips them by loading them, drawing random numbers), and points the training sampler at the checkpoint's seed.
A checkpoint saved in the middle of an epoch (on preemption, :mod:`.preemption_hook`) resumes that epoch at the next
batch. It gives the
training and validation dataloaders their own generators, so that creating a dataloader iterator (which a resumed
iteration-based run does at a point the uninterrupted run does not, and validation does in between) draws nothing from
the global torch generator. Exact for one process with ``num_workers=0``. Limits: mmengine writes checkpoints from
rank 0 alone, so in a distributed run every rank resumes with rank 0's states (as after mmengine's own re-seeding,
all ranks then share one stream); dataloader worker processes keep their own generators, re-seeded on resume.
"""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

CHECKPOINT_KEY = 'random_states'


@HOOKS.register_module()
class ReproducibleResumeHook(Hook):
    # Last among the before_train_epoch hooks: nothing may draw between the restore and the first batch.
    priority = 'LOWEST'

    def __init__(self):
        self._saved: Optional[dict] = None
        self._first_epoch = True

    def before_train(self, runner) -> None:
        self._first_epoch = True
        for loop in (runner.train_loop, runner.val_loop):
            loader = getattr(loop, 'dataloader', None)
            if loader is not None and loader.generator is None:
                loader.generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = dict(
            torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate(),
            cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            train_dataloader=runner.train_loop.dataloader.generator.get_state())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._saved = checkpoint.get(CHECKPOINT_KEY)

    def before_train_epoch(self, runner) -> None:
        states, self._saved = self._saved, None
        first, self._first_epoch = self._first_epoch, False
        if not first or runner.iter == 0:  # not a resume (`load_from` starts a new run at iteration 0)
            return
        sampler = _sampler(runner.train_loop.dataloader)
        if getattr(sampler, 'seed', None) is not None:
            sampler.seed = runner.seed  # the checkpoint's seed, set by mmengine's resume after the sampler was built
        if states is None:
            runner.logger.warning('the checkpoint holds no random states (it was not written with '
                                  'ReproducibleResumeHook): the resumed run goes on with freshly seeded augmentations '
                                  'and drop-path masks, so it will not repeat the interrupted run exactly')
            return
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            # The loop now skips the batches already trained; official mmengine does so by loading them, which draws
            # random numbers (a resume there drifts from the interrupted run): restore the states after the skip.
            loop.dataloader_iterator = _RestoreAfterSkip(loop, runner.iter, lambda: _restore(runner, states))
            return
        done = runner.iter - runner.epoch * len(loop.dataloader)
        if done:  # a checkpoint from the middle of an epoch (saved on preemption): go on from the next batch
            loop.dataloader = _RestOfEpoch(loop.dataloader, done, lambda: _restore(runner, states))
            runner.logger.info(f'resuming epoch {runner.epoch + 1} at its batch {done + 1}: skipping the {done} '
                               'batches it had trained')
        else:
            _restore(runner, states)

    def after_train_epoch(self, runner) -> None:
        if isinstance(runner.train_loop.dataloader, _RestOfEpoch):
            runner.train_loop.dataloader = runner.train_loop.dataloader.loader


def _restore(runner, states: dict) -> None:
    torch.set_rng_state(states['torch'])
    np.random.set_state(states['numpy'])
    random.setstate(states['python'])
    if torch.cuda.is_available() and len(states['cuda']) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states['cuda'])
    runner.train_loop.dataloader.generator.set_state(states['train_dataloader'])
    runner.logger.info(f'random states restored from the checkpoint of iteration {runner.iter}')


class _RestoreAfterSkip:
    """Stands in for an iteration-based loop's dataloader iterator while the loop skips the ``skip`` batches already
    trained (by fetching them, or with OneDL mmengine's ``skip_iter``); runs ``restore`` before the first batch it
    trains on, and hands the loop its iterator back."""

    def __init__(self, loop, skip: int, restore):
        self.loop, self.inner, self.skip, self.restore = loop, loop.dataloader_iterator, skip, restore

    def skip_iter(self, num_iters: int) -> None:
        self.inner.skip_iter(num_iters)
        self.skip -= num_iters

    def __iter__(self):
        return self

    def __next__(self):
        if self.skip > 0:
            self.skip -= 1
            return next(self.inner)
        self.restore()
        self.loop.dataloader_iterator = self.inner
        return next(self.inner)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class _RestOfEpoch:
    """The rest of an epoch-based loop's current epoch: iterating skips the first ``done`` batches, then runs
    ``restore`` before the first batch trained on. Everything else is the wrapped ``loader``'s."""

    def __init__(self, loader, done: int, restore):
        self.loader, self.done, self.restore = loader, done, restore

    def __iter__(self):
        batches = iter(self.loader)
        for _ in range(self.done):
            next(batches)
        self.restore()
        yield from batches

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def _sampler(loader):
    sampler = getattr(loader, 'sampler', None)
    if sampler is not None and hasattr(sampler, 'seed'):
        return sampler
    return getattr(getattr(loader, 'batch_sampler', None), 'sampler', None)
