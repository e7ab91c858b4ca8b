"""What ``tools/analysis_tools/benchmark_memory.py`` measures and reports: the peak memory and step time of a config's
training step on a device, or its peak GPU memory estimated on the CPU, and the validation of those estimates.

:func:`measure` trains the config's model (random weights) for the warm-up and timed steps on a synthetic batch, with
the config's own optim_wrapper, through ``train_step`` as mmengine's runner calls it, wrapped as the launcher has the
runner wrap it. :func:`estimate` runs one step on the CPU under :func:`~.memory_estimate.estimate_peak`'s accounting.
"""
import copy
import json
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..engine.optimizers.precision import is_amp, without_amp
from . import benchmark as common
from .memory_anchors import LOOP
from .reports import dims, fmt, format_table, publish_report, report_header, result_env
from .synthetic_batches import synthetic_batch

STEM = 'benchmark_memory'


def build_optim_wrapper(cfg, model, device: torch.device):
    """The config's optim_wrapper, its precision in words and whether the config asks for AMP; on a CPU an
    AmpOptimWrapper (CUDA only) becomes a plain fp32 OptimWrapper."""
    from mmengine.optim import build_optim_wrapper
    amp = is_amp(cfg.optim_wrapper)
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    precision = 'fp32'
    if amp and device.type == 'cuda':
        precision = f"amp-{wrapper_cfg.get('dtype') or 'float16'}"
    elif amp:
        wrapper_cfg = without_amp(wrapper_cfg)
        precision = 'fp32 (config asks for AMP, which needs CUDA)'
    return build_optim_wrapper(model, wrapper_cfg), precision, amp


def measure(args) -> dict:
    """Peak memory (GPU allocated and reserved, or the process's RSS on a CPU) and step times of training
    ``args.configs[0]``."""
    cfg = common.load_benchmark_config(args.configs[0], args.cfg_options)
    device = common.resolve_device(args.device)
    common.apply_env_cfg(cfg)
    torch.manual_seed(args.seed)
    shape = common.image_shape(cfg, args.shape)
    model = common.build_model(cfg, device)
    model.train()
    optim_wrapper, precision, amp = build_optim_wrapper(cfg, model, device)
    batch = synthetic_batch(cfg, args.batch_size, shape, np.random.default_rng(args.seed))
    input_shape = list(model.data_preprocessor(copy.deepcopy(batch), True)['inputs'].shape)
    with common.process_group_for(args.launcher, device):
        wrapped = common.wrap_as_launched(cfg, model, args.launcher, device)
        times = common.time_steps(partial(wrapped.train_step, optim_wrapper=optim_wrapper),
                                  lambda: copy.deepcopy(batch), args.warmup, args.iters, device)
        del wrapped
    result = dict(task=common.config_task(cfg), precision=precision, amp_requested=amp, launcher=args.launcher,
                  image_shape=list(shape),
                  input_shape=input_shape, batch_size=args.batch_size, params_m=common.num_params_m(model),
                  backbone_cfg=cfg.model.backbone.to_dict(), env=common.environment(device),
                  **common.timing_summary(times, 'step'), **common.gpu_peaks(device, 'train'))
    result['throughput_img_s'] = args.batch_size / result['step_median_s']
    return result


def estimate(args) -> dict:
    """The peak GPU memory of training ``args.configs[0]`` predicted on the CPU, in GiB, with its parts."""
    from .memory_estimate import estimate_peak
    cfg = common.load_benchmark_config(args.configs[0], args.cfg_options)
    loop = getattr(args, 'loop', 'runner')
    # the anchors' loop: unpadded random images of their size unless --shape says otherwise
    shape = tuple(args.shape or LOOP['shape']) if loop == 'anchor' else common.image_shape(cfg, args.shape)
    batch_size = args.batch_size
    estimated = estimate_peak(cfg, batch_size, shape, seed=args.seed, launcher=args.launcher, loop=loop,
                              iterations=getattr(args, 'loop_iterations', 1))
    gib = {key.replace('_bytes', '_gib'): value / common.GIB for key, value in estimated.items()
           if key.endswith('_bytes')}
    return dict(task=common.config_task(cfg), precision='amp (half-precision sizes)' if estimated['amp'] else 'fp32',
                launcher=args.launcher, loop=loop, loop_iterations=estimated['iterations'], image_shape=list(shape),
                batch_size=batch_size,
                backbone_cfg=cfg.model.backbone.to_dict(), env=common.environment(torch.device('cpu')),
                params_m=estimated['params_m'], peak_phase=estimated['peak_phase'], **gib)


