"""What ``tools/analysis_tools/benchmark_speed.py`` measures and reports: a config's inference speed (``test_step``,
batch 1) and its backbone's forward and training-step times alone, or instead of the backbone, the exported ONNX
graph in onnxruntime against the same module in PyTorch eager.

The backbone alone is timed on the batch the model would feed it (synthetic images through the model's own data
preprocessor), so the comparison between backbones is at the sizes the detector or segmentor really sees.
"""
import contextlib
import copy
import gc

import numpy as np
import torch

from . import benchmark as common
from .reports import dims, fmt, format_table, publish_report, report_header, result_env
from .synthetic_batches import synthetic_batch

STEM = 'benchmark_speed'
AMP_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


def autocast(device: torch.device, amp):
    """Autocast to the ``amp`` dtype name, or no autocast (fp32) for ``None``."""
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()


def maybe_compile(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    return torch.compile(module) if enabled else module


def measure(args) -> dict:
    """Inference and backbone (or ONNX) times of ``args.configs[0]``, with GPU peaks on a GPU."""
    cfg = common.load_benchmark_config(args.configs[0], args.cfg_options)
    device = common.resolve_device(args.device)
    common.apply_env_cfg(cfg)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    shape = common.image_shape(cfg, args.shape)
    rng = np.random.default_rng(args.seed)
    result = dict(task=common.config_task(cfg), backbone_precision=args.amp or 'fp32', compiled=args.compile,
                  image_shape=list(shape), backbone_cfg=cfg.model.backbone.to_dict(), env=common.environment(device))

    model = common.build_model(cfg, device).eval()
    result['params_m'] = common.num_params_m(model)
    # The backbone's input: a training batch after the model's own preprocessing (normalized, padded).
    train_batch = synthetic_batch(cfg, args.batch_size, shape, rng)
    backbone_input = model.data_preprocessor(train_batch, True)['inputs'].detach()
    model.backbone = maybe_compile(model.backbone, args.compile)
    test_batch = synthetic_batch(cfg, 1, shape, rng, with_gt=False)
    result.update(time_inference(args, model, test_batch, device))
    if args.onnx:
        from .onnx_speed import time_onnx_vs_eager
        result.update(time_onnx_vs_eager(model, shape, args.warmup, args.iters, torch.get_num_threads()))
        return result
    del model
    if args.compile:
        torch._dynamo.reset()  # its caches would keep the detector alive, and its memory counted below
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    result.update(time_backbone(args, cfg, backbone_input, device))
    return result


def time_inference(args, model: torch.nn.Module, batch: dict, device: torch.device) -> dict:
    """Times of ``model.test_step`` (preprocessing, predict, post-processing) on ``batch`` in eval mode, its FPS
    and, on a GPU, its peak memory."""

    def infer(data):
        with torch.no_grad():
            model.test_step(data)

    times = common.time_steps(infer, lambda: copy.deepcopy(batch), args.warmup, args.iters, device)
    result = dict(common.timing_summary(times, 'inference'), **common.gpu_peaks(device, 'inference'))
    result['inference_fps'] = 1 / result['inference_median_s']
    return result


def time_backbone(args, cfg, backbone_input: torch.Tensor, device: torch.device) -> dict:
    """Forward (eval, no grad) and training-step (forward + backward of the summed output means) times of the
    config's backbone alone on ``backbone_input``, under ``--amp`` autocast and ``--compile`` as asked."""
    backbone = common.build_backbone(cfg, device)
    result = dict(backbone_params_m=common.num_params_m(backbone), backbone_input_shape=list(backbone_input.shape))
    backbone = maybe_compile(backbone, args.compile)

    def forward(x):
        with torch.no_grad(), autocast(device, args.amp):
            backbone(x)

    def train_step(x):
        backbone.zero_grad(set_to_none=True)
        with autocast(device, args.amp):
            loss = sum(out.float().mean() for out in backbone(x))
        loss.backward()

    backbone.eval()
    times = common.time_steps(forward, lambda: backbone_input, args.warmup, args.iters, device)
    result.update(common.timing_summary(times, 'backbone_forward'))
    backbone.train()
    times = common.time_steps(train_step, lambda: backbone_input, args.warmup, args.iters, device)
    result.update(common.timing_summary(times, 'backbone_train'), **common.gpu_peaks(device, 'backbone_train'))
    return result


def report(args, results) -> int:
    """The table, JSON and chart: inference FPS beside the backbone's times, or beside the ONNX graph's."""
    env = result_env(results)
    gpu = env.get('device') == 'cuda'
    ms = lambda r, key: None if key not in r else r[key] * 1e3  # noqa: E731
    if args.onnx:
        headers = ['config', 'status', 'task', 'params (M)', 'image', 'threads', 'test_step (ms)', 'eager graph (ms)',
                   'onnxruntime (ms)', 'ORT / eager', 'ORT dynamic (ms)', 'fixed / dynamic', 'peak RSS (MiB)']
        rows = [[r['name'], r['status'], r.get('task', '-'), fmt(r.get('params_m'), '.1f'), dims(r, 'image_shape'),
                 str(r.get('onnx_threads', '-')), fmt(ms(r, 'inference_median_s'), '.1f'),
                 fmt(ms(r, 'onnx_eager_median_s'), '.1f'), fmt(ms(r, 'onnx_ort_median_s'), '.1f'),
                 fmt(r.get('onnx_ort_over_eager'), '.2f'), fmt(ms(r, 'onnx_dynamic_median_s'), '.1f'),
                 fmt(r.get('onnx_fixed_over_dynamic'), '.2f'), fmt(r.get('peak_rss_mib'), '.0f')] for r in results]
    else:
        headers = ['config', 'status', 'task', 'params (M)', 'inference FPS', 'inference (ms)', 'backbone input',
                   'bb fwd (ms)', 'bb fwd+bwd (ms)', 'bb fwd+bwd peak (GiB)' if gpu else 'peak RSS (MiB)']
        rows = [[r['name'], r['status'], r.get('task', '-'), fmt(r.get('params_m'), '.1f'),
                 fmt(r.get('inference_fps'), '.2f'), fmt(ms(r, 'inference_median_s'), '.1f'),
                 dims(r, 'backbone_input_shape'), fmt(ms(r, 'backbone_forward_median_s'), '.1f'),
                 fmt(ms(r, 'backbone_train_median_s'), '.1f'),
                 fmt(r.get('backbone_train_peak_allocated_gib'), '.3f') if gpu else fmt(r.get('peak_rss_mib'), '.0f')]
                for r in results]
    header = report_header(results)
    second = ('exported graph fp32 (fixed shape), onnxruntime CPUExecutionProvider vs PyTorch eager and vs a '
              'dynamic-shape export, same threads, same image' if args.onnx
              else f"backbone {args.amp or 'fp32'}, batch {args.batch_size}")
    settings = (f"inference fp32, batch 1; {second}"
                f"{'; torch.compile' if args.compile else ''}; {args.warmup} warm-up + {args.iters} timed iterations "
                f'(median); cfg-options {args.cfg_options or "none"}')
    table = '\n'.join([*header, settings, '', format_table(headers, rows)])

    panels = [('inference (batch 1)', 'img/s', {'FPS': [r.get('inference_fps') for r in results]})]
    if args.onnx:
        panels.append(('exported graph (median)', 'ms', {
            'PyTorch eager': [ms(r, 'onnx_eager_median_s') for r in results],
            'onnxruntime': [ms(r, 'onnx_ort_median_s') for r in results],
            'onnxruntime dynamic': [ms(r, 'onnx_dynamic_median_s') for r in results]}))
    else:
        panels.append(('backbone alone (median)', 'ms', {
            'forward': [ms(r, 'backbone_forward_median_s') for r in results],
            'forward+backward': [ms(r, 'backbone_train_median_s') for r in results]}))
    payload = dict(tool=STEM, title=' / '.join(header[:1] + [settings]), **env,
                   memory_metric='gpu_peak_allocated_reserved' if gpu else 'cpu_peak_rss',
                   settings=dict(batch_size=args.batch_size, shape=args.shape, iters=args.iters, warmup=args.warmup,
                                 amp=args.amp, compile=args.compile, seed=args.seed, cfg_options=args.cfg_options,
                                 onnx=args.onnx, threads=args.threads),
                   results=results)
    return publish_report(args.out_dir, STEM, table, payload, panels, results)
