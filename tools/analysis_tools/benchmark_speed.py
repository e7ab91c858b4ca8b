"""Inference FPS of mmdet/mmseg configs and forward/backward time of their backbones alone, side by side.

Each config runs in its own process, with random weights (SyncBN as BN):
- inference: batch 1, ``model.test_step`` (data preprocessor, predict, post-processing) on a synthetic image in eval
  mode, --warmup untimed then --iters timed calls; FPS = 1 / median.
- backbone: the config's backbone alone on the batch the detector/segmentor would feed it (--batch-size synthetic
  images through the model's data preprocessor, so padded to its size divisor): forward in eval mode without grad,
  and a training step (forward + backward of the summed output means) in train mode.
Inference runs in fp32, as mmengine's test loop does by default (and mmcv's CPU ops take nothing else). The backbone
runs in fp32 or, with --amp fp16|bf16, under autocast. Backbone options (channels_last, with_cp, ConvNeXt's own
compile) come from --cfg-options; --compile wraps any backbone module in ``torch.compile`` in both parts, so that
backbones without such an option (Swin) can be compared compiled too.
Random weights make detection FPS noisy: the number of proposals surviving NMS differs from a trained model's.
On a machine without a GPU it reports CPU times and the process's peak RSS, labelled as such.
--onnx (CPU only) replaces the backbone measurements: the model is exported (fp32, fixed size, checked against PyTorch,
convnext_dense.deploy) to a temporary file and the graph timed in onnxruntime's CPUExecutionProvider beside the same
exported module in PyTorch eager, on the same image, with the same number of threads (--threads, both sides).

    python tools/analysis_tools/benchmark_speed.py configs/cascade_rcnn/convnext_b_3x.py configs/cascade_rcnn/swin_b_3x.py --amp bf16
    python tools/analysis_tools/benchmark_speed.py CONFIG --cfg-options model.backbone.channels_last=True model.backbone.compile=True
    python tools/analysis_tools/benchmark_speed.py configs/upernet/convnext_t_160k_ade20k.py --onnx --device cpu --threads 2
"""
import argparse
import contextlib
import copy
import gc
import sys

import numpy as np
import torch

import convnext_dense.analysis.benchmark as common

AMP_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    common.add_common_args(parser, out_dir='work_dirs/benchmark_speed')
    parser.add_argument('--amp', choices=sorted(AMP_DTYPES), default=None,
                        help='autocast dtype of the backbone measurement (default: fp32, no autocast)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the backbone module, whatever its '
                        'type (the warm-up then includes compilation; give it a few iterations)')
    parser.add_argument('--onnx', action='store_true', help='instead of the backbone alone: export the model to ONNX '
                        '(fp32, fixed size) and time onnxruntime (CPU) against PyTorch eager on it; needs --device cpu')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads of PyTorch (and, with --onnx, of '
                        "onnxruntime's intra-op pool); default: torch's")
    args = parser.parse_args(argv)
    common.check_args(parser, args)
    if args.onnx and common.resolve_device(args.device).type != 'cpu':
        parser.error('--onnx times onnxruntime on the CPU against PyTorch on the CPU: add --device cpu')
    if args.threads is not None and args.threads < 1:
        parser.error('--threads must be >= 1')
    if args.compile and args.warmup < 1:
        parser.error('--compile needs --warmup >= 1, or compilation time would be timed')
    return args


def autocast(device: torch.device, amp):
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()


