"""The isotropic ConvNeXt: the official model's numbers from the official key layout, its load report, its options,
and one layer per block for layer decay.

The reference is the official model rebuilt from facebookresearch/ConvNeXt's source (official_convnext_isotropic.py
says which commit and what was transcribed), so these run on both stacks.
"""
import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_
from official_convnext_isotropic import OFFICIAL_MODELS, OFFICIAL_PARAMS_M
from official_convnext_isotropic import ConvNeXtIsotropic as OfficialConvNeXtIsotropic

from convnext_dense import CheckpointError, ConvNeXt, ConvNeXtIsotropic, load_pretrained
from convnext_dense.models.backbones.convnext_isotropic import ARCHS

TOL = dict(rtol=0, atol=1e-5)
X = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
SMALL = dict(depth=4, dim=32)  # the official S-iso's kind of model, small enough for a CPU test


def official_model(layer_scale=0., drop_path_rate=0., **arch):
    return randomize_(OfficialConvNeXtIsotropic(depth=arch['depth'], dim=arch['dim'], num_classes=10,
                                                drop_path_rate=drop_path_rate,
                                                layer_scale_init_value=layer_scale))


def official_features(model, x):
    """The official stride-16 map (forward_features before its pooling and classifier norm)."""
    return model.blocks(model.stem(x))


def identity_norm(x):
    """What our fresh output norms compute."""
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)


@pytest.mark.parametrize('layer_scale', [0., 1e-6], ids=['no_layer_scale', 'layer_scale'])
def test_official_checkpoint_gives_the_official_features(layer_scale, save):
    """An official checkpoint (its `model`, as the convnext_iso_* files) loads with the official report and gives the
    official model's features, bit for bit up to float rounding; the classifier's final norm is not used."""
    official = official_model(layer_scale, **SMALL).eval()
    with torch.no_grad():
        expected = official_features(official, X)
    ours = ConvNeXtIsotropic(SMALL, out_indices=(1, -1), layer_scale_init_value=layer_scale)
    report = load_pretrained(ours, save({'model': official.state_dict(), 'epoch': 299}))
    assert report.format == 'official_isotropic'
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.dropped_head) == ['head.bias', 'head.weight']
    assert sorted(report.unused_classifier_norm) == ['norm.bias', 'norm.weight']
    assert report.fresh_norms == ['norm1.bias', 'norm1.weight', 'norm3.bias', 'norm3.weight']
    summary = report.summary()
    assert "the classifier's final norm, not used" in summary and 'classification head, dropped: 2' in summary
    with torch.no_grad():
        intermediate, last = ours.eval()(X)
        official_block_1 = official.blocks[:2](official.stem(X))
    assert last.shape == (2, SMALL['dim'], 4, 6)
    torch.testing.assert_close(last, identity_norm(expected), **TOL)
    torch.testing.assert_close(intermediate, identity_norm(official_block_1), **TOL)