def report_estimates(args, results) -> int:
    """The table, JSON and chart of ``--estimate`` runs; with ``--validate``, the comparison with the anchors too,
    and exit code 1 when one is out of tolerance."""
    held = ({'previous_iteration_at_peak_gib': ('of which left by the previous iteration', '.3f')}
            if any(r.get('previous_iteration_at_peak_gib') for r in results) else
            {'ddp_buckets_gib': ('of which DDP buckets', '.3f')})
    columns = {'params_m': ('params (M)', '.1f'), 'tensors_at_peak_gib': ('tensors at peak (GiB)', '.3f'), **held,
               'allocator_rounding_gib': ('+ allocator blocks', '.3f'), 'cublas_workspaces_gib': ('+ cuBLAS', '.3f'),
               'estimated_peak_gib': ('estimated peak (GiB)', '.3f'),
               'static_gib': ('params+buffers+opt state (GiB)', '.3f'),
               'half_precision_at_peak_gib': ('half precision at peak (GiB)', '.3f')}
    headers = ['config', 'status', 'precision', 'image', *(title for title, _ in columns.values()), 'peak in']
    rows = [[r['name'], r['status'], r.get('precision', '-'), dims(r, 'image_shape'),
             *(fmt(r.get(key), spec) for key, (_, spec) in columns.items()), r.get('peak_phase', '-')]
            for r in results]
    env = result_env(results)
    if args.validate or args.loop == 'anchor':
        iterations = ('one iteration replayed as its steady state' if args.loop_iterations == 1 else
                      f'{args.loop_iterations} iterations as it ran them')
        loop = ("the H100 anchors' own loop (one process, no DDP, plain AdamW + GradScaler, fp16 autocast, the "
                "previous step's gradients alive through the forward, random inputs "
                f"{args.batch_size}x3x{'x'.join(map(str, args.shape or LOOP['shape']))}; {iterations})")
    else:
        run = 'one GPU of a distributed run' if args.launcher == 'pytorch' else 'a single-process run'
        loop = f'batch {args.batch_size}, launcher {args.launcher} ({run}: a prediction until a GPU has measured one)'
    settings = ('ESTIMATE of peak GPU memory allocated by a training step, from training steps run on the CPU with '
                f'tensor-level accounting, replayed through a model of the CUDA caching allocator | {loop} '
                f'| torch {env.get("torch", "?")} | mmdet {env.get("mmdet", "?")} '
                f'| cfg-options {args.cfg_options or "none"}')
    table = '\n'.join([settings, '', format_table(headers, rows)])
    payload = dict(tool=STEM, title=settings, **env, memory_metric='estimated_gpu_peak_allocated',
                   settings=dict(batch_size=args.batch_size, launcher=args.launcher, shape=args.shape,
                                 loop='anchor' if args.validate else args.loop,
                                 loop_iterations=args.loop_iterations, seed=args.seed,
                                 cfg_options=args.cfg_options), results=results)
    series = {'estimate': [r.get('estimated_peak_gib') for r in results]}
    valid = True
    if args.against:
        measured = read_measurement(args.against)
        payload['against'] = against_rows(measured, results)
        table += '\n\n' + against_table(payload['against'], measured['settings'])
        series['GPU measurement'] = [next((v['measured_gib'] for v in payload['against'] if v['config'] == r['config']),
                                          None) for r in results]
        valid = all(v['ok'] for v in payload['against'])
    if args.validate:
        from .memory_anchors import validation_rows
        payload['validation'] = validation_rows({r['name']: r.get('estimated_peak_gib') for r in results})
        table += '\n\n' + validation_table(payload['validation'], results)
        series['H100 anchor'] = [v['anchor_gib'] for v in payload['validation']]
        valid = all(v['ok'] for v in payload['validation'])
    panels = [('estimated peak GPU memory (training)', 'GiB', series)]
    return publish_report(args.out_dir, STEM, table, payload, panels, results, valid=valid)


