"""Fine-tune the released UperNet ConvNeXt-T (ADE20K, 512x512) on your own segmentation set: images and label maps in
folders.

What you change (a delta over ../upernet/convnext_t_160k_ade20k.py, which keeps the model, augmentation and
optimizer):
- ``data_root`` and the folders of each split: ``images/<split>/NAME.jpg`` with ``labels/<split>/NAME.png`` (set
  ``img_suffix`` / ``seg_map_suffix`` for other endings). A label map is one channel (grayscale or palette PNG) of
  class indices;
- ``reduce_zero_label``: True when 0 marks unlabelled pixels and file value v is class v - 1 (ADE20K's convention,
  as here); False when file value v is class v. 255 is ignored either way;
- ``classes`` in the order of the label values, and ``palette``, one RGB colour per class for drawings.
  ``num_classes`` follows in the decode and auxiliary heads;
- ``load_from``: the released segmentor, under the official file name. Everything but its ADE20K class layers loads,
  which start afresh for your classes (the log says which). To start from ImageNet weights instead, set
  ``load_from = None`` and drop ``backbone=dict(init_cfg=None)``;
- the schedule: 20k iterations, warmup then poly decay, evaluation and a checkpoint every 2k (our choice for
  fine-tuning, an eighth of the recipe's 160k), lr 1e-4 at 16 images per step (with another batch add
  ``--auto-scale-lr``); crop size and resize scale are ADE20K's, set them for your images.

tools/train.py checks before building anything that both heads' ``num_classes`` is ``len(classes)``, and reads a
sample of the label maps: a value that is no class after ``reduce_zero_label`` (nor 255) stops it with the files named.
"""
_base_ = '../upernet/convnext_t_160k_ade20k.py'

data_root = 'data/my_seg'
classes = ('background', 'road', 'building', 'vegetation', 'sky')
palette = [(0, 0, 0), (128, 64, 128), (70, 70, 70), (107, 142, 35), (70, 130, 180)]
num_classes = len(classes)
reduce_zero_label = True
load_from = 'checkpoints/upernet_convnext_tiny_1k_512x512.pth'

model = dict(
    backbone=dict(init_cfg=None),  # load_from holds the whole segmentor, backbone included
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

# ADE20KDataset fixes its 150 classes; the generic dataset reads any folder pair. LoadAnnotations takes
# reduce_zero_label from the dataset.
load_annotations = dict(type='LoadAnnotations')
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=dict(classes=classes, palette=palette),
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=reduce_zero_label)
train_dataloader = dict(dataset=dict(
    dataset, data_prefix=dict(img_path='images/train', seg_map_path='labels/train'),
    pipeline=[load_annotations if step.type == 'LoadAnnotations' else step for step in _base_.train_pipeline]))
val_dataloader = dict(dataset=dict(
    dataset, data_prefix=dict(img_path='images/val', seg_map_path='labels/val'),
    pipeline=[load_annotations if step.type == 'LoadAnnotations' else step for step in _base_.test_pipeline]))
test_dataloader = val_dataloader

max_iters = 20000
train_cfg = dict(max_iters=max_iters, val_interval=2000)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2000, max_keep_ckpts=2, save_best='mIoU'))
auto_scale_lr = dict(enable=False, base_batch_size=16)  # the recipe's 2 images per GPU x 8 GPUs
