"""The layer-decay constructor reproduces the official multipliers and replaces mmdet's and mmseg's copies."""
import pytest
import torch
from mmdet.engine.optimizers.layer_decay_optimizer_constructor import (
    LearningRateDecayOptimizerConstructor as MMDetConstructor,
)
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmseg.engine.optimizers.layer_decay_optimizer_constructor import (
    LearningRateDecayOptimizerConstructor as MMSegConstructor,
)
from torch import nn

from convnext_dense import ConvNeXt, LearningRateDecayOptimizerConstructor

LR, WD = 2e-4, 0.05
# (recipe, arch, decay_type, decay_rate, num_layers) from ANCHORS.md
RECIPES = [
    ('mask_rcnn_t', 'tiny', 'layer_wise', 0.95, 6),
    ('cascade_t', 'tiny', 'layer_wise', 0.7, 6),
    ('cascade_s', 'small', 'layer_wise', 0.7, 12),
    ('cascade_b', 'base', 'layer_wise', 0.8, 12),
    ('upernet_t', 'tiny', 'stage_wise', 0.9, 6),
    ('upernet_b', 'base', 'stage_wise', 0.9, 12),
]


class Detector(nn.Module):
    def __init__(self, arch, **backbone_args):
        super().__init__()
        self.backbone = ConvNeXt(arch, **backbone_args)
        self.neck = nn.Conv2d(768, 256, 1)
        self.head = nn.Sequential(nn.Linear(256, 10), nn.LayerNorm(10))


def settings_by_name(optimizer, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (group['lr'], group['weight_decay']) for group in optimizer.param_groups
            for p in group['params']}


def build(constructor_cls, model, decay_type, decay_rate, num_layers, **extra):
    constructor = constructor_cls(
        dict(optimizer=dict(type='AdamW', lr=LR, weight_decay=WD, betas=(0.9, 0.999))),
        dict(decay_rate=decay_rate, decay_type=decay_type, num_layers=num_layers, **extra))
    return settings_by_name(constructor(model).optimizer, model)


@pytest.mark.parametrize('recipe, arch, decay_type, decay_rate, num_layers', RECIPES)
def test_multipliers_equal_mmdet_and_mmseg_copies_of_the_official_code(recipe, arch, decay_type, decay_rate,
                                                                     num_layers):
    with torch.device('meta'):
        model = Detector(arch)
    ours = build(LearningRateDecayOptimizerConstructor, model, decay_type, decay_rate, num_layers)
    references = [MMSegConstructor] if decay_type == 'stage_wise' else [MMDetConstructor, MMSegConstructor]
    for reference_cls in references:
        reference = build(reference_cls, model, decay_type, decay_rate, num_layers)
        assert reference.keys() == ours.keys()
        for name, (lr, wd) in reference.items():
            assert ours[name][0] == pytest.approx(lr, rel=1e-12), name
            assert ours[name][1] == wd, name


def test_official_cascade_t_values_by_hand():
    with torch.device('meta'):
        model = Detector('tiny')
    got = build(LearningRateDecayOptimizerConstructor, model, 'layer_wise', 0.7, 6)
    expected_scale = {  # decay_rate ** (num_layers + 1 - layer_id)
        'backbone.downsample_layers.0.0.weight': 0.7**7,  # stem: layer 0
        'backbone.stages.0.2.pwconv1.weight': 0.7**6,  # layer 1
        'backbone.downsample_layers.1.1.weight': 0.7**5,  # layer 2
        'backbone.stages.1.0.dwconv.weight': 0.7**5,
        'backbone.downsample_layers.2.1.weight': 0.7**4,  # layer 3
        'backbone.stages.2.2.pwconv2.weight': 0.7**4,  # 3 + 2 // 3 = 3
        'backbone.stages.2.3.pwconv2.weight': 0.7**3,  # 3 + 3 // 3 = 4
        'backbone.stages.2.8.pwconv2.weight': 0.7**2,  # 3 + 8 // 3 = 5
        'backbone.downsample_layers.3.1.weight': 0.7**1,  # layer num_layers
        'backbone.stages.3.2.dwconv.weight': 0.7**1,
        'backbone.norm3.weight': 1.,  # num_layers + 1
        'neck.weight': 1.,
    }
    for name, scale in expected_scale.items():
        assert got[name][0] == pytest.approx(LR * scale, rel=1e-12), name
    assert got['neck.weight'][1] == WD and got['backbone.stages.2.8.pwconv2.weight'][1] == WD
    for no_decay in ('backbone.stages.0.0.gamma', 'backbone.stages.0.0.norm.weight', 'neck.bias', 'head.1.weight',
                     'backbone.downsample_layers.0.0.bias'):
        assert got[no_decay][1] == 0, no_decay


def test_grn_and_layer_scale_get_no_weight_decay():
    with torch.device('meta'):
        model = Detector('tiny', version=2, layer_scale_init_value=1e-6)
    got = build(LearningRateDecayOptimizerConstructor, model, 'layer_wise', 0.8, 6)
    for name in ('backbone.stages.1.0.grn.gamma', 'backbone.stages.1.0.grn.beta', 'backbone.stages.1.0.gamma'):
        assert got[name][1] == 0, name


def test_custom_keys_apply_outside_the_backbone_too():
    with torch.device('meta'):
        model = Detector('tiny')
    got = build(LearningRateDecayOptimizerConstructor, model, 'layer_wise', 0.7, 6,
                custom_keys={'neck': dict(lr_mult=2., decay_mult=0.5), 'head': dict(lr_mult=10.)})
    assert got['neck.weight'] == (pytest.approx(2 * LR), pytest.approx(0.5 * WD))
    assert got['head.0.weight'] == (pytest.approx(10 * LR), pytest.approx(WD))
    assert got['backbone.stages.3.0.dwconv.weight'][0] == pytest.approx(LR * 0.7)


