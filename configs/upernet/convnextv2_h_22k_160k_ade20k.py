# ConvNeXt V2-H, FCMAE pre-trained then fine-tuned on ImageNet-22K at 384 (official convnextv2_huge_22k_384_ema.pt; the
# release has no 224 file for H), 640 crops. No published V2 22K UperNet settings: our choice, the official V1-XL 22K
# recipe (drop path 0.4, lr 8e-5, stage-wise decay 0.9 / 12) but with AMP.
_base_ = './_base_convnextv2_ade20k_640.py'
model = dict(
    backbone=dict(arch='huge', init_cfg=dict(checkpoint='checkpoints/convnextv2_huge_22k_384_ema.pt')),
    decode_head=dict(in_channels=[352, 704, 1408, 2816]),
    auxiliary_head=dict(in_channels=1408))
optim_wrapper = dict(optimizer=dict(lr=8e-5), paramwise_cfg=dict(num_layers=12))
