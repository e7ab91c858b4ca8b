"""The recipe table that swap_backbone applies to other hosts holds the values of our own configs (which follow the
official ConvNeXt and ConvNeXt V2 recipes)."""
import pytest
from conftest import REPO
from mmengine.config import Config

import convnext_dense  # noqa: F401
from convnext_dense.host_configs.recipes import DROP_PATH_RATES, SMALL_ARCH_DROP_PATH_RATE, recipe

SHORT = dict(tiny='t', small='s', base='b', large='l', xlarge='xl', huge='h')
CONFIGS = {('mmdet', 1): 'mask_rcnn/convnext_{}_3x.py', ('mmdet', 2): 'mask_rcnn/convnextv2_{}_3x.py',
           ('mmseg', 1): 'upernet/convnext_{}_160k_ade20k.py', ('mmseg', 2): 'upernet/convnextv2_{}_160k_ade20k.py'}


@pytest.mark.parametrize('scope, version, arch', [(scope, version, arch) for (scope, version), rates
                                                  in DROP_PATH_RATES.items() for arch in rates])
def test_recipe_is_our_config(scope, version, arch):
    cfg = Config.fromfile(REPO / 'configs' / CONFIGS[(scope, version)].format(SHORT[arch]))
    chosen = recipe(scope, version, arch)
    assert chosen.official and cfg.model.backbone.arch == arch
    assert cfg.model.backbone.drop_path_rate == chosen.drop_path_rate
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert (paramwise.decay_rate, paramwise.decay_type) == (chosen.decay_rate, chosen.decay_type)
    assert (cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.optimizer.weight_decay) == \
        (chosen.lr, chosen.weight_decay)


def test_sizes_without_a_published_dense_recipe_say_so():
    chosen = recipe('mmdet', 2, 'atto')
    assert not chosen.official and chosen.drop_path_rate == SMALL_ARCH_DROP_PATH_RATE
    assert 'our choice' in chosen.source
