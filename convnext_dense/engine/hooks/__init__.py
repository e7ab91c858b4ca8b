from .finite_loss_hook import CheckFiniteLossHook, NonFiniteLossError
from .preemption_hook import EXIT_REQUEUE, PreemptionHook
from .reproducible_resume_hook import ReproducibleResumeHook
from .safe_checkpoint_hook import CheckpointSpaceError, ResumeError, SafeCheckpointHook

__all__ = ['CheckFiniteLossHook', 'CheckpointSpaceError', 'EXIT_REQUEUE', 'NonFiniteLossError', 'PreemptionHook',
           'ReproducibleResumeHook', 'ResumeError', 'SafeCheckpointHook']
