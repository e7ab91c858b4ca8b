# Mask R-CNN with an isotropic ConvNeXt (one stride-16 map) and ViTDet's simple feature pyramid, 3x COCO. No dense
# recipe was ever published for isotropic ConvNeXt: the recipe is that of the hierarchical twin of the same depth and
# about the same compute (Mask R-CNN ConvNeXt-T for S-iso, ConvNeXt-B for B-iso: `_base_convnext_3x.py`, the same
# data, 3x schedule, AdamW lr 1e-4, AMP, heads and test settings), and only these differ:
# - the neck: SimpleFeaturePyramid (strides 4/8/16/32 from the last block's map by two / one 2x2 deconvolutions,
#   identity and max-pooling, then 1x1 + 3x3 convolutions with LayerNorm to 256 channels; stride 64 by max-pooling)
#   instead of the FPN over four stages; the RPN and RoI heads are the twin's (ViTDet's own 4conv1fc box head, 2-conv
#   RPN and LSJ 100-epoch schedule are not taken);
# - layer-wise lr decay with one layer per block (18 layers), at the rate that gives the stem the twin's lr scale:
#   decay_rate ** 19 = 0.95 ** (num_layers + 1) of the twin (T: 0.95 ** 7 = 0.70, so 0.95 ** (7 / 19) = 0.981;
#   B: 0.95 ** 13 = 0.51, so 0.95 ** (13 / 19) = 0.966), the heads at the base lr as in the twin;
# - no layer scale (the official S-iso and B-iso were trained without it).
# The sizes set arch, drop path, neck channels and the pretrained file (official release names, expected under
# checkpoints/). Without the weights: --cfg-options model.backbone.init_cfg=None
_base_ = './_base_convnext_3x.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXtIsotropic',
        arch='small',
        out_indices=(17, ),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_iso_small_1k_224_ema.pth')),
    neck=dict(_delete_=True, type='SimpleFeaturePyramid', in_channels=384, out_channels=256, num_outs=5))

optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.95**(7 / 19), decay_type='layer_wise', num_layers=18))
