"""What every run of tools/train.py and tools/test.py gets, whatever its config: a non-finite loss stops training
(:mod:`.finite_loss_hook`), a resumed run repeats the interrupted one exactly (:mod:`.resume_hook`), and bad samples
are skipped in training and stop evaluation with the file named (:mod:`.data_guards`).
"""
from typing import List

from ..datasets.transforms.guarded_load import guard_pipelines
from ..engine.hooks.finite_loss_hook import CheckFiniteLossHook
from ..engine.hooks.reproducible_resume_hook import ReproducibleResumeHook

HOOKS = (CheckFiniteLossHook, ReproducibleResumeHook)


def apply_safeguards(cfg) -> List[str]:
    """Add the hooks (unless the config has them) and the pipeline guards to ``cfg``; returns notes for the log."""
    hooks = list(cfg.get('custom_hooks') or [])
    present = {hook.get('type') for hook in hooks}
    added = [hook.__name__ for hook in HOOKS if hook.__name__ not in present]
    cfg.custom_hooks = hooks + [dict(type=name) for name in added]
    guarded = guard_pipelines(cfg)
    notes = [f'safeguards: {", ".join(added) or "hooks already in the config"}; {len(guarded)} loading steps '
             'guarded (bad samples skipped in training, refused in evaluation)']
    if cfg.get('default_hooks', {}).get('checkpoint', {}).get('max_keep_ckpts') == 1:
        notes.append('default_hooks.checkpoint.max_keep_ckpts=1: mmengine deletes the previous checkpoint before '
                     'writing the next, so a crash while saving leaves none to resume from; keep 2 or more for long '
                     'runs')
    return notes
