"""ViTDet's simple feature pyramid: ViTDet's layers per scale, the strides and channels detectors and UperNet expect,
any input size, and clear errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convnext_dense import ConvNeXtIsotropic, SimpleFeaturePyramid
from convnext_dense.models.backbones.convnext import LayerNorm2d

X = torch.randn(2, 64, 8, 12, generator=torch.Generator().manual_seed(0))


def layer_types(level: nn.Module) -> list:
    return [type(m).__name__ for m in level]


def test_each_level_has_vitdets_layers():
    """detectron2 modeling/backbone/vit.py SimpleFeaturePyramid, norm='LN': deconv, LN, GELU, deconv for 4x; one
    deconv for 2x; nothing for 1x; max-pool for 0.5x; then 1x1 and 3x3 convs without bias, each followed by LN."""
    neck = SimpleFeaturePyramid(64, out_channels=32)
    convs = ['Conv2d', 'LayerNorm2d', 'Conv2d', 'LayerNorm2d']
    assert [layer_types(level) for level in neck.levels] == [
        ['ConvTranspose2d', 'LayerNorm2d', 'GELU', 'ConvTranspose2d', *convs], ['ConvTranspose2d', *convs], convs,
        ['MaxPool2d', *convs]]
    four = neck.levels[0]
    assert (four[0].in_channels, four[0].out_channels, four[3].out_channels) == (64, 32, 16)
    assert all(m.kernel_size == (2, 2) and m.stride == (2, 2) for m in four if isinstance(m, nn.ConvTranspose2d))
    for level in neck.levels:
        lateral, output = [m for m in level if type(m) is nn.Conv2d]
        assert (lateral.kernel_size, output.kernel_size, output.padding) == ((1, 1), (3, 3), (1, 1))
        assert lateral.bias is None and output.bias is None
        assert all(m.eps == 1e-6 for m in level if isinstance(m, LayerNorm2d))


@pytest.mark.parametrize('size', [(8, 12), (7, 13), (1, 1)])
def test_detection_pyramid_strides_4_to_64(size):
    x = torch.randn(1, 64, *size)
    neck = SimpleFeaturePyramid([64], out_channels=32, num_outs=5).eval()
    with torch.no_grad():
        outs = neck((x, ))
    factors = (4, 2, 1, 1 / 2, 1 / 4)
    assert [o.shape for o in outs] == [(1, 32, math.ceil(size[0] * f), math.ceil(size[1] * f)) for f in factors]
    torch.testing.assert_close(outs[4], F.max_pool2d(outs[3], kernel_size=1, stride=2), rtol=0, atol=0)
    assert neck.channels == (32, ) * 5


def test_segmentation_pyramid_keeps_the_rescaled_maps():
    neck = SimpleFeaturePyramid(64, out_channels=None).eval()
    with torch.no_grad():
        outs = neck([torch.zeros(1), X])  # the last backbone output by default
    assert [o.shape for o in outs] == [(2, 16, 32, 48), (2, 32, 16, 24), (2, 64, 8, 12), (2, 64, 4, 6)]
    assert neck.channels == (16, 32, 64, 64)
    torch.testing.assert_close(outs[2], X, rtol=0, atol=0)
    torch.testing.assert_close(outs[3], F.max_pool2d(X, 2, 2), rtol=0, atol=0)
    deconv = neck.levels[1][0]
    torch.testing.assert_close(outs[1], F.conv_transpose2d(X, deconv.weight, deconv.bias, stride=2))


def test_in_index_and_scale_subsets():
    neck = SimpleFeaturePyramid(64, out_channels=8, scale_factors=(2.0, 1.0), in_index=0).eval()
    outs = neck((X, torch.zeros(1)))
    assert [o.shape[2:] for o in outs] == [(16, 24), (8, 12)]


def test_trains_end_to_end_on_an_isotropic_backbone():
    backbone = ConvNeXtIsotropic(dict(depth=2, dim=64))
    neck = SimpleFeaturePyramid(backbone.out_channels, out_channels=16, num_outs=5)
    outs = neck(backbone(torch.randn(2, 3, 64, 96)))
    assert [o.shape[2] for o in outs] == [16, 8, 4, 2, 1]
    sum(o.square().mean() for o in outs).backward()
    assert all(p.grad is not None for p in [*backbone.parameters(), *neck.parameters()])


@pytest.mark.parametrize('kwargs, message', [
    (dict(in_channels=[64, 32]), 'in_channels must be one number'),
    (dict(scale_factors=(8.0, 1.0)), 'scale_factors must be distinct values'),
    (dict(scale_factors=(1.0, 2.0)), 'highest first'),
    (dict(num_outs=3), 'num_outs must be at least len'),
    (dict(out_channels=None, num_outs=5), 'more needs out_channels'),
    (dict(in_channels=66), 'must divide by 4'),
])
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimpleFeaturePyramid(**{'in_channels': 64, **kwargs})
