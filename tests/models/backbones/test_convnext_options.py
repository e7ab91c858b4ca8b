"""The backbone's execution options compute the plain path's function, and its normalizations survive fp16.

Weights are randomized (conftest.randomize_) so layer scales, GRN and norms all matter, and drop path is on: with
the same seed every option must draw the same drop masks, checkpoint recomputation included.
"""
import pytest
import torch
from conftest import randomize_

from convnext_dense import ConvNeXt
from convnext_dense.models.backbones.convnext import GRN, LayerNorm2d

FP16_MAX = torch.finfo(torch.float16).max


def twins(version: int, **options):
    """A plain atto ConvNeXt and one with ``options``, holding the same random weights."""
    plain = randomize_(ConvNeXt('atto', version=version, drop_path_rate=0.2))
    other = ConvNeXt('atto', version=version, drop_path_rate=0.2, **options)
    other.load_state_dict(plain.state_dict())
    return plain.train(), other.train()


def run(model, x: torch.Tensor, seed: int = 0):
    """Outputs, input gradient and parameter gradients of a fixed random projection of all outputs."""
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)
    outs = model(x)
    generator = torch.Generator().manual_seed(1)
    loss = sum((out.float() * torch.randn(out.shape, generator=generator)).sum() for out in outs)
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [out.detach() for out in outs], x.grad, {n: p.grad for n, p in model.named_parameters()}


def assert_same(a, b, rtol=1e-4, atol=1e-4):
    outs_a, x_grad_a, grads_a = a
    outs_b, x_grad_b, grads_b = b
    for i, (out_a, out_b) in enumerate(zip(outs_a, outs_b)):
        torch.testing.assert_close(out_b, out_a, rtol=rtol, atol=atol, msg=f'output {i}')
    torch.testing.assert_close(x_grad_b, x_grad_a, rtol=rtol, atol=atol, msg='input gradient')
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        scale = grads_a[name].abs().max().item()
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=rtol, atol=atol * max(scale, 1), msg=name)


@pytest.mark.parametrize('version', [1, 2])
def test_channels_last_matches_plain(version):
    plain, channels_last = twins(version, channels_last=True)
    stem_formats = {}

    def record_format(name):
        def hook(module, inputs, out):
            stem_formats[name] = out.is_contiguous(memory_format=torch.channels_last)
        return hook

    plain.downsample_layers[0][0].register_forward_hook(record_format('plain'))
    channels_last.downsample_layers[0][0].register_forward_hook(record_format('channels_last'))
    x = torch.randn(2, 3, 64, 96)
    expected, result = run(plain, x), run(channels_last, x)
    assert stem_formats == {'plain': False, 'channels_last': True}, 'the convolutions should run channels_last'
    # outputs are plain NCHW whatever the option: mmcv's RoIAlign reads raw NCHW memory
    assert all(out.is_contiguous() for out in result[0] + expected[0])
    assert_same(expected, result)


def count_block_calls(model) -> list:
    calls = [0]

    def hook(*_):
        calls[0] += 1

    for stage in model.stages:
        for block in stage:
            block.register_forward_pre_hook(hook)
    return calls


@pytest.mark.parametrize('version', [1, 2])
def test_with_cp_recomputes_blocks_and_gives_identical_gradients(version):
    plain, checkpointed = twins(version, with_cp=True)
    num_blocks = sum(len(stage) for stage in plain.stages)
    plain_calls, cp_calls = count_block_calls(plain), count_block_calls(checkpointed)
    x = torch.randn(2, 3, 64, 96)
    expected, result = run(plain, x), run(checkpointed, x)
    # Every block ran again in backward (so its activations were not kept), with the same drop-path masks.
    assert plain_calls[0] == num_blocks and cp_calls[0] == 2 * num_blocks
    assert_same(expected, result, rtol=0, atol=1e-6)

    cp_calls[0] = 0
    with torch.no_grad():
        checkpointed(x)
    assert cp_calls[0] == num_blocks, 'without grad there is nothing to recompute'


