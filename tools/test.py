"""Evaluate a checkpoint on a config's test set: COCO box/mask AP for mmdet configs, mIoU for mmseg configs.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--work-dir DIR] [--cfg-options ...]
    tools/dist_test.sh CONFIG CHECKPOINT 8 [args]  # distributed, under torchrun

The last line printed is ``metrics: {...}`` (JSON), for scripts.
"""
import argparse
import json
import numbers
import sys

from mmengine.dist import is_main_process

import convnext_dense  # noqa: F401  registers the backbone and the config fixes
from convnext_dense.tooling.runner_setup import (SetupError, add_runner_args, adapt_to_machine, build_runner, check_data,
                                         load_config, require_checkpoint)

# Metrics that pickle the raw predictions; mmdet's stores masks as RLE.
DUMP_METRICS = dict(mmdet='DumpDetResults', mmseg='DumpResults')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='test config file')
    parser.add_argument('checkpoint', help='checkpoint file (e.g. from tools/train.py)')
    parser.add_argument('--out', help='also dump the predictions to this pickle file (.pkl), for offline analysis')
    add_runner_args(parser)
    return parser.parse_args()


def setup(args):
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SetupError(f'--out must name a .pkl file, got {args.out}')
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir, args.local_rank)
    require_checkpoint(args.checkpoint)
    cfg.load_from = args.checkpoint
    if args.out is not None:
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
        cfg.test_evaluator = [*evaluators, dict(type=DUMP_METRICS[cfg.default_scope], out_file_path=args.out)]
    notes = adapt_to_machine(cfg)
    check_data(cfg, ['test_dataloader'])
    return cfg, notes


def main():
    args = parse_args()
    try:
        cfg, notes = setup(args)
    except SetupError as exc:
        sys.exit(f'error: {exc}')
    metrics = build_runner(cfg, notes).test()
    if is_main_process():
        print('metrics: ' + json.dumps({k: float(v) if isinstance(v, numbers.Real) else str(v)
                                        for k, v in metrics.items()}))


if __name__ == '__main__':
    main()
