"""ConvNeXt for dense prediction in OpenMMLab.

Importing the package (``custom_imports=dict(imports=['convnext_dense'])``) registers the ``ConvNeXt`` backbone for
mmdet and mmseg configs alike, and our ``LearningRateDecayOptimizerConstructor`` in place of their ConvNeXt-only copies,
registers our hooks (``CheckFiniteLossHook``, ``ReproducibleResumeHook``) and makes mmengine read local checkpoints
with ``weights_only=True`` (:mod:`.safe_loading`).
"""
from .models.checkpoint import CheckpointError, load_pretrained
from .config_compat import resolve_onedl_packages
from .models.backbones.convnext import ConvNeXt
from .engine.hooks.finite_loss_hook import CheckFiniteLossHook
from .engine.optimizers.layer_decay_optimizer_constructor import LearningRateDecayOptimizerConstructor
from .engine.hooks.reproducible_resume_hook import ReproducibleResumeHook
from .safe_loading import install_safe_loader

__version__ = '0.1.0'

resolve_onedl_packages()  # `mmseg::` base configs, before any config is read
install_safe_loader()  # mmengine's checkpoint reads (resume, load_from, tests) with weights_only=True
__all__ = ['ConvNeXt', 'CheckpointError', 'CheckFiniteLossHook', 'LearningRateDecayOptimizerConstructor',
           'ReproducibleResumeHook', 'load_pretrained']
