# ConvNeXt V2-B, FCMAE pre-trained on ImageNet-1K: drop path 0.4, lr 1e-4, layer-wise decay 0.95 over 12 layers, 3x,
# AMP, as mmdet's ConvNeXt-V2 port (mmdetection projects/ConvNeXt-V2; the paper does not publish its fine-tuning
# settings), which reports box AP 52.9, mask AP 46.4 with LSJ 1024 crops, batch 32 and soft-NMS. Our choice: the V1
# recipe's multi-scale 3x data at batch 16 and standard NMS, so V1 and V2 compare on equal terms.
_base_ = './_base_convnextv2_3x.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='checkpoints/convnextv2_base_1k_224_fcmae.pt')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
