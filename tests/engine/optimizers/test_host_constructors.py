"""With convnext_dense imported, `LearningRateDecayOptimizerConstructor` still gives mmdet's and mmseg's own param
groups for every backbone their constructors handle: their ConvNeXt configs (mmpretrain's ConvNeXt) build the same
optimizer with and without the import, the upstream constructor tests' expectations hold, mmseg's BEiT and MAE keep
their layer decay; and a backbone neither handles gets layer decay through mmpretrain's `get_layer_depth`."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn

import convnext_dense  # noqa: F401  the import under test
from convnext_dense.engine.optimizers import LearningRateDecayOptimizerConstructor

HERE = Path(__file__).parent
HAS_MMPRETRAIN = importlib.util.find_spec('mmpretrain') is not None
HOST_CONFIGS = [
    ('mmdet', 'mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py'),
    ('mmdet', 'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'),
    ('mmseg', 'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py'),
]
LR, WD = 1., 0.05  # the upstream tests' settings: lr 1 makes each group's lr its scale


@pytest.fixture(scope='module')
def host_groups() -> dict:
    """Each host config's param groups, (without the import, with it): two fresh interpreters, side by side."""
    arguments = [part for scope, config in HOST_CONFIGS for part in (scope, Config._get_cfg_path(config, '.')[0])]
    procs = [subprocess.Popen([sys.executable, str(HERE / 'host_param_groups.py'), *flags, *arguments],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for flags in ([], ['--with-plugin'])]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.rsplit('groups: ', 1)[1]))
    return {config: (results[0][path], results[1][path])
            for (_, config), path in zip(HOST_CONFIGS, arguments[1::2])}


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MMPRETRAIN, reason="the hosts' ConvNeXt configs use mmpretrain's ConvNeXt "
                    '(custom_imports mmpretrain.models), which this environment does not have')
@pytest.mark.parametrize('scope, config', HOST_CONFIGS)
def test_host_convnext_configs_build_the_same_optimizer_with_and_without_the_import(scope, config, host_groups):
    without, with_plugin = host_groups[config]
    assert len(without) > 10 and len({g['lr'] for g in without}) > 3  # really layer-decayed
    assert with_plugin == without


