"""Reading checkpoint files safely: ``torch.load`` weights-only by default, ``.safetensors``, Hugging Face
``save_pretrained`` folders, and the tensors out of their ``state_dict`` / ``model`` wrappers, with errors that say what
went wrong and what to do. Every loader of this package (backbone, whole model, mmengine's own reads through
:mod:`convnext_dense.patches`) reads through here."""
import pickle
import re
import zipfile
from pathlib import Path
from typing import Dict, Sequence

import torch

WRAPPER_KEYS = ('state_dict', 'model', 'module', 'state_dict_ema')
STRIPPED_PREFIXES = ('module.', '_orig_mod.')
# What Hugging Face's save_pretrained writes, in order of preference.
HF_WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
PRETRAINED_HOW_TO_ALLOW = ("load it with weights_only=False (for a backbone: init_cfg=dict(type='Pretrained', "
                           'checkpoint=..., weights_only=False))')


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or that does not fit the model."""


def safe_load(path: str, weights_only: bool = True, map_location='cpu', safe_globals: Sequence = (),
              how_to_allow: str = PRETRAINED_HOW_TO_ALLOW) -> dict:
    """``torch.load`` with ``weights_only=True`` by default and errors that say what went wrong and what to do.

    ``safe_globals``: the non-tensor classes and functions a weights-only load may rebuild (mmengine's own checkpoints
    need a few); ``how_to_allow``: how the caller's user loads a trusted file that needs more.
    """
    if re.match(r'^[a-z]+://', str(path)):
        raise CheckpointError(f'{path}: checkpoints are not downloaded (no network at run time); download it yourself '
                              'and pass the local path')
    if not Path(path).is_file():
        raise FileNotFoundError(f'checkpoint not found: {path}. Put the file there, or train without it '
                                '(e.g. --cfg-options model.backbone.init_cfg=None)')
    if str(path).endswith('.safetensors'):
        return load_safetensors(path, map_location)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        disallowed = re.search(r'Unsupported global: GLOBAL (\S+)|but got <class \'([^\']+)\'>', str(exc))
        if disallowed is None:
            raise CheckpointError(f'{path}: cannot be read; it is truncated, corrupted or not a PyTorch checkpoint '
                                  f'({str(exc).strip().splitlines()[-1][:200]})') from exc
        raise CheckpointError(
            f'{path}: refused to load: the file holds a Python object ({disallowed.group(1) or disallowed.group(2)}) '
            'beyond tensors, and '
            f'unpickling it can run code. If you trust its source, {how_to_allow}') from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f'{path}: cannot be read; it is truncated, corrupted or not a PyTorch checkpoint '
                              f'({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""})') from exc


def resolve_weights_file(path: str) -> str:
    """``path``, or for a folder saved by Hugging Face's ``save_pretrained`` the weights file in it."""
    if not Path(path).is_dir():
        return str(path)
    weights = next((Path(path) / name for name in HF_WEIGHT_FILES if (Path(path) / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f'{path}: a folder without {" or ".join(HF_WEIGHT_FILES)}; give a checkpoint file, or '
                              'the folder of a Hugging Face model saved with save_pretrained')
    return str(weights)


def load_safetensors(path: str, map_location='cpu') -> Dict[str, torch.Tensor]:
    """A ``.safetensors`` file, read with safetensors (it holds tensors only, so there is nothing to trust)."""
    try:
        from safetensors.torch import load_file
    except ImportError as error:
        raise CheckpointError(f'{path}: reading .safetensors files needs the safetensors package (pip install '
                              'safetensors)') from error
    try:
        return load_file(str(path), device=str(map_location))
    except Exception as exc:  # safetensors raises its own SafetensorError for damaged files
        raise CheckpointError(f'{path}: cannot be read; it is truncated, corrupted or not a safetensors file '
                              f'({type(exc).__name__}: {exc})') from exc


def unwrap_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint, out of its ``state_dict``/``model``/... wrappers, without ``module.`` prefixes."""
    state_dict = checkpoint
    while isinstance(state_dict, dict) and not _is_tensor_dict(state_dict):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(state_dict.get(k), dict)), None)
        if wrapper is None:
            raise CheckpointError('no state_dict found in the checkpoint; its top-level keys are '
                                  f'{list(state_dict)[:8]}')
        state_dict = state_dict[wrapper]
    state_dict = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    for prefix in STRIPPED_PREFIXES:
        state_dict = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}
    return state_dict


def _is_tensor_dict(d: dict) -> bool:
    return any(isinstance(v, torch.Tensor) for v in d.values())
