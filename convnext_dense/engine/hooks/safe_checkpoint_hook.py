"""Checkpoints that survive a crash at any moment, and a ``--resume`` that never starts from a broken one.

mmengine's ``CheckpointHook`` deletes the checkpoints beyond ``max_keep_ckpts`` before it writes the new one, writes
that one in place under its final name, then rewrites ``last_checkpoint``. A run killed while saving (with
``max_keep_ckpts=1``) is left with no checkpoint it can resume from. :class:`SafeCheckpointHook` is that hook with the
order fixed: the new checkpoint is written to a temporary name in the same folder, flushed to disk and renamed into
place (:class:`AtomicLocalBackend`, the file backend mmengine's ``save_checkpoint`` writes through); ``last_checkpoint``
is then replaced the same way; only then are outdated checkpoints removed. A disk that fills up during a save raises
:class:`CheckpointSpaceError` naming the folder and the space needed, and leaves the previous checkpoint in place.

With ``resume=True`` and no checkpoint given, it picks the checkpoint to resume from (:func:`checkpoint_to_resume`):
the one ``last_checkpoint`` names if intact, otherwise the newest intact checkpoint in the work dir, saying so.

Registered under its own name: configs that name ``CheckpointHook`` keep mmengine's hook; tools/train.py swaps this
one in (:mod:`convnext_dense.engine.safeguards`), and any config can opt in with
``default_hooks.checkpoint.type='SafeCheckpointHook'``.
"""
import errno
import glob
import os
import os.path as osp
import shutil
import zipfile
from typing import List, Optional

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from ..runner_internals import resume_without_checkpoint, set_checkpoint_to_resume

BACKEND = 'convnext_dense_atomic_local'
TMP_PREFIX = '.tmp-'  # temporary files are '.tmp-<final name>' next to their final name
POINTER = 'last_checkpoint'
PREEMPTED_KEY = 'preempted_ckpt'  # message hub: a mid-epoch checkpoint, removed after the next regular save


class CheckpointSpaceError(OSError):
    """The disk filled up while a checkpoint was being saved."""


class ResumeError(RuntimeError):
    """``resume=True`` finds no intact checkpoint to resume from."""


