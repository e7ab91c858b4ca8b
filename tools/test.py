"""Evaluate a checkpoint on a config's test set: COCO box/mask AP for mmdet configs, mIoU for mmseg configs.

    python tools/test.py CONFIG CHECKPOINT [--tta] [--show-dir DIR] [--out results.pkl] [--work-dir DIR]
                         [--cfg-options ...]
    python tools/test.py CONFIG model.onnx [...]   # a graph of tools/deployment/export_onnx.py, run by onnxruntime
    tools/dist_test.sh CONFIG CHECKPOINT 8 [args]  # distributed, under torchrun

The log holds a per-class table (AP per class for detectors, IoU and accuracy per class for segmentors). The last line
printed is ``metrics: {...}`` (JSON), for scripts.
"""
import argparse
import json
import numbers
import sys

from mmengine.dist import is_main_process

import convnext_dense  # noqa: F401  registers the backbone and the config fixes
from convnext_dense.apis.evaluation_outputs import draw_predictions, per_class_tables
from convnext_dense.apis.runner_setup import (
    SetupError,
    adapt_to_machine,
    add_runner_args,
    build_runner,
    check_data,
    end_distributed,
    load_config,
    require_checkpoint,
)
from convnext_dense.apis.tta import enable_tta

# Metrics that pickle the raw predictions; mmdet's stores masks as RLE.
DUMP_METRICS = dict(mmdet='DumpDetResults', mmseg='DumpResults')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='test config file')
    parser.add_argument('checkpoint', help='checkpoint file (e.g. from tools/train.py), or an .onnx file of '
                                           'tools/deployment/export_onnx.py, evaluated with onnxruntime')
    parser.add_argument('--out', help='also dump the predictions to this pickle file (.pkl), for offline analysis')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation, the config's tta_pipeline and tta_model: for UperNet the "
                             'official ms+flip protocol (whole image at 0.5..1.75 x the test scale, each flipped); for '
                             "detectors mmdet's multi-scale + flip, evaluating boxes only (it does not merge masks)")
    parser.add_argument('--show-dir', help='draw the predictions of every test image into this folder (the log says '
                                           'where the pictures are)')
    add_runner_args(parser)
    return parser.parse_args()


def setup(args):
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SetupError(f'--out must name a .pkl file, got {args.out}')
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir, args.local_rank)
    require_checkpoint(args.checkpoint)
    onnx_file = args.checkpoint.endswith('.onnx')
    if onnx_file and args.tta:
        raise SetupError('--tta runs PyTorch checkpoints only; evaluate the ONNX graph without it')
    cfg.load_from = None if onnx_file else args.checkpoint
    notes = enable_tta(cfg) if args.tta else []
    per_class_tables(cfg)
    if args.show_dir:
        notes.append(draw_predictions(cfg, args.show_dir))
    if args.out is not None:
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
        cfg.test_evaluator = [*evaluators, dict(type=DUMP_METRICS[cfg.default_scope], out_file_path=args.out)]
    notes = [*adapt_to_machine(cfg), *notes]
    check_data(cfg, ['test_dataloader'])
    if onnx_file:
        from convnext_dense.apis.inference import use_onnx_model
        notes.append(use_onnx_model(cfg, args.checkpoint))
    return cfg, notes


def main():
    args = parse_args()
    try:
        cfg, notes = setup(args)
        metrics = build_runner(cfg, notes).test()
    except SetupError as exc:
        sys.exit(f'error: {exc}')
    if is_main_process():
        print('metrics: ' + json.dumps({k: float(v) if isinstance(v, numbers.Real) else str(v)
                                        for k, v in metrics.items()}))
    end_distributed()


if __name__ == '__main__':
    main()
