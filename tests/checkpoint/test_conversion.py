"""convnext_dense.checkpoint.conversion.convert: a backbone checkpoint of another layout becomes the backbone's own
keys, a whole-model release our configs' names with its classes; both written as tensors only (weights-only loads),
and what cannot be converted is refused before anything is written.
tests/tools/model_converters/test_convert_checkpoint.py runs the tool on timm files and a release loaded by mmseg."""
import pytest
import torch
from conftest import REPO, randomize_
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from convnext_dense import CheckpointError, ConvNeXt, ModelLoadReport, load_checkpoint, load_pretrained
from convnext_dense.checkpoint.conversion import convert


def test_official_backbone_becomes_the_backbones_own_keys(tmp_path):
    reference = randomize_(ConvNeXt('atto'))
    state_dict = {k: v for k, v in reference.state_dict().items() if not k.startswith(('norm0', 'norm1', 'norm2'))}
    official = {'model': {**{k.replace('norm3.', 'norm.'): v for k, v in state_dict.items()},
                          'head.weight': torch.zeros(1000, 320), 'head.bias': torch.zeros(1000)}}
    torch.save(official, tmp_path / 'convnext_atto_1k.pth')
    report = convert(str(tmp_path / 'convnext_atto_1k.pth'), str(tmp_path / 'out' / 'atto.pth'))
    assert not isinstance(report, ModelLoadReport) and report.loaded
    converted = torch.load(tmp_path / 'out' / 'atto.pth', weights_only=True)
    assert converted['meta'] == dict(source='convnext_atto_1k.pth', format=report.format)
    assert not any(k.startswith(('head', 'norm')) for k in converted['state_dict'])  # the classifier's alone
    assert sorted(converted['state_dict']) == report.loaded
    model = ConvNeXt('atto')
    load_pretrained(model, str(tmp_path / 'out' / 'atto.pth'))
    for name, tensor in model.state_dict().items():
        if not name.startswith('norm'):  # the output norms start fresh
            assert torch.equal(tensor, reference.state_dict()[name]), name


def test_whole_model_release_keeps_its_classes(tmp_path):
    cfg = Config.fromfile(str(REPO / 'configs' / 'demo' / 'upernet_convnext_atto_demo.py'))
    cfg.merge_from_dict({'model.backbone.init_cfg': None})
    init_default_scope('mmseg')
    released = randomize_(MODELS.build(cfg.model))
    classes = ('background', 'circle', 'square', 'triangle')
    torch.save({'meta': {'mmseg_version': '0.20.2', 'CLASSES': classes, 'PALETTE': [[0, 0, 0]] * 4},
                'state_dict': released.state_dict()}, tmp_path / 'release.pth')
    report = convert(str(tmp_path / 'release.pth'), str(tmp_path / 'ours.pth'))
    assert isinstance(report, ModelLoadReport) and 'mmseg 0.x' in report.format
    converted = torch.load(tmp_path / 'ours.pth', weights_only=True)
    assert converted['meta']['source'] == 'release.pth'
    assert tuple(converted['meta']['dataset_meta']['classes']) == classes
    model = MODELS.build(cfg.model)
    load_checkpoint(model, str(tmp_path / 'ours.pth'))
    for (name, ours), theirs in zip(model.state_dict().items(), released.state_dict().values()):
        assert torch.equal(ours, theirs), name


def test_refusals_write_nothing(tmp_path):
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7), 'fc.weight': torch.zeros(10, 64)}, tmp_path / 'resnet.pth')
    with pytest.raises(CheckpointError, match='not a ConvNeXt checkpoint in a known format'):
        convert(str(tmp_path / 'resnet.pth'), str(tmp_path / 'out.pth'))
    with pytest.raises(CheckpointError, match='would overwrite the input'):
        convert(str(tmp_path / 'resnet.pth'), str(tmp_path / '.' / 'resnet.pth'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['resnet.pth']
