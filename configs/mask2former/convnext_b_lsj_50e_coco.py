# ConvNeXt-B (ImageNet-1K): drop path 0.7 (as Cascade B 1K), layer-wise decay 0.95 over 12 layers under the backbone's
# 0.1x lr (our choice, see the base); no published result.
_base_ = './_base_convnext_lsj_50e_coco.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.7,
                  init_cfg=dict(checkpoint='checkpoints/convnext_base_1k_224.pth')),
    panoptic_head=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
