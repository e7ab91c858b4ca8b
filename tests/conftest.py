import sys
import types

import pytest
import torch


def import_mmpretrain_convnext():
    """mmpretrain's ConvNeXt as a numerical reference, without its multimodal models (they break on some
    transformers versions and are not needed)."""
    sys.modules.setdefault('mmpretrain.models.multimodal', types.ModuleType('mmpretrain.models.multimodal'))
    from mmpretrain.models.backbones.convnext import ConvNeXt
    return ConvNeXt


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values, so that equivalence tests exercise layer scales, GRN and norms too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2 + (1 if param.ndim == 1 else 0) * 0.5)
    return module


@pytest.fixture
def save(tmp_path):
    """Save an object with torch.save and return its path."""
    counter = iter(range(1000))

    def _save(obj):
        path = tmp_path / f'ckpt{next(counter)}.pth'
        torch.save(obj, path)
        return str(path)

    return _save
