"""Checkpoints of the reference implementations load through our loader and give the same numbers."""
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import import_mmpretrain_convnext, import_timm, randomize_

from convnext_dense import CheckpointError, ConvNeXt, load_pretrained

TOL = dict(rtol=0, atol=1e-5)


def mmpretrain_reference(arch, version):
    MMPretrainConvNeXt = import_mmpretrain_convnext()
    v2 = dict(use_grn=True, layer_scale_init_value=0.) if version == 2 else {}
    model = randomize_(MMPretrainConvNeXt(arch=arch, out_indices=(0, 1, 2, 3), gap_before_final_norm=False, **v2))
    model.eval()  # mmpretrain's train() returns None, so no chaining
    return model


def official_from_mmpretrain(state_dict, version):
    """An official ImageNet classifier checkpoint, written independently of our key tables: official V2 stores GRN as
    (1,1,1,C), and classifiers have a final `norm` and a `head` but no per-stage norms."""
    official = {}
    for key, value in state_dict.items():
        if re.match(r'norm[012]\.', key):
            continue
        key = re.sub(r'^norm3\.', 'norm.', key)
        key = key.replace('depthwise_conv', 'dwconv').replace('pointwise_conv1', 'pwconv1')
        key = key.replace('pointwise_conv2', 'pwconv2')
        if version == 2 and '.grn.' in key:
            value = value.reshape(1, 1, 1, -1)
        official[key] = value
    official['head.weight'] = torch.randn(10, state_dict['norm3.weight'].shape[0])
    official['head.bias'] = torch.randn(10)
    return {'model': official}


@pytest.mark.parametrize('arch, version', [('tiny', 1), ('atto', 1), ('atto', 2), ('nano', 2)])
def test_mmpretrain_and_official_checkpoints_give_mmpretrain_outputs(arch, version, save):
    reference = mmpretrain_reference(arch, version)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = reference(x)
    for checkpoint in ({'state_dict': {f'backbone.{k}': v for k, v in reference.state_dict().items()},
                        'meta': {'epoch': 3}},
                       official_from_mmpretrain(reference.state_dict(), version)):
        ours = ConvNeXt(arch, version=version)
        report = load_pretrained(ours, save(checkpoint))
        assert report.missing == [] and report.unexpected == []
        # mmpretrain's norm3 loads; the official classifier's final norm is not used, as in the official detection
        # and segmentation code, so there every output norm keeps its fresh initialisation
        official = report.format == 'official'
        assert sorted(report.unused_classifier_norm) == (['norm.bias', 'norm.weight'] if official else [])
        assert report.fresh_norms == ([f'norm{i}.{p}' for i in range(4) for p in ('bias', 'weight')]
                                      if official else [])
        assert ("the classifier's final norm, not used" in report.summary()) == official
        with torch.no_grad():
            outs = ours.eval()(x)
        for i, (out, ref) in enumerate(zip(outs, expected)):
            if official:
                ref = _unnormalized(reference, x, i)
            torch.testing.assert_close(out, ref, **TOL)


def _unnormalized(reference, x, index):
    """mmpretrain's stage output passed through an identity LayerNorm (what norm0-2 start as)."""
    with torch.no_grad():
        for i in range(index + 1):
            x = reference.stages[i](reference.downsample_layers[i](x))
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)


@pytest.mark.parametrize('name, arch, version', [('convnext_tiny', 'tiny', 1), ('convnext_atto', 'atto', 1),
                                                 ('convnextv2_atto', 'atto', 2)])
