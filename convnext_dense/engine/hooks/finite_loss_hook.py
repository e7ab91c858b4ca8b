"""Stop training at a loss that is NaN or infinite, before the broken weights reach a checkpoint.

Nothing in mmengine checks the loss: a NaN goes through backward into every weight, and the run keeps going (and saving
checkpoints) for days with nothing to learn. This hook raises :class:`NonFiniteLossError` naming the iteration, the
non-finite loss terms and the batch's images. It runs before the checkpoint hook, so the last checkpoint on disk still
holds finite weights to resume from.

Under AMP (``AmpOptimWrapper``) the loss scaler skips a step whose gradients overflow fp16 and lowers the scale, which
leaves the weights untouched; a few such steps in a row are normal, so up to ``amp_patience`` consecutive non-finite
losses are only logged there. In fp32 the first non-finite loss has already reached the weights: the run stops at once.
All ranks agree on the verdict, so a distributed run stops everywhere instead of hanging.
"""
import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from ...utils import first_n

MAX_IMAGES_NAMED = 8


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class CheckFiniteLossHook(Hook):
    priority = 'VERY_HIGH'  # before CheckpointHook (VERY_LOW) saves this iteration's weights

    def __init__(self, amp_patience: int = 10):
        self.amp_patience = amp_patience
        self._streak = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not outputs or 'loss' not in outputs:
            return
        finite = torch.isfinite(torch.as_tensor(outputs['loss'])).all().float().reshape(1)
        if dist.is_distributed():
            dist.all_reduce(finite, op='min')
        if finite.item() == 1:
            self._streak = 0
            return
        self._streak += 1
        where = f'iteration {runner.iter + 1}'
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            where += f' (epoch {runner.epoch + 1})'
        values = {name: torch.as_tensor(value).detach() for name, value in outputs.items()}
        terms = ', '.join(f'{name}={value.float().mean().item():g}' for name, value in values.items()
                          if not torch.isfinite(value).all())
        if getattr(runner.optim_wrapper, 'loss_scaler', None) is not None and self._streak <= self.amp_patience:
            runner.logger.warning(f'non-finite loss at {where} ({terms or "on another rank"}); the AMP loss scaler '
                                  f'skips this step ({self._streak} in a row, stopping after {self.amp_patience})')
            return
        in_a_row = f' for {self._streak} iterations in a row' if self._streak > 1 else ''
        raise NonFiniteLossError(
            f'the training loss is not finite at {where}{in_a_row}: {terms or "on another rank"}. Stopped before '
            f'this iteration is checkpointed; the last checkpoint holds finite weights{_last_checkpoint(runner)}. '
            f'The batch held {_images(data_batch)}. Usual fixes: a lower learning rate or a longer warmup, gradient '
            'clipping (optim_wrapper.clip_grad=dict(max_norm=...)), fp32 instead of AMP, or removing a broken '
            'annotation; then continue with tools/train.py --resume')


def _last_checkpoint(runner) -> str:
    path = runner.message_hub.get_info('last_ckpt')
    return f' ({path})' if path else ' (none was saved yet)'


def _images(data_batch) -> str:
    samples = (data_batch or {}).get('data_samples') or []
    paths = [sample.metainfo.get('img_path', '?') for sample in samples if hasattr(sample, 'metainfo')]
    return first_n(paths, MAX_IMAGES_NAMED) if paths else 'no image paths'
