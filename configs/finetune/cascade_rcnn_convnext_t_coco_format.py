"""Fine-tune the released Cascade Mask R-CNN ConvNeXt-T (COCO, 3x) on your own instance set in COCO format.

What you change (a delta over ../cascade_rcnn/convnext_t_3x.py, which keeps the model, pipeline and optimizer):
- ``data_root`` and the annotation files / image folders of each split: one COCO instances JSON per split (images,
  annotations with ``bbox`` and polygon or RLE ``segmentation``, categories) and a folder of its images;
- ``classes``: category names of the JSON (``categories[].name``), in the order of the model's outputs, and
  ``palette``, one RGB colour per class for drawings. ``num_classes`` follows in all three box heads and the mask head;
- ``load_from``: the released detector, under the official file name. Everything but its COCO class layers loads,
  which start afresh for your classes (the log says which). To start from ImageNet weights instead, set
  ``load_from = None`` and drop ``backbone=dict(init_cfg=None)``;
- the schedule: 12 epochs, steps after epochs 8 and 11, lr 1e-4 at 16 images per step (our choice for fine-tuning:
  half the recipe's lr, the 1x length); with another batch add ``--auto-scale-lr``.

tools/train.py checks before building anything that every head's ``num_classes`` is ``len(classes)`` and that the
classes are categories of the JSON; the error gives the ``--cfg-options`` to fix it.
"""
_base_ = '../cascade_rcnn/convnext_t_3x.py'

data_root = 'data/my_coco/'
classes = ('person', 'bicycle', 'car', 'motorcycle')
palette = [(220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230)]
metainfo = dict(classes=classes, palette=palette)
num_classes = len(classes)
load_from = 'checkpoints/cascade_mask_rcnn_convnext_tiny_1k_3x.pth'

model = dict(
    backbone=dict(init_cfg=None),  # load_from holds the whole detector, backbone included
    roi_head=dict(
        bbox_head=[dict(stage, num_classes=num_classes) for stage in _base_.model.roi_head.bbox_head],
        mask_head=dict(num_classes=num_classes)))

train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/train.json',
                                     data_prefix=dict(img='images/train/')))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/val.json',
                                   data_prefix=dict(img='images/val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=1e-4))
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='coco/segm_mAP'))
