"""On a CUDA machine with onnxruntime-gpu (tools/gpu_check.sh): fp16 graphs of UperNet (V2, GRN) and Mask R-CNN run on
onnxruntime's CUDA execution provider, and TensorRT's where present, within the export's fp16 tolerances of PyTorch.
On a GPU, fp16 kernels really compute in half precision, which the CPU provider cannot show. Skipped, saying why,
without CUDA or without a GPU build of onnxruntime."""
import pytest
import torch
from deploy.deploy_models import MASK_RCNN_CONFIG, SEG_CONFIG, build, demo_config

ort = pytest.importorskip('onnxruntime', reason='onnxruntime (the deploy extra) is not installed')
pytest.importorskip('onnx', reason='onnx (the deploy extra) is not installed')
PROVIDERS = [p for p in ('CUDAExecutionProvider', 'TensorrtExecutionProvider') if p in ort.get_available_providers()]
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason='needs CUDA (torch sees no GPU); run tools/gpu_check.sh on a GPU machine'),
              pytest.mark.skipif(not PROVIDERS,
                                 reason=f'onnxruntime {ort.__version__} has no CUDA or TensorRT provider '
                                        '(install onnxruntime-gpu in place of onnxruntime)')]


@pytest.mark.parametrize('provider', PROVIDERS)
@pytest.mark.parametrize('config, version, shape', [(SEG_CONFIG, 2, (128, 160)), (MASK_RCNN_CONFIG, 1, (192, 256))])
def test_fp16_graph_on_the_gpu_provider_matches_pytorch(config, version, shape, provider, tmp_path):
    from convnext_dense.deploy.export import export
    result = export(build(demo_config(config, version)), str(tmp_path / 'model.onnx'), shape, dynamic=True,
                    fp16=True, providers=[provider, 'CPUExecutionProvider'])  # raises ParityError beyond tolerance
    assert result.providers[0] == provider
    assert len(result.checks) == 2 and all(check.passed for check in result.checks), result.summary()
