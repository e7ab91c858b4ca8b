"""Every Mask R-CNN / Cascade Mask R-CNN / UperNet config loads, carries the official recipe and builds its model.

The recipe tables are written from the official ConvNeXt and Swin recipes and their reported parameter
counts, so a wrong number in a config fails here. Models are built without a forward pass: T-size and Swin models on
the CPU, the larger ConvNeXt models on the 'meta' device (same modules and parameter counts, no memory or init cost).
"""
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope

import convnext_dense  # noqa: F401  registers the backbone and the optimizer constructor
from convnext_dense.models.backbones.convnext import ARCHS

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIRS = ('mask_rcnn', 'cascade_rcnn', 'upernet')



class ConvNeXtRecipe(NamedTuple):
    arch: str
    pretrain: str  # '1k' or '22k'
    drop_path: float
    lr: float
    decay_rate: float
    num_layers: int
    amp: bool
    params_m: Optional[float]  # reported parameter count in millions, None where no source reports one
    crop: Optional[int] = None  # segmentation crop size


class SwinRecipe(NamedTuple):
    size: str
    embed_dims: int
    depths: tuple
    num_heads: tuple
    drop_path: float
    params_m: Optional[float]


# Detection: official table of ANCHORS.md; Mask R-CNN S/B/L/XL have no official recipe, the configs pick values from
# the paper's sweep (lr {1e-4, 2e-4}, decay {0.7, 0.8, 0.9, 0.95}, drop path 0.3..0.8) and say so.
CONVNEXT_DET = {
    'mask_rcnn/convnext_t_3x.py': ConvNeXtRecipe('tiny', '1k', 0.4, 1e-4, 0.95, 6, True, 48),
    'mask_rcnn/convnext_s_3x.py': ConvNeXtRecipe('small', '1k', 0.6, 1e-4, 0.95, 12, True, None),
    'mask_rcnn/convnext_b_3x.py': ConvNeXtRecipe('base', '1k', 0.7, 1e-4, 0.95, 12, True, None),
    'mask_rcnn/convnext_l_3x.py': ConvNeXtRecipe('large', '22k', 0.7, 1e-4, 0.95, 12, False, None),
    'mask_rcnn/convnext_xl_3x.py': ConvNeXtRecipe('xlarge', '22k', 0.8, 1e-4, 0.95, 12, False, None),
    'cascade_rcnn/convnext_t_3x.py': ConvNeXtRecipe('tiny', '1k', 0.4, 2e-4, 0.7, 6, True, 86),
    'cascade_rcnn/convnext_s_3x.py': ConvNeXtRecipe('small', '1k', 0.6, 2e-4, 0.7, 12, True, 108),
    'cascade_rcnn/convnext_b_3x.py': ConvNeXtRecipe('base', '1k', 0.7, 2e-4, 0.8, 12, True, 146),
    'cascade_rcnn/convnext_b_22k_3x.py': ConvNeXtRecipe('base', '22k', 0.6, 1e-4, 0.8, 12, True, 146),
    'cascade_rcnn/convnext_l_3x.py': ConvNeXtRecipe('large', '22k', 0.7, 1e-4, 0.7, 12, False, 255),
    'cascade_rcnn/convnext_xl_3x.py': ConvNeXtRecipe('xlarge', '22k', 0.8, 1e-4, 0.7, 12, False, 407),
}
# Segmentation: stage-wise decay 0.9 everywhere; num_layers, crop, drop path, lr and AMP per size.
CONVNEXT_SEG = {
    'upernet/convnext_t_160k_ade20k.py': ConvNeXtRecipe('tiny', '1k', 0.4, 1e-4, 0.9, 6, True, 60, 512),
    'upernet/convnext_s_160k_ade20k.py': ConvNeXtRecipe('small', '1k', 0.3, 1e-4, 0.9, 12, True, 82, 512),
    'upernet/convnext_b_160k_ade20k.py': ConvNeXtRecipe('base', '1k', 0.4, 1e-4, 0.9, 12, True, 122, 512),
    'upernet/convnext_b_22k_160k_ade20k.py': ConvNeXtRecipe('base', '22k', 0.4, 1e-4, 0.9, 12, True, 122, 640),
    'upernet/convnext_l_160k_ade20k.py': ConvNeXtRecipe('large', '22k', 0.4, 1e-4, 0.9, 12, False, 235, 640),
    'upernet/convnext_xl_160k_ade20k.py': ConvNeXtRecipe('xlarge', '22k', 0.4, 8e-5, 0.9, 12, False, 391, 640),
}
# Swin counterparts: official Swin recipe (AdamW lr 1e-4, AMP, no layer decay); parameter counts measured in ANCHORS.
SWIN_DET = {
    'mask_rcnn/swin_t_3x.py': SwinRecipe('tiny', 96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2, None),
    'cascade_rcnn/swin_t_3x.py': SwinRecipe('tiny', 96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2, 85.6),
    'cascade_rcnn/swin_s_3x.py': SwinRecipe('small', 96, (2, 2, 18, 2), (3, 6, 12, 24), 0.2, 107.0),
    'cascade_rcnn/swin_b_3x.py': SwinRecipe('base', 128, (2, 2, 18, 2), (4, 8, 16, 32), 0.3, 145.0),
}
ALL = {**CONVNEXT_DET, **CONVNEXT_SEG, **SWIN_DET}
PARAMS_TOLERANCE = 0.5e6  # the reported counts are rounded to 1M (0.1M for the measured Swin ones)


