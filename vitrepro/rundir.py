"""One run's folder, as ``vitrepro run`` writes it (``<results>/<experiment>/runs/<run_id>/``): the names
of its files in one place. Light (no torch): reports and ``collect`` read run folders too.

  ``config.yaml``               the run id, task, command, scale, cell and resolved config
  ``record.json``               the run's record (``experiments/records.py``)
  ``checkpoints/last.ckpt``     the trained network (pre-training), written every interval and at the end
  ``checkpoints/finetuned.ckpt``  the fine-tuned network (the final fit of the Table 4 protocol)
  ``weights.safetensors``       the trained network's weights alone with its architecture (``vitrepro export``:
                                committed for the runs the committed inspection figures draw; no pickle)
  ``logs/metrics.csv``          the step log; ``finetune/`` the fine-tuning logs
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG = "config.yaml"
LAST = "last.ckpt"
FINETUNED = "finetuned.ckpt"
WEIGHTS = "weights.safetensors"


@dataclass(frozen=True)
class RunDir:
    """A run folder; ``path`` need not exist yet."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last(self) -> Path:
        """The pre-trained network (``checkpoints/last.ckpt``)."""
        return self.checkpoints / LAST

    @property
    def finetuned(self) -> Path:
        """The fine-tuned network (``checkpoints/finetuned.ckpt``)."""
        return self.checkpoints / FINETUNED

    @property
    def weights(self) -> Path:
        """The exported weights (``weights.safetensors``: ``vitrepro export``), committed where a figure needs them."""
        return self.path / WEIGHTS

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    def is_run(self) -> bool:
        """True for a folder with a ``config.yaml`` (written when the run starts)."""
        return self.config_file.is_file()

    def read_config(self, need_config: bool = True) -> dict[str, Any]:
        """``config.yaml`` (``{"config": ..., "task": ..., "command": ...}``), read as plain YAML (no tags: a
        ``!!python/...`` tag is refused). Raises ``FileNotFoundError`` when it is missing, ``ValueError``
        naming the file when it is not a YAML mapping (with a ``config`` mapping, when ``need_config``)."""
        import yaml

        try:
            saved = yaml.safe_load(self.config_file.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: no {CONFIG}; expected a run directory written by `vitrepro run` "
                                    f"(results/<experiment>/runs/<run_id>) or a checkpoint file") from None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ValueError(f"{self.config_file}: not a run config ({' '.join(str(e).split())[:160]})") from None
        if not isinstance(saved, dict) or (need_config and not isinstance(saved.get("config"), dict)):
            raise ValueError(f"{self.config_file}: not a run config (expected a mapping with keys config, task, command)")
        return saved

    def checkpoint(self) -> Path:
        """The network the run produced: ``last.ckpt`` (pre-training), else ``finetuned.ckpt`` (a run that
        only fine-tunes), else the exported ``weights.safetensors`` (a fresh clone's committed runs). Raises ``FileNotFoundError`` when ``path`` is not a run folder, or when it has no
        checkpoint, naming what to do: checkpoints are not committed, so a fresh clone's run folders hold
        records and logs only; a run that finished before fine-tuned runs kept one must be trained again."""
        saved = self.read_config(need_config=False)
        for path in (self.last, self.finetuned, self.weights):
            if path.is_file():
                return path
        command = saved.get("command", "vitrepro run ...")
        exp_dir = self.path.parents[1] if len(self.path.parents) > 1 else self.path.parent
        results = exp_dir.parent
        if (self.path / "record.json").is_file() and (self.path / "finetune").is_dir() and saved.get("task") == "finetune":
            raise FileNotFoundError(f"{self.path} has no checkpoint: it finished before fine-tuned runs kept one "
                                    f"(checkpoints/{FINETUNED}); move the folder away and `{command} --results-dir "
                                    f"{results}` trains it again")
        raise FileNotFoundError(f"{self.path} has no checkpoints/{LAST} nor {WEIGHTS} (checkpoints are not committed): "
                                f"`{command}` writes it, with --results-dir {results} to put it here")


__all__ = ["RunDir", "CONFIG", "LAST", "FINETUNED", "WEIGHTS"]
