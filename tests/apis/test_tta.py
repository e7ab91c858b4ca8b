"""The configs' test-time augmentation (tools/test.py --tta) and what tools/test.py turns on for its log and pictures:
every UperNet config carries the official ms+flip protocol, every detector config mmdet's multi-scale + flip TTA, and
the config transformation gives what mmseg's / mmdet's TTA models can run (whole-image segmentation, boxes only)."""
import os.path as osp
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

import convnext_dense  # noqa: F401  registers the backbone and the config fixes
from convnext_dense.apis.evaluation_outputs import draw_predictions, per_class_tables
from convnext_dense.apis.runner_setup import SetupError
from convnext_dense.apis.tta import enable_tta

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs'
# facebookresearch/ConvNeXt semantic_segmentation: `tools/test.py --aug-test` (mmseg 0.x) on the _ms configs
OFFICIAL_RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
UPERNET = sorted(str(p.relative_to(CONFIGS)) for p in (CONFIGS / 'upernet').glob('[!_]*.py')) + \
    ['demo/upernet_convnext_atto_demo.py']
DETECTORS = sorted(str(p.relative_to(CONFIGS)) for d in ('mask_rcnn', 'cascade_rcnn')
                   for p in (CONFIGS / d).glob('[!_]*.py')) + \
    ['demo/mask_rcnn_convnext_atto_demo.py', 'demo/cascade_rcnn_convnext_atto_demo.py']


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIGS / name))


def step(pipeline, type_: str) -> dict:
    [found] = [s for s in pipeline if s['type'] == type_]
    return found


def test_the_config_lists_are_complete():
    assert {'upernet/convnext_t_160k_ade20k.py', 'upernet/convnextv2_h_22k_160k_ade20k.py'} <= set(UPERNET)
    assert {'mask_rcnn/convnext_t_3x.py', 'cascade_rcnn/swin_b_3x.py', 'cascade_rcnn/convnextv2_h_3x.py'} <= \
        set(DETECTORS)


@pytest.mark.parametrize('name', UPERNET)
def test_upernet_config_carries_the_official_ms_flip_protocol(name):
    cfg = load(name)
    assert cfg.tta_model.type == 'SegTTAModel'
    assert [s['type'] for s in cfg.tta_pipeline] == ['LoadImageFromFile', 'TestTimeAug']
    resizes, flips, annotations, pack = step(cfg.tta_pipeline, 'TestTimeAug').transforms
    # The official ratios scale the single-scale test's scale (MultiScaleFlipAug img_scale x img_ratios).
    width, height = step(cfg.test_pipeline, 'Resize').scale
    assert [(r['type'], r['scale'], r['keep_ratio']) for r in resizes] == \
        [('Resize', (int(width * r), int(height * r)), True) for r in OFFICIAL_RATIOS]
    assert [(f['type'], f['prob'], f['direction']) for f in flips] == \
        [('RandomFlip', 0., 'horizontal'), ('RandomFlip', 1., 'horizontal')]
    [load_annotations] = annotations
    # Unset, mmseg's LoadAnnotations takes reduce_zero_label from the data set: right for ADE20K and for any set.
    assert load_annotations == dict(type='LoadAnnotations')
    assert [s['type'] for s in pack] == ['PackSegInputs']

    single_scale_mode = cfg.model.test_cfg.mode
    notes = enable_tta(cfg)
    assert cfg.model.type == 'SegTTAModel' and cfg.model.module.type == 'EncoderDecoder'
    assert cfg.model.module.test_cfg.mode == 'whole'
    assert cfg.test_dataloader.dataset.pipeline == cfg.tta_pipeline
    assert notes[0] == '--tta: test pipeline = tta_pipeline (12 views per image), model wrapped in SegTTAModel'
    if name.startswith('upernet/'):  # single-scale testing slides; ms+flip infers on whole images
        assert single_scale_mode == 'slide' and "'slide' -> 'whole'" in notes[1]