def test_an_lr_mult_on_the_backbone_multiplies_its_layer_decay():
    """DINO's and Mask2Former's ``backbone`` lr_mult 0.1 on top of the layer decay, not instead of it."""
    with torch.device('meta'):
        model = Detector('tiny')
    plain = build(LearningRateDecayOptimizerConstructor, model, 'layer_wise', 0.7, 6)
    got = build(LearningRateDecayOptimizerConstructor, model, 'layer_wise', 0.7, 6,
                custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=2.), 'backbone.stages.3': dict(lr_mult=0.5)})
    assert got['backbone.downsample_layers.0.0.weight'] == (pytest.approx(0.1 * LR * 0.7**7), pytest.approx(2 * WD))
    assert got['backbone.stages.2.4.pwconv1.weight'][0] == pytest.approx(
        0.1 * plain['backbone.stages.2.4.pwconv1.weight'][0])
    assert got['backbone.stages.3.0.dwconv.weight'][0] == pytest.approx(0.5 * LR * 0.7)  # the longest key wins
    assert got['neck.weight'] == plain['neck.weight']


def test_norm_and_bias_decay_mult_as_mmengine_means_them():
    with torch.device('meta'):
        model = Detector('tiny')
    official = build(LearningRateDecayOptimizerConstructor, model, 'layer_wise', 0.7, 6)
    assert official['head.1.weight'][1] == 0 and official['neck.bias'][1] == 0  # no decay on 1-D and biases
    got = build(LearningRateDecayOptimizerConstructor, model, 'layer_wise', 0.7, 6, norm_decay_mult=0.5,
                bias_decay_mult=0.1)
    assert got['head.1.weight'][1] == pytest.approx(0.5 * WD)  # a LayerNorm's weight
    assert got['head.1.bias'][1] == pytest.approx(0.5 * WD)  # a norm layer's bias follows norm_decay_mult
    assert got['neck.bias'][1] == pytest.approx(0.1 * WD)
    assert got['backbone.stages.0.0.norm.weight'][1] == pytest.approx(0.5 * WD)
    assert got['backbone.stages.0.0.gamma'][1] == 0  # layer scale: neither a norm nor a bias
    assert got['neck.weight'][1] == WD


def test_backbone_is_found_by_module_not_by_name():
    with torch.device('meta'):
        model = nn.ModuleDict(dict(encoder=ConvNeXt('tiny'), decoder=nn.Linear(4, 4)))
    got = build(LearningRateDecayOptimizerConstructor, model, 'layer_wise', 0.7, 6)
    assert got['encoder.downsample_layers.0.0.weight'][0] == pytest.approx(LR * 0.7**7)
    assert got['decoder.weight'][0] == LR


def test_frozen_parameters_are_left_out():
    model = Detector('atto', frozen_stages=1)
    got = build(LearningRateDecayOptimizerConstructor, model, 'layer_wise', 0.7, 6)
    assert not any(name.startswith('backbone.stages.0.') for name in got)
    assert 'backbone.stages.1.0.dwconv.weight' in got


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', None])
def test_the_registered_name_gives_ours_in_mmdet_and_mmseg(scope):
    with torch.device('meta'):
        model = Detector('tiny')
    cfg = dict(optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
               constructor='LearningRateDecayOptimizerConstructor',
               paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6,
                                  custom_keys={'neck': dict(lr_mult=3.)}))
    with DefaultScope.overwrite_default_scope(scope):
        optim_wrapper = build_optim_wrapper(model, cfg)
    # custom_keys is ours alone: mmdet's and mmseg's copies ignore it
    assert settings_by_name(optim_wrapper.optimizer, model)['neck.weight'][0] == pytest.approx(3 * LR)


@pytest.mark.parametrize('model_factory, paramwise_cfg, error, message', [
    (lambda: nn.Sequential(nn.Linear(2, 2)), dict(decay_rate=0.7, num_layers=6), NotImplementedError,
     r'no layer ids for Sequential \(no backbone\)'),
    (lambda: Detector('atto'), dict(decay_rate=0.7), ValueError, r"needs \['num_layers'\] for ConvNeXt"),
    (lambda: Detector('atto'), dict(num_layers=6), ValueError, r"needs \['decay_rate'\]"),
    (lambda: Detector('atto'), dict(decay_rate=0.7, num_layers=6, decay_type='block_wise'), ValueError,
     'decay_type must be one of'),
    (lambda: Detector('atto'), dict(decay_rate=0.7, num_layers=6, bypass_duplicate=True), ValueError,
     r"unsupported paramwise_cfg keys \['bypass_duplicate'\]"),
    (lambda: Detector('small'), dict(decay_rate=0.7, num_layers=6), ValueError,
     'num_layers=6 is too small .* 27 blocks in stage 2 .* use num_layers=12'),
    (lambda: Detector('atto'), dict(decay_rate=1.5, num_layers=6), ValueError, r'decay_rate must be in \(0, 1\]'),
])
def test_misconfiguration_is_an_error_not_a_silent_fallback(model_factory, paramwise_cfg, error, message):
    with torch.device('meta'):
        model = model_factory()
    with pytest.raises(error, match=message):
        constructor = LearningRateDecayOptimizerConstructor(dict(optimizer=dict(type='AdamW', lr=LR, weight_decay=WD)),
                                                            paramwise_cfg)
        constructor(model)
