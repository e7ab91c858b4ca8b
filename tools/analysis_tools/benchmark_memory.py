"""Training memory and speed of mmdet/mmseg configs, side by side (e.g. ConvNeXt vs Swin).

Each config runs in its own process: its model (random weights, SyncBN as BN) trains for --warmup + --iters steps on
synthetic batches of realistic size with the config's own optim_wrapper (AMP when the config asks for it), through
``model.train_step`` exactly as the mmengine runner calls it. Reported per config: peak GPU memory allocated and
reserved over the timed steps, median step time and throughput, as a table, JSON and PNG under --out-dir.

On a machine without a GPU the same run reports the peak RSS of each process and CPU times, labelled as such (AMP
needs CUDA, so the CPU run trains in fp32); this is what CI smoke-tests.

--estimate predicts, on a CPU, the peak GPU memory (allocated) of each config's training step, AMP as on a GPU, from
one real step with tensor-level accounting replayed through a model of the CUDA caching allocator, plus the cuBLAS
workspaces (convnext_dense/analysis/memory_estimate.py), as ``estimated_peak_gib``, with its parts.

Both modes measure one GPU of a distributed run by default (--launcher pytorch: the model in mmengine's DDP wrapper,
in a one-process group, whose gradient buckets every GPU holds); --launcher none measures a single-process run. An
--estimate with --launcher pytorch is a prediction for a distributed run, and with --launcher none for a
single-process one, that no GPU measurement has checked yet (the README, "Results on a GPU", says what is pending).
--estimate --validate checks the estimator against the H100 measurements of mmdet's own configs
(convnext_dense/analysis/memory_anchors.py): it estimates each of them under the loop that measured them (--loop
anchor: one process, no DDP, the script's optimizer, scaler, data and batch, the previous step's gradients alive
through the forward), prints the validation table and exits 1 if one is out of tolerance; --loop-iterations 13 runs
all of the anchors' iterations instead of one replayed as the steady state.
--estimate --against MEASURED_JSON estimates the configs of a GPU run of this tool with that run's settings and
prints each estimate beside its measurement (exit 1 beyond 5%): the check of the estimates of tools/train.py steps.
The measurement, estimate and reports are convnext_dense/analysis/memory_benchmark.py; this script parses the command
line and runs one worker process per config.

    python tools/analysis_tools/benchmark_memory.py configs/cascade_rcnn/{convnext,swin}_t_3x.py
    python tools/analysis_tools/benchmark_memory.py CONFIG --cfg-options model.backbone.with_cp=True --out-dir OUT
    python tools/analysis_tools/benchmark_memory.py --estimate configs/cascade_rcnn/{convnext,swin}_b_3x.py
    python tools/analysis_tools/benchmark_memory.py --estimate --validate --out-dir work_dirs/memory_validation
    python tools/analysis_tools/benchmark_memory.py --estimate --loop anchor --loop-iterations 13 CONFIG
    python tools/analysis_tools/benchmark_memory.py --estimate --against MEASURED_JSON
"""
import argparse
import sys
from pathlib import Path

