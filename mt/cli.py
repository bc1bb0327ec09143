"""`mt fit|validate|test|predict --config configs/X.yaml`: LightningCLI over the mt modules.

The model is chosen by ``class_path`` (``mt.transformer.TransformerSeq2Seq`` or
``mt.lstm.LSTMSeq2Seq``, short names work too); ``model.init_args.vocab_size`` is linked from
``data.vocab_size`` so the vocabulary size is configured once. Constructor signatures are the
config schema: an unknown key or a value outside a ``Literal`` is an error naming the key.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import lightning.pytorch.loggers as pl_loggers
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

import mt.lstm  # noqa: F401  (registers LSTMSeq2Seq as a Seq2SeqModule subclass)
import mt.transformer  # noqa: F401  (registers TransformerSeq2Seq)
from mt.cluster import (
    CheckpointOnSigterm,
    StepSeededRNG,
    check_checkpoint_file,
    install_atomic_checkpoint_io,
    latest_checkpoint,
)
from mt.corpora import DataError
from mt.data import TranslationDataModule
from mt.module import (
    CheckpointError,
    Seq2SeqModule,
    check_checkpoint_model,
    checkpoint_tokenizer,
)
from mt.options import OptionError
from mt.precision import resolve_precision
from mt.tokenizer import TokenizerError

RUN_ID_FILE = "wandb_run_id"
# --ckpt_path value: resume from the newest checkpoint if there is one, else start a new run.
LAST_OR_NEW = "last_or_new"


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
        id: W&B run id. ``None`` (the default) continues the run whose id is stored in
            ``{save_dir}/wandb_run_id``, or starts a new run and stores its id there, so that a
            resumed or requeued job logs into the same W&B run (``resume="allow"``).
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
        self.reused_run_id = False
        if id is None:
            id, self.reused_run_id = stored_run_id(Path(save_dir))
        super().__init__(
            project=project,
            name=name,
            save_dir=save_dir,
            offline=offline,
            id=id,
            group=group,
            tags=tags,
            log_model=log_model and not offline,
            resume="allow",
        )


def stored_run_id(save_dir: Path) -> tuple[str | None, bool]:
    """The W&B run id stored in ``save_dir``, and whether it was there already.

    Rank 0 creates the file when it is missing (written to a temporary file and renamed, so a
    reader never sees half an id); other ranks only read it (Lightning's loggers log on rank 0).
    """
    path = save_dir / RUN_ID_FILE
    if path.is_file() and (stored := path.read_text().strip()):
        return stored, True
    if rank_zero_only.rank != 0:
        return None, False
    new_id = uuid.uuid4().hex[:16]
    tmp = path.with_name(f".{RUN_ID_FILE}.{os.getpid()}.tmp")
    tmp.write_text(new_id + "\n")
    os.replace(tmp, path)
    return new_id, False


class MTCLI(LightningCLI):
    """LightningCLI with the mt defaults: linked vocabulary size, W&B logger, our own sharding."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size")

    def before_instantiate_classes(self) -> None:
        # trainer.precision null (the small configs): what fits this machine (mt/precision.py).
        config = self.config[self.subcommand] if self.subcommand else self.config
        chosen, note = resolve_precision(config.trainer.precision, config.trainer.accelerator)
        config.trainer.precision = chosen
        if note:
            rank_zero_info(note)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        install_atomic_checkpoint_io(trainer)
        return trainer

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads a --ckpt_path file for its hyperparameters right after parsing:
        # a truncated file must be one clear error, not a zip reader's traceback.
        subcommand = self.config.get("subcommand")
        if subcommand:
            _check_if_file(self.config[subcommand].get("ckpt_path"))
            _check_checkpoint_model(self.config[subcommand])

    def _check_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path last`` (SLURM's hpc checkpoints included) and check the file
        before anything starts, so that a truncated checkpoint is one clear error."""
        config = self.config_init[self.subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path in ("last", LAST_OR_NEW) and self.subcommand == "fit":
            resolved = latest_checkpoint(self.trainer)
            if resolved is not None:
                rank_zero_info(f"[mt] --ckpt_path {ckpt_path}: resuming from {resolved}")
            else:
                _no_checkpoint_to_resume(ckpt_path, self.trainer)
            config["ckpt_path"] = ckpt_path = resolved
        if ckpt_path is None and self.subcommand == "fit":
            for logger in self.trainer.loggers:
                if isinstance(logger, WandbLogger) and logger.reused_run_id:
                    rank_zero_warn(
                        f"[mt] starting a new fit (no --ckpt_path) in {logger.save_dir}, which "
                        f"holds the W&B run id {logger.version} of an earlier run: it will log "
                        "into that W&B run. Pass --ckpt_path last to resume it, or use another "
                        f"save_dir (or delete {Path(str(logger.save_dir)) / RUN_ID_FILE}) for a "
                        "new W&B run."
                    )
        _check_if_file(ckpt_path)
        if (path := _local_ckpt_path(ckpt_path)) is not None:  # e.g. what `last` resolved to
            check_checkpoint_model(path, type(self.model).__qualname__)
        _use_checkpoint_tokenizer(self.datamodule, ckpt_path)

    before_fit = before_validate = before_test = before_predict = _check_ckpt_path


def _no_checkpoint_to_resume(ckpt_path: str, trainer: pl.Trainer) -> None:
    """``--ckpt_path last`` with nothing to resume is an error (it used to start from scratch
    silently); ``--ckpt_path last_or_new`` (job scripts that are requeued) starts a new run."""
    if ckpt_path == LAST_OR_NEW:
        rank_zero_info(f"[mt] --ckpt_path {LAST_OR_NEW}: no checkpoint yet, starting a new run")
        return
    raise CheckpointError(
        f"--ckpt_path last: no checkpoint to resume (no last*.ckpt where the checkpoint callbacks "
        f"save, no hpc_ckpt_*.ckpt in {trainer.default_root_dir}); leave out --ckpt_path to start "
        f"a new run, or pass --ckpt_path {LAST_OR_NEW} to resume when there is a checkpoint and "
        "start a new run otherwise"
    )


def _local_ckpt_path(ckpt_path: Any) -> Path | None:
    """A --ckpt_path that names a local file (not ``last``/``best``/``hpc``/a URL), else None."""
    if isinstance(ckpt_path, str | os.PathLike) and str(ckpt_path) not in {"last", "best", "hpc", LAST_OR_NEW}:
        if "://" not in str(ckpt_path):
            return Path(ckpt_path)
    return None


def _check_if_file(ckpt_path: Any) -> None:
    """check_checkpoint_file for a local --ckpt_path (not ``last``/``best``/``hpc``/a URL)."""
    if (path := _local_ckpt_path(ckpt_path)) is not None:
        check_checkpoint_file(path)


def _check_checkpoint_model(config: Any) -> None:
    """Refuse a --ckpt_path checkpoint whose model class is not mt's or not the config's, before
    LightningCLI imports the class the checkpoint names."""
    path = _local_ckpt_path(config.get("ckpt_path"))
    if path is not None and path.is_file():
        model = config.get("model")
        check_checkpoint_model(path, model.get("class_path") if model is not None else None)


def _use_checkpoint_tokenizer(datamodule: Any, ckpt_path: Any) -> None:
    """Encode the data with the tokenizer a local ``--ckpt_path`` checkpoint carries, so that a
    model is evaluated (or resumed) with its own subwords, not with whatever this machine's
    cache holds."""
    path = _local_ckpt_path(ckpt_path)
    if isinstance(datamodule, TranslationDataModule) and path is not None:
        tokenizer = checkpoint_tokenizer(path)
        if tokenizer is not None:
            datamodule.use_tokenizer(tokenizer, f"the checkpoint {ckpt_path}")


def main(args: list[str] | None = None) -> int:
    """Run the ``mt`` command; 0 on success (the console script passes it to ``sys.exit``).

    Bad input (a missing or malformed corpus file, a bad checkpoint or vocabulary size) exits
    with status 2 and a one-line error; any other failure raises.
    """
    # The data module restores the position inside the epoch (TranslationDataModule.state_dict),
    # which Lightning's check for a resumable *data loader* does not see.
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before")
    try:
        check_config_files(sys.argv[1:] if args is None else args)
        MTCLI(
            Seq2SeqModule,
            TranslationDataModule,
            subclass_mode_model=True,
            trainer_defaults={
                "logger": {"class_path": "mt.cli.WandbLogger"},
                # The data module shards its token-budget batches over ranks itself.
                "use_distributed_sampler": False,
                # Persistent: batch randomness that a resumed run reproduces exactly. A fit
                # stopped by SIGTERM saves a checkpoint and exits 143, not 0.
                "callbacks": [StepSeededRNG(), CheckpointOnSigterm()],
            },
            save_config_kwargs={"overwrite": True},
            args=args,
            auto_configure_optimizers=False,
        )
    except (CheckpointError, DataError, TokenizerError) as err:
        # Bad input (a missing or malformed corpus file, an unusable vocabulary size, a bad
        # checkpoint): the message names the file/line/option; a traceback would add nothing.
        print(f"mt: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except SIGTERMException:
        # Lightning's SIGTERMException is a SystemExit with status 0: the run did not succeed.
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception as err:
        # A constructor's range check (data.max_tokens -5, model.init_args.dropout 1.5): one
        # line naming the key, also where jsonargparse wraps it into its own ValueError.
        if (option_error := _cause(err, OptionError)) is None:
            raise
        print(f"mt: error: {option_error}", file=sys.stderr)
        raise SystemExit(2) from None
    return 0


def check_config_files(args: Sequence[str]) -> None:
    """Read every ``--config``/``-c`` file as YAML before LightningCLI does, so that a syntax
    error names the file, line and column (jsonargparse parses the text and reports it as
    ``"<unicode string>"``).

    Raises:
        OptionError: one line, e.g. ``configs/x.yaml line 3, column 14: did not find expected
            ',' or '}' (while parsing a flow mapping that starts at line 2, column 3)``.
    """
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--config="):
            path = arg.partition("=")[2]
        else:
            continue
        if not os.path.isfile(path):
            continue  # jsonargparse says so, or it is a YAML string rather than a file
        try:
            with open(path, encoding="utf-8") as f:
                yaml.safe_load(f)
        except UnicodeDecodeError as err:
            raise OptionError(f"{path}: not UTF-8 text (byte {err.start + 1})") from None
        except yaml.MarkedYAMLError as err:
            where = f" line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1}"
            context = ""
            if err.context and err.context_mark is not None:
                start = err.context_mark
                context = f" ({err.context} that starts at line {start.line + 1}, column {start.column + 1})"
            raise OptionError(f"{path}{where if err.problem_mark else ''}: {err.problem}{context}") from None
        except yaml.YAMLError as err:
            raise OptionError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None


def _cause(err: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """The first exception of type ``kind`` in the chain of ``err`` (its causes/contexts)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
