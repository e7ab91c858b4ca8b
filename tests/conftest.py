import importlib.util
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import nn

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIGS = REPO / 'configs' / 'demo'
DET_CONFIG = DEMO_CONFIGS / 'mask_rcnn_convnext_atto_demo.py'
SEG_CONFIG = DEMO_CONFIGS / 'upernet_convnext_atto_demo.py'


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


def load_tool(path: str):
    """A script of tools/ (``path`` relative to it, without ``.py``: ``'misc/image_demo'``) as a module registered under
    its file name, without putting tools/ (with its test.py and train.py) on sys.path."""
    name = Path(path).name
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / 'tools' / f'{path}.py')
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def save_random_checkpoint(config: Path, path: Path) -> str:
    """A randomly initialised demo model, saved as mmengine's Runner saves one: the weights and a meta dict with the
    data set's classes and palette, which the inference APIs read."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(config)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    model.init_weights()
    dataset_meta = dict(classes=list(cfg.metainfo.classes), palette=[list(c) for c in cfg.metainfo.palette])
    meta = dict(epoch=1, iter=1, cfg=cfg.pretty_text, dataset_meta=dataset_meta)
    torch.save(dict(meta=meta, state_dict=model.state_dict()), path)
    return str(path)


class ToyModel(BaseModel):
    """The smallest mmengine model a Runner trains: one linear layer, a loss of two parts (``loss_toy`` and a constant
    ``loss_const``), for the hook tests."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        return dict(loss_toy=out.pow(2).mean(), loss_const=out.new_tensor(1.0)) if mode == 'loss' else out


class ToyData(torch.utils.data.Dataset):
    """Eight samples, one per iteration at batch size 1; those at ``bad`` (0-based) hold an infinite input, which
    makes :class:`ToyModel`'s loss non-finite."""

    def __init__(self, bad=()):
        self.bad = set(bad)

    def __len__(self):
        return 8

    def __getitem__(self, i):
        value = math.inf if i in self.bad else float(i)
        sample = BaseDataElement(metainfo=dict(img_path=f'img{i}.jpg'))
        return dict(inputs=torch.tensor([value, 1.0]), data_samples=sample)


def toy_train_dataloader(bad=()) -> dict:
    """A Runner's ``train_dataloader`` over :class:`ToyData`, in order, one sample per iteration."""
    return dict(dataset=ToyData(bad), sampler=dict(type='DefaultSampler', shuffle=False), batch_size=1, num_workers=0,
                collate_fn=dict(type='pseudo_collate'))
