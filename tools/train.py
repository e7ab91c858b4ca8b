"""Train a detector (mmdet config) or segmentor (mmseg config) with mmengine's Runner.

    python tools/train.py configs/demo/mask_rcnn_convnext_atto_demo.py
    python tools/train.py CONFIG --work-dir work_dirs/x --amp --resume --cfg-options model.backbone.init_cfg=None
    tools/dist_train.sh CONFIG 8 [args]  # distributed, under torchrun
"""
import argparse
import glob
import os
import sys

import convnext_dense  # noqa: F401  registers the backbone, the optimizer constructor and the config fixes
from convnext_dense.apis.runner_setup import (
    SetupError,
    adapt_to_machine,
    add_runner_args,
    build_runner,
    check_data,
    check_pretrained,
    end_distributed,
    load_config,
)
from convnext_dense.engine.hooks.safe_checkpoint_hook import ResumeError


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='train config file')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (AmpOptimWrapper, dynamic '
                                                           'loss scale); needs a GPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help="scale the learning rate by the actual batch size over the config's "
                             'auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CHECKPOINT',
                        help='resume from CHECKPOINT, or without one from the latest checkpoint in the work dir')
    add_runner_args(parser)
    return parser.parse_args()


def setup(args):
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir, args.local_rank)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise SetupError(f'{args.config}: --auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) '
                             'in the config (N: the batch size its learning rate is for)')
        cfg.auto_scale_lr.enable = True
    notes = []
    if args.resume is None and int(os.environ.get('SLURM_RESTART_COUNT', '0')) > 0:
        # SLURM restarted the job (after a preemption, PreemptionHook asked for it): go on where it stopped, or
        # start afresh when it stopped before its first checkpoint
        if glob.glob(os.path.join(cfg.work_dir, '*.pth')):
            args.resume = 'auto'
            notes.append('requeued SLURM job (SLURM_RESTART_COUNT > 0): resuming')
        else:
            notes.append('requeued SLURM job (SLURM_RESTART_COUNT > 0) with no checkpoint yet: starting afresh')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    notes = adapt_to_machine(cfg) + notes
    check_data(cfg, ['train_dataloader', 'val_dataloader'] if cfg.get('val_cfg') else ['train_dataloader'])
    check_pretrained(cfg)
    return cfg, notes


def main():
    args = parse_args()
    try:
        cfg, notes = setup(args)
        # fine-tuning: load_from may be for other classes; --resume picks its checkpoint as training starts
        # (ResumeError when none is intact); no reference to the runner outlives the run (see end_distributed)
        build_runner(cfg, notes, new_classes=True).train()
    except (SetupError, ResumeError) as exc:
        sys.exit(f'error: {exc}')
    end_distributed()


if __name__ == '__main__':
    main()
