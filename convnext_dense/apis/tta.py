"""tools/test.py --tta: test-time augmentation through mmdet's and mmseg's own mechanism, as their tools/test.py do it:
the config's ``tta_pipeline`` (a ``TestTimeAug`` of scales x flips) becomes the test pipeline and its ``tta_model``
(mmdet's ``DetTTAModel``, mmseg's ``SegTTAModel``) wraps the model and merges the views. Two changes on top, so that
what is measured is what the papers measured, or says plainly what it is not:

- Segmentors infer on the whole image at every scale (``test_cfg.mode='whole'``): the official ConvNeXt ms+flip
  protocol (cited in configs/upernet/_base_ade20k_512.py). Single-scale testing keeps the configs' sliding window.
- ``DetTTAModel`` merges boxes only: on mmdet 3.3 and 3.5 it asserts that no view carries masks. So a detector's mask
  heads are left out, its COCO metric evaluates ``bbox`` alone, and the log says so and how to get mask AP.
"""
import copy
import math
from typing import List

from mmengine.config import Config, ConfigDict

from ..utils.config_tree import leaf_datasets
from .runner_setup import SetupError

# Where a config of this project shows what to add, per scope.
EXAMPLES = dict(mmdet="configs/_base_/coco_instance_3x.py: tta_model=dict(type='DetTTAModel', tta_cfg=dict(nms=..., "
                      "max_per_img=100)) and tta_pipeline=[LoadImageFromFile, TestTimeAug(transforms=[[Resize per "
                      "scale], [RandomFlip prob=1., prob=0.], [LoadAnnotations], [PackDetInputs with 'flip' and "
                      "'flip_direction' in meta_keys]])]",
                mmseg="configs/upernet/_base_ade20k_512.py: tta_model=dict(type='SegTTAModel') and "
                      "tta_pipeline=[LoadImageFromFile, TestTimeAug(transforms=[[Resize per scale], [RandomFlip "
                      "prob=0., prob=1.], [LoadAnnotations], [PackSegInputs]])]")
MASK_PARTS = ('mask_roi_extractor', 'mask_head')


def enable_tta(cfg: Config) -> List[str]:
    """Switch ``cfg``'s test to its ``tta_pipeline`` and ``tta_model``; returns notes for the log."""
    missing = [key for key in ('tta_model', 'tta_pipeline') if not cfg.get(key)]
    if missing:
        raise SetupError(f'--tta needs {" and ".join(missing)} in the config (test-time augmentation is mmdet\'s / '
                         f'mmseg\'s TestTimeAug pipeline and TTA model); add them as {EXAMPLES[cfg.default_scope]}, '
                         'or test without --tta')
    notes = _whole_image(cfg) if cfg.default_scope == 'mmseg' else _boxes_only(cfg)
    for _, dataset in leaf_datasets(cfg.test_dataloader.dataset, 'test_dataloader.dataset'):
        dataset.pipeline = copy.deepcopy(cfg.tta_pipeline)
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    return [f'--tta: test pipeline = tta_pipeline ({_num_views(cfg.tta_pipeline)} views per image), model wrapped '
            f'in {cfg.tta_model.type}', *notes]


def _whole_image(cfg: Config) -> List[str]:
    test_cfg = cfg.model.get('test_cfg') or ConfigDict()
    if test_cfg.get('mode', 'whole') == 'whole':
        return []
    before = test_cfg.mode
    test_cfg.mode = 'whole'
    cfg.model.test_cfg = test_cfg
    return [f"--tta: model.test_cfg.mode {before!r} -> 'whole': each scale is inferred on the whole image, as in the "
            'official ms+flip protocol (single-scale testing, without --tta, keeps the sliding window)']


def _boxes_only(cfg: Config) -> List[str]:
    roi_head = cfg.model.get('roi_head') or {}
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    segm = [e for e in evaluators if str(e.get('type')).split('.')[-1] == 'CocoMetric'
            and 'segm' in _as_list(e.get('metric', 'bbox'))]
    if not roi_head.get('mask_head'):
        if segm:
            raise SetupError("--tta: mmdet's DetTTAModel merges boxes, not masks, and this detector's masks do not "
                             'come from a roi_head.mask_head that could be left out; test it without --tta')
        return []
    for part in MASK_PARTS:
        roi_head[part] = None
    for evaluator in segm:
        evaluator.metric = [m for m in _as_list(evaluator.metric) if m != 'segm'] or ['bbox']
    return ["--tta: mmdet's DetTTAModel merges the boxes of the views (NMS), NOT the masks: the mask head is left out "
            '(its weights in the checkpoint are not loaded) and only box AP (bbox) is evaluated. For mask AP, run '
            'tools/test.py without --tta']


def _num_views(pipeline) -> int:
    step = next((s for s in pipeline if s.get('type') == 'TestTimeAug'), None)
    return math.prod(len(choices) for choices in step.transforms) if step else 1


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)
