"""Check, before anything is built, that a config's neck and heads read what its ConvNeXt backbone returns.

A hand-written config that puts ConvNeXt under a neck or head with another backbone's channels fails deep in the first
forward pass with a conv-shape traceback; one that returns a stage nothing reads trains, until DDP stops on the
unused output norm. :func:`check_backbone_fit` finds both from the config alone and names the field and the value
to set.
"""
import logging

import torch
from mmengine.logging import print_log

from ..models.backbones.convnext import ConvNeXt
from ..utils.config_tree import plain
from .readers import HostConfigError, Output, host_value, readers, scope_of

BACKBONE_KEYS = ('arch', 'version', 'out_indices')


def check_backbone_fit(cfg) -> None:
    """Raise :class:`HostConfigError` when a field that a neck or head reads from our ConvNeXt disagrees with its
    outputs, or when an output stage is read by nothing. Configs with other backbones pass untouched."""
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or {}
    if backbone.get('type') not in ('ConvNeXt', ConvNeXt):
        return
    scope = scope_of(cfg)
    with torch.device('meta'):
        convnext = ConvNeXt(**{k: backbone[k] for k in BACKBONE_KEYS if k in backbone})
    stages = convnext.out_indices
    outputs = [Output(s, c, st) for s, c, st in zip(stages, convnext.out_channels, convnext.out_strides)]
    try:
        found = readers(model, scope)
    except HostConfigError as error:
        if 'it is not known which outputs it reads' not in str(error):
            raise
        print_log(f'channel check skipped: {error}', logger='current', level=logging.WARNING)
        return
    identity = {p: p for p in range(len(outputs))}
    read = set()
    for reader in found:
        positions = reader.rule.reads(reader.cfg, len(outputs))
        beyond = [p for p in positions if not 0 <= p < len(outputs)]
        if beyond:
            raise HostConfigError(f'{reader.where} ({reader.type}) reads backbone output {beyond[0]}, but '
                                  f'model.backbone.out_indices={stages} returns {len(outputs)} outputs')
        read.update(positions)
        for key, value in reader.rule.fields(reader.cfg, len(outputs), outputs, identity).items():
            actual = plain(host_value(scope, reader.cfg, key))
            if actual != value:
                raise HostConfigError(
                    f'{reader.where}.{key} is {actual}, but ConvNeXt({_describe(backbone)}) returns '
                    f'{_channels(outputs)}; set --cfg-options {reader.where}.{key}={_option(value)}')
    unread = [stages[p] for p in range(len(outputs)) if p not in read]
    if unread:
        wanted = tuple(s for s in stages if s not in unread)
        raise HostConfigError(
            f'model.backbone.out_indices={stages} returns stage(s) {tuple(unread)} that no neck or head reads '
            f'({", ".join(f"{r.where} ({r.type})" for r in found)}): their output norms get no gradient and DDP '
            f'stops on them. Set model.backbone.out_indices={wanted} and the readers\' fields to match '
            '(tools/swap_backbone.py HOST_CONFIG writes a config that does)')


def _describe(backbone: dict) -> str:
    return ', '.join(f'{k}={backbone[k]!r}' for k in BACKBONE_KEYS if k in backbone) or "arch='tiny'"


def _channels(outputs) -> str:
    return ', '.join(f'stage {o.stage}: {o.channels} channels' for o in outputs)


def _option(value) -> str:
    """A value as ``--cfg-options`` takes it (no spaces)."""
    return str(value).replace(' ', '')
