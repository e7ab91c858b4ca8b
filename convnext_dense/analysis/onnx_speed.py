"""onnxruntime against PyTorch eager on the same graph: export a model (fp32, fixed size) and time both; and the
fixed-shape graph against a dynamic-shape export of the same model in onnxruntime, on the same image.

The eager side runs the very module that was exported (preprocessing, network and post-processing, as
:func:`~.export.build_graph` wraps it) on the same input, so both sides compute the same outputs; the export's own
parity check has compared those before anything is timed. Both sides get the same number of CPU threads and the
benchmarks' one timing loop (:func:`~.benchmark.time_steps`).
"""
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from .benchmark import time_steps


def time_onnx_vs_eager(model: nn.Module, shape: Sequence[int], warmup: int, iters: int,
                       threads: Optional[int] = None, opset: int = 17, out_dir: Optional[str] = None) -> dict:
    """Export ``model`` (eval, with its ``dataset_meta``) at ``shape`` to a temporary file and time the graph in
    onnxruntime's CPUExecutionProvider and the exported module in PyTorch eager, ``threads`` threads each (default:
    torch's current count), then a dynamic-shape export in onnxruntime on the same image. Returns ``onnx_*`` result
    keys: times, medians (seconds), the ratios ORT / eager and fixed / dynamic."""
    from ..deploy.export import build_graph, check_input, export, model_task
    from ..deploy.runtime import OnnxModel
    threads = int(threads or torch.get_num_threads())
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            path = Path(tmp) / 'model.onnx'
            start = time.perf_counter()
            exported = export(model, str(path), shape, opset=opset)
            export_s = time.perf_counter() - start
            graph = OnnxModel(str(path), threads=threads)
            module = build_graph(model, model_task(model))[0]
            x = check_input(tuple(shape), None)
            image = torch.from_numpy(x)
            cpu = torch.device('cpu')

            def eager(inputs):
                with torch.no_grad():
                    module(inputs)

            eager_times = time_steps(eager, lambda: image, warmup, iters, cpu)
            ort_times = time_steps(graph.run, lambda: x, warmup, iters, cpu)
            export(model, str(Path(tmp) / 'dynamic.onnx'), shape, dynamic=True, opset=opset)
            dynamic = OnnxModel(str(Path(tmp) / 'dynamic.onnx'), threads=threads)
            dynamic_times = time_steps(dynamic.run, lambda: x, warmup, iters, cpu)
    finally:
        torch.set_num_threads(previous)
    eager_s, ort_s = statistics.median(eager_times), statistics.median(ort_times)
    dynamic_s = statistics.median(dynamic_times)
    return dict(onnx_threads=threads, onnx_export_s=export_s, onnx_opset=opset, onnx_precision='fp32',
                onnx_parity=[check.describe() for check in exported.checks],
                onnx_eager_times_s=eager_times, onnx_eager_median_s=eager_s,
                onnx_ort_times_s=ort_times, onnx_ort_median_s=ort_s, onnx_ort_over_eager=ort_s / eager_s,
                onnx_dynamic_times_s=dynamic_times, onnx_dynamic_median_s=dynamic_s,
                onnx_fixed_over_dynamic=ort_s / dynamic_s)
