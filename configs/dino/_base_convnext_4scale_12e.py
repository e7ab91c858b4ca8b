# DINO-4scale with a ConvNeXt backbone on COCO, 12 epochs: the recipe of detrex's DINO ConvNeXt configs
# (github.com/IDEA-Research/detrex, projects/dino/configs/dino-convnext/dino_convnext_{tiny,base}_384_4scale_12ep.py;
# its README reports box AP 52.4 for T and 55.1 for B with ImageNet-22K weights, 51.4 and 52.6 with ImageNet-1K ones)
# laid over mmdet's DINO-4scale R-50 12e, the same detector, data and schedule.
# From detrex, set here: ConvNeXt stages 1-3 (strides 8-32) into the ChannelMapper, which adds the fourth level;
# ImageNet-22K-then-1K weights at 384 (the official convnext_{size}_22k_1k_384.pth, expected under checkpoints/); drop
# path 0.0 (detrex's choice for DINO, not the official ConvNeXt detection rates); layer scale 1.0 (the pretrained
# weights replace it); the sine position embedding with temperature 10000 and offset -0.5 (mmdet: 20 and 0.0, as the
# DINO paper's code).
# From detrex, the host's already: AdamW lr 1e-4, weight decay 1e-4, the backbone at 0.1x lr without layer decay,
# gradient clipping at 0.1, the lr dropped 10x after epoch 11, batch 2 x 8 GPUs, fp32, DETR multi-scale + crop
# augmentation, 900 queries, 100 denoising queries. The host puts weight decay on every parameter; detrex exempts the
# neck's and the transformer's norms.
# Without the weights: --cfg-options model.backbone.init_cfg=None
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch='tiny',
        out_indices=(1, 2, 3),
        drop_path_rate=0.0,
        layer_scale_init_value=1.0,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_tiny_22k_1k_384.pth')),
    neck=dict(in_channels=[192, 384, 768]),
    positional_encoding=dict(temperature=10000, offset=-0.5))
