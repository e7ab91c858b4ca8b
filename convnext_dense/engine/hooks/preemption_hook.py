"""Preemption: on SIGTERM or SIGUSR1, finish the current iteration, save a checkpoint and exit for a requeue.

SLURM preempts a job with SIGTERM (SIGKILL follows after a grace period), and ``--signal=USR1@SECONDS`` sends SIGUSR1
that long before a time limit; mmengine ignores both, so everything since the last checkpoint is lost. With this hook
the signal only sets a flag; after the iteration in progress, all ranks agree on it, :class:`SafeCheckpointHook` saves
``iter_N.pth`` (mid-epoch too: :class:`ReproducibleResumeHook` resumes such a checkpoint at the next batch), the job
asks SLURM to requeue it (``scontrol requeue``, inside a SLURM job) and every process exits with
:data:`EXIT_REQUEUE`. tools/train.py resumes by itself when SLURM restarts the job.
"""
import os
import signal
import subprocess

import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .safe_checkpoint_hook import SafeCheckpointHook

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
EXIT_REQUEUE = 75  # EX_TEMPFAIL (sysexits.h): stopped before the end, to be run again


@HOOKS.register_module()
class PreemptionHook(Hook):
    priority = 'LOWEST'  # after CheckFiniteLossHook's verdict and CheckpointHook's own save of this iteration

    def __init__(self):
        self._received = None
        self._previous = {}

    def before_train(self, runner) -> None:
        self._checkpoint_hook(runner)  # fail now, not at the signal, without one
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def after_train(self, runner) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum, frame) -> None:
        self._received = signal.Signals(signum).name

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        received = torch.tensor([self._received is not None], dtype=torch.float32)
        if dist.is_distributed():
            dist.all_reduce(received, op='max')
        if not received.item():
            return
        path = self._checkpoint_hook(runner).save_preempted(runner)
        dist.barrier()  # the checkpoint is complete before any process exits
        requeued = _requeue() if dist.is_main_process() else ''
        runner.logger.warning(f'{self._received or "a signal on another rank"}: stopped after iteration '
                              f'{runner.iter + 1}, saved {path}; {requeued}exiting with status {EXIT_REQUEUE}. '
                              'Continue with tools/train.py --resume (a requeued SLURM job does so by itself)')
        self.after_train(runner)
        raise SystemExit(EXIT_REQUEUE)

    @staticmethod
    def _checkpoint_hook(runner) -> SafeCheckpointHook:
        for hook in runner.hooks:
            if isinstance(hook, SafeCheckpointHook):
                return hook
        raise RuntimeError("PreemptionHook saves through SafeCheckpointHook: set default_hooks.checkpoint."
                           "type='SafeCheckpointHook' in the config (tools/train.py does so by itself)")


def _requeue() -> str:
    """Ask SLURM to requeue this job (inside a SLURM job); returns what was done, for the log."""
    job = os.environ.get('SLURM_JOB_ID')
    if not job:
        return ''
    try:
        result = subprocess.run(['scontrol', 'requeue', job], capture_output=True, text=True)
    except OSError as error:
        return f'`scontrol requeue {job}` failed ({error}); '
    return f'SLURM job {job} requeued; ' if result.returncode == 0 else \
        f'`scontrol requeue {job}` failed ({result.stderr.strip()}); '