def test_training_with_drop_path_gives_the_official_gradients(save):
    """Train mode, drop path on: the same drop masks from the same seed, the same gradients for every parameter."""
    official = official_model(drop_path_rate=0.3, **SMALL).train()
    ours = ConvNeXtIsotropic(SMALL, drop_path_rate=0.3).train()
    load_pretrained(ours, save({'model': official.state_dict()}))
    weights = torch.randn(2, SMALL['dim'], 4, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    (identity_norm(official_features(official, X)) * weights).sum().backward()
    torch.manual_seed(0)
    (ours(X)[0] * weights).sum().backward()
    official_params = dict(official.named_parameters())
    for name, param in ours.named_parameters():
        if not name.startswith('norm3.'):  # our output norm, which the official classifier does not have
            torch.testing.assert_close(param.grad, official_params[name].grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize('arch', sorted(ARCHS))
def test_every_official_size_loads_key_for_key(arch, save, monkeypatch):
    """The official model functions' sizes (S/B/L, L with the layer scale it was trained with) map onto ours name for
    name and shape for shape (meta tensors: no memory, no compute), and have the README's parameter counts."""
    make, layer_scale = OFFICIAL_MODELS[arch]
    linspace = torch.linspace  # the official drop-path rates are read with .item(), which meta tensors cannot do
    monkeypatch.setattr(torch, 'linspace', lambda *args, **kwargs: linspace(*args, **kwargs, device='cpu'))
    with torch.device('meta'):
        official = make(layer_scale_init_value=layer_scale)
        ours = ConvNeXtIsotropic(arch)
    assert round(sum(p.numel() for p in official.parameters()) / 1e6) == OFFICIAL_PARAMS_M[arch]
    assert (ours.depth, ours.dim) == (len(official.blocks), official.stem.out_channels)
    report = load_pretrained(ours, save({'model': official.state_dict()}))
    depth = ARCHS[arch]['depth']
    assert report.missing == [] and report.unexpected == []
    assert set(report.loaded) == {k for k in ours.state_dict() if not k.startswith(f'norm{depth - 1}.')}
    assert sum(k.endswith('.gamma') for k in report.loaded) == (depth if layer_scale else 0)


@pytest.mark.parametrize('arch, gflops', [('small', 4.3), ('base', 16.9)])
def test_flops_at_224_are_the_official_readmes(arch, gflops):
    """The official README's ImageNet FLOPs of S-iso / B-iso at 224x224, counted by the analyzer of our FLOPs tool
    (our output norm counts as the classifier's final norm; the 1000-way head, 0.4M / 0.8M, rounds away)."""
    from mmengine.analysis import FlopAnalyzer
    with torch.no_grad():
        analyzer = FlopAnalyzer(ConvNeXtIsotropic(arch).eval(), (torch.zeros(1, 3, 224, 224), ))
        analyzer.unsupported_ops_warnings(False)
        assert round(analyzer.total() / 1e9, 1) == gflops


def test_our_checkpoints_round_trip_bare_and_inside_a_detector(save):
    source = randomize_(ConvNeXtIsotropic(SMALL, out_indices=(0, 2, 3), layer_scale_init_value=1e-6)).eval()
    with torch.no_grad():
        expected = source(X)
    state_dict = source.state_dict()
    for checkpoint in (state_dict, {'state_dict': {f'backbone.{k}': v for k, v in state_dict.items()},
                                    'meta': {'epoch': 12}}):
        ours = ConvNeXtIsotropic(SMALL, out_indices=(0, 2, 3), layer_scale_init_value=1e-6)
        report = load_pretrained(ours, save(checkpoint))
        assert report.format == 'official_isotropic' and report.loaded == sorted(state_dict)
        assert report.missing == report.unexpected == report.fresh_norms == report.unused_classifier_norm == []
        with torch.no_grad():
            for out, ref in zip(ours.eval()(X), expected):
                torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_init_cfg_pretrained_loads_through_init_weights(save):
    official = official_model(**SMALL)
    ours = ConvNeXtIsotropic(SMALL, init_cfg=dict(type='Pretrained', checkpoint=save({'model': official.state_dict()})))
    ours.init_weights()
    torch.testing.assert_close(ours.blocks[3].pwconv2.weight, official.blocks[3].pwconv2.weight, rtol=0, atol=0)


@pytest.mark.parametrize('make_checkpoint, model, message', [
    (lambda: OfficialConvNeXtIsotropic(depth=4, dim=64).state_dict(), SMALL,
     r"do not fit the model.*looks like arch=\{'depth': 4, 'dim': 64\}"),
    (lambda: _meta(ConvNeXtIsotropic, 'small').state_dict(), dict(depth=18, dim=768), r"looks like arch='small'"),
    (lambda: {'model': ConvNeXt('atto').state_dict()}, SMALL,
     r'a hierarchical ConvNeXt checkpoint \(official format\) cannot initialise ConvNeXtIsotropic; use ConvNeXt'),
])
def test_checkpoints_of_other_models_are_refused_naming_the_fix(make_checkpoint, model, message, save):
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(ConvNeXtIsotropic(model), save(make_checkpoint()))


def test_the_hierarchical_convnext_refuses_isotropic_checkpoints(save):
    with pytest.raises(CheckpointError, match=r'an isotropic ConvNeXt checkpoint .* cannot initialise ConvNeXt; use '
                                              r'ConvNeXtIsotropic'):
        load_pretrained(ConvNeXt('atto'), save({'model': official_model(**SMALL).state_dict()}))


def _meta(cls, *args):
    with torch.device('meta'):
        return cls(*args)


# ---------------------------------------------------------------------------------------------------------------------
# The backbone's own behaviour


@pytest.mark.parametrize('size', [(64, 64), (65, 97), (33, 50), (16, 16)])
def test_any_input_size_gives_ceil_of_a_sixteenth(size):
    model = ConvNeXtIsotropic(SMALL, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert model.out_strides == (16, ) * 4 and model.out_channels == (32, ) * 4
    assert all(out.shape == (1, 32, math.ceil(size[0] / 16), math.ceil(size[1] / 16)) for out in outs)
    assert all(out.is_contiguous() for out in outs)


def test_odd_sizes_are_zero_padded_not_cropped():
    model = ConvNeXtIsotropic(SMALL).eval()
    x = torch.randn(1, 3, 33, 50)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], model(F.pad(x, (0, 14, 0, 15)))[0], rtol=0, atol=0)


def test_out_indices_and_blocks_after_the_last_output_are_not_built():
    model = ConvNeXtIsotropic(SMALL, out_indices=(-3, 0))
    assert model.out_indices == (0, 1) and len(model.blocks) == 2
    assert hasattr(model, 'norm0') and hasattr(model, 'norm1') and not hasattr(model, 'norm3')
    sum(o.sum() for o in model(X)).backward()
    assert all(p.grad is not None for p in model.parameters())  # no unused parameters for DDP


def test_default_is_the_last_block_and_layer_scale_is_official():
    assert ConvNeXtIsotropic('small').out_indices == (17, )
    with torch.device('meta'):
        assert ConvNeXtIsotropic('large').out_indices == (35, )
        assert ConvNeXtIsotropic('large').blocks[0].gamma is not None
    assert ConvNeXtIsotropic('small').blocks[0].gamma is None and ConvNeXtIsotropic(SMALL).blocks[0].gamma is None
    assert torch.all(ConvNeXtIsotropic(SMALL, layer_scale_init_value=0.5).blocks[0].gamma == 0.5)


def test_drop_path_is_linear_over_the_blocks():
    model = ConvNeXtIsotropic('small', drop_path_rate=0.4)
    assert [b.drop_path_rate for b in model.blocks] == pytest.approx(torch.linspace(0, 0.4, 18).tolist())


@pytest.mark.parametrize('frozen_stages', [1, 3, 4])
def test_frozen_blocks_have_no_grads_and_stay_in_eval(frozen_stages):
    model = ConvNeXtIsotropic(SMALL, out_indices=(0, 3), frozen_stages=frozen_stages, drop_path_rate=0.2).train()
    frozen = [model.stem, *model.blocks[:frozen_stages], model.norm0]
    for module in frozen:
        assert not module.training and all(not p.requires_grad for p in module.parameters())
    assert model.norm3.training == (frozen_stages < 4)
    if frozen_stages < 4:
        sum(o.sum() for o in model(X)).backward()
        assert all(p.grad is None for m in frozen for p in m.parameters())
        assert all(p.grad is not None for p in model.blocks[frozen_stages].parameters())


def test_with_cp_gives_identical_gradients_with_the_same_drop_masks():
    plain = randomize_(ConvNeXtIsotropic(SMALL, drop_path_rate=0.3, layer_scale_init_value=1e-6)).train()
    checkpointed = ConvNeXtIsotropic(SMALL, drop_path_rate=0.3, layer_scale_init_value=1e-6, with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    for model in (plain, checkpointed):
        torch.manual_seed(0)
        model(X)[0].square().mean().backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6, msg=name)


def test_one_layer_per_block_for_layer_decay():
    model = ConvNeXtIsotropic('small')
    assert model.get_layer_depth('stem.weight') == (0, 20)
    assert model.get_layer_depth('blocks.0.dwconv.weight') == (1, 20)
    assert model.get_layer_depth('blocks.17.pwconv2.bias') == (18, 20)
    assert model.get_layer_depth('norm17.weight') == (19, 20)
    assert model.get_layer_depth('backbone.blocks.4.norm.weight', 'backbone.') == (5, 20)
    assert model.get_layer_depth('neck.levels.0.0.weight', 'backbone.') == (19, 20)


def test_layer_decay_constructor_decays_per_block_in_mmdet_and_mmseg_scopes():
    """Our constructor, not the host's: mmdet's and mmseg's take any backbone named *ConvNeXt* for the hierarchical
    one and would give blocks outside `stages.` no decay at all."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from torch import nn

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = ConvNeXtIsotropic(SMALL)
            self.head = nn.Conv2d(32, 4, 1)

    for scope in ('mmdet', 'mmseg'):
        pytest.importorskip(scope)
        with DefaultScope.overwrite_default_scope(scope):
            wrapper = build_optim_wrapper(Detector(), dict(
                optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                constructor='LearningRateDecayOptimizerConstructor',
                paramwise_cfg=dict(decay_rate=0.9, decay_type='layer_wise', num_layers=4)))
        scales = {name: group['lr'] / 1e-3 for group in wrapper.optimizer.param_groups
                  for name in group['param_names']}
        assert scales['backbone.stem.weight'] == pytest.approx(0.9**5)
        for i in range(4):
            assert scales[f'backbone.blocks.{i}.pwconv1.weight'] == pytest.approx(0.9**(4 - i)), scope
        assert scales['backbone.norm3.weight'] == scales['head.weight'] == 1


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='tiny'), "unknown arch 'tiny'"),
    (dict(arch=dict(depths=[1], dims=[8])), r'dict\(depth=D, dim=C\)'),
    (dict(arch=dict(depth=0, dim=8)), 'positive integer depth and dim'),
    (dict(out_indices=(4, )), r'block indices in -4\.\.3'),
    (dict(out_indices=(1, -3)), 'distinct blocks'),
    (dict(frozen_stages=5), r'frozen_stages \(blocks\) must be in -1\.\.4'),
    (dict(drop_path_rate=1.0), r'drop_path_rate must be in \[0, 1\)'),
])
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvNeXtIsotropic(**{'arch': SMALL, **kwargs})


def test_wrong_input_channels_name_the_fix():
    with pytest.raises(ValueError, match=r'expects input of shape \(N, 3, H, W\), got \(1, 4, 32, 32\)'):
        ConvNeXtIsotropic(SMALL)(torch.randn(1, 4, 32, 32))


def test_registered_where_mmdet_and_mmseg_find_it():
    from mmengine.registry import MODELS
    registries = [MODELS]
    for scope in ('mmdet', 'mmseg'):
        registries.append(pytest.importorskip(f'{scope}.registry').MODELS)
    for registry in registries:
        assert type(registry.build(dict(type='ConvNeXtIsotropic', arch=SMALL))) is ConvNeXtIsotropic
        neck = registry.build(dict(type='SimpleFeaturePyramid', in_channels=32))
        assert type(neck).__module__ == 'convnext_dense.models.necks.simple_feature_pyramid'
    assert re.fullmatch(r'convnext_dense\.models\.backbones\.convnext_isotropic', ConvNeXtIsotropic.__module__)
