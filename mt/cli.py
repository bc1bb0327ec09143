"""`mt fit|validate|test|predict --config configs/X.yaml`: LightningCLI over the mt modules.

The model is chosen by ``class_path`` (``mt.transformer.TransformerSeq2Seq`` or
``mt.lstm.LSTMSeq2Seq``, short names work too); ``model.init_args.vocab_size`` is linked from
``data.vocab_size`` so the vocabulary size is configured once. Constructor signatures are the
config schema: an unknown key or a value outside a ``Literal`` is an error naming the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch.loggers as pl_loggers
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

import mt.lstm  # noqa: F401  (registers LSTMSeq2Seq as a Seq2SeqModule subclass)
import mt.transformer  # noqa: F401  (registers TransformerSeq2Seq)
from mt.data import TranslationDataModule
from mt.module import Seq2SeqModule


def wandb_api_key_configured() -> bool:
    """True when wandb could log online without asking: a key in the environment or netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


class WandbLogger(pl_loggers.WandbLogger):
    """Weights & Biases logger that never blocks or prompts.

    With no API key configured (``WANDB_API_KEY`` or ``wandb login``) it logs offline into
    ``save_dir`` and says so in one line; ``wandb sync`` uploads such a run later. ``WANDB_MODE``
    (``offline``/``disabled``) is honoured as wandb documents it.

    Args:
        project: W&B project.
        name: run name shown in W&B (default: W&B's generated name).
        save_dir: where wandb writes its files.
        offline: force offline logging; ``None`` decides from the presence of an API key.
        id: W&B run id to resume; a requeued job passes the same id to continue the same run.
        group: W&B run group (e.g. to group seeds).
        tags: W&B tags.
        log_model: upload checkpoints as W&B artifacts (online only).
    """

    def __init__(
        self,
        project: str = "mt",
        name: str | None = None,
        save_dir: str = "runs",
        offline: bool | None = None,
        id: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        log_model: bool = False,
    ) -> None:
        mode = os.environ.get("WANDB_MODE", "")
        if offline is None:
            offline = mode != "disabled" and not wandb_api_key_configured()
            if offline and mode != "offline":
                rank_zero_info(
                    f"[mt] W&B: no API key configured, logging offline to {save_dir}/wandb "
                    "(`wandb login` to log online, `wandb sync` to upload this run)"
                )
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            project=project,
            name=name,
            save_dir=save_dir,
            offline=offline,
            id=id,
            group=group,
            tags=tags,
            log_model=log_model and not offline,
        )


class MTCLI(LightningCLI):
    """LightningCLI with the mt defaults: linked vocabulary size, W&B logger, our own sharding."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size")


def main(args: list[str] | None = None) -> Any:
    return MTCLI(
        Seq2SeqModule,
        TranslationDataModule,
        subclass_mode_model=True,
        trainer_defaults={
            "logger": {"class_path": "mt.cli.WandbLogger"},
            # The data module shards its token-budget batches over ranks itself.
            "use_distributed_sampler": False,
        },
        save_config_kwargs={"overwrite": True},
        args=args,
        auto_configure_optimizers=False,
    )


if __name__ == "__main__":
    main()