import convnext_dense.analysis.benchmark as common
from convnext_dense.analysis import memory_benchmark
from convnext_dense.analysis.memory_anchors import LOOP
from convnext_dense.analysis.memory_estimate import LOOPS
from convnext_dense.analysis.process_isolation import config_jobs, run_isolated, worker_main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    common.add_common_args(parser, out_dir='work_dirs/benchmark_memory', configs_required=False)
    parser.add_argument('--estimate', action='store_true', help='predict the peak GPU training memory on the CPU '
                        '(one step, AMP as the config asks; --iters/--warmup/--device do not apply)')
    parser.add_argument('--launcher', choices=common.LAUNCHERS, default=None,
                        help="as tools/train.py's: pytorch (default) measures one GPU of a distributed run, the "
                        "model in mmengine's DDP wrapper (a one-process group here), whose gradient buckets hold a "
                        'second copy of the gradients unless model_wrapper_cfg sets gradient_as_bucket_view=True; '
                        'none: a single-process run')
    parser.add_argument('--validate', action='store_true', help='with --estimate and no CONFIG: estimate the '
                        "configs of the H100 memory anchors under the anchors' own loop and compare")
    parser.add_argument('--loop', choices=LOOPS, default='runner',
                        help='with --estimate: runner (default) estimates a tools/train.py step; anchor the loop '
                        'that measured the H100 memory anchors (one process, no DDP, their optimizer, scaler, data '
                        "and zero_grad between forward and backward; detectors), which --validate runs")
    parser.add_argument('--loop-iterations', type=int, default=1, metavar='N',
                        help='with --loop anchor or --validate: 1 (default) traces one iteration and replays it as '
                        "the loop's steady state; N runs N iterations as the loop ran them, each with its own data "
                        f"(the anchors took their peak over {LOOP['warmup'] + LOOP['iters']}), N times the time")
    parser.add_argument('--against', default=None, metavar='MEASURED_JSON',
                        help='with --estimate and no CONFIG: estimate the configs of a GPU run of this tool '
                        '(its benchmark_memory.json) with its settings (launcher, batch, shape, seed, cfg-options), '
                        'print each estimate beside its measurement and exit 1 if one is more than 5%% off')
    args = parser.parse_args(argv)
    if args.against:
        given = [flag for flag, value in (('CONFIG', args.configs), ('--validate', args.validate),
                                          ('--launcher', args.launcher), ('--shape', args.shape),
                                          ('--cfg-options', args.cfg_options)) if value]
        if not args.estimate or given or args.loop != 'runner':
            parser.error('--against takes its configs and settings from the measurement: '
                         'python tools/analysis_tools/benchmark_memory.py --estimate --against MEASURED_JSON '
                         f"(drop {', '.join(given) or '--loop'}{'' if args.estimate else '; add --estimate'})")
        try:
            measured = memory_benchmark.read_measurement(args.against)
        except ValueError as exc:
            parser.error(str(exc))
        settings = measured['settings']
        args.configs = [r['config'] for r in measured['results']]
        args.launcher, args.batch_size, args.seed = settings['launcher'], settings['batch_size'], settings['seed']
        args.shape, args.cfg_options = settings.get('shape'), settings.get('cfg_options') or {}
    if args.validate and (not args.estimate or args.configs):
        parser.error('--validate takes no CONFIG and needs --estimate: '
                     'python tools/analysis_tools/benchmark_memory.py --estimate --validate')
    if args.validate and (args.launcher or args.shape or args.batch_size != LOOP['batch_size']):
        parser.error("--validate runs the anchors' own loop (one process, no DDP, their batch and image size): "
                     'drop --launcher, --shape and --batch-size')
    if args.loop == 'anchor' and (not args.estimate or args.launcher == 'pytorch'):
        parser.error("--loop anchor is an --estimate of the anchors' single-process loop: use --estimate, no "
                     '--launcher pytorch')
    if args.loop_iterations < 1 or (args.loop_iterations > 1 and args.loop != 'anchor' and not args.validate):
        parser.error('--loop-iterations N (N >= 1) applies to --loop anchor and --validate')
    args.launcher = args.launcher or ('none' if args.validate or args.loop == 'anchor' else 'pytorch')
    if not args.configs and not args.validate:
        parser.error('give at least one CONFIG (or --estimate --validate)')
    if args.estimate and args.device == 'cuda':
        parser.error('--estimate runs on the CPU; drop --device cuda to measure on the GPU instead')
    common.check_args(parser, args)
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.estimate:
        args.device = 'cpu'  # a worker's result then names the CPU it ran on, even if the estimate failed
    if args.worker_result:
        return worker_main(args, memory_benchmark.estimate if args.estimate else memory_benchmark.measure)
    if args.validate:
        from convnext_dense.analysis.memory_anchors import write_anchor_configs
        args.configs = write_anchor_configs(Path(args.out_dir) / 'anchor_configs')
        argv = [*args.configs, *(a for a in argv if a != '--validate'), '--loop', 'anchor']
    if args.against:  # the workers estimate with the measurement's settings
        argv = ['--estimate', '--launcher', args.launcher, '--batch-size', str(args.batch_size), '--seed',
                str(args.seed), '--out-dir', args.out_dir, *(['--shape', *map(str, args.shape)] if args.shape else []),
                *memory_benchmark.cfg_options_argv(args.cfg_options)]
    results = run_isolated(__file__, args.out_dir, config_jobs(args.configs, argv))
    if args.estimate:
        return memory_benchmark.report_estimates(args, results)
    return memory_benchmark.report(args, results)


if __name__ == '__main__':
    sys.exit(main())
