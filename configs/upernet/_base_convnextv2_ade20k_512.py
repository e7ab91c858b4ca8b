# UperNet with a ConvNeXt V2 backbone (GRN, no layer scale) on ADE20K with 512x512 crops: the V1 recipe (heads,
# 160k poly schedule, AdamW, stage-wise decay 0.9, AMP) with version=2 and the FCMAE-pretrained weights of the official
# release (convnextv2_{size}_1k_224_fcmae.pt, github.com/facebookresearch/ConvNeXt-V2, expected under checkpoints/).
# The sizes set arch, drop path, lr, num_layers, head channels. Without the weights: model.backbone.init_cfg=None
_base_ = './_base_ade20k_512.py'
model = dict(
    backbone=dict(version=2, layer_scale_init_value=0.,
                  init_cfg=dict(checkpoint='checkpoints/convnextv2_tiny_1k_224_fcmae.pt')))
