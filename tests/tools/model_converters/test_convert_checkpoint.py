"""tools/model_converters/convert_checkpoint.py turns timm / official checkpoints into a backbone-only file that loads
into ConvNeXt with every weight in place, and refuses what it cannot convert with a clear message
(tests/checkpoint/test_conversion.py tests the conversion on its own)."""
import argparse
import subprocess
import sys
from pathlib import Path

import torch
from conftest import import_timm

from convnext_dense import ConvNeXt, load_pretrained

REPO = Path(__file__).resolve().parents[3]


def convert(src, dst, *options):
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'model_converters' / 'convert_checkpoint.py'), str(src),
                           str(dst), *options], capture_output=True, text=True, timeout=120)


def assert_same_weights(model: ConvNeXt, reference: ConvNeXt):
    for (name, ours), theirs in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(ours, theirs), name


def test_timm_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = import_timm().create_model('convnext_atto', pretrained=False)
    torch.save(source.state_dict(), tmp_path / 'timm.pth')
    result = convert(tmp_path / 'timm.pth', tmp_path / 'out' / 'atto.pth')
    assert result.returncode == 0, result.stderr
    assert 'timm format' in result.stdout and 'classification head, dropped: 2' in result.stdout

    converted = torch.load(tmp_path / 'out' / 'atto.pth', weights_only=True)
    assert converted['meta'] == dict(source='timm.pth', format='timm')
    assert not any(k.startswith(('head', 'stem', 'stages.0.blocks')) for k in converted['state_dict'])
    model = ConvNeXt('atto')
    report = load_pretrained(model, str(tmp_path / 'out' / 'atto.pth'))
    assert report.missing == [] and report.unexpected == []
    x = torch.randn(1, 3, 64, 64)
    # Same features as timm's network: stage outputs before our per-stage norms. Its classifier's final norm is not
    # used, as in the official detection and segmentation code.
    assert "the classifier's final norm, not used" in result.stdout
    assert not any(k.startswith('norm') for k in converted['state_dict'])
    source.eval(), model.eval()
    with torch.no_grad():
        timm_last = source.forward_features(x)
        ours = model.stages[3](model.downsample_layers[3](model.stages[2](model.downsample_layers[2](
            model.stages[1](model.downsample_layers[1](model.stages[0](model.downsample_layers[0](x))))))))
    torch.testing.assert_close(ours, timm_last)


def test_official_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    reference = ConvNeXt('atto')
    state_dict = {k: v for k, v in reference.state_dict().items() if not k.startswith(('norm0', 'norm1', 'norm2'))}
    official = {'model': {**{k.replace('norm3.', 'norm.'): v for k, v in state_dict.items()},
                          'head.weight': torch.zeros(1000, 320), 'head.bias': torch.zeros(1000)}}
    torch.save(official, tmp_path / 'convnext_atto_1k.pth')
    result = convert(tmp_path / 'convnext_atto_1k.pth', tmp_path / 'atto.pth')
    assert result.returncode == 0, result.stderr
    model = ConvNeXt('atto')
    load_pretrained(model, str(tmp_path / 'atto.pth'))
    assert_same_weights(model, reference)


def test_refusals_are_clear(tmp_path):
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7), 'fc.weight': torch.zeros(10, 64)}, tmp_path / 'resnet.pth')
    result = convert(tmp_path / 'resnet.pth', tmp_path / 'out.pth')
    assert result.returncode == 1 and 'not a ConvNeXt checkpoint in a known format' in result.stderr
    assert not (tmp_path / 'out.pth').exists()

    result = convert(tmp_path / 'missing.pth', tmp_path / 'out.pth')
    assert result.returncode == 1 and f'checkpoint not found: {tmp_path / "missing.pth"}' in result.stderr

    result = convert(tmp_path / 'resnet.pth', tmp_path / 'resnet.pth')
    assert result.returncode == 1 and 'would overwrite the input' in result.stderr


def test_checkpoints_with_python_objects_need_an_explicit_unsafe_load(tmp_path):
    reference = ConvNeXt('atto')
    torch.save({'model': reference.state_dict(), 'args': argparse.Namespace(lr=4e-3)}, tmp_path / 'with_args.pth')
    result = convert(tmp_path / 'with_args.pth', tmp_path / 'out.pth')
    assert result.returncode == 1 and 'refused to load' in result.stderr and '--unsafe-load' in result.stderr
    result = convert(tmp_path / 'with_args.pth', tmp_path / 'out.pth', '--unsafe-load')
    assert result.returncode == 0, result.stderr
    model = ConvNeXt('atto')
    load_pretrained(model, str(tmp_path / 'out.pth'))  # weights_only=True: the output holds tensors only
    assert_same_weights(model, reference)


def test_whole_model_release_converts_for_stock_tools(tmp_path):
    """An official mmseg 0.x UperNet file (meta CLASSES / PALETTE, see tests/checkpoint/test_whole_model.py) becomes
    an mmseg 1.x checkpoint that mmseg's own init_model loads into our config with every tensor in place."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmseg.apis import init_model

    cfg = Config.fromfile(str(REPO / 'configs/demo/upernet_convnext_atto_demo.py'))
    init_default_scope('mmseg')
    torch.manual_seed(0)
    released = MODELS.build(cfg.model)
    classes = ('background', 'circle', 'square', 'triangle')
    torch.save({'meta': {'mmseg_version': '0.20.2', 'CLASSES': classes, 'PALETTE': [[0, 0, 0]] * 4},
                'state_dict': released.state_dict()}, tmp_path / 'upernet_release.pth')
    result = convert(tmp_path / 'upernet_release.pth', tmp_path / 'upernet_ours.pth')
    assert result.returncode == 0, result.stderr
    assert 'mmseg 0.x checkpoint' in result.stdout

    model = init_model(cfg, str(tmp_path / 'upernet_ours.pth'), device='cpu')
    assert model.dataset_meta['classes'] == classes
    for (name, ours), theirs in zip(model.state_dict().items(), released.state_dict().values()):
        assert torch.equal(ours, theirs), name