@lru_cache(maxsize=None)
def load(name: str) -> Config:
    return Config.fromfile(str(ROOT / 'configs' / name))


def build(cfg: Config, device: str) -> torch.nn.Module:
    model_cfg = cfg.model.copy()
    model_cfg.backbone.init_cfg = None  # no weights here
    init_default_scope(cfg.default_scope)
    with torch.device(device):
        return MODELS.build(model_cfg)


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_config_has_a_recipe_row():
    found = {str(p.relative_to(ROOT / 'configs')) for d in CONFIG_DIRS for p in (ROOT / 'configs' / d).glob('*.py')
             if not p.name.startswith(('_', 'convnextv2_', 'convnext_iso_'))}
    # V2 rows: test_configs_v2.py; isotropic ones: test_configs_isotropic.py
    assert found == set(ALL)


# ---------------------------------------------------------------------------------------------------------------------
# Recipe values, from the configs alone


def _assert_adamw(cfg, lr):
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and optimizer.lr == lr
    assert tuple(optimizer.betas) == (0.9, 0.999) and optimizer.weight_decay == 0.05


def _assert_3x_coco(cfg):
    assert cfg.train_cfg.max_epochs == 36
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.by_epoch, warmup.end) == ('LinearLR', 0.001, False, 500)
    assert (steps.type, steps.milestones, steps.gamma) == ('MultiStepLR', [27, 33], 0.1)
    assert steps.by_epoch and steps.end == 36
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
    pipeline = cfg.train_dataloader.dataset.pipeline
    flip = [t for t in pipeline if t.type == 'RandomFlip']
    assert len(flip) == 1 and flip[0].prob == 0.5
    (choice, ) = [t for t in pipeline if t.type == 'RandomChoice']
    multi_scale = [(short, 1333) for short in range(480, 801, 32)]
    plain, cropped = choice.transforms
    assert [t.type for t in plain] == ['RandomChoiceResize'] and list(plain[0].scales) == multi_scale
    assert [t.type for t in cropped] == ['RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']
    assert list(cropped[0].scales) == [(400, 1333), (500, 1333), (600, 1333)]
    assert (cropped[1].crop_type, tuple(cropped[1].crop_size)) == ('absolute_range', (384, 600))
    assert list(cropped[2].scales) == multi_scale


def _assert_cascade_heads(cfg):
    heads = cfg.model.roi_head.bbox_head
    stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
    assert len(heads) == 3
    for head, std in zip(heads, stds):
        assert (head.type, head.num_shared_convs, head.num_shared_fcs) == ('ConvFCBBoxHead', 4, 1)
        assert head.norm_cfg.type == 'SyncBN' and head.reg_decoded_bbox
        assert (head.loss_bbox.type, head.loss_bbox.loss_weight) == ('GIoULoss', 10.0)
        assert head.bbox_coder.target_stds == std


def _assert_pretrained(cfg, arch, pretrain):
    checkpoint = f'checkpoints/convnext_{arch}_{pretrain}_224.pth'  # the official release file names
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint)


