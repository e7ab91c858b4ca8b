"""The fine-tuning examples (configs/finetune/) load, change what they say over the recipes they inherit, and pass
tools/train.py's pre-flight checks when pointed at the synthetic data; with the classes changed but not num_classes
they fail them, and the ``--cfg-options`` the error gives fix it."""
import argparse
import shlex
from pathlib import Path

import pytest
from mmengine.config import Config

import convnext_dense  # noqa: F401  registers our modules, resolves mmdet:: / mmseg:: bases
from convnext_dense.apis.runner_setup import SetupError, add_cfg_options_arg, check_data
from convnext_dense.datasets.data_checks import check_num_classes

ROOT = Path(__file__).resolve().parents[2]
DET = ROOT / 'configs/finetune/cascade_rcnn_convnext_t_coco_format.py'
SEG = ROOT / 'configs/finetune/upernet_convnext_t_folder_format.py'
LOADERS = ['train_dataloader', 'val_dataloader']


def cfg_options(*options):
    """``--cfg-options`` parsed as tools/train.py parses them."""
    parser = argparse.ArgumentParser()
    add_cfg_options_arg(parser)
    return parser.parse_args(['--cfg-options', *options]).cfg_options


def load(path, *options):
    cfg = Config.fromfile(str(path))
    if options:
        cfg.merge_from_dict(cfg_options(*options))
    return cfg


def test_detection_example_is_the_recipe_with_new_classes_data_and_schedule():
    cfg, recipe = load(DET), load(ROOT / 'configs/cascade_rcnn/convnext_t_3x.py')
    classes = cfg.train_dataloader.dataset.metainfo.classes
    assert cfg.val_dataloader.dataset.metainfo.classes == classes and len(cfg.metainfo.palette) == len(classes)
    heads = [*cfg.model.roi_head.bbox_head, cfg.model.roi_head.mask_head]
    assert [head.num_classes for head in heads] == [len(classes)] * 4
    assert check_num_classes(cfg, LOADERS) == []
    for head, recipe_head in zip(cfg.model.roi_head.bbox_head, recipe.model.roi_head.bbox_head):
        assert head.to_dict() == dict(recipe_head.to_dict(), num_classes=len(classes))  # the stages keep their stds
    assert cfg.load_from == 'checkpoints/cascade_mask_rcnn_convnext_tiny_1k_3x.pth'
    assert cfg.model.backbone.init_cfg is None
    assert cfg.test_dataloader.dataset.ann_file == 'annotations/val.json' == cfg.val_dataloader.dataset.ann_file
    assert cfg.test_evaluator.ann_file == cfg.data_root + 'annotations/val.json'
    assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler[1].milestones == [8, 11]
    assert cfg.optim_wrapper.paramwise_cfg == recipe.optim_wrapper.paramwise_cfg


def test_segmentation_example_is_the_recipe_with_new_classes_data_and_schedule():
    cfg = load(SEG)
    classes = cfg.train_dataloader.dataset.metainfo.classes
    assert (cfg.model.decode_head.num_classes, cfg.model.auxiliary_head.num_classes) == (len(classes), len(classes))
    assert check_num_classes(cfg, LOADERS) == []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert (dataset.type, dataset.img_suffix, dataset.seg_map_suffix, dataset.reduce_zero_label) == (
            'BaseSegDataset', '.jpg', '.png', True)
        # LoadAnnotations follows the dataset's reduce_zero_label, so it is set in one place
        assert [step for step in dataset.pipeline if step.type == 'LoadAnnotations'] == [dict(type='LoadAnnotations')]
    assert cfg.load_from == 'checkpoints/upernet_convnext_tiny_1k_512x512.pth' and cfg.model.backbone.init_cfg is None
    assert cfg.train_cfg.max_iters == 20000 and cfg.param_scheduler[1].end == 20000
    assert cfg.auto_scale_lr.base_batch_size == 16 == cfg.train_dataloader.batch_size * 8


def det_on_demo(demo_data, *options):
    root = demo_data / 'coco'
    return load(DET, *(f'{loader}.dataset.{key}' for loader, split in (('train_dataloader', 'train'),
                                                                       ('val_dataloader', 'val'))
                       for key in (f'data_root={root}/', f'ann_file=annotations/instances_{split}2017.json',
                                   f'data_prefix.img={split}2017/', 'metainfo.classes=(circle,square,triangle)')),
                f'val_evaluator.ann_file={root}/annotations/instances_val2017.json', *options)


def seg_on_demo(demo_data, *options):
    root = demo_data / 'ade/ADEChallengeData2016'
    return load(SEG, *(f'{loader}.dataset.{key}' for loader, split in (('train_dataloader', 'training'),
                                                                       ('val_dataloader', 'validation'))
                       for key in (f'data_root={root}', f'data_prefix.img_path=images/{split}',
                                   f'data_prefix.seg_map_path=annotations/{split}',
                                   'metainfo.classes=(background,circle,square,triangle)')), *options)


@pytest.mark.parametrize('on_demo, heads', [
    (det_on_demo, ['model.roi_head.bbox_head.0', 'model.roi_head.bbox_head.1', 'model.roi_head.bbox_head.2',
                   'model.roi_head.mask_head']),
    (seg_on_demo, ['model.decode_head', 'model.auxiliary_head']),
], ids=['cascade_rcnn', 'upernet'])
def test_examples_on_the_demo_data_fail_until_num_classes_follows_the_classes(demo_data, on_demo, heads):
    cfg = on_demo(demo_data)
    with pytest.raises(SetupError) as error:
        check_data(cfg, LOADERS)
    (message, ) = str(error.value).splitlines()
    count = len(cfg.train_dataloader.dataset.metainfo.classes)
    fix = ' '.join(f'{head}.num_classes={count}' for head in heads)
    assert message.startswith("the model's heads do not fit the data") and message.endswith(f'--cfg-options {fix}')
    check_data(on_demo(demo_data, *shlex.split(fix)), LOADERS)  # data, annotations, label maps and heads all fit
