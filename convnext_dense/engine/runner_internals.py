"""The private state of mmengine's ``Runner`` that this package reads or writes, behind one adapter.

mmengine offers no public way to pick the checkpoint a resumed run loads before ``Runner.train`` resumes, nor to tell
the Runner that a replacement of its ``load_checkpoint`` has loaded the weights; both go through attributes private to
``Runner`` (mmengine 0.10.x, official and OneDL): ``_resume``, ``_load_from`` and ``_has_loaded``. Nothing else in the
package touches them, so a release that renames them needs one change, here.
"""


def resume_without_checkpoint(runner) -> bool:
    """Whether the run resumes (``resume=True``) without naming the checkpoint to resume from."""
    return bool(runner._resume) and runner._load_from is None


def set_checkpoint_to_resume(runner, path: str) -> None:
    """The checkpoint ``Runner.train`` resumes from (read by ``Runner.load_or_resume``)."""
    runner._load_from = path


def mark_weights_loaded(runner) -> None:
    """Tell the Runner its model's weights are loaded, as its own ``load_checkpoint`` does, so that it does not
    load them again before testing."""
    runner._has_loaded = True
