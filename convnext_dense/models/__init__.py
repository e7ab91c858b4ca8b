from .backbones import ConvNeXt
from .checkpoint import CheckpointError, LoadReport, load_pretrained
from .model_checkpoint import ModelLoadReport, load_checkpoint

__all__ = ['CheckpointError', 'ConvNeXt', 'LoadReport', 'ModelLoadReport', 'load_checkpoint', 'load_pretrained']
