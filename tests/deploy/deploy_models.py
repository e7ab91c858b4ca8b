"""Demo-config models (ConvNeXt-atto) with random weights for the export tests, GRN made non-trivial."""
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

import convnext_dense  # noqa: F401  registers the backbone
from convnext_dense.models.backbones.convnext import GRN

DEMO = Path(__file__).resolve().parents[2] / 'configs' / 'demo'
SEG_CONFIG = DEMO / 'upernet_convnext_atto_demo.py'
MASK_RCNN_CONFIG = DEMO / 'mask_rcnn_convnext_atto_demo.py'
CASCADE_CONFIG = DEMO / 'cascade_rcnn_convnext_atto_demo.py'


def demo_config(path: Path, version: int = 1) -> Config:
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.version = version
    return cfg


def build(cfg: Config, seed: int = 0) -> torch.nn.Module:
    """The config's model in eval mode, seeded random weights; V2's GRN gets random gamma and beta (zero at init,
    which would make it the identity)."""
    init_default_scope(cfg.default_scope)
    torch.manual_seed(seed)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, GRN):
                module.gamma.normal_(0, 0.5)
                module.beta.normal_(0, 0.5)
    model.dataset_meta = dict(classes=tuple(cfg.metainfo['classes']))
    return model.eval()
