"""The backbone's own behaviour: shapes, strides, drop path, freezing, checkpointing, bad input."""
import math

import pytest
import torch

from convnext_dense import ConvNeXt
from convnext_dense.models.backbones.convnext import ARCHS, LayerNorm2d

SMALL_ARCHS = ['atto', 'femto', 'pico', 'nano', 'tiny']
BIG_ARCHS = ['small', 'base', 'large', 'xlarge', 'huge']


@pytest.mark.parametrize('version', [1, 2])
@pytest.mark.parametrize('arch', SMALL_ARCHS)
@pytest.mark.parametrize('size', [(64, 64), (65, 97), (33, 50)])
def test_output_shapes_and_strides(arch, version, size):
    model = ConvNeXt(arch, version=version).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    assert model.out_strides == (4, 8, 16, 32)
    assert model.out_channels == ARCHS[arch]['dims']
    for out, stride, dim in zip(outs, model.out_strides, ARCHS[arch]['dims']):
        assert out.shape == (2, dim, math.ceil(size[0] / stride), math.ceil(size[1] / stride))


@pytest.mark.parametrize('arch', BIG_ARCHS)
def test_big_archs_build_with_paper_sizes(arch):
    with torch.device('meta'):
        model = ConvNeXt(arch)
    params = sum(p.numel() for p in model.parameters())
    # ImageNet classifiers of the paper minus the 1000-way head (dims[-1] * 1001 parameters), plus 3 output norms.
    paper = {'small': 50.2e6, 'base': 88.6e6, 'large': 197.8e6, 'xlarge': 350.2e6, 'huge': 660.3e6}[arch]
    expected = paper - ARCHS[arch]['dims'][-1] * 1001 + 2 * sum(ARCHS[arch]['dims'][:3])
    assert abs(params - expected) / expected < 0.01


def test_version_2_has_grn_and_no_layer_scale():
    v2 = ConvNeXt('atto', version=2)
    v1 = ConvNeXt('atto', version=1)
    assert v2.stages[0][0].grn is not None and v2.stages[0][0].gamma is None
    assert v1.stages[0][0].grn is None and torch.all(v1.stages[0][0].gamma == 1e-6)


def test_out_indices_subset_and_negative():
    model = ConvNeXt('atto', out_indices=(-1, 1)).eval()
    assert model.out_indices == (1, 3)
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [80, 320]
    assert not hasattr(model, 'norm0') and hasattr(model, 'norm3')


def test_stages_after_the_last_output_are_not_built():
    model = ConvNeXt('atto', out_indices=(0, 1))
    assert len(model.stages) == 2 and len(model.downsample_layers) == 2
    out = model(torch.randn(1, 3, 64, 64))
    sum(o.sum() for o in out).backward()
    assert all(p.grad is not None for p in model.parameters())  # no unused parameters for DDP


def test_drop_path_is_linear_over_all_blocks():
    model = ConvNeXt('tiny', drop_path_rate=0.4)
    rates = [block.drop_path_rate for stage in model.stages for block in stage]
    assert len(rates) == 18
    assert rates == pytest.approx(torch.linspace(0, 0.4, 18).tolist())


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    model = ConvNeXt('atto', drop_path_rate=0.9)
    x = torch.randn(8, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x)[-1], model(x)[-1])
    model.eval()
    assert torch.equal(model(x)[-1], model(x)[-1])


@pytest.mark.parametrize('frozen_stages', [1, 2, 4])
def test_frozen_stages_have_no_grads_and_stay_in_eval(frozen_stages):
    model = ConvNeXt('atto', frozen_stages=frozen_stages, drop_path_rate=0.1)
    model.train()
    frozen = [model.downsample_layers[i] for i in range(frozen_stages)] + \
        [model.stages[i] for i in range(frozen_stages)] + [getattr(model, f'norm{i}') for i in range(frozen_stages)]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == (0 if frozen_stages == 4 else len(trainable))
    if frozen_stages < 4:
        assert model.stages[frozen_stages].training
        sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
        for module in frozen:
            assert all(p.grad is None for p in module.parameters())
        assert all(p.grad is not None for p in model.stages[frozen_stages].parameters())


def test_with_cp_gives_identical_gradients():
    torch.manual_seed(0)
    plain = ConvNeXt('atto', drop_path_rate=0.)
    checkpointed = ConvNeXt('atto', with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for model in (plain, checkpointed):
        model.train()
        sum((o**2).mean() for o in model(x)).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6, msg=name)


def test_layer_norm_2d_matches_channel_layer_norm():
    norm = LayerNorm2d(8)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(2, 8, 5, 7)
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (8, ), norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(norm(x), expected.permute(0, 3, 1, 2))


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='tinyy'), "unknown arch 'tinyy'"),
    (dict(arch=dict(depths=[1, 1, 1], dims=[8, 8, 8])), '4 positive depths and dims'),
    (dict(arch=dict(depths=[1, 1, 1, 1])), 'dict(depths=[...], dims=[...])'),
    (dict(out_indices=(0, 4)), 'out_indices must be stage indices in -4..3'),
    (dict(out_indices=(1, -3)), 'distinct stages'),
    (dict(out_indices=()), 'non-empty'),
    (dict(version=3), 'version must be 1 or 2'),
    (dict(frozen_stages=5), 'frozen_stages must be in -1..4'),
    (dict(drop_path_rate=1.0), 'drop_path_rate must be in [0, 1)'),
    (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth')), 'either pretrained or init_cfg'),
])
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)').replace('[', r'\[')
                       .replace(']', r'\]').replace('.', r'\.')):
        ConvNeXt(**{'arch': 'atto', **kwargs})


def test_wrong_input_channels_name_the_fix():
    model = ConvNeXt('atto')
    with pytest.raises(ValueError,
                       match=r'expects input of shape \(N, 3, H, W\), got \(1, 4, 32, 32\); set in_channels'):
        model(torch.randn(1, 4, 32, 32))
    assert ConvNeXt('atto', in_channels=4)(torch.randn(1, 4, 32, 32))[0].shape == (1, 40, 8, 8)


def test_builds_from_mmdet_and_mmseg_registries_without_mmpretrain():
    import subprocess
    import sys
    # mmdet's own model registry imports mmpretrain.models when it is installed (its ReID preprocessor), so the
    # mmpretrain check comes before mmdet's registry is used.
    code = ("import sys, convnext_dense\n"
            "from mmengine.registry import MODELS\n"
            "MODELS.build(dict(type='ConvNeXt', arch='atto'))\n"
            "assert 'mmpretrain.models' not in sys.modules, 'mmpretrain.models was imported'\n"
            "from mmdet.registry import MODELS as D\nfrom mmseg.registry import MODELS as S\n"
            "for reg in (D, S):\n"
            "    m = reg.build(dict(type='ConvNeXt', arch='atto'))\n"
            "    assert type(m).__module__ == 'convnext_dense.models.backbones.convnext', type(m)\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith('ok'), result.stderr[-2000:]
