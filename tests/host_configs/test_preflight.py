"""The channel pre-flight: hand-written configs whose neck or heads do not fit our ConvNeXt stop with the field to fix,
before anything is built; configs that fit, and configs with other backbones, pass."""
import subprocess
import sys

import pytest
from conftest import DET_CONFIG, REPO, SEG_CONFIG
from mmengine.config import Config

import convnext_dense  # noqa: F401
from convnext_dense.host_configs import HostConfigError
from convnext_dense.host_configs.preflight import check_backbone_fit


@pytest.fixture(scope='module')
def det_cfg():
    return Config.fromfile(DET_CONFIG)


@pytest.fixture(scope='module')
def seg_cfg():
    return Config.fromfile(SEG_CONFIG)


def with_options(cfg, **options):
    cfg = Config(cfg.to_dict(), filename=cfg.filename)
    cfg.merge_from_dict(options)
    return cfg


def test_our_configs_fit(det_cfg, seg_cfg):
    check_backbone_fit(det_cfg)
    check_backbone_fit(seg_cfg)
    for name in ('mask_rcnn/convnext_b_3x.py', 'cascade_rcnn/convnextv2_l_3x.py', 'upernet/convnext_xl_160k_ade20k.py'):
        check_backbone_fit(Config.fromfile(REPO / 'configs' / name))


def test_other_backbones_are_not_checked(det_cfg):
    cfg = with_options(det_cfg, **{'model.backbone': dict(_delete_=True, type='ResNet', depth=50)})
    check_backbone_fit(cfg)  # a ResNet under ConvNeXt's channels is not ours to judge


def test_neck_channels_of_another_backbone_name_the_field_and_the_value(det_cfg):
    cfg = with_options(det_cfg, **{'model.neck.in_channels': [256, 512, 1024, 2048]})
    with pytest.raises(HostConfigError) as error:
        check_backbone_fit(cfg)
    assert 'model.neck.in_channels is [256, 512, 1024, 2048]' in str(error.value)
    assert '--cfg-options model.neck.in_channels=[40,80,160,320]' in str(error.value)


def test_channels_follow_arch_and_out_indices(det_cfg):
    cfg = with_options(det_cfg, **{'model.backbone.arch': 'tiny', 'model.backbone.out_indices': (1, 2, 3),
                                   'model.neck.in_channels': [192, 384, 768]})
    check_backbone_fit(cfg)
    cfg = with_options(cfg, **{'model.backbone.out_indices': (0, 1, 2, 3)})
    with pytest.raises(HostConfigError, match=r'--cfg-options model.neck.in_channels=\[96,192,384,768\]'):
        check_backbone_fit(cfg)


def test_a_stage_that_nothing_reads_is_named(det_cfg):
    cfg = with_options(det_cfg, **{'model.neck.start_level': 1})
    with pytest.raises(HostConfigError) as error:
        check_backbone_fit(cfg)
    assert 'returns stage(s) (0,) that no neck or head reads' in str(error.value)
    assert 'out_indices=(1, 2, 3)' in str(error.value)


def test_segmentation_heads_index_and_channels(seg_cfg):
    cfg = with_options(seg_cfg, **{'model.auxiliary_head.in_channels': 1024})
    with pytest.raises(HostConfigError, match=r'model.auxiliary_head.in_channels is 1024.*'
                                              r'--cfg-options model.auxiliary_head.in_channels=160'):
        check_backbone_fit(cfg)
    cfg = with_options(seg_cfg, **{'model.backbone.out_indices': (0, 1, 2)})
    with pytest.raises(HostConfigError, match=r'model.decode_head \(UPerHead\) reads backbone output 3'):
        check_backbone_fit(cfg)


def test_train_and_test_stop_with_one_line_before_building(tmp_path):
    for tool in ('train', 'test'):
        args = [sys.executable, str(REPO / f'tools/{tool}.py'), str(DET_CONFIG)]
        if tool == 'test':
            args.append(str(tmp_path / 'missing.pth'))
        result = subprocess.run(args + ['--work-dir', str(tmp_path), '--cfg-options',
                                        'model.neck.in_channels=[96,192,384,768]'],
                                capture_output=True, text=True, cwd=REPO)
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith('error: ') and 'model.neck.in_channels is [96, 192, 384, 768]' in last, result.stderr
        assert 'Traceback' not in result.stderr
