# UperNet with an isotropic ConvNeXt (one stride-16 map) on ADE20K, 512 crops. No dense recipe was ever published for
# isotropic ConvNeXt: the recipe is that of the hierarchical twin of the same depth and about the same compute (UperNet
# ConvNeXt-T for S-iso, ConvNeXt-B for B-iso: `_base_ade20k_512.py`, the same data, 160k iterations, AdamW lr 1e-4,
# drop path 0.4, AMP, UPerHead and auxiliary head), and only these differ:
# - a neck: SimpleFeaturePyramid, ViTDet's rescaling of the last block's map to strides 4/8/16/32 (two / one 2x2
#   deconvolutions, identity, max-pooling) at C/4, C/2, C, C channels, without its 1x1 + 3x3 convolutions, which
#   UPerHead's own lateral and FPN convolutions replace; the auxiliary FCN head reads the stride-16 map, as the twin's
#   reads stage 2;
# - layer-wise lr decay with one layer per block (18 layers) instead of the twin's stage-wise 0.9, which needs stages,
#   at the rate that gives the stem the twin's lr scale: decay_rate ** 19 = 0.9 ** (num_layers + 1) of the twin
#   (T: 0.9 ** 7 = 0.48, so 0.9 ** (7 / 19) = 0.962; B: 0.9 ** 13 = 0.25, so 0.9 ** (13 / 19) = 0.930); the last
#   block gets 0.96 (0.93) where the twin's last stage gets 0.73 (0.39), the heads the base lr in both;
# - no layer scale (the official S-iso and B-iso were trained without it).
# The sizes set arch, channels and the pretrained file (official release names, expected under checkpoints/).
# Without the weights: --cfg-options model.backbone.init_cfg=None
_base_ = './_base_ade20k_512.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXtIsotropic',
        arch='small',
        out_indices=(17, ),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_iso_small_1k_224_ema.pth')),
    neck=dict(type='SimpleFeaturePyramid', in_channels=384, out_channels=None),
    decode_head=dict(in_channels=[96, 192, 384, 384]),
    auxiliary_head=dict(in_channels=384))

optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.9**(7 / 19), decay_type='layer_wise', num_layers=18))
