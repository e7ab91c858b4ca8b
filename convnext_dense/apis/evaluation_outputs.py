"""What tools/test.py shows besides the metrics, as mmdet's and mmseg's own tools/test.py do: a per-class table in the
log, and pictures of the predictions (``--show-dir``) drawn by the configs' visualization hook."""
import os.path as osp

from mmengine.config import Config

from .runner_setup import SetupError


def per_class_tables(cfg: Config) -> None:
    """AP per class for detectors: mmdet's CocoMetric logs its table with ``classwise=True`` (mmseg's IoUMetric always
    logs IoU and accuracy per class)."""
    if cfg.default_scope != 'mmdet':
        return
    for evaluator in cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]:
        if str(evaluator.get('type')).split('.')[-1] == 'CocoMetric':
            evaluator.classwise = True


def draw_predictions(cfg: Config, show_dir: str) -> str:
    """Turn on the visualization hook's drawing with its output in ``show_dir``; returns a note naming where the
    pictures go.

    mmdet's DetVisualizationHook writes one picture per image (its name) to ``test_out_dir``, which it would put under
    work_dir/<timestamp>/ when relative; mmseg's SegVisualizationHook hands its pictures (ground truth | prediction)
    to the visualizer, whose LocalVisBackend writes ``<save_dir>/vis_data/vis_image/test_<name>_<n>.png``; mmseg
    1.2 draws only every ``interval``-th test batch (50 by default), 1.4 every one, so ``interval=1`` for both. The
    folder is made absolute, so that ``show_dir`` is where the pictures are, from any working directory.
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    if not hook or not cfg.get('visualizer'):
        raise SetupError('--show-dir needs default_hooks.visualization (mmdet\'s DetVisualizationHook, mmseg\'s '
                         'SegVisualizationHook) and a visualizer in the config, as mmdet\'s and mmseg\'s '
                         '_base_/default_runtime.py (and schedules) define them')
    show_dir = osp.abspath(show_dir)
    hook.draw = True
    if cfg.default_scope == 'mmdet':
        hook.test_out_dir = show_dir
        where = show_dir
    else:
        cfg.visualizer.save_dir = show_dir
        hook.interval = 1
        where = osp.join(show_dir, 'vis_data', 'vis_image')
    return f'--show-dir: pictures of the predictions go to {where}'
