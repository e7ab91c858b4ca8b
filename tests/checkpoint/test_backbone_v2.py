"""ConvNeXt V2 checkpoints in every published layout load into our V2 backbone and give the same numbers.

Layouts, written from the official code (github.com/facebookresearch/ConvNeXt-V2) rather than from our key tables:
- ImageNet fine-tuned classifiers (`convnextv2_{size}_{1k,22k}_{224,384}_ema.pt`): models/convnextv2.py, under `model`:
  `downsample_layers.i.{0,1}`, `stages.i.j.{dwconv,norm,pwconv1,grn.gamma,grn.beta,pwconv2}` with GRN parameters
  shaped (1, 1, 1, C), a final `norm` and a `head`.
- The released FCMAE weights (`convnextv2_{size}_1k_224_fcmae.pt`): the same dense encoder keys with no `norm` and no
  `head` (timm loads them so, "fcmae pretrained weights have no classifier or final norm-layer"; ConvNeXt-V2 issues
  #47 and #65 list their keys).
- Checkpoints of the official FCMAE pre-training code (main_pretrain.py saving models/fcmae.py): the sparse encoder
  under `encoder.` (MinkowskiEngine: `.ln` / `.linear` wrappers, conv `kernel`s shaped (k*k, [in,] out), biases and
  GRN shaped (1, C)) next to `proj`, `mask_token`, `decoder` and `pred`; the official fine-tuning turns them dense
  with utils.remap_checkpoint_keys, whose inverse builds them here.
- timm's `convnextv2_*` models (`stem`, `stages.i.blocks.j.{conv_dw,mlp.fc1,mlp.grn.weight,...}`, `head.norm`).
"""
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_

from convnext_dense import ConvNeXt, load_pretrained
from convnext_dense.models.backbones.convnext import ARCHS

