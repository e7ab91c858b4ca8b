"""Training memory and speed of mmdet/mmseg configs, side by side (e.g. ConvNeXt vs Swin).

Each config runs in its own process: its model (random weights, SyncBN as BN) trains for --warmup + --iters steps on
synthetic batches of realistic size with the config's own optim_wrapper (AMP when the config asks for it), through
``model.train_step`` exactly as the mmengine runner calls it. Reported per config: peak GPU memory allocated and
reserved over the timed steps, median step time and throughput, as a table, JSON and PNG under --out-dir.

On a machine without a GPU the same run reports the peak RSS of each process and CPU times, labelled as such (AMP
needs CUDA, so the CPU run trains in fp32); this is what CI smoke-tests.

    python tools/benchmark_memory.py configs/cascade_rcnn/convnext_t_3x.py configs/cascade_rcnn/swin_t_3x.py
    python tools/benchmark_memory.py CONFIG --cfg-options model.backbone.with_cp=True --out-dir work_dirs/cp
"""
import argparse
import copy
import sys

import numpy as np
import torch

import convnext_dense.tooling.benchmark as common


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    common.add_common_args(parser, out_dir='work_dirs/benchmark_memory')
    args = parser.parse_args(argv)
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
    cfg = common.load_config(args.configs[0], args.cfg_options)
    device = common.resolve_device(args.device)
    common.apply_env_cfg(cfg)
    torch.manual_seed(args.seed)
    shape = common.image_shape(cfg, args.shape)
    model = common.build_model(cfg, device)
    model.train()
    optim_wrapper, precision, amp = build_optim_wrapper(cfg, model, device)
    batch = common.synthetic_batch(cfg, args.batch_size, shape, np.random.default_rng(args.seed))
    input_shape = list(model.data_preprocessor(copy.deepcopy(batch), True)['inputs'].shape)
    times = common.time_steps(lambda data: model.train_step(data, optim_wrapper), lambda: copy.deepcopy(batch),
                              args.warmup, args.iters, device)
    result = dict(task=common.task_of(cfg), precision=precision, amp_requested=amp, image_shape=list(shape),
                  input_shape=input_shape, batch_size=args.batch_size, params_m=common.num_params_m(model),
                  backbone_cfg=cfg.model.backbone.to_dict(), env=common.environment(device),
                  **common.timing_summary(times, 'step'), **common.gpu_peaks(device, 'train'))
    result['throughput_img_s'] = args.batch_size / result['step_median_s']
    return result


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
    settings = (f'training: batch {args.batch_size}, {args.warmup} warm-up + {args.iters} timed steps, '
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
                   settings=dict(batch_size=args.batch_size, shape=args.shape, iters=args.iters,
                                 warmup=args.warmup, seed=args.seed, cfg_options=args.cfg_options),
                   results=results)
    paths = common.write_report(args.out_dir, 'benchmark_memory', payload, table, panels, [r['name'] for r in results])
    print(f"\nwrote {paths['json']}, {paths['table']}, {paths['png']}")
    return 1 if any(r['status'] == 'failed' for r in results) else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker_result:
        return common.worker_main(args, measure)
    return report(args, common.run_isolated(__file__, args, argv))


if __name__ == '__main__':
    sys.exit(main())
