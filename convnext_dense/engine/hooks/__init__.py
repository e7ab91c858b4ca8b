from .finite_loss_hook import CheckFiniteLossHook, NonFiniteLossError
from .reproducible_resume_hook import ReproducibleResumeHook

__all__ = ['CheckFiniteLossHook', 'NonFiniteLossError', 'ReproducibleResumeHook']
