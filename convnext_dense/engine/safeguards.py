"""What every run of tools/train.py and tools/test.py gets, whatever its config: a non-finite loss stops training
(:mod:`convnext_dense.engine.hooks.finite_loss_hook`), a resumed run repeats the interrupted one exactly
(:mod:`convnext_dense.engine.hooks.reproducible_resume_hook`), checkpoints survive a crash while saving and resuming
skips a broken one (:mod:`convnext_dense.engine.hooks.safe_checkpoint_hook`), SIGTERM / SIGUSR1 save and exit for a
requeue (:mod:`convnext_dense.engine.hooks.preemption_hook`), and bad samples are skipped in
training and stop evaluation with the file named (:mod:`convnext_dense.datasets.transforms.guarded_load`).
"""
from typing import List

from ..datasets.data_checks import dataset_classes, ignore_index
from ..datasets.transforms.guarded_load import IGNORE_INDEX, GuardedLoad
from ..utils.config_tree import datasets
from .hooks.finite_loss_hook import CheckFiniteLossHook
from .hooks.preemption_hook import PreemptionHook
from .hooks.reproducible_resume_hook import ReproducibleResumeHook
from .hooks.safe_checkpoint_hook import SafeCheckpointHook

HOOKS = (CheckFiniteLossHook, ReproducibleResumeHook, PreemptionHook)
LOADING_TRANSFORMS = ('LoadImageFromFile', 'LoadAnnotations')
STOCK_CHECKPOINT_HOOKS = ('CheckpointHook', 'mmengine.CheckpointHook')


def apply_safeguards(cfg) -> List[str]:
    """Add the hooks (unless the config has them) and the pipeline guards to ``cfg``; returns notes for the log."""
    hooks = list(cfg.get('custom_hooks') or [])
    present = {hook.get('type') for hook in hooks}
    added = [hook.__name__ for hook in HOOKS if hook.__name__ not in present]
    cfg.custom_hooks = hooks + [dict(type=name) for name in added]
    guarded = guard_pipelines(cfg)
    notes = [f'safeguards: {", ".join(added) or "hooks already in the config"}; {len(guarded)} loading steps '
             'guarded (bad samples skipped in training, refused in evaluation)']
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint and checkpoint.get('type', 'CheckpointHook') in STOCK_CHECKPOINT_HOOKS:
        checkpoint.type = SafeCheckpointHook.__name__
        notes.append('checkpoints: SafeCheckpointHook (written whole or not at all; outdated ones removed only '
                     'after the new one is complete)')
    return notes


def guard_pipelines(cfg) -> List[str]:
    """Wrap the loading steps of every dataloader pipeline in :class:`GuardedLoad` (skipping bad samples in
    training, refusing them in evaluation); returns the pipelines changed, for the log."""
    changed = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if not cfg.get(loader):
            continue
        for key, dataset, _ in datasets(cfg[loader].dataset, f'{loader}.dataset'):
            if not isinstance(dataset.get('pipeline'), list):
                continue
            classes = dataset_classes('mmseg', dataset) if cfg.default_scope == 'mmseg' else None
            ignored = ignore_index(cfg) if cfg.default_scope == 'mmseg' else IGNORE_INDEX
            steps = dataset.pipeline
            for i, step in enumerate(steps):
                if str(step.get('type')).split('.')[-1] in LOADING_TRANSFORMS:
                    steps[i] = dict(type=GuardedLoad.__name__, transform=step, skip=loader == 'train_dataloader',
                                    num_classes=len(classes) if classes else None, ignore_index=ignored)
                    changed.append(f'{key}.pipeline.{i}')
    return changed