def read_measurement(path: str) -> dict:
    """The JSON of a GPU run of this tool (``--device cuda``), which ``--estimate --against`` estimates again: its
    configs and settings. Raises ``ValueError`` naming what is wrong with the file."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f'--against {path}: no such file; give the {STEM}.json of a GPU run '
                         '(make gpu-memory-check writes them under work_dirs/gpu_memory_check/)')
    payload = json.loads(file.read_text())
    if payload.get('tool') != STEM or payload.get('memory_metric') != 'gpu_peak_allocated_reserved':
        raise ValueError(f'--against {path}: not a GPU measurement of {STEM}.py (memory_metric '
                         f"{payload.get('memory_metric')!r}); measure with --device cuda first")
    measured = [r for r in payload['results'] if r.get('status') == 'ok']
    if not measured:
        raise ValueError(f'--against {path}: no config was measured there (every run failed or ran out of memory)')
    return dict(settings=payload['settings'], results=measured)


def cfg_options_argv(cfg_options: dict) -> list:
    """``--cfg-options`` as a command line gives them, for the worker processes: ``key=value`` each, lists and
    tuples in mmengine's ``[a,b]`` / ``(a,b)`` form."""
    def text(value):
        if isinstance(value, (list, tuple)):
            items = ','.join(text(v) for v in value)
            return f'[{items}]' if isinstance(value, list) else f'({items})'
        return str(value)
    return ['--cfg-options', *(f'{key}={text(value)}' for key, value in cfg_options.items())] if cfg_options else []


def against_rows(measured: dict, estimates) -> list:
    """Per measured config, its GPU peak allocated against the CPU estimate of the same config and settings, the
    relative error and whether it is within :data:`~.memory_anchors.MAX_ERROR`."""
    from .memory_anchors import MAX_ERROR
    by_config = {r['config']: r for r in estimates}
    rows = []
    for gpu in measured['results']:
        cpu = by_config.get(gpu['config'], {})
        estimate, peak = cpu.get('estimated_peak_gib'), gpu['train_peak_allocated_gib']
        error = None if estimate is None else estimate / peak - 1
        rows.append(dict(name=gpu['name'], config=gpu['config'], measured_gib=peak, estimated_peak_gib=estimate,
                         error=error, ok=error is not None and abs(error) <= MAX_ERROR,
                         device=gpu.get('env', {}).get('device_name')))
    return rows


def against_table(rows, settings: dict) -> str:
    """Markdown, for the README: each GPU measurement beside its CPU estimate."""
    from .memory_anchors import MAX_ERROR
    lines = [f"Estimate against the GPU measurement (launcher {settings['launcher']}, batch "
             f"{settings['batch_size']}, cfg-options {settings.get('cfg_options') or 'none'}; tolerance "
             f'{MAX_ERROR:.0%})', '',
             '| config | GPU | measured peak allocated (GiB) | CPU estimate (GiB) | error | ok |',
             '|---|---|---|---|---|---|']
    for v in rows:
        error = '-' if v['error'] is None else f"{v['error']:+.1%}"
        lines.append(f"| {v['name']} | {v['device'] or '-'} | {v['measured_gib']:.3f} | "
                     f"{fmt(v['estimated_peak_gib'], '.3f')} | {error} | {'yes' if v['ok'] else 'NO'} |")
    return '\n'.join(lines)


