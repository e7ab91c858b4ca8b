"""Host configs: mmdet / mmseg model configs rewritten to take ConvNeXt, and hand-written ones checked before a run."""
from .readers import HostConfigError
from .swap import plan_swap, swap_backbone, write_swap

__all__ = ['HostConfigError', 'plan_swap', 'swap_backbone', 'write_swap']
