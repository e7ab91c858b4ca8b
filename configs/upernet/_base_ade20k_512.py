# ADE20K with 512x512 crops (ImageNet-1K recipes), batch 2 img/GPU; single-scale test by sliding 512 windows.
_base_ = ['./_base_convnext_upernet.py', 'mmseg::_base_/datasets/ade20k.py']
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
train_dataloader = dict(batch_size=2)

# Multi-scale + flip test (tools/test.py --tta), the official "mIoU (ms+flip)" protocol. The ConvNeXt segmentation
# code (facebookresearch/ConvNeXt semantic_segmentation, on mmseg 0.x) tests its _ms configs, e.g.
# upernet_convnext_tiny_512_160k_ade20k_ms.py, with `tools/test.py --aug-test`: the MultiScaleFlipAug of the test
# pipeline (img_scale (2048, 512)) gets img_ratios [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and flip=True, and the model keeps
# test_cfg mode='whole' (only the _ss configs slide; tools/test.py --tta sets 'whole'). MultiScaleFlipAug scaled
# the test scale by each ratio, not the image: Resize(scale=...) here, not mmseg 1.x's scale_factor. SegTTAModel
# averages the softmax of the 12 views, as mmseg 0.x's aug_test did.
test_scale = (2048, 512)
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(test_scale[0] * r), int(test_scale[1] * r)), keep_ratio=True)
             for r in img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],  # reduce_zero_label: the data set's
            [dict(type='PackSegInputs')],
        ]),
]
tta_model = dict(type='SegTTAModel')