@pytest.mark.parametrize('name', sorted(CONVNEXT_DET))
def test_convnext_detection_recipe(name):
    cfg, recipe = load(name), CONVNEXT_DET[name]
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, backbone.drop_path_rate) == ('ConvNeXt', recipe.arch, recipe.drop_path)
    assert cfg.model.neck.in_channels == list(ARCHS[recipe.arch]['dims'])
    _assert_pretrained(cfg, recipe.arch, recipe.pretrain)
    _assert_3x_coco(cfg)
    _assert_adamw(cfg, recipe.lr)
    wrapper = cfg.optim_wrapper
    assert wrapper.type == ('AmpOptimWrapper' if recipe.amp else 'OptimWrapper')
    assert wrapper.constructor == 'LearningRateDecayOptimizerConstructor'
    assert wrapper.paramwise_cfg == dict(decay_rate=recipe.decay_rate, decay_type='layer_wise',
                                         num_layers=recipe.num_layers)
    assert 'convnext_dense' in cfg.custom_imports.imports and not cfg.custom_imports.allow_failed_imports
    if name.startswith('cascade_rcnn/'):
        _assert_cascade_heads(cfg)


@pytest.mark.parametrize('name', sorted(SWIN_DET))
def test_swin_detection_recipe(name):
    cfg, recipe = load(name), SWIN_DET[name]
    backbone = cfg.model.backbone
    assert backbone.type == 'SwinTransformer' and backbone.window_size == 7 and backbone.convert_weights
    assert (backbone.embed_dims, tuple(backbone.depths), tuple(backbone.num_heads),
            backbone.drop_path_rate) == (recipe.embed_dims, recipe.depths, recipe.num_heads, recipe.drop_path)
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint=f'checkpoints/swin_{recipe.size}_patch4_window7_224.pth')
    assert cfg.model.neck.in_channels == [recipe.embed_dims * 2**i for i in range(4)]
    _assert_3x_coco(cfg)
    _assert_adamw(cfg, 1e-4)
    wrapper = cfg.optim_wrapper
    assert wrapper.type == 'AmpOptimWrapper' and 'constructor' not in wrapper
    assert wrapper.paramwise_cfg.custom_keys == {
        key: dict(decay_mult=0.) for key in ('absolute_pos_embed', 'relative_position_bias_table', 'norm')}
    if name.startswith('cascade_rcnn/'):
        _assert_cascade_heads(cfg)
    # the same detector, data and schedule as the ConvNeXt counterpart; only backbone and optimizer differ
    convnext = load(name.replace('swin', 'convnext'))
    assert cfg.model.type == convnext.model.type
    for key in ('neck', 'rpn_head', 'roi_head', 'train_cfg', 'test_cfg'):
        assert cfg.model[key].to_dict() == {**convnext.model[key].to_dict(), **(
            dict(in_channels=cfg.model.neck.in_channels) if key == 'neck' else {})}
    assert cfg.train_dataloader.to_dict() == convnext.train_dataloader.to_dict()
    assert cfg.param_scheduler == convnext.param_scheduler


@pytest.mark.parametrize('name', sorted(CONVNEXT_SEG))
def test_convnext_segmentation_recipe(name):
    cfg, recipe = load(name), CONVNEXT_SEG[name]
    dims = list(ARCHS[recipe.arch]['dims'])
    model = cfg.model
    assert model.pretrained is None
    assert (model.backbone.type, model.backbone.arch, model.backbone.drop_path_rate) == ('ConvNeXt', recipe.arch,
                                                                                         recipe.drop_path)
    _assert_pretrained(cfg, recipe.arch, recipe.pretrain)
    head, aux = model.decode_head, model.auxiliary_head
    assert (head.type, head.in_channels, tuple(head.pool_scales), head.channels, head.num_classes) == (
        'UPerHead', dims, (1, 2, 3, 6), 512, 150)
    assert (aux.type, aux.in_index, aux.in_channels, aux.num_classes, aux.loss_decode.loss_weight) == (
        'FCNHead', 2, dims[2], 150, 0.4)
    assert head.norm_cfg.type == 'SyncBN' and aux.norm_cfg.type == 'SyncBN'

    crop = (recipe.crop, recipe.crop)
    assert tuple(cfg.crop_size) == crop and tuple(model.data_preprocessor.size) == crop
    (random_crop, ) = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomCrop']
    assert tuple(random_crop.crop_size) == crop
    assert (model.test_cfg.mode, tuple(model.test_cfg.crop_size)) == ('slide', crop)
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.train_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016'

    assert (cfg.train_cfg.type, cfg.train_cfg.max_iters) == ('IterBasedTrainLoop', 160000)
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.by_epoch, warmup.begin, warmup.end) == ('LinearLR', 1e-6, False,
                                                                                            0, 1500)
    assert (poly.type, poly.power, poly.eta_min, poly.by_epoch, poly.end) == ('PolyLR', 1.0, 0.0, False, 160000)
    _assert_adamw(cfg, recipe.lr)
    wrapper = cfg.optim_wrapper
    assert wrapper.type == ('AmpOptimWrapper' if recipe.amp else 'OptimWrapper')
    assert wrapper.constructor == 'LearningRateDecayOptimizerConstructor'
    assert wrapper.paramwise_cfg == dict(decay_rate=0.9, decay_type='stage_wise', num_layers=recipe.num_layers)


