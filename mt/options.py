"""Range checks of constructor arguments, with errors that name the configuration key.

The constructors of the data module and the models check their numbers with :func:`require` as
their first step, so that ``mt fit --data.max_tokens -5`` or ``--model.init_args.dropout 1.5``
fails when the config is turned into objects, before any data is read, with one line naming the
key (``mt`` prints an :class:`OptionError` and exits 2); Python callers get the same error.

(jsonargparse's constrained types, e.g. ``PositiveInt``, would check at parse time but hand the
constructors instances of ``int``/``float`` subclasses, which then end up in the checkpoints'
hyperparameters, and such a checkpoint no longer loads with ``torch.load(weights_only=True)``.)
"""

from __future__ import annotations

from typing import Any

__all__ = ["OptionError", "require"]


class OptionError(ValueError):
    """A bad configuration: a value outside its range (the message starts with the key) or a
    config file that is not valid YAML (the message starts with the file)."""


def require(key: str, value: Any, ok: bool, what: str) -> None:
    """Raise ``OptionError("KEY=VALUE: must be WHAT")`` unless ``ok``.

    Args:
        key: the configuration key as a user writes it, e.g. ``data.max_tokens`` or
            ``model.init_args.dropout``.
        value: the value given.
        ok: the outcome of the check.
        what: the allowed range in words, e.g. ``">= 1"`` or ``"in [0, 1)"``.
    """
    if not ok:
        raise OptionError(f"{key}={value!r}: must be {what}")
