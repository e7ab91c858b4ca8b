# Mask2Former with a ConvNeXt backbone, COCO instance segmentation: mmdet's Mask2Former R-50 LSJ 50e config (1024x1024
# large-scale-jitter crops, 368750 iterations at batch 2 x 8 GPUs, 100 queries, fp32) with the recipe of its Swin-T
# counterpart (mmdet configs/mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py). No Mask2Former
# ConvNeXt-T/B recipe or result has been published (the Mask2Former paper and repo use ResNet and Swin; OneFormer's
# ConvNeXt-L/XL configs use drop path 0.4 and the backbone at 0.1x lr without layer decay).
# The host's / Swin recipe: AdamW lr 1e-4, weight decay 0.05, the backbone at 0.1x lr, no weight decay on norms nor on
# query_embed / query_feat / level_embed, gradient clipping at 0.01, ImageNet-1K weights at 224 (official release names,
# expected under checkpoints/).
# Our choice, from the official ConvNeXt Mask R-CNN / Cascade recipes (convnext_dense/host_configs/recipes.py): drop
# path 0.4 for T, 0.7 for B (Swin-T: 0.3); layer-wise lr decay 0.95 over 6 (T) / 12 (B) layers, multiplied by the
# backbone's 0.1; no weight decay on 1-D parameters and biases (the official ConvNeXt rule, which the layer-decay
# constructor applies to the whole model: the host decays the heads' biases).
# Without the weights: --cfg-options model.backbone.init_cfg=None
_base_ = 'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py'
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,  # the pretrained weights replace it
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_tiny_1k_224.pth')),
    panoptic_head=dict(in_channels=[96, 192, 384, 768]))

# The host's AdamW, clip_grad, custom_keys and norm_decay_mult, with layer decay under them.
optim_wrapper = dict(
    constructor='LearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6))
