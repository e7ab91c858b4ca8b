"""On a CUDA machine (tools/gpu_check.sh): the real configs train a step at their real image sizes under AMP fp16 and
bf16 with mmcv's CUDA ops, our backbone equals timm's and mmpretrain's on CUDA, and channels_last, with_cp and compile
give the plain path's outputs and gradients. Skipped without CUDA: nothing here can run on a CPU."""
import copy
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import import_mmpretrain_convnext, randomize_

from convnext_dense import ConvNeXt, load_pretrained

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason='needs CUDA (torch sees no GPU); run tools/gpu_check.sh on a GPU machine')]
ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ['configs/cascade_rcnn/convnext_t_3x.py', 'configs/cascade_rcnn/convnext_b_3x.py',
           'configs/mask_rcnn/convnext_t_3x.py', 'configs/upernet/convnext_t_160k_ade20k.py']
TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture
def exact_fp32():
    """TF32 would make fp32 comparisons on Ampere+ differ by far more than 1e-4."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def mmcv_devices(monkeypatch):
    """The devices mmcv's NMS and RoIAlign kernels were called on."""
    ext = importlib.import_module('mmcv._ext')
    seen = {}
    for name in ('nms', 'roi_align_forward', 'roi_align_backward'):
        original = getattr(ext, name)

        def record(*args, _name=name, _original=original, **kwargs):
            seen.setdefault(_name, set()).add(args[0].device.type)
            return _original(*args, **kwargs)

        monkeypatch.setattr(ext, name, record)
    return seen


# bf16 for UperNet only: mmcv's CUDA RoIAlign has no bfloat16 kernel (mmcv 2.3.6 on an H200: NotImplementedError
# "roi_align_forward_cuda_kernel" not implemented for 'BFloat16'), so the detectors train under fp16 AMP, their
# configs' default.
AMP_CASES = [(config, 'float16') for config in CONFIGS] + [('configs/upernet/convnext_t_160k_ade20k.py', 'bfloat16')]


@pytest.mark.parametrize('config, dtype', AMP_CASES)
def test_real_config_trains_a_step_under_amp(config, dtype, mmcv_devices):
    from mmengine.optim import build_optim_wrapper

    import convnext_dense.analysis.benchmark as common
    from convnext_dense.analysis.synthetic_batches import synthetic_batch
    cfg = common.load_benchmark_config(str(ROOT / config), {})
    device = torch.device('cuda')
    shape = common.image_shape(cfg, None)
    model = common.build_model(cfg, device).train()
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    wrapper_cfg.update(type='AmpOptimWrapper', dtype=dtype)
    if dtype == 'bfloat16':
        wrapper_cfg.pop('loss_scale', None)
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
    stem = model.backbone.downsample_layers[0][0].weight
    stem_grads = []
    stem.register_post_accumulate_grad_hook(lambda p: stem_grads.append(p.grad.detach().float().norm().item()))
    batch = synthetic_batch(cfg, 2, shape, np.random.default_rng(0))
    log_vars = model.train_step(batch, optim_wrapper)
    assert log_vars and all(torch.isfinite(torch.as_tensor(v)).all() for v in log_vars.values()), log_vars
    assert stem_grads and np.isfinite(stem_grads[0]) and stem_grads[0] > 0, 'no gradient reached the stem'
    if common.config_task(cfg) == 'detection':
        assert mmcv_devices == {'nms': {'cuda'}, 'roi_align_forward': {'cuda'}, 'roi_align_backward': {'cuda'}}


def test_backbone_equals_mmpretrain_on_cuda(tmp_path, exact_fp32):
    reference = randomize_(import_mmpretrain_convnext()(arch='tiny', out_indices=(0, 1, 2, 3),
                                                        gap_before_final_norm=False))
    reference.eval()  # mmpretrain's ConvNeXt.train() returns None, so .eval() cannot be chained
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in reference.state_dict().items()}}, path)
    ours = ConvNeXt('tiny')
    report = load_pretrained(ours, str(path))
    assert report.missing == [] and report.unexpected == []
    x = torch.randn(2, 3, 224, 320, device='cuda')
    with torch.no_grad():
        expected, outs = reference.cuda()(x), ours.cuda().eval()(x)
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, **TOL)


def test_backbone_equals_timm_on_cuda(tmp_path, exact_fp32):
    timm = pytest.importorskip('timm', reason='timm is the reference here; install it (requirements-dev)')
    reference = randomize_(timm.create_model('convnext_tiny', pretrained=False, features_only=True)).eval()
    path = tmp_path / 'timm.pth'
    torch.save(reference.state_dict(), path)
    ours = ConvNeXt('tiny')
    assert load_pretrained(ours, str(path)).missing == []
    x = torch.randn(2, 3, 224, 320, device='cuda')
    with torch.no_grad():
        features, outs = reference.cuda()(x), ours.cuda().eval()(x)
    for out, feature in zip(outs, features):  # timm has no per-stage norms: ours start as identity LayerNorms
        expected = F.layer_norm(feature.permute(0, 2, 3, 1), feature.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)
        torch.testing.assert_close(out, expected, **TOL)


@pytest.mark.parametrize('option', [dict(channels_last=True), dict(with_cp=True), dict(compile=True),
                                    dict(channels_last=True, compile=True)])
def test_speed_and_memory_options_give_the_plain_outputs_and_gradients(option, exact_fp32):
    torch.manual_seed(0)
    plain = randomize_(ConvNeXt('tiny', drop_path_rate=0.0)).cuda().train()
    other = ConvNeXt('tiny', drop_path_rate=0.0, **option).cuda().train()
    other.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 256, 320, device='cuda')
    results = []
    for model in (plain, other):
        outs = model(x)
        sum(out.float().square().mean() for out in outs).backward()
        results.append(([o.detach() for o in outs], {n: p.grad for n, p in model.named_parameters()}))
    (outs, grads), (outs_other, grads_other) = results
    for out, out_other in zip(outs, outs_other):
        torch.testing.assert_close(out_other, out, **TOL)
    assert grads.keys() == grads_other.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grads_other[name], grad, rtol=1e-3, atol=1e-4, msg=name)
