"""convnext_dense.visualization.feature_maps: strides found from the padded map sizes, the first principal component
shows the dominant pattern, only the part of a map over the image is shown, and the backbone's weights come from the
config or a clear error."""
import cv2
import numpy as np
import pytest
import torch
from conftest import DET_CONFIG, REPO
from mmengine.config import Config

from convnext_dense.apis.runner_setup import SetupError, load_config
from convnext_dense.visualization.feature_maps import (
    backbone_init,
    first_component,
    plot_feature_maps,
    stage_maps,
    stride_of,
)


def test_stride_is_found_from_the_padded_sizes():
    assert [stride_of(192, size) for size in (48, 24, 12, 6)] == [4, 8, 16, 32]
    # Sizes no stride divides: the backbone pads, and outputs are ceil(size / stride).
    assert [stride_of(176, size) for size in (44, 22, 11, 6)] == [4, 8, 16, 32]
    assert [stride_of(100, size) for size in (25, 13, 7, 4)] == [4, 8, 16, 32]


def test_first_component_finds_the_dominant_pattern():
    generator = torch.Generator().manual_seed(0)
    pattern = torch.zeros(12, 16)
    pattern[3:6, 4:9] = 1.0  # a small bright object on a plain background
    direction = torch.randn(32, generator=generator)
    feature = -direction[:, None, None] * pattern + 0.05 * torch.randn(32, 12, 16, generator=generator)
    heat, explained = first_component(feature)
    assert heat.shape == (12, 16)
    assert torch.corrcoef(torch.stack([heat.flatten(), pattern.flatten()]))[0, 1] > 0.99  # the object is bright
    assert 0.8 < explained <= 1


def test_stage_maps_leave_out_the_batch_padding():
    """A 100 x 60 image padded to 128 x 64 in the batch: each map shows only the cells over the image."""
    x = torch.zeros(2, 3, 128, 64)
    outputs = [torch.randn(2, 8 * 2 ** i, 128 // s, 64 // s) for i, s in enumerate((4, 8, 16, 32))]
    maps = stage_maps(x, outputs, (100, 60))
    assert [(m.stage, m.stride, m.shape) for m in maps] == [
        (1, 4, (8, 32, 16)), (2, 8, (16, 16, 8)), (3, 16, (32, 8, 4)), (4, 32, (64, 4, 2))]
    assert [tuple(m.heat.shape) for m in maps] == [(25, 15), (13, 8), (7, 4), (4, 2)]
    assert maps[0].describe() == 'stage 1: stride 4, 8 x 32 x 16 (C x H x W)'
    assert all(0 < m.explained <= 1 for m in maps)


def test_plot_has_the_image_and_a_panel_per_stage(tmp_path):
    x = torch.zeros(1, 3, 64, 64)
    maps = stage_maps(x, [torch.randn(1, 4, 64 // s, 64 // s) for s in (4, 8, 16, 32)], (64, 64))
    image = np.zeros((64, 64, 3), np.uint8)
    plot_feature_maps(image, 'image.jpg', x.shape[1:], maps, 'title', tmp_path / 'out' / 'features.png')
    picture = cv2.imread(str(tmp_path / 'out' / 'features.png'))
    assert picture.shape == (360, 1600, 3)  # five 320 x 360 panels at 100 dpi


def test_backbone_weights_come_from_the_config_or_a_clear_error(tmp_path):
    assert backbone_init(load_config(str(DET_CONFIG))) == (None, 'random weights')
    with pytest.raises(SetupError, match=r'pretrained checkpoint not found: checkpoints/convnext_tiny_1k_224\.pth '
                                         r'.*--cfg-options model\.backbone\.init_cfg=None'):
        backbone_init(load_config(str(REPO / 'configs' / 'mask_rcnn' / 'convnext_t_3x.py')))
    with pytest.raises(SetupError, match='a download'):
        backbone_init(Config(dict(model=dict(backbone=dict(
            init_cfg=dict(type='Pretrained', checkpoint='https://example.com/convnext.pth'))))))
    (tmp_path / 'convnext.pth').write_bytes(b'')
    init_cfg, weights = backbone_init(Config(dict(model=dict(backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'convnext.pth')))))))
    assert init_cfg.checkpoint == str(tmp_path / 'convnext.pth') and weights == 'pretrained backbone: convnext.pth'
