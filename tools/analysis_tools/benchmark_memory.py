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
in a one-process group, whose gradient buckets every GPU holds); --launcher none measures a single-process run.
--estimate --validate checks those predictions against H100 measurements of mmdet's own configs
(convnext_dense/analysis/memory_anchors.py) and prints the validation table; it exits 1 if one is out of tolerance.

    python tools/analysis_tools/benchmark_memory.py configs/cascade_rcnn/convnext_t_3x.py configs/cascade_rcnn/swin_t_3x.py
    python tools/analysis_tools/benchmark_memory.py CONFIG --cfg-options model.backbone.with_cp=True --out-dir work_dirs/cp
    python tools/analysis_tools/benchmark_memory.py --estimate configs/cascade_rcnn/convnext_b_3x.py configs/cascade_rcnn/swin_b_3x.py
    python tools/analysis_tools/benchmark_memory.py --estimate --validate --out-dir work_dirs/memory_validation
"""
import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

import convnext_dense.analysis.benchmark as common


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    common.add_common_args(parser, out_dir='work_dirs/benchmark_memory', configs_required=False)
    parser.add_argument('--estimate', action='store_true', help='predict the peak GPU training memory on the CPU '
                        '(one step, AMP as the config asks; --iters/--warmup/--device do not apply)')
    parser.add_argument('--launcher', choices=common.LAUNCHERS, default='pytorch',
                        help="as tools/train.py's: pytorch (default) measures one GPU of a distributed run, the "
                        "model in mmengine's DDP wrapper (a one-process group here), whose gradient buckets hold a "
                        'second copy of the gradients unless model_wrapper_cfg sets gradient_as_bucket_view=True; '
                        'none: a single-process run')
    parser.add_argument('--validate', action='store_true', help='with --estimate and no CONFIG: estimate the '
                        'configs of the H100 memory anchors and compare')
    args = parser.parse_args(argv)
    if args.validate and (not args.estimate or args.configs):
        parser.error('--validate takes no CONFIG and needs --estimate: '
                     'python tools/analysis_tools/benchmark_memory.py --estimate --validate')
    if args.validate and args.launcher != 'pytorch':
        parser.error('--validate compares with the anchors as one GPU of a distributed run: drop --launcher none')
    if not args.configs and not args.validate:
        parser.error('give at least one CONFIG (or --estimate --validate)')
    if args.estimate and args.device == 'cuda':
        parser.error('--estimate runs on the CPU; drop --device cuda to measure on the GPU instead')
    common.check_args(parser, args)
    return args


def build_optim_wrapper(cfg, model, device: torch.device):
    """The config's optim_wrapper; on CPU an AmpOptimWrapper (CUDA only) becomes a plain fp32 OptimWrapper."""
    from mmengine.optim import AmpOptimWrapper, build_optim_wrapper
    from mmengine.registry import OPTIM_WRAPPERS
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    wrapper_type = wrapper_cfg.get('type', 'OptimWrapper')
    wrapper_cls = OPTIM_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str) else wrapper_type
    amp = issubclass(wrapper_cls, AmpOptimWrapper)
    precision = 'fp32'
    if amp and device.type == 'cuda':
        precision = f"amp-{wrapper_cfg.get('dtype') or 'float16'}"
    elif amp:
        wrapper_cfg.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            wrapper_cfg.pop(key, None)
        precision = 'fp32 (config asks for AMP, which needs CUDA)'
    return build_optim_wrapper(model, wrapper_cfg), precision, amp


def measure(args) -> dict:
    cfg = common.load_benchmark_config(args.configs[0], args.cfg_options)
    device = common.resolve_device(args.device)
    common.apply_env_cfg(cfg)
    torch.manual_seed(args.seed)
    shape = common.image_shape(cfg, args.shape)
    model = common.build_model(cfg, device)
    model.train()
    optim_wrapper, precision, amp = build_optim_wrapper(cfg, model, device)
    batch = common.synthetic_batch(cfg, args.batch_size, shape, np.random.default_rng(args.seed))
    input_shape = list(model.data_preprocessor(copy.deepcopy(batch), True)['inputs'].shape)
    with common.process_group_for(args.launcher, device):
        wrapped = common.wrap_as_launched(cfg, model, args.launcher, device)
        times = common.time_steps(lambda data: wrapped.train_step(data, optim_wrapper), lambda: copy.deepcopy(batch),
                                  args.warmup, args.iters, device)
        del wrapped
    result = dict(task=common.config_task(cfg), precision=precision, amp_requested=amp, launcher=args.launcher,
                  image_shape=list(shape),
                  input_shape=input_shape, batch_size=args.batch_size, params_m=common.num_params_m(model),
                  backbone_cfg=cfg.model.backbone.to_dict(), env=common.environment(device),
                  **common.timing_summary(times, 'step'), **common.gpu_peaks(device, 'train'))
    result['throughput_img_s'] = args.batch_size / result['step_median_s']
    return result


