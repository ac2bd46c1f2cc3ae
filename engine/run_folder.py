"""The run folder of an incremental run: where each step's files are, and which steps are finished.

It also decides whether a new invocation may write into it (overwrite, resume or refuse), before
anything is written.

``<output>/step_<k>/ckpt.pth`` (a finished step's checkpoint), ``step_<k>/metrics.json`` (its
evaluation), ``step_<k>/last.pth`` (the latest epoch of a step in training), ``config.yaml``,
``results.json``/``results.md``, ``feature_cache/`` and ``tensorboard/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from utils.config import config_differences, validate_config
from utils.dist import barrier, is_main_process
from utils.errors import ConfigError

__all__ = ["RESUME_IGNORED", "RunFolder"]

#: Config keys that do not change a run's results: ``--resume`` accepts a saved config that differs in them.
RESUME_IGNORED = frozenset({
    "dataset.workers", "dataset.eval_batch_size", "evaluation.vis_per_class", "trainer.save_every_epochs",
    "trainer.feature_cache", "trainer.feature_cache_max_gb",
})


class RunFolder:
    """Paths and states of the steps in ``output`` (a setting of ``num_steps`` steps)."""

    def __init__(self, output: Path, num_steps: int) -> None:
        self.output = Path(output)
        self.num_steps = num_steps

    def step_dir(self, step: int) -> Path:
        """``<output>/step_<k>``."""
        return self.output / f"step_{step}"

    def ckpt(self, step: int) -> Path:
        """The finished step's checkpoint."""
        return self.step_dir(step) / "ckpt.pth"

    def metrics(self, step: int) -> Path:
        """The finished step's evaluation record."""
        return self.step_dir(step) / "metrics.json"

    def finished(self, step: int) -> bool:
        """Checkpoint and evaluation of ``step`` are both there."""
        return self.ckpt(step).is_file() and self.metrics(step).is_file()

    def checkpointed_steps(self) -> list[int]:
        """The steps whose checkpoint is there, in order (what ``--evaluate`` and ``tools/predict.py`` may load)."""
        return [k for k in range(self.num_steps) if self.ckpt(k).is_file()]

    def last_contiguous_step(self) -> int:
        """Highest k with the records of steps 0..k all present (``--step K`` may sit inside a longer run)."""
        last = -1
        while last + 1 < self.num_steps and self.metrics(last + 1).is_file():
            last += 1
        return last

    def clear_from(self, first_step: int) -> None:
        """``--overwrite``: remove the folders of ``first_step`` and every later step, the cache and run tables.

        Results of an old run never mix with the new one; TensorBoard logs go only when the base step reruns.
        """
        if is_main_process():
            for folder in sorted(self.output.glob("step_*")):
                if folder.name.removeprefix("step_").isdigit() and int(folder.name[5:]) >= first_step:
                    shutil.rmtree(folder)
            shutil.rmtree(self.output / "feature_cache", ignore_errors=True)
            for name in ("results.json", "results.md"):  # rebuilt from the step records after each step
                (self.output / name).unlink(missing_ok=True)
            if first_step == 0:
                shutil.rmtree(self.output / "tensorboard", ignore_errors=True)
        barrier()

    def refuse_finished(self, steps: list[int]) -> None:
        """Without ``--resume``/``--overwrite`` a finished step is never trained over."""
        done = [k for k in steps if self.ckpt(k).is_file()]
        if done:
            raise ConfigError(
                f"{self.output} already holds step {done[0]} ({self.ckpt(done[0])}); "
                "pass --resume to continue the run, --overwrite to train again, or another --output"
            )

    def check_resumed_config(self, cfg: dict) -> None:
        """``--resume`` continues the run: its saved config must be ``cfg`` (up to :data:`RESUME_IGNORED`)."""
        saved = self.output / "config.yaml"
        if not saved.is_file():
            return
        try:
            old = yaml.safe_load(saved.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot read the saved config {saved}: {exc}") from None
        try:  # filled with today's defaults and without retired keys, as the config it is compared with
            old = validate_config(old)
        except ConfigError as exc:
            raise ConfigError(f"the saved config {saved} is not valid any more ({exc}); pass --overwrite") from None
        changed = config_differences(old, cfg, RESUME_IGNORED)
        if changed:
            shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
            raise ConfigError(
                f"--resume: {self.output} was run with another config ({saved}): {shown}; resume with the "
                "config it was started with, or pass --overwrite to train again, or another --output"
            )
