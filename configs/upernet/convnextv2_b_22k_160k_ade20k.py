# ConvNeXt V2-B, FCMAE pre-trained then fine-tuned on ImageNet-22K (official convnextv2_base_22k_224_ema.pt), 640
# crops. No published V2 22K UperNet settings: our choice, the official V1-B 22K recipe (drop path 0.4, lr 1e-4,
# stage-wise decay 0.9 / 12, AMP).
_base_ = './_base_convnextv2_ade20k_640.py'
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint='checkpoints/convnextv2_base_22k_224_ema.pt')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