def maybe_compile(module: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    return torch.compile(module) if enabled else module


def measure(args) -> dict:
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
    train_batch = common.synthetic_batch(cfg, args.batch_size, shape, rng)
    backbone_input = model.data_preprocessor(train_batch, True)['inputs'].detach()
    model.backbone = maybe_compile(model.backbone, args.compile)
    test_batch = common.synthetic_batch(cfg, 1, shape, rng, with_gt=False)

    def infer(data):
        with torch.no_grad():
            model.test_step(data)

    times = common.time_steps(infer, lambda: copy.deepcopy(test_batch), args.warmup, args.iters, device)
    result.update(common.timing_summary(times, 'inference'), **common.gpu_peaks(device, 'inference'))
    result['inference_fps'] = 1 / result['inference_median_s']
    if args.onnx:
        from convnext_dense.analysis.onnx_speed import time_onnx_vs_eager
        result.update(time_onnx_vs_eager(model, shape, args.warmup, args.iters, torch.get_num_threads()))
        return result
    del model
    if args.compile:
        torch._dynamo.reset()  # its caches would keep the detector alive, and its memory counted below
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()

    backbone = common.build_backbone(cfg, device)
    result['backbone_params_m'] = common.num_params_m(backbone)
    result['backbone_input_shape'] = list(backbone_input.shape)
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
    env = common.result_env(results)
    gpu = env.get('device') == 'cuda'
    ms = lambda r, key: None if key not in r else r[key] * 1e3  # noqa: E731
    if args.onnx:
        headers = ['config', 'status', 'task', 'params (M)', 'image', 'threads', 'test_step (ms)', 'eager graph (ms)',
                   'onnxruntime (ms)', 'ORT / eager', 'peak RSS (MiB)']
        rows = [[r['name'], r['status'], r.get('task', '-'), common.fmt(r.get('params_m'), '.1f'),
                 'x'.join(map(str, r.get('image_shape', []))) or '-', str(r.get('onnx_threads', '-')),
                 common.fmt(ms(r, 'inference_median_s'), '.1f'), common.fmt(ms(r, 'onnx_eager_median_s'), '.1f'),
                 common.fmt(ms(r, 'onnx_ort_median_s'), '.1f'), common.fmt(r.get('onnx_ort_over_eager'), '.2f'),
                 common.fmt(r.get('peak_rss_mib'), '.0f')] for r in results]
    else:
        headers = ['config', 'status', 'task', 'params (M)', 'inference FPS', 'inference (ms)', 'backbone input',
                   'bb fwd (ms)', 'bb fwd+bwd (ms)', 'bb fwd+bwd peak (GiB)' if gpu else 'peak RSS (MiB)']
        rows = [[r['name'], r['status'], r.get('task', '-'), common.fmt(r.get('params_m'), '.1f'),
                 common.fmt(r.get('inference_fps'), '.2f'), common.fmt(ms(r, 'inference_median_s'), '.1f'),
                 'x'.join(map(str, r.get('backbone_input_shape', []))) or '-',
                 common.fmt(ms(r, 'backbone_forward_median_s'), '.1f'),
                 common.fmt(ms(r, 'backbone_train_median_s'), '.1f'),
                 common.fmt(r.get('backbone_train_peak_allocated_gib'), '.3f') if gpu else
                 common.fmt(r.get('peak_rss_mib'), '.0f')]
                for r in results]
    header = common.report_header(results)
    second = ('exported graph fp32, onnxruntime CPUExecutionProvider vs PyTorch eager, same threads' if args.onnx
              else f"backbone {args.amp or 'fp32'}, batch {args.batch_size}")
    settings = (f"inference fp32, batch 1; {second}"
                f"{'; torch.compile' if args.compile else ''}; {args.warmup} warm-up + {args.iters} timed iterations "
                f'(median); cfg-options {args.cfg_options or "none"}')
    table = '\n'.join([*header, settings, '', common.format_table(headers, rows)])
    print(table)

    panels = [('inference (batch 1)', 'img/s', {'FPS': [r.get('inference_fps') for r in results]})]
    if args.onnx:
        panels.append(('exported graph (median)', 'ms', {
            'PyTorch eager': [ms(r, 'onnx_eager_median_s') for r in results],
            'onnxruntime': [ms(r, 'onnx_ort_median_s') for r in results]}))
    else:
        panels.append(('backbone alone (median)', 'ms', {
            'forward': [ms(r, 'backbone_forward_median_s') for r in results],
            'forward+backward': [ms(r, 'backbone_train_median_s') for r in results]}))
    payload = dict(tool='benchmark_speed', title=' / '.join(header[:1] + [settings]), **env,
                   memory_metric='gpu_peak_allocated_reserved' if gpu else 'cpu_peak_rss',
                   settings=dict(batch_size=args.batch_size, shape=args.shape, iters=args.iters, warmup=args.warmup,
                                 amp=args.amp, compile=args.compile, seed=args.seed, cfg_options=args.cfg_options,
                                 onnx=args.onnx, threads=args.threads),
                   results=results)
    paths = common.write_report(args.out_dir, 'benchmark_speed', payload, table, panels, [r['name'] for r in results])
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
