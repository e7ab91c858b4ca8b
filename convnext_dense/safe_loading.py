"""mmengine's own checkpoint reads (``--resume``, ``load_from``, tools/test.py, ``Pretrained`` inits) with
``weights_only=True``.

OneDL mmengine's local loader falls back to ``weights_only=False`` (unpickling that can run arbitrary code) with only a
warning when a file holds more than tensors. :func:`install_safe_loader` puts our
:func:`convnext_dense.models.checkpoint.safe_load` in its place for local paths, allowing just the non-tensor objects mmengine
itself saves (message-hub buffers, numpy arrays), so our training checkpoints resume and anything else is refused with
a message saying how to allow it. The same call gives truncated or corrupted files a clear error. To load a trusted
file that needs more: ``--unsafe-load`` (tools/train.py, tools/test.py) or ``CONVNEXT_DENSE_UNSAFE_LOAD=1`` in the
environment (any other tool).
"""
import os
import os.path as osp

from mmengine.runner.checkpoint import CheckpointLoader, get_torch_safe_globals

from .models.checkpoint import safe_load

UNSAFE_LOAD_ENV = 'CONVNEXT_DENSE_UNSAFE_LOAD'
HOW_TO_ALLOW = (f'load it with `--unsafe-load` (tools/train.py, tools/test.py) or with {UNSAFE_LOAD_ENV}=1 in the '
                'environment')


def unsafe_load_allowed() -> bool:
    return os.environ.get(UNSAFE_LOAD_ENV, '').lower() in ('1', 'true', 'yes')


def load_from_local(filename: str, map_location=None) -> dict:
    """mmengine's local-path checkpoint loader, through ``safe_load`` (named as mmengine's, which it logs)."""
    return safe_load(osp.expanduser(filename), weights_only=not unsafe_load_allowed(), map_location=map_location,
                     safe_globals=get_torch_safe_globals(), how_to_allow=HOW_TO_ALLOW)


def install_safe_loader() -> None:
    """Make mmengine read local checkpoints with :func:`load_from_local` (its ``''`` scheme: every local path)."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
