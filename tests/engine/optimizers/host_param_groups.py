"""Print, as JSON, the param groups that host configs' optimizers get: run in a fresh interpreter, with or without
`import convnext_dense` first (argv: [--with-plugin] SCOPE CONFIG [SCOPE CONFIG ...]; one JSON object, config ->
groups). The models keep their random initial weights: the groups depend on names, shapes and flags only."""
import json
import sys

from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope


def param_groups(config: str, scope: str) -> list:
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
    return sorted(groups, key=lambda g: g['params'][0])


arguments = sys.argv[1:]
if arguments[0] == '--with-plugin':
    import convnext_dense  # noqa: F401
    arguments = arguments[1:]
pairs = list(zip(arguments[::2], arguments[1::2]))
print('groups: ' + json.dumps({config: param_groups(config, scope) for scope, config in pairs}))
