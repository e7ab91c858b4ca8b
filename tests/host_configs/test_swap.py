"""swap_backbone reads a host's model config and rewrites exactly what reads the backbone; the file it writes loads to
the same config. The matrix over mmdet's and mmseg's own configs (build, train, predict) is test_swap_matrix.py."""
import subprocess
import sys

import pytest
from conftest import REPO
from mmengine.config import Config

import convnext_dense  # noqa: F401
from convnext_dense.host_configs import HostConfigError, plan_swap, swap_backbone, write_swap
from convnext_dense.host_configs.swap import IMAGENET_RGB, load_host
from convnext_dense.models.backbones.convnext import ARCHS

RETINANET = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
DINO = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
DETR = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'
FCOS = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
DEEPLAB_PLUS = 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py'


def test_fpn_from_level_one_reads_three_stages_and_starts_at_zero():
    cfg = swap_backbone(RETINANET, 'tiny')
    assert cfg.model.backbone.type == 'ConvNeXt' and cfg.model.backbone.out_indices == (1, 2, 3)
    assert cfg.model.neck.in_channels == [192, 384, 768] and cfg.model.neck.start_level == 0
    assert 'depth' not in cfg.model.backbone and 'norm_eval' not in cfg.model.backbone  # ResNet keys gone
    assert cfg.model.backbone.drop_path_rate == 0.4  # the official detection recipe for T


def test_detr_family_reads_as_many_stages_as_its_channel_mapper():
    assert swap_backbone(DETR, 'base').model.backbone.out_indices == (3, )
    assert swap_backbone(DETR, 'base').model.neck.in_channels == [1024]
    dino = swap_backbone(DINO, 'base')
    assert dino.model.backbone.out_indices == (1, 2, 3) and dino.model.neck.in_channels == [256, 512, 1024]


def test_dino_keeps_its_backbone_lr_mult_and_adamw():
    host = Config.fromfile(load_host(DINO)[1].filename)
    cfg = swap_backbone(DINO, 'tiny')
    wrapper = cfg.optim_wrapper
    assert wrapper.constructor == 'LearningRateDecayOptimizerConstructor'
    assert wrapper.paramwise_cfg.custom_keys == host.optim_wrapper.paramwise_cfg.custom_keys
    assert wrapper.optimizer == host.optim_wrapper.optimizer  # the host's AdamW (lr, weight decay) stays
    assert wrapper.clip_grad == host.optim_wrapper.clip_grad
    assert (wrapper.paramwise_cfg.decay_rate, wrapper.paramwise_cfg.num_layers) == (0.95, 6)


def test_sgd_hosts_get_adamw_and_caffe_bgr_becomes_imagenet_rgb():
    host = load_host(FCOS)[1]
    assert host.model.data_preprocessor.bgr_to_rgb is False and host.optim_wrapper.optimizer.type == 'SGD'
    cfg = swap_backbone(FCOS, 'small')
    assert {k: cfg.model.data_preprocessor[k] for k in IMAGENET_RGB} == IMAGENET_RGB
    assert cfg.optim_wrapper.optimizer.to_dict() == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
    assert cfg.optim_wrapper.paramwise_cfg.num_layers == 12  # S has 27 blocks in stage 2
    assert cfg.optim_wrapper.get('clip_grad') == host.optim_wrapper.get('clip_grad')


def test_mmseg_heads_index_the_stages_they_read():
    cfg = swap_backbone(DEEPLAB_PLUS, 'tiny', version=2)
    assert cfg.model.backbone.out_indices == (0, 2, 3)  # c1 reads stage 0, the aux head stage 2, the decoder stage 3
    assert (cfg.model.decode_head.in_index, cfg.model.decode_head.in_channels) == (2, 768)
    assert cfg.model.decode_head.c1_in_channels == 96
    assert (cfg.model.auxiliary_head.in_index, cfg.model.auxiliary_head.in_channels) == (1, 384)
    assert cfg.model.pretrained is None and cfg.model.backbone.version == 2
    assert (cfg.optim_wrapper.paramwise_cfg.decay_type, cfg.optim_wrapper.paramwise_cfg.decay_rate) == \
        ('stage_wise', 0.9)


def test_options_pretrained_drop_path_layer_decay_and_imports(tmp_path):
    host = tmp_path / 'host.py'
    host.write_text(f"_base_ = '{RETINANET}'\ncustom_imports = dict(imports=['mmdet.models'])\n"
                    "optim_wrapper = dict(paramwise_cfg=dict(bypass_duplicate=True, norm_decay_mult=0.))\n")
    plan = plan_swap(str(host), 'atto', pretrained='ckpt.pth', drop_path_rate=0.2, layer_decay=0.8)
    cfg = swap_backbone(str(host), 'atto', pretrained='ckpt.pth', drop_path_rate=0.2, layer_decay=0.8)
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='ckpt.pth')
    assert cfg.model.backbone.drop_path_rate == 0.2 and cfg.optim_wrapper.paramwise_cfg.decay_rate == 0.8
    assert cfg.custom_imports.imports == ['mmdet.models', 'convnext_dense']
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0. and 'bypass_duplicate' not in \
        cfg.optim_wrapper.paramwise_cfg
    assert 'bypass_duplicate dropped' in plan.reasons['optim_wrapper']


def test_written_config_is_short_commented_and_loads_to_the_same_config(tmp_path):
    out = tmp_path / 'swapped.py'
    assert write_swap(plan_swap(DINO, 'tiny'), str(out)) == str(out)
    text = out.read_text()
    assert text.count('\n') < 60 and f"_base_ = '{DINO}'" in text
    assert '# ChannelMapper reads' in text and 'lr_mult on backbone multiplies the layer decay' in text
    assert max(len(line) for line in text.splitlines()) <= 120
    written = Config.fromfile(out)
    assert written.model.to_dict() == swap_backbone(DINO, 'tiny').model.to_dict()
    assert written.optim_wrapper.to_dict() == swap_backbone(DINO, 'tiny').optim_wrapper.to_dict()


def test_vit_tied_and_unknown_hosts_say_why():
    with pytest.raises(HostConfigError, match='is a plain ViT .* not for a hierarchical backbone such as ConvNeXt'):
        plan_swap('mmseg::setr/setr_vit-l-mla_8xb1-160k_ade20k-512x512.py')
    with pytest.raises(HostConfigError, match='host config not found'):
        plan_swap('mmdet::no/such.py')


def test_tool_writes_a_config_train_accepts(tmp_path):
    out = tmp_path / 'retinanet_convnext.py'
    result = subprocess.run([sys.executable, str(REPO / 'tools/swap_backbone.py'), RETINANET, '--arch', 'atto',
                             '--out', str(out)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert f'wrote {out}' in result.stdout
    cfg = Config.fromfile(out)
    assert cfg.model.backbone.arch == 'atto' and cfg.model.neck.in_channels == list(ARCHS['atto']['dims'][1:])
    bad = subprocess.run([sys.executable, str(REPO / 'tools/swap_backbone.py'),
                          'mmseg::dpt/dpt_vit-b16_8xb2-160k_ade20k-512x512.py'], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith('error: mmseg::dpt/')
    assert 'Traceback' not in bad.stderr
