"""A training's full state after an epoch, kept on disk so that a stopped training can go on.

Training the bundled model from scratch takes hours on a laptop, longer than a session or a
battery may last. After every epoch ``core.training.train`` can write everything the next epoch
depends on (weights, optimiser momentum, learning-rate schedule, every random generator, the best
epoch so far) to one file; started again with the same file, it goes on from the epoch after,
and ends with the same checkpoint, bit for bit, as a training that was never stopped (on the
same device with the same number of threads).

The file is read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and
dicts only, so a state file from elsewhere cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic_files import write_atomically
from .errors import OutputError, TreecrownsError

# Bumped when the layout below changes, so that an old file is refused rather than misread.
_FORMAT = 1


def state_path_beside(checkpoint: str | Path) -> Path:
    """Where the training that writes ``checkpoint`` keeps its state: ``<checkpoint>.training-state``."""
    return Path(checkpoint).with_suffix(".training-state")


def history_path_beside(checkpoint: str | Path) -> Path:
    """Where model/train_bundled_model.py writes a finished training's history: ``<checkpoint>.history.json``.

    It is written only when the training ends, so its presence tells a finished training from a stopped one.
    """
    return Path(checkpoint).with_suffix(".history.json")


def save_training_state(path: str | Path, fingerprint: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a crash while writing leaves the previous epoch's file whole."""
    path = Path(path)
    try:
        # Private: the state holds the training images' paths.
        write_atomically(path, lambda name: torch.save({"format": _FORMAT, "fingerprint": fingerprint, **state}, name), 0o600)
    except OSError as exc:
        raise OutputError(f"cannot write the training state {path}: {exc.strerror or exc}") from exc


def load_training_state(path: str | Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The state saved at ``path`` by the same training, or None when there is none.

    Raises:
        TreecrownsError: If the file is unreadable or belongs to another training (other
            settings, images or model), which must not be continued as if it were this one.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or foreign file; its text is about torch
        raise TreecrownsError(
            f"the training state {path} cannot be read: it is damaged or not a training state "
            f"({type(exc).__name__}); delete it to train from the start"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise TreecrownsError(f"{path} is not a training state this version can continue; delete it to train from the start")
    saved = state.get("fingerprint", {})
    differences = sorted(key for key in set(saved) | set(fingerprint) if saved.get(key) != fingerprint.get(key))
    if differences:
        raise TreecrownsError(
            f"{path} holds the state of another training (it differs in: {', '.join(differences)}); "
            "run the same training again to continue it, or delete the file to train from the start"
        )
    return state


def remove_training_state(path: str | Path) -> None:
    """Delete the state once training has finished: there is nothing left to continue."""
    Path(path).unlink(missing_ok=True)
