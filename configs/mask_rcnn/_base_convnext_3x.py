# Mask R-CNN with a ConvNeXt backbone, 3x COCO, layer-wise lr decay. The sizes set arch, drop path, lr, decay,
# neck channels and the pretrained file (official release names, expected under checkpoints/).
# Without the weights: --cfg-options model.backbone.init_cfg=None
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', '../_base_/coco_instance_3x.py']
custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,  # as the official detection configs; pretrained weights replace it
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/convnext_tiny_1k_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))

optim_wrapper = dict(
    constructor='LearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6))
