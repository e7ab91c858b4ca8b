"""Print, as JSON, the param groups that a host config's optimizer gets: run in a fresh interpreter, with or without
`import convnext_dense` first (argv: CONFIG SCOPE [--with-plugin]). The model keeps its random initial weights: the
groups depend on names, shapes and flags only."""
import json
import sys

from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope

config, scope = sys.argv[1:3]
if '--with-plugin' in sys.argv:
    import convnext_dense  # noqa: F401
cfg = Config.fromfile(config)
init_default_scope(scope)
cfg.model.backbone.pop('init_cfg', None)
model = MODELS.build(cfg.model)
names = {id(p): n for n, p in model.named_parameters()}
cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU; the param groups do not depend on it
cfg.optim_wrapper.pop('loss_scale', None)
optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
groups = [dict(lr=g['lr'], weight_decay=g['weight_decay'], params=sorted(names[id(p)] for p in g['params']))
          for g in optimizer.param_groups]
print('groups: ' + json.dumps(sorted(groups, key=lambda g: g['params'][0])))
