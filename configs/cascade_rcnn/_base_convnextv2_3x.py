# Cascade Mask R-CNN with a ConvNeXt V2 backbone (GRN, no layer scale), 3x COCO: the V1 base (heads, data, schedule,
# AdamW, layer-wise decay, AMP) with version=2 and the FCMAE-pretrained weights of the official release
# (convnextv2_{size}_1k_224_fcmae.pt, github.com/facebookresearch/ConvNeXt-V2, expected under checkpoints/).
# The sizes set arch, drop path, lr, decay, neck. Without the weights: --cfg-options model.backbone.init_cfg=None
_base_ = './_base_convnext_3x.py'
model = dict(
    backbone=dict(version=2, layer_scale_init_value=0.,
                  init_cfg=dict(checkpoint='checkpoints/convnextv2_tiny_1k_224_fcmae.pt')))