# ---------------------------------------------------------------------------------------------------------------------
# Built models


def _device(name: str) -> str:
    recipe = ALL[name]
    return 'meta' if isinstance(recipe, ConvNeXtRecipe) and recipe.arch != 'tiny' else 'cpu'


def _assert_layer_decay(cfg, model, recipe):
    # The constructor name must give our layer decay inside the config's mmdet/mmseg scope: the stem gets
    # lr * decay_rate ** (num_layers + 1), the heads the base lr. (AmpOptimWrapper needs a GPU; the groups are the
    # same.)
    wrapper_cfg = cfg.optim_wrapper.copy()
    wrapper_cfg.type = 'OptimWrapper'
    lrs = {group['lr'] for group in build_optim_wrapper(model, wrapper_cfg).optimizer.param_groups}
    assert min(lrs) == pytest.approx(recipe.lr * recipe.decay_rate**(recipe.num_layers + 1))
    assert max(lrs) == pytest.approx(recipe.lr)


def _assert_params(model, recipe):
    if recipe.params_m is not None:
        assert num_params(model) == pytest.approx(recipe.params_m * 1e6, abs=PARAMS_TOLERANCE)


@pytest.mark.parametrize('name', sorted(CONVNEXT_DET) + sorted(SWIN_DET))
def test_detection_model_builds(name):
    cfg, recipe = load(name), ALL[name]
    model = build(cfg, _device(name))
    _assert_params(model, recipe)
    if isinstance(recipe, ConvNeXtRecipe):
        backbone = model.backbone
        assert backbone.dims == ARCHS[recipe.arch]['dims'] and backbone.depths == ARCHS[recipe.arch]['depths']
        assert backbone.stages[-1][-1].drop_path_rate == pytest.approx(recipe.drop_path)
        _assert_layer_decay(cfg, model, recipe)
        in_channels = backbone.out_channels
    else:
        in_channels = tuple(recipe.embed_dims * 2**i for i in range(4))
    neck = model.neck
    assert tuple(conv.conv.in_channels for conv in neck.lateral_convs) == in_channels
    assert neck.out_channels == 256 and neck.num_outs == 5
    if name.startswith('cascade_rcnn/'):
        assert len(model.roi_head.bbox_head) == 3
        for head in model.roi_head.bbox_head:
            assert len(head.shared_convs) == 4 and len(head.shared_fcs) == 1
            # SyncBN as in the recipe; mmengine's Runner reverts it to BN in non-distributed runs
            assert isinstance(head.shared_convs[0].bn, torch.nn.SyncBatchNorm)


@pytest.mark.parametrize('name', sorted(CONVNEXT_SEG))
def test_segmentation_model_builds(name):
    cfg, recipe = load(name), ALL[name]
    model = build(cfg, _device(name))
    _assert_params(model, recipe)
    backbone = model.backbone
    assert backbone.stages[-1][-1].drop_path_rate == pytest.approx(recipe.drop_path)
    _assert_layer_decay(cfg, model, recipe)
    assert model.decode_head.in_channels == list(backbone.out_channels)
    assert model.auxiliary_head.in_channels == backbone.out_channels[2]
    assert model.decode_head.channels == 512 and model.decode_head.psp_modules.pool_scales == (1, 2, 3, 6)


# ---------------------------------------------------------------------------------------------------------------------
# mmseg:: / mmdet:: / mmpretrain:: resolution with the OneDL distributions
