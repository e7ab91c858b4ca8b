from .finite_loss_hook import CheckFiniteLossHook, NonFiniteLossError
from .reproducible_resume_hook import ReproducibleResumeHook
from .safe_checkpoint_hook import CheckpointSpaceError, ResumeError, SafeCheckpointHook

__all__ = ['CheckFiniteLossHook', 'CheckpointSpaceError', 'NonFiniteLossError', 'ReproducibleResumeHook',
           'ResumeError', 'SafeCheckpointHook']
