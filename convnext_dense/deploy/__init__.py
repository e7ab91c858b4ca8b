"""ONNX export of the detectors, segmentors and backbones of our configs, and running the exported graphs.

Standard ONNX only (default domain, opset 17+): preprocessing is inside each graph, so a graph takes the image as
OpenCV reads it. Nothing here is imported by ``import convnext_dense``; onnx and onnxruntime are the ``deploy`` extra
(``pip install convnext-dense[deploy]``), imported through :func:`require`.

- :mod:`.export`: build the graph of a model (:mod:`.segmentor_graph`, :mod:`.detector_graph`), export it, write its
  metadata and check it against PyTorch in onnxruntime;
- :mod:`.graph_checks`: one LayerNormalization per ConvNeXt norm, no decomposed norms, default domain, onnx.checker;
- :mod:`.fp16`: half-precision graphs keeping the numerically fragile ops in fp32, and an fp16 overflow probe;
- :mod:`.runtime`: an onnxruntime session with the graph's metadata, and a model mmengine's test loop can run.
"""
import importlib

EXTRA_HINT = 'pip install "convnext-dense[deploy]" (or pip install onnx onnxruntime)'


def require(name: str):
    """Import ``onnx`` or ``onnxruntime``, or fail with the install command."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(f'ONNX export and inference need {name}, which is not installed ({error}); '
                          f'install it with: {EXTRA_HINT}') from error