def validation_table(rows, results) -> str:
    """Markdown, for the README: per anchor config the estimate's parts under the anchors' loop, the estimate against
    the H100 anchor, and the ConvNeXt/Swin ratios."""
    from .memory_anchors import MAX_ERROR, MAX_RATIO_ERROR
    parts = {r['name']: r for r in results}
    lines = [f"Validation against H100 measurements, each config estimated under the anchors' own loop "
             f'(tolerance: {MAX_ERROR:.0%} per config, {MAX_RATIO_ERROR} on the ConvNeXt/Swin ratio)', '',
             '| config | H100 anchor (GiB) | tensors | of which previous step | + allocator blocks | + cuBLAS | '
             'CPU estimate (GiB) | error | ConvNeXt/Swin anchor | ConvNeXt/Swin estimate | ok |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for v in rows:
        part = lambda key: fmt(parts.get(v['name'], {}).get(key), '.3f')  # noqa: E731
        ratio = lambda key: fmt(v.get(key), '.3f')  # noqa: E731
        error = '-' if v['error'] is None else f"{v['error']:+.1%}"
        lines.append(f"| {v['name']} | {v['anchor_gib']:.2f} | {part('tensors_at_peak_gib')} | "
                     f"{part('previous_iteration_at_peak_gib')} | {part('allocator_rounding_gib')} | "
                     f"{part('cublas_workspaces_gib')} | "
                     f"{fmt(v['estimated_peak_gib'], '.2f')} | {error} | {ratio('anchor_ratio')} | "
                     f"{ratio('estimated_ratio')} | {'yes' if v['ok'] else 'NO'} |")
    return '\n'.join(lines)


def report(args, results) -> int:
    """The table, JSON and chart of measured runs: GPU peaks on a GPU, peak RSS on a CPU, step times, throughput."""
    env = result_env(results)
    gpu = env.get('device') == 'cuda'
    memory_columns = {'peak_rss_mib': ('peak RSS (MiB)', '.0f')} if not gpu else {
        'train_peak_allocated_gib': ('peak alloc (GiB)', '.3f'),
        'train_peak_reserved_gib': ('peak reserved (GiB)', '.3f')}
    columns = {'params_m': ('params (M)', '.1f'), **memory_columns,
               'step_median_s': ('step median (s)', '.4f'), 'step_mean_s': ('step mean (s)', '.4f'),
               'throughput_img_s': ('throughput (img/s)', '.2f')}
    headers = ['config', 'status', 'task', 'precision', 'input', *(title for title, _ in columns.values())]
    rows = [[r['name'], r['status'], r.get('task', '-'), r.get('precision', '-'), dims(r, 'input_shape'),
             *(fmt(r.get(key), spec) for key, (_, spec) in columns.items())] for r in results]
    header = report_header(results)
    settings = (f'training: batch {args.batch_size}, launcher {args.launcher}, {args.warmup} warm-up + '
                f'{args.iters} timed steps, '
                f'cfg-options {args.cfg_options or "none"}')
    table = '\n'.join([*header, settings, '', format_table(headers, rows)])

    series = lambda key: [r.get(key) for r in results]  # noqa: E731
    memory_panel = (('peak GPU memory', 'GiB', {'allocated': series('train_peak_allocated_gib'),
                                                'reserved': series('train_peak_reserved_gib')}) if gpu else
                    ('peak RSS of the process (CPU run)', 'MiB', {'RSS': series('peak_rss_mib')}))
    panels = [memory_panel, ('training step (median)', 's', {'step': series('step_median_s')}),
              ('throughput', 'img/s', {'throughput': series('throughput_img_s')})]
    payload = dict(tool=STEM, title=' / '.join(header[:1] + [settings]), **env,
                   memory_metric='gpu_peak_allocated_reserved' if gpu else 'cpu_peak_rss',
                   settings=dict(batch_size=args.batch_size, launcher=args.launcher, shape=args.shape,
                                 iters=args.iters, warmup=args.warmup, seed=args.seed, cfg_options=args.cfg_options),
                   results=results)
    return publish_report(args.out_dir, STEM, table, payload, panels, results)