class ToyConvNeXt(nn.Module):
    """The upstream tests' stand-in, parameter for parameter and in their order: ConvNeXt by class name and official
    parameter names, no relation to ours."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(3, 4, 1)) for _ in range(4))
        self.norm0 = nn.BatchNorm2d(2)
        for name in ('cls_token', 'mask_token', 'pos_embed', 'stem_norm'):
            setattr(self, name, nn.Parameter(torch.ones(1)))
        for i in range(3):
            setattr(self, f'downsample_norm{i}', nn.BatchNorm2d(2))
        self.frozen = nn.Parameter(torch.ones(1), requires_grad=False)
        self.downsample_layers = nn.ModuleList(nn.Sequential(nn.Conv2d(3, 4, 1)) for _ in range(4))


class ToyBEiT(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.ones(1))
        self.patch_embed = nn.Parameter(torch.ones(1))
        self.layers = nn.ModuleList(nn.Conv2d(3, 3, 1) for _ in range(3))


class ToyMAE(ToyBEiT):
    pass


class ToyViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Linear(2, 2)


class Toy(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(2, 2, kernel_size=1, groups=2)


def lr_wd(scope, model, **paramwise_cfg):
    cfg = dict(optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
               constructor='LearningRateDecayOptimizerConstructor',
               paramwise_cfg=paramwise_cfg)
    with DefaultScope.overwrite_default_scope(scope):
        optimizer = build_optim_wrapper(model, cfg).optimizer
    assert all(group['lr'] == group['lr_scale'] for group in optimizer.param_groups)
    return [(group['weight_decay'], group['lr']) for group in optimizer.param_groups]


# The upstream tests' expectations (decay_rate 2, lr 1): (weight decay, lr scale) per group, in group order.
STAGE_WISE_CONVNEXT = [(0., 128), (0., 1), (WD, 64), (0., 64), (WD, 32), (0., 32), (WD, 16), (0., 16), (WD, 8),
                       (0., 8), (WD, 128), (WD, 1)]
LAYER_WISE_CONVNEXT = STAGE_WISE_CONVNEXT[:8] + [(WD, 2), (0., 2), (WD, 128), (WD, 1)]
LAYER_WISE_VIT = [(0., 16), (WD, 8), (0., 8), (WD, 4), (0., 4), (WD, 2), (0., 2), (WD, 1), (0., 1)]


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('decay_type, expected', [('stage_wise', STAGE_WISE_CONVNEXT),
                                                  ('layer_wise', LAYER_WISE_CONVNEXT)])
def test_upstream_expectations_for_convnext_named_backbones(scope, decay_type, expected):
    model = Toy(ToyConvNeXt())
    assert lr_wd(scope, model, decay_rate=2, decay_type=decay_type, num_layers=6) == expected


@pytest.mark.parametrize('backbone', [ToyBEiT, ToyMAE])
def test_upstream_expectations_for_beit_and_mae_in_mmseg(backbone):
    assert lr_wd('mmseg', Toy(backbone()), decay_rate=2, decay_type='layer_wise', num_layers=3) == LAYER_WISE_VIT


def test_mmseg_beit_backbone_gets_mmseg_own_groups():
    from mmseg.engine.optimizers.layer_decay_optimizer_constructor import (
        LearningRateDecayOptimizerConstructor as MMSegConstructor,
    )
    from mmseg.models.backbones import BEiT
    model = Toy(BEiT(img_size=(32, 32), patch_size=16, embed_dims=32, num_layers=4, num_heads=2))
    paramwise_cfg = dict(decay_rate=0.9, decay_type='layer_wise', num_layers=4)
    own = MMSegConstructor(dict(optimizer=dict(type='AdamW', lr=LR, weight_decay=WD)), paramwise_cfg)(model)
    expected = [(group['weight_decay'], group['lr']) for group in own.optimizer.param_groups]
    assert len(set(expected)) > 4
    assert lr_wd('mmseg', model, **paramwise_cfg) == expected


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', None])
def test_backbone_without_layer_ids_is_an_error(scope):
    with pytest.raises(NotImplementedError, match='no layer ids for ToyViT.*get_layer_depth'):
        lr_wd(scope, Toy(ToyViT()), decay_rate=0.9, decay_type='layer_wise', num_layers=3)


class WithLayerDepth(nn.Module):
    """A backbone that no host handles but that exposes mmpretrain's layer-depth interface: layer i of 3."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(2, 2) for _ in range(3))

    def get_layer_depth(self, param_name, prefix=''):
        return int(param_name[len(prefix):].split('.')[1]) + 1, 5


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', None])
def test_backbone_with_get_layer_depth_gets_layer_decay(scope):
    model = Toy(WithLayerDepth())
    got = dict(zip([n for n, _ in model.named_parameters()], lr_wd(scope, model, decay_rate=0.5)))
    for i in range(3):
        assert got[f'backbone.layers.{i}.weight'] == (WD, pytest.approx(0.5**(5 - (i + 1) - 1)))
        assert got[f'backbone.layers.{i}.bias'][0] == 0.
    assert got['head.weight'] == (WD, LR)
    with pytest.raises(ValueError, match='with 3 layers, but paramwise_cfg has num_layers=6; set num_layers=3'):
        lr_wd(scope, model, decay_rate=0.5, num_layers=6)


@pytest.mark.skipif(not HAS_MMPRETRAIN, reason="compares with mmpretrain's own layer-decay constructor, which this "
                    'environment does not have')
def test_mmpretrain_convnext_outside_the_hosts_matches_mmpretrain_own_layer_decay():
    from conftest import import_mmpretrain_convnext
    from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor

    class Classifier(Toy):  # as mmpretrain's ImageClassifier, which its constructor expects
        def get_layer_depth(self, param_name):
            return self.backbone.get_layer_depth(param_name, 'backbone.')

    model = Classifier(import_mmpretrain_convnext()(arch='atto', out_indices=(0, 1, 2, 3), gap_before_final_norm=False))
    optim = dict(optimizer=dict(type='AdamW', lr=LR, weight_decay=WD))
    reference = LearningRateDecayOptimWrapperConstructor(optim, dict(layer_decay_rate=0.7))(model)
    names = {id(p): n for n, p in model.named_parameters()}
    expected = {names[id(p)]: g['lr'] for g in reference.optimizer.param_groups for p in g['params']}
    got = LearningRateDecayOptimizerConstructor(optim, dict(decay_rate=0.7))(model)
    lrs = {names[id(p)]: g['lr'] for g in got.optimizer.param_groups for p in g['params']}
    assert lrs == pytest.approx(expected)