TOL = dict(rtol=0, atol=1e-5)
OUTPUT_NORMS = {f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')}
X = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
FCMAE_TRAINING_NEEDS = ("our loader does not yet read FCMAE pre-training checkpoints: it needs `encoder.` handled as "
                        "`backbone.` is, `.ln`/`.linear` dropped and `.kernel` turned into Conv2d weights "
                        "(see the helper's report)")


def source_model(arch):
    return randomize_(ConvNeXt(arch, version=2)).eval()


def official_classifier(state_dict, head=True):
    """models/convnextv2.py's names: our layout less the per-stage norms, `norm3` as the final `norm`, GRN (1,1,1,C)."""
    official = {}
    for key, value in state_dict.items():
        if re.match(r'norm[012]\.', key) or (not head and key.startswith('norm3.')):
            continue
        if '.grn.' in key:
            value = value.reshape(1, 1, 1, -1)
        official[re.sub(r'^norm3\.', 'norm.', key)] = value
    if head:
        official['head.weight'] = torch.randn(1000, state_dict['norm3.weight'].shape[0])
        official['head.bias'] = torch.randn(1000)
    return {'model': official}


def _sparse_kernel(weight):
    """Inverse of remap_checkpoint_keys: Conv2d weight -> MinkowskiEngine kernel."""
    out_channels, in_channels, size, _ = weight.shape
    if in_channels == 1:  # depthwise: (k*k, C)
        return weight.transpose(3, 2).reshape(out_channels, size * size).permute(1, 0).contiguous()
    return weight.transpose(3, 2).reshape(out_channels, in_channels, size * size).permute(2, 1, 0).contiguous()


def _sparse_entry(key, value):
    """One encoder tensor as models/convnextv2_sparse.py holds it."""
    module, param = key.rsplit('.', 1)
    if re.search(r'(dwconv|downsample_layers\.\d\.1)$', module):  # Minkowski(Depthwise)Convolution
        return (f'{module}.kernel', _sparse_kernel(value)) if param == 'weight' else (key, value.reshape(1, -1))
    if re.search(r'(\.norm|downsample_layers\.\d\.0)$', module):  # MinkowskiLayerNorm wraps nn.LayerNorm as .ln
        return f'{module}.ln.{param}', value
    if re.search(r'pwconv[12]$', module):  # MinkowskiLinear wraps nn.Linear as .linear
        return f'{module}.linear.{param}', value
    if module.endswith('.grn'):  # MinkowskiGRN: (1, C)
        return key, value.reshape(1, -1)
    return key, value


def fcmae_training(state_dict, sparse=True, decoder_dim=64):
    """A checkpoint of the FCMAE pre-training: the encoder (sparse, or dense as in the JAX model definition) under
    `encoder.` (its stem is dense either way), with the decoder, mask token and predictor beside it."""
    checkpoint = {}
    for key, value in official_classifier(state_dict, head=False)['model'].items():
        if sparse and not key.startswith('downsample_layers.0.'):
            key, value = _sparse_entry(key, value)
        checkpoint[f'encoder.{key}'] = value
    dims = state_dict['norm3.weight'].shape[0]
    checkpoint.update({
        'proj.weight': torch.randn(decoder_dim, dims, 1, 1), 'proj.bias': torch.randn(decoder_dim),
        'mask_token': torch.randn(1, decoder_dim, 1, 1),
        'decoder.0.dwconv.weight': torch.randn(decoder_dim, 1, 7, 7), 'decoder.0.dwconv.bias': torch.randn(decoder_dim),
        'decoder.0.pwconv1.weight': torch.randn(4 * decoder_dim, decoder_dim),
        'decoder.0.grn.gamma': torch.randn(1, 1, 1, 4 * decoder_dim),
        'pred.weight': torch.randn(32 * 32 * 3, decoder_dim, 1, 1), 'pred.bias': torch.randn(32 * 32 * 3),
    })
    return {'model': checkpoint, 'optimizer': {}, 'epoch': 1599}


def _stage_outputs(model):
    """The raw stage outputs, before the output norms."""
    x, outs = X, []
    with torch.no_grad():
        for downsample, stage in zip(model.downsample_layers, model.stages):
            x = stage(downsample(x))
            outs.append(x)
    return outs


def _assert_same_outputs(ours, raw_features):
    """Our outputs are the reference's stage outputs through our output norms (whatever the loader started them as:
    the files hold at most the classifier's final norm, which is the loader's policy, tested in test_checkpoint.py)."""
    with torch.no_grad():
        outs = ours.eval()(X)
    for i, (out, feature) in enumerate(zip(outs, raw_features)):
        norm = getattr(ours, f'norm{i}')
        expected = F.layer_norm(feature.permute(0, 2, 3, 1), feature.shape[1:2], norm.weight, norm.bias, norm.eps)
        torch.testing.assert_close(out, expected.permute(0, 3, 1, 2), **TOL)


def _load_and_compare(checkpoint, source, save):
    ours = ConvNeXt(arch=dict(depths=source.depths, dims=source.dims), version=2)
    report = load_pretrained(ours, save(checkpoint))
    assert report.missing == [] and report.unexpected == []
    _assert_same_outputs(ours, _stage_outputs(source))
    return report


@pytest.mark.parametrize('arch', ['atto', 'tiny'])
def test_official_v2_classifier_gives_the_same_outputs(arch, save):
    source = source_model(arch)
    report = _load_and_compare(official_classifier(source.state_dict()), source, save)
    assert report.format == 'official' and sorted(report.dropped_head) == ['head.bias', 'head.weight']


def test_released_fcmae_weights_load_without_norm_or_head(save):
    source = source_model('atto')
    report = _load_and_compare(official_classifier(source.state_dict(), head=False), source, save)
    assert report.format == 'official' and report.dropped_head == []


@pytest.mark.parametrize('sparse', [True, False], ids=['sparse', 'dense'])
def test_fcmae_pretraining_checkpoint_loads_its_encoder(sparse, save):
    source = source_model('atto')
    report = _load_and_compare(fcmae_training(source.state_dict(), sparse), source, save)
    assert report.ignored_non_backbone and all(
        k.startswith(('proj.', 'mask_token', 'decoder.', 'pred.')) for k in report.ignored_non_backbone)


def test_sparse_kernels_invert_the_official_remap():
    """Our test's sparse layout is the one the official fine-tuning reads (utils.remap_checkpoint_keys)."""
    dw, conv = torch.randn(8, 1, 7, 7), torch.randn(16, 8, 2, 2)
    for weight, kernel_shape in ((dw, (49, 8)), (conv, (4, 8, 16))):
        kernel = _sparse_kernel(weight)
        assert kernel.shape == kernel_shape
        size = int(kernel.shape[0]**.5)
        if kernel.ndim == 2:
            dense = kernel.permute(1, 0).reshape(kernel.shape[1], 1, size, size).transpose(3, 2)
        else:
            dense = kernel.permute(2, 1, 0).reshape(kernel.shape[2], kernel.shape[1], size, size).transpose(3, 2)
        torch.testing.assert_close(dense, weight, rtol=0, atol=0)


@pytest.mark.parametrize('arch', ['tiny', 'base', 'large', 'huge'])
@pytest.mark.parametrize('head', [True, False], ids=['classifier', 'fcmae'])
def test_every_size_maps_key_for_key(arch, head, save):
    """The official layout of each size in the configs maps onto our backbone, shape for shape (meta tensors: no
    memory, no compute)."""
    with torch.device('meta'):
        source, ours = ConvNeXt(arch, version=2), ConvNeXt(arch, version=2)
    report = load_pretrained(ours, save(official_classifier(source.state_dict(), head)))
    not_norm = {k for k in ours.state_dict() if not re.match(r'norm\d\.', k)}
    assert report.missing == [] and report.unexpected == [] and set(report.loaded) - OUTPUT_NORMS == not_norm
    assert sum(k.endswith('.grn.gamma') for k in report.loaded) == sum(ARCHS[arch]['depths'])


def _timm():
    return pytest.importorskip('timm', reason='timm is the reference implementation here; not installed (the official '
                                              'stack has no timm)')


def _official_from_timm(state_dict):
    """timm -> official names, the inverse of timm's own checkpoint_filter_fn for the official V2 files."""
    official = {}
    for key, value in state_dict.items():
        key = re.sub(r'^stem\.', 'downsample_layers.0.', key)
        key = re.sub(r'^stages\.(\d)\.downsample\.', r'downsample_layers.\1.', key)
        key = re.sub(r'^stages\.(\d)\.blocks\.', r'stages.\1.', key)
        key = key.replace('.conv_dw.', '.dwconv.').replace('.mlp.fc1.', '.pwconv1.').replace('.mlp.fc2.', '.pwconv2.')
        if '.mlp.grn.' in key:
            key = key.replace('.mlp.grn.weight', '.grn.gamma').replace('.mlp.grn.bias', '.grn.beta')
            value = value.reshape(1, 1, 1, -1)
        key = re.sub(r'^head\.norm\.', 'norm.', key)
        official[re.sub(r'^head\.fc\.', 'head.', key)] = value
    return {'model': official}


@pytest.mark.parametrize('name, arch', [('convnextv2_atto', 'atto'), ('convnextv2_tiny', 'tiny')])
@pytest.mark.parametrize('layout', ['timm', 'official'])
def test_timm_and_official_layouts_give_timm_features(name, arch, layout, save):
    timm = _timm()
    reference = randomize_(timm.create_model(name, pretrained=False)).eval()
    with torch.no_grad():
        features = reference.forward_intermediates(X, intermediates_only=True)
    state_dict = reference.state_dict()
    checkpoint = state_dict if layout == 'timm' else _official_from_timm(state_dict)
    ours = ConvNeXt(arch, version=2)
    report = load_pretrained(ours, save(checkpoint))
    assert report.format == layout and report.missing == [] and report.unexpected == []
    _assert_same_outputs(ours, features)
