from .backbones import ConvNeXt
from .checkpoint import CheckpointError, LoadReport, load_pretrained

__all__ = ['CheckpointError', 'ConvNeXt', 'LoadReport', 'load_pretrained']
