"""ConvNeXt for dense prediction in OpenMMLab.

``custom_imports=dict(imports=['convnext_dense'])`` in an mmdet or mmseg config registers, in mmengine's root
registries (which mmdet's and mmseg's fall back to):

- models: the ``ConvNeXt`` backbone (:mod:`.models.backbones.convnext`), the isotropic ``ConvNeXtIsotropic``
  (:mod:`.models.backbones.convnext_isotropic`) and ViTDet's ``SimpleFeaturePyramid`` neck
  (:mod:`.models.necks.simple_feature_pyramid`);
- optimizer constructors: ``LearningRateDecayOptimizerConstructor`` (:mod:`.engine.optimizers`), which also stands in
  (a change of :mod:`.patches`) for mmdet's and mmseg's constructors of that name, giving their own param groups for
  the backbones they handle;
- hooks: ``CheckFiniteLossHook``, ``ReproducibleResumeHook``, ``SafeCheckpointHook``, ``PreemptionHook``
  (:mod:`.engine.hooks`; a config uses them only where it names them);
- transforms: ``GuardedLoad`` (:mod:`.datasets.transforms`), which tools/train.py writes into the configs it saves;

gives :func:`swap_backbone` (:mod:`.host_configs`), which puts ConvNeXt into any mmdet / mmseg model config,

and makes the process-wide changes of :mod:`.patches` (weights-only checkpoint reads, ``mmseg::`` config scopes, the
layer-decay constructor name in mmdet's and mmseg's registries).
It needs mmengine and mmcv (official or OneDL releases); mmdet and mmseg are each optional.
"""
try:
    import mmcv  # noqa: F401
    import mmengine  # noqa: F401
except ImportError as error:
    raise ImportError(f'convnext_dense runs inside an OpenMMLab environment and needs mmengine and mmcv ({error}). '
                      'Install them first (official: mmengine, mmcv with its ops; or the OneDL releases), with mmdet '
                      'and/or mmsegmentation; see the README, '
                      '"Use it in your existing mmdet / mmseg environment"') from error

from .checkpoint import CheckpointError, LoadReport, ModelLoadReport, load_checkpoint, load_pretrained
from .datasets.transforms import BadSampleError, GuardedLoad
from .engine.hooks import CheckFiniteLossHook, PreemptionHook, ReproducibleResumeHook, SafeCheckpointHook
from .engine.optimizers import LearningRateDecayOptimizerConstructor
from .host_configs import HostConfigError, swap_backbone
from .models import ConvNeXt, ConvNeXtIsotropic, SimpleFeaturePyramid
from .patches import apply as _apply_patches
from .version import __version__

__all__ = ['BadSampleError', 'CheckFiniteLossHook', 'CheckpointError', 'ConvNeXt', 'ConvNeXtIsotropic', 'GuardedLoad',
           'HostConfigError', 'LearningRateDecayOptimizerConstructor', 'LoadReport', 'ModelLoadReport',
           'PreemptionHook', 'ReproducibleResumeHook', 'SafeCheckpointHook', 'SimpleFeaturePyramid', '__version__',
           'load_checkpoint', 'load_pretrained', 'swap_backbone']

_apply_patches()
