import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def import_timm():
    """timm as a numerical reference; the test is skipped where it is not installed."""
    return pytest.importorskip('timm', reason='timm is not installed: it needs torchvision, and no torchvision pairs '
                               'with the official stack\'s torch 2.13 CPU build')


def import_mmpretrain_convnext():
    """mmpretrain's ConvNeXt as a numerical reference, without its multimodal models (they break on some
    transformers versions and are not needed); the test is skipped where mmpretrain is not installed."""
    pytest.importorskip('mmpretrain', reason='mmpretrain (a test reference, not a dependency) is not installed on '
                        'this stack')
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


def write_demo_data(out: Path, num_train: int = 6, num_val: int = 2) -> Path:
    """A small synthetic data set (tools/misc/make_demo_data.py) under ``out``."""
    subprocess.run([sys.executable, str(REPO / 'tools/misc/make_demo_data.py'), '--out', str(out), '--num-train',
                    str(num_train), '--num-val', str(num_val)], check=True, capture_output=True)
    return out


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    """A small synthetic data set shared by a test module."""
    return write_demo_data(tmp_path_factory.mktemp('demo'))
