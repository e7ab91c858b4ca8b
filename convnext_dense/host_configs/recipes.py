"""The official ConvNeXt fine-tuning recipes by task, version and size: drop path, layer decay and AdamW.

Detection is the official Mask R-CNN 3x recipe (layer-wise decay 0.95), segmentation the official UperNet 160k one
(stage-wise decay 0.9); ConvNeXt V2 takes its paper's drop-path rates. Sizes without a published dense recipe (atto to
nano) take T's decay with a drop-path rate of 0.1, our choice for models that small. ``configs/`` holds the same
values (a test keeps them equal); :func:`recipe` is what :func:`convnext_dense.swap_backbone` applies to other hosts.
"""
from dataclasses import dataclass

DROP_PATH_RATES = {
    ('mmdet', 1): dict(tiny=0.4, small=0.6, base=0.7, large=0.7, xlarge=0.8),
    ('mmdet', 2): dict(tiny=0.4, base=0.4, large=0.5, huge=0.6),
    ('mmseg', 1): dict(tiny=0.4, small=0.3, base=0.4, large=0.4, xlarge=0.4),
    ('mmseg', 2): dict(tiny=0.4, base=0.4, large=0.4, huge=0.4),
}
SMALL_ARCH_DROP_PATH_RATE = 0.1
LAYER_DECAY = {'mmdet': (0.95, 'layer_wise'), 'mmseg': (0.9, 'stage_wise')}
ADAMW_LR = {'mmdet': 1e-4, 'mmseg': 1e-4}
ADAMW_LR_LARGEST = {'mmseg': 8e-5}  # UperNet XL (V1) and H (V2)
LARGEST_ARCHS = ('xlarge', 'huge')
WEIGHT_DECAY = 0.05


@dataclass(frozen=True)
class Recipe:
    drop_path_rate: float
    decay_rate: float
    decay_type: str
    lr: float
    weight_decay: float
    official: bool  # False where no dense recipe was published for this size (our choice)

    @property
    def source(self) -> str:
        return 'the official recipe' if self.official else 'no published dense recipe for this size: our choice'


def recipe(scope: str, version: int, arch: str) -> Recipe:
    """The recipe for ConvNeXt ``arch`` (a name of ``ARCHS``) fine-tuned in an mmdet or mmseg model."""
    rates = DROP_PATH_RATES[(scope, version)]
    decay_rate, decay_type = LAYER_DECAY[scope]
    lr = ADAMW_LR_LARGEST.get(scope, ADAMW_LR[scope]) if arch in LARGEST_ARCHS else ADAMW_LR[scope]
    official = isinstance(arch, str) and arch in rates
    return Recipe(rates[arch] if official else SMALL_ARCH_DROP_PATH_RATE, decay_rate, decay_type, lr, WEIGHT_DECAY,
                  official)
