"""Loading checkpoints from others, safely: backbone weights in the official, mmpretrain, timm and Hugging Face layouts
(:mod:`.backbone`), whole detectors and segmentors as the official, zoo and Hugging Face releases store them
(:mod:`.whole_model`), both read through :mod:`.reading` (weights-only unless the user asks)."""
from .backbone import LoadReport, load_pretrained
from .reading import CheckpointError
from .whole_model import ModelLoadReport, load_checkpoint

__all__ = ['CheckpointError', 'LoadReport', 'ModelLoadReport', 'load_checkpoint', 'load_pretrained']