@pytest.mark.parametrize('features_only', [True, False])
def test_timm_checkpoints_give_timm_features(name, arch, version, features_only, save):
    reference = randomize_(import_timm().create_model(name, pretrained=False, features_only=features_only)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        features = reference(x) if features_only else reference.forward_intermediates(x, intermediates_only=True)
    ours = ConvNeXt(arch, version=version)
    report = load_pretrained(ours, save(reference.state_dict()))
    assert report.format == 'timm' and report.missing == [] and report.unexpected == []
    with torch.no_grad():
        outs = ours.eval()(x)
    for i, (out, feature) in enumerate(zip(outs, features)):
        norm = getattr(ours, f'norm{i}')
        # timm has no per-stage norms, and its head norm is the classifier's final norm, which is not used
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
        expected = F.layer_norm(feature.permute(0, 2, 3, 1), feature.shape[1:2], norm.weight, norm.bias, 1e-6)
        torch.testing.assert_close(out, expected.permute(0, 3, 1, 2), **TOL)
    if not features_only:
        assert report.dropped_head == ['head.fc.bias', 'head.fc.weight'] or \
            sorted(report.dropped_head) == ['head.fc.bias', 'head.fc.weight']
        assert sorted(report.unused_classifier_norm) == ['head.norm.bias', 'head.norm.weight']


def test_init_cfg_pretrained_loads_through_init_weights(save):
    reference = ConvNeXt('atto')
    randomize_(reference)
    ours = ConvNeXt('atto', init_cfg=dict(type='Pretrained', checkpoint=save(reference.state_dict())))
    ours.init_weights()
    for (name, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_missing_and_unexpected_keys_are_reported_loudly(save, caplog):
    reference = ConvNeXt('atto', version=1)
    # a V1 checkpoint into a V2 model: layer scales unexpected, GRN missing
    ours = ConvNeXt('atto', version=2)
    report = load_pretrained(ours, save({'state_dict': reference.state_dict()}))
    assert any(k.endswith('.grn.gamma') for k in report.missing)
    assert any(re.fullmatch(r'stages\.\d\.\d\.gamma', k) for k in report.unexpected)
    summary = report.summary()
    assert 'MISSING' in summary and 'UNEXPECTED' in summary


def test_detector_checkpoint_keeps_backbone_and_reports_the_rest(save):
    reference = ConvNeXt('atto')
    state = {f'backbone.{k}': v for k, v in reference.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    report = load_pretrained(ConvNeXt('atto'), save({'state_dict': state, 'meta': {}}))
    assert report.ignored_non_backbone == ['neck.lateral_convs.0.conv.weight'] and report.missing == []


@pytest.mark.parametrize('make_checkpoint, message', [
    (lambda: ConvNeXt('tiny').state_dict(), r"do not fit the model.*looks like arch='tiny', version=1"),
    (lambda: ConvNeXt('atto', in_channels=4).state_dict(),
     r'downsample_layers\.0\.0\.weight: checkpoint \(40, 4, 4, 4\)'),
    (lambda: {'conv1.weight': torch.zeros(3), 'fc.weight': torch.zeros(2)}, 'not a ConvNeXt checkpoint'),
    (lambda: {'state_dict': {'backbone.downsample_layers.0.0.weight': torch.zeros(40, 3, 2, 2),
                             'backbone.stages.0.0.dwconv.weight': torch.zeros(40, 1, 7, 7)}}, 'do not fit'),
    (lambda: {'downsample_layers.9.0.weight': torch.zeros(1), 'stages.9.0.dwconv.weight': torch.zeros(1)},
     'none of the backbone weights were found'),
    (lambda: {'optimizer': {'lr': 1}}, 'no state_dict found'),
])
def test_checkpoints_of_other_models_are_refused(make_checkpoint, message, save):
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(ConvNeXt('atto'), save(make_checkpoint()))


def test_unreadable_files_are_refused(tmp_path, save):
    path = save(ConvNeXt('atto').state_dict())
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(open(path, 'rb').read()[:5000])
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint at all' * 10)
    for bad in (truncated, garbage):
        with pytest.raises(CheckpointError, match='cannot be read; it is truncated, corrupted'):
            load_pretrained(ConvNeXt('atto'), str(bad))
    with pytest.raises(FileNotFoundError, match='checkpoint not found: .*nope.pth.*init_cfg=None'):
        load_pretrained(ConvNeXt('atto'), str(tmp_path / 'nope.pth'))
    with pytest.raises(CheckpointError, match='not downloaded'):
        load_pretrained(ConvNeXt('atto'), 'https://example.com/convnext.pth')


class Payload:
    """Stands for an arbitrary pickled object, which weights_only loading must refuse."""


def test_pickles_beyond_tensors_need_explicit_consent(save):
    path = save({'state_dict': ConvNeXt('atto').state_dict(), 'extra': Payload()})
    with pytest.raises(CheckpointError, match='refused to load.*weights_only=False'):
        load_pretrained(ConvNeXt('atto'), path)
    report = load_pretrained(ConvNeXt('atto'), path, weights_only=False)
    assert report.missing == []