@pytest.mark.parametrize('name', DETECTORS)
def test_detector_config_carries_mmdet_tta_and_tests_boxes_only(name):
    cfg = load(name)
    assert cfg.tta_model.type == 'DetTTAModel' and cfg.tta_model.tta_cfg.nms.type == 'nms'
    assert [s['type'] for s in cfg.tta_pipeline] == ['LoadImageFromFile', 'TestTimeAug']
    resizes, flips, annotations, pack = step(cfg.tta_pipeline, 'TestTimeAug').transforms
    scales = [r['scale'] for r in resizes]
    assert len(scales) == 3 and step(cfg.test_pipeline, 'Resize').scale in scales
    assert [(f['type'], f['prob']) for f in flips] == [('RandomFlip', 1.), ('RandomFlip', 0.)]
    # DetTTAModel flips boxes back from these
    assert {'flip', 'flip_direction', 'ori_shape'} <= set(pack[0]['meta_keys'])
    assert annotations == [dict(type='LoadAnnotations', with_bbox=True)]

    notes = enable_tta(cfg)
    assert cfg.model.type == 'DetTTAModel' and cfg.model.module.roi_head.mask_head is None
    assert cfg.model.module.roi_head.mask_roi_extractor is None
    assert cfg.test_evaluator.metric == ['bbox']
    assert 'NOT the masks' in notes[1] and 'For mask AP, run tools/test.py without --tta' in notes[1]


@pytest.mark.parametrize('name', ['demo/mask_rcnn_convnext_atto_demo.py', 'demo/cascade_rcnn_convnext_atto_demo.py'])
def test_detector_tta_model_builds_without_masks(name):
    cfg = load(name)
    enable_tta(cfg)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'DetTTAModel'
    assert model.module.roi_head.with_bbox and not model.module.roi_head.with_mask


@pytest.mark.parametrize('name, missing', [('demo/mask_rcnn_convnext_atto_demo.py', ('tta_model', 'tta_pipeline')),
                                           ('demo/upernet_convnext_atto_demo.py', ('tta_pipeline',))])
def test_tta_without_the_settings_says_what_to_add(name, missing):
    cfg = load(name)
    for key in missing:
        cfg.pop(key)
    with pytest.raises(SetupError, match=f'--tta needs {" and ".join(missing)} in the config') as error:
        enable_tta(cfg)
    example = 'configs/_base_/coco_instance_3x.py' if 'rcnn' in name else 'configs/upernet/_base_ade20k_512.py'
    assert example in str(error.value)


def test_per_class_tables_for_detectors():
    cfg = load('demo/mask_rcnn_convnext_atto_demo.py')
    per_class_tables(cfg)
    assert cfg.test_evaluator.classwise is True
    cfg = load('demo/upernet_convnext_atto_demo.py')
    before = cfg.test_evaluator.to_dict()
    per_class_tables(cfg)  # mmseg's IoUMetric always logs its table
    assert cfg.test_evaluator.to_dict() == before


def test_show_dir_turns_on_the_visualization_hooks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load('demo/mask_rcnn_convnext_atto_demo.py')
    assert draw_predictions(cfg, 'pics') == f'--show-dir: pictures of the predictions go to {tmp_path / "pics"}'
    assert cfg.default_hooks.visualization.draw is True
    assert cfg.default_hooks.visualization.test_out_dir == str(tmp_path / 'pics')

    cfg = load('demo/upernet_convnext_atto_demo.py')
    assert draw_predictions(cfg, 'pics').endswith(osp.join(str(tmp_path), 'pics', 'vis_data', 'vis_image'))
    assert cfg.default_hooks.visualization.draw is True and cfg.default_hooks.visualization.interval == 1
    assert cfg.visualizer.save_dir == str(tmp_path / 'pics')

    cfg.default_hooks.pop('visualization')
    with pytest.raises(SetupError, match='--show-dir needs default_hooks.visualization'):
        draw_predictions(cfg, 'pics')
