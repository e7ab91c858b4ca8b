"""ConvNeXt for dense prediction in OpenMMLab.

Importing the package (``custom_imports=dict(imports=['convnext_dense'])``) registers the ``ConvNeXt`` backbone for
mmdet and mmseg configs alike, and our ``LearningRateDecayOptimizerConstructor`` in place of their ConvNeXt-only copies.
"""
from .checkpoint import CheckpointError, load_pretrained
from .config_compat import resolve_onedl_packages
from .convnext import ConvNeXt
from .optimizer import LearningRateDecayOptimizerConstructor

__version__ = '0.1.0'

resolve_onedl_packages()  # `mmseg::` base configs, before any config is read
__all__ = ['ConvNeXt', 'CheckpointError', 'LearningRateDecayOptimizerConstructor', 'load_pretrained']