@pytest.mark.parametrize('version', [1, 2])
def test_bf16_autocast_stays_finite_and_close_to_fp32(version):
    model = randomize_(ConvNeXt('atto', version=version)).train()
    x = torch.randn(2, 3, 64, 96)
    expected = run(model, x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        result = run(model, x)
    for i, (out, ref) in enumerate(zip(result[0], expected[0])):
        assert torch.isfinite(out).all(), f'output {i} not finite under bf16'
        assert ((out.float() - ref).norm() / ref.norm()).item() < 0.05, f'output {i}'
    for name, grad in result[2].items():
        ref = expected[2][name]
        assert torch.isfinite(grad).all(), f'{name}: gradient not finite under bf16'
        cosine = torch.nn.functional.cosine_similarity(grad.float().flatten(), ref.flatten(), dim=0).item()
        assert cosine > 0.98, f'{name}: bf16 gradient direction off (cosine {cosine:.3f})'


def naive_layer_norm_2d(x, weight, bias, eps):
    """The official channels-first LayerNorm: mean and variance written out, squares in the input dtype."""
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    return weight[:, None, None] * (x - mean) / torch.sqrt(var + eps) + bias[:, None, None]


def test_layer_norm_2d_in_fp16_survives_activations_whose_squares_overflow():
    norm = randomize_(LayerNorm2d(64, eps=1e-6))
    x = torch.randn(2, 64, 8, 8) * 2000  # representable in fp16, but x**2 ~ 4e6 > 65504
    assert x.abs().max() < FP16_MAX < (x**2).max()
    expected = norm(x)

    half = LayerNorm2d(64, eps=1e-6).half()
    half.load_state_dict(norm.state_dict())
    result = half(x.half())
    assert result.dtype == torch.float16 and torch.isfinite(result).all()
    torch.testing.assert_close(result.float(), expected, rtol=1e-2, atol=1e-2)

    # The hand-written version is right in fp32 and wrong in fp16: its variance overflows to inf.
    weight, bias = norm.weight.detach(), norm.bias.detach()
    torch.testing.assert_close(naive_layer_norm_2d(x, weight, bias, norm.eps), expected, rtol=1e-4, atol=1e-4)
    naive = naive_layer_norm_2d(x.half(), weight.half(), bias.half(), norm.eps)
    assert (naive.float() - expected).abs().max() > 1, 'the fp16 overflow this test guards against did not happen'


def test_grn_in_fp16_survives_feature_maps_whose_norm_overflows():
    grn = randomize_(GRN(8))
    x = torch.randn(1, 48, 48, 8) * 3000  # channels-last; the spatial L2 norm is ~144000 > 65504
    assert torch.linalg.vector_norm(x, dim=(1, 2)).min() > FP16_MAX
    expected = grn(x)

    half = GRN(8).half()
    half.load_state_dict(grn.state_dict())
    result = half(x.half())
    assert result.dtype == torch.float16 and torch.isfinite(result).all()
    torch.testing.assert_close(result.float(), expected, rtol=1e-2, atol=1e-2 * expected.abs().max().item())

    # The official GRN takes the norm in the input dtype: inf in fp16, and inf / mean(inf) is NaN.
    norm = torch.linalg.vector_norm(x.half(), dim=(1, 2), keepdim=True)
    naive = x.half() + half.gamma * (x.half() * (norm / (norm.mean(dim=-1, keepdim=True) + half.eps))) + half.beta
    assert not torch.isfinite(naive).all(), 'the fp16 overflow this test guards against did not happen'


def test_compile_matches_plain_and_deep_copies_follow_their_own_weights():
    # aot_eager traces through dynamo and autograd like inductor does, without minutes of C++ codegen on CPU.
    # V2 only: its block has V1's convolutions and norm plus GRN, and each version takes a minute to compile on a CPU.
    plain, compiled = twins(2, compile=dict(backend='aot_eager'))
    x = torch.randn(2, 3, 64, 64)
    assert_same(run(plain, x), run(compiled, x))
    import copy
    clone = copy.deepcopy(compiled).eval()
    with torch.no_grad():
        for param in clone.parameters():
            param.mul_(0.5)
        assert not torch.allclose(clone(x)[-1], compiled.eval()(x)[-1])