def estimate(args) -> dict:
    from convnext_dense.analysis.memory_estimate import estimate_peak
    cfg = common.load_benchmark_config(args.configs[0], args.cfg_options)
    shape = common.image_shape(cfg, args.shape)
    estimated = estimate_peak(cfg, args.batch_size, shape, seed=args.seed, launcher=args.launcher)
    gib = {key.replace('_bytes', '_gib'): value / common.GIB for key, value in estimated.items()
           if key.endswith('_bytes')}
    return dict(task=common.config_task(cfg), precision='amp (half-precision sizes)' if estimated['amp'] else 'fp32',
                launcher=args.launcher, image_shape=list(shape), batch_size=args.batch_size,
                backbone_cfg=cfg.model.backbone.to_dict(), env=common.environment(torch.device('cpu')),
                params_m=estimated['params_m'], peak_phase=estimated['peak_phase'], **gib)


def report_estimates(args, results) -> int:
    columns = {'params_m': ('params (M)', '.1f'), 'tensors_at_peak_gib': ('tensors at peak (GiB)', '.3f'),
               'ddp_buckets_gib': ('of which DDP buckets', '.3f'),
               'allocator_rounding_gib': ('+ allocator blocks', '.3f'), 'cublas_workspaces_gib': ('+ cuBLAS', '.3f'),
               'estimated_peak_gib': ('estimated peak (GiB)', '.3f'),
               'static_gib': ('params+buffers+opt state (GiB)', '.3f'),
               'half_precision_at_peak_gib': ('half precision at peak (GiB)', '.3f')}
    headers = ['config', 'status', 'precision', 'image', *(title for title, _ in columns.values()), 'peak in']
    rows = [[r['name'], r['status'], r.get('precision', '-'), 'x'.join(map(str, r.get('image_shape', []))) or '-',
             *(common.fmt(r.get(key), spec) for key, (_, spec) in columns.items()), r.get('peak_phase', '-')]
            for r in results]
    env = common.result_env(results)
    settings = (f'ESTIMATE of peak GPU memory allocated by a training step (batch {args.batch_size}), from one CPU '
                'step with tensor-level accounting, replayed through a model of the CUDA caching allocator '
                f'| launcher {args.launcher} | torch {env.get("torch", "?")} | mmdet {env.get("mmdet", "?")} '
                f'| cfg-options {args.cfg_options or "none"}')
    table = '\n'.join([settings, '', common.format_table(headers, rows)])
    payload = dict(tool='benchmark_memory', title=settings, **env, memory_metric='estimated_gpu_peak_allocated',
                   settings=dict(batch_size=args.batch_size, launcher=args.launcher, shape=args.shape,
                                 seed=args.seed, cfg_options=args.cfg_options), results=results)
    if args.validate:
        from convnext_dense.analysis.memory_anchors import validation_rows
        payload['validation'] = validation_rows({r['name']: r.get('estimated_peak_gib') for r in results})
        table += '\n\n' + validation_table(payload['validation'], results)
    print(table)
    panels = [('estimated peak GPU memory (training)', 'GiB',
               {'estimate': [r.get('estimated_peak_gib') for r in results],
                **({'H100 anchor': [v['anchor_gib'] for v in payload['validation']]} if args.validate else {})})]
    paths = common.write_report(args.out_dir, 'benchmark_memory', payload, table, panels, [r['name'] for r in results])
    print(f"\nwrote {paths['json']}, {paths['table']}, {paths['png']}")
    failed = any(r['status'] == 'failed' for r in results)
    return 1 if failed or (args.validate and not all(v['ok'] for v in payload['validation'])) else 0