def atomic_write(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either its old content or all of ``data``, even if the process
    dies or the disk fills up in between: write a temporary file in the same folder, fsync it, rename it over
    ``path``, fsync the folder."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, TMP_PREFIX + osp.basename(path))
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if osp.exists(tmp):
            os.remove(tmp)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointSpaceError(
                error.errno,
                f'no space left in {folder} to save {osp.basename(path)}: it needs {_mib(len(data))} and '
                f'{_mib(shutil.disk_usage(folder).free)} is free. The previous checkpoint there is intact. Free '
                'some space (or train with --work-dir on a disk with room) and continue with tools/train.py '
                '--resume') from error
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@register_backend(BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, writing files whole or not at all (:func:`atomic_write`)."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath))


def unreadable(path: str) -> Optional[str]:
    """Why the checkpoint at ``path`` cannot be resumed from (missing, truncated), or None when it is intact.
    Checks the zip directory torch writes at the end of the file, which a truncated file lacks; reads no tensors."""
    if not osp.isfile(path):
        return 'missing'
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith('data.pkl') for name in archive.namelist()):
                return 'not a PyTorch checkpoint'
    except (zipfile.BadZipFile, OSError):
        return f'truncated or corrupted ({osp.getsize(path)} bytes)'
    return None


def checkpoint_to_resume(work_dir: str, logger) -> str:
    """The checkpoint ``last_checkpoint`` in ``work_dir`` names if it is intact, otherwise (with a warning) the
    newest intact ``*.pth`` in the work dir and in the folder ``last_checkpoint`` points to; :class:`ResumeError`
    when there is none."""
    pointer = osp.join(work_dir, POINTER)
    named = open(pointer).read().strip() if osp.isfile(pointer) else ''
    problem = unreadable(named) if named else None
    if named and problem is None:
        return named
    folders = {work_dir, osp.dirname(named)} if named else {work_dir}
    candidates = sorted({path for folder in folders for path in glob.glob(osp.join(folder, '*.pth'))} - {named},
                        key=osp.getmtime, reverse=True)
    skipped: List[str] = []
    for path in candidates:
        reason = unreadable(path)
        if reason is None:
            if named:
                logger.warning(f'{pointer} names {named}, which is {problem}; resuming from {path} instead, the '
                               f'newest intact checkpoint{_skipped(skipped)}')
            return path
        skipped.append(f'{path} ({reason})')
    found = f'{pointer} names {named}, which is {problem}' if named else f'no {POINTER} file'
    others = 'unreadable: ' + ', '.join(skipped) if skipped else 'no other *.pth files' if named else 'no *.pth files'
    raise ResumeError(f'cannot resume: no intact checkpoint in {work_dir} ({found}; {others}). Start the run anew '
                      'without --resume (resume=False), or give a checkpoint with --resume PATH')


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) with crash-safe saving and resuming, as described above.
    Without ``backend_args`` or ``file_client_args`` it writes local files atomically; with them (remote storage) it
    writes through the given backend, keeping only the safe order of writing and removing."""

    def __init__(self, *args, backend_args: Optional[dict] = None, file_client_args: Optional[dict] = None,
                 **kwargs):
        if backend_args is None and file_client_args is None:
            backend_args = dict(backend=BACKEND)
        super().__init__(*args, backend_args=backend_args, file_client_args=file_client_args, **kwargs)
        self._saved_at = None  # the iteration count of the latest save

    def before_run(self, runner) -> None:
        # Runs before the Runner resumes (Runner.train calls before_run, then load_or_resume).
        if resume_without_checkpoint(runner):
            set_checkpoint_to_resume(runner, checkpoint_to_resume(runner.work_dir, runner.logger))

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and isinstance(self.file_backend, LocalBackend):
            for leftover in glob.glob(osp.join(self.out_dir, TMP_PREFIX + '*')):
                runner.logger.info(f'removing {leftover}, left by a run that stopped while saving')
                os.remove(leftover)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            # _save_checkpoint and _save_best_checkpoint may both save at one step
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        preempted = runner.message_hub.get_info(PREEMPTED_KEY)
        runner.message_hub.update_info(PREEMPTED_KEY, None)
        self.save(runner, self.filename_tmpl.format(step), meta)
        if is_main_process():
            if preempted and preempted != self.last_ckpt and self.file_backend.isfile(preempted):
                self.file_backend.remove(preempted)
            for old in outdated:
                path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
                if self.file_backend.isfile(path):
                    self.file_backend.remove(path)
                elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are folders
                    self.file_backend.rmtree(path)

    def save_preempted(self, runner) -> str:
        """Save ``iter_N.pth`` after the current iteration, mid-epoch too (removed after the next regular save);
        returns its path."""
        done = runner.iter + 1
        if self._saved_at == done:  # this hook saved this iteration already
            return self.last_ckpt
        filename = f'iter_{done}.pth'
        runner.message_hub.update_info(PREEMPTED_KEY, self.file_backend.join_path(self.out_dir, filename))
        return self.save(runner, filename, dict(epoch=runner.epoch, iter=done))

    def save(self, runner, filename: str, meta: dict) -> str:
        """Save a checkpoint named ``filename`` in the output folder, then point ``last_checkpoint`` at it;
        returns its path."""
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(self.out_dir, filename, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if is_main_process():
            atomic_write(str(self.last_ckpt).encode(), osp.join(runner.work_dir, POINTER))
        self._saved_at = meta['iter']
        return self.last_ckpt


def _mib(size: int) -> str:
    return f'{size / 2**20:.1f} MiB'


def _skipped(skipped: List[str]) -> str:
    return f' (also unreadable: {", ".join(skipped)})' if skipped else ''