def validation_table(rows, results) -> str:
    """Markdown, for the README: per anchor config the estimate's parts, the estimate against the H100 anchor, and
    the ConvNeXt/Swin ratios."""
    from convnext_dense.analysis.memory_anchors import MAX_ERROR, MAX_RATIO_ERROR
    parts = {r['name']: r for r in results}
    lines = [f'Validation against H100 measurements (tolerance: {MAX_ERROR:.0%} per config, '
             f'{MAX_RATIO_ERROR} on the ConvNeXt/Swin ratio)', '',
             '| config | H100 anchor (GiB) | tensors | of which DDP buckets | + allocator blocks | + cuBLAS | '
             'CPU estimate (GiB) | error | ConvNeXt/Swin anchor | ConvNeXt/Swin estimate | ok |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for v in rows:
        part = lambda key: common.fmt(parts.get(v['name'], {}).get(key), '.3f')  # noqa: E731
        ratio = lambda key: common.fmt(v.get(key), '.3f')  # noqa: E731
        error = '-' if v['error'] is None else f"{v['error']:+.1%}"
        lines.append(f"| {v['name']} | {v['anchor_gib']:.2f} | {part('tensors_at_peak_gib')} | "
                     f"{part('ddp_buckets_gib')} | {part('allocator_rounding_gib')} | "
                     f"{part('cublas_workspaces_gib')} | "
                     f"{common.fmt(v['estimated_peak_gib'], '.2f')} | {error} | {ratio('anchor_ratio')} | "
                     f"{ratio('estimated_ratio')} | {'yes' if v['ok'] else 'NO'} |")
    return '\n'.join(lines)


def report(args, results) -> int:
    env = common.result_env(results)
    gpu = env.get('device') == 'cuda'
    memory_columns = {'peak_rss_mib': ('peak RSS (MiB)', '.0f')} if not gpu else {
        'train_peak_allocated_gib': ('peak alloc (GiB)', '.3f'),
        'train_peak_reserved_gib': ('peak reserved (GiB)', '.3f')}
    columns = {'params_m': ('params (M)', '.1f'), **memory_columns,
               'step_median_s': ('step median (s)', '.4f'), 'step_mean_s': ('step mean (s)', '.4f'),
               'throughput_img_s': ('throughput (img/s)', '.2f')}
    headers = ['config', 'status', 'task', 'precision', 'input', *(title for title, _ in columns.values())]
    rows = [[r['name'], r['status'], r.get('task', '-'), r.get('precision', '-'),
             'x'.join(map(str, r.get('input_shape', []))) or '-',
             *(common.fmt(r.get(key), spec) for key, (_, spec) in columns.items())] for r in results]
    header = common.report_header(results)
    settings = (f'training: batch {args.batch_size}, launcher {args.launcher}, {args.warmup} warm-up + '
                f'{args.iters} timed steps, '
                f'cfg-options {args.cfg_options or "none"}')
    table = '\n'.join([*header, settings, '', common.format_table(headers, rows)])
    print(table)

    series = lambda key: [r.get(key) for r in results]  # noqa: E731
    memory_panel = (('peak GPU memory', 'GiB', {'allocated': series('train_peak_allocated_gib'),
                                                'reserved': series('train_peak_reserved_gib')}) if gpu else
                    ('peak RSS of the process (CPU run)', 'MiB', {'RSS': series('peak_rss_mib')}))
    panels = [memory_panel, ('training step (median)', 's', {'step': series('step_median_s')}),
              ('throughput', 'img/s', {'throughput': series('throughput_img_s')})]
    payload = dict(tool='benchmark_memory', title=' / '.join(header[:1] + [settings]), **env,
                   memory_metric='gpu_peak_allocated_reserved' if gpu else 'cpu_peak_rss',
                   settings=dict(batch_size=args.batch_size, launcher=args.launcher, shape=args.shape,
                                 iters=args.iters, warmup=args.warmup, seed=args.seed, cfg_options=args.cfg_options),
                   results=results)
    paths = common.write_report(args.out_dir, 'benchmark_memory', payload, table, panels, [r['name'] for r in results])
    print(f"\nwrote {paths['json']}, {paths['table']}, {paths['png']}")
    return 1 if any(r['status'] == 'failed' for r in results) else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker_result:
        return common.worker_main(args, estimate if args.estimate else measure)
    if args.validate:
        from convnext_dense.analysis.memory_anchors import write_anchor_configs
        args.configs = write_anchor_configs(Path(args.out_dir) / 'anchor_configs')
        argv = [*args.configs, *(a for a in argv if a != '--validate')]
    if args.estimate:
        args.device = 'cpu'  # the workers' environment() then names the CPU
        return report_estimates(args, common.run_isolated(__file__, args, argv))
    return report(args, common.run_isolated(__file__, args, argv))


if __name__ == '__main__':
    sys.exit(main())
