"""`mt fit|validate|test|predict --config configs/X.yaml`: LightningCLI over the mt modules.

Every run writes into one run folder (:mod:`mt.runs`), chosen by ``--run_dir`` (or
``--trainer.default_root_dir``): the default root dir of the trainer, the checkpoints of every
``ModelCheckpoint`` without a ``dirpath``, the ``save_dir`` of every logger and the resolved
config. Without it ``mt fit`` starts ``runs/{config name}/version_{N}`` (the first ``--config``
other than ``base.yaml`` names it), resuming (``--ckpt_path FILE``) continues in the checkpoint's
run folder, ``--ckpt_path last`` in the newest version holding a checkpoint, and ``mt
validate|test|predict --ckpt_path FILE`` log into the checkpoint's run folder beside the fit's
logs (``{subcommand}/version_{N}``), never over them.

The model is chosen by ``class_path`` (``mt.models.transformer.TransformerSeq2Seq`` or
``mt.models.lstm.LSTMSeq2Seq``, short names work too); ``model.init_args.vocab_size`` is linked from
``data.vocab_size`` so the vocabulary size is configured once. Constructor signatures are the
config schema: an unknown key or a value outside a ``Literal`` is an error naming the key.
"""

from __future__ import annotations

import importlib
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
from jsonargparse import ArgumentError, Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

import mt.models.lstm  # noqa: F401  (registers RNNSeq2Seq and its LSTMSeq2Seq as Seq2SeqModule subclasses)
import mt.models.transformer  # noqa: F401  (registers TransformerSeq2Seq)
from mt.cluster import (
    CheckpointOnSigterm,
    StepSeededRNG,
    check_checkpoint_file,
    install_atomic_checkpoint_io,
    latest_checkpoint,
)
from mt.commands import (
    COMMANDS,
    add_benchmark_jobs,
    command_parsers,
    one_line,
    run_command,
)
from mt.data.corpora import DataError
from mt.data.datamodule import TranslationDataModule
from mt.data.tokenizer import TokenizerError
from mt.models.module import (
    CheckpointError,
    NonFiniteLossError,
    Seq2SeqModule,
    check_checkpoint_model,
    checkpoint_tokenizer,
    read_checkpoint,
)
from mt.options import OptionError
from mt.precision import resolve_precision
from mt.runs import (
    RunDirError,
    checkpoints_in,
    latest_version_dir,
    new_version_dir,
    run_dir_of,
)

RUN_ID_FILE = "wandb_run_id"
# --ckpt_path value: resume from the newest checkpoint if there is one, else start a new run.
LAST_OR_NEW = "last_or_new"
#: Root of the default run folders: ``{RUNS_ROOT}/{config name}/version_{N}``.
RUNS_ROOT = Path("runs")
#: The run folder rank 0 chose, for the processes that Lightning's DDP launcher starts after it
#: (they inherit the environment and must write into the same folder, not pick a new version).
RUN_DIR_ENV = "MT_RUN_DIR"
#: The shared config that a config in the same folder is layered over (see :func:`with_base_config`).
BASE_CONFIG = "base.yaml"


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


class SaveRunConfig(SaveConfigCallback):
    """Saves the resolved config into the run folder: ``config.yaml`` for ``fit``,
    ``config-{subcommand}.yaml`` for the others (a test never replaces the fit's config)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, save_to_log_dir=False, **kwargs)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        stage = getattr(stage, "value", stage)  # a TrainerFn ("fit", "test", ...)
        name = "config.yaml" if stage == "fit" else f"config-{stage}.yaml"
        path = Path(trainer.default_root_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, path, skip_none=False, overwrite=True, multifile=False)


class MTCLI(LightningCLI):
    """LightningCLI with the mt defaults: linked vocabulary size, W&B logger, our own sharding,
    one run folder per run."""

    run_dir: Path | None = None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size")
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="Folder of this run: checkpoints, logs and the resolved config (default: "
            "runs/{config name}/version_{N} for a new fit, the checkpoint's run folder with "
            "--ckpt_path FILE). A folder that holds another run's checkpoints is refused "
            "unless --ckpt_path resumes it.",
        )

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """fit/validate/test/predict, and the other jobs listed beside them in ``mt --help``
        (``mt.cli.main`` hands their command lines to :func:`mt.commands.run_command`)."""
        super()._add_subcommands(parser, **kwargs)
        subcommands = parser._subcommands_action
        parsers = command_parsers(jobs=False)
        for name, sub in parsers.items():
            subcommands.add_subcommand(name, sub, help=sub.description.strip().splitlines()[0])
        add_benchmark_jobs(parsers["benchmark"])

    def _use_run_dir(self, subcommand: str) -> None:
        """Choose the run folder and point the trainer, every logger and every checkpoint
        callback without a ``dirpath`` into it (see the module docstring)."""
        config = self.config[subcommand]
        self.run_dir = choose_run_dir(subcommand, config)
        apply_run_dir(config, self.run_dir, subcommand)
        # Lightning's DDP launcher starts the other ranks later with this environment.
        os.environ[RUN_DIR_ENV] = str(self.run_dir)
        rank_zero_info(f"[mt] run folder: {self.run_dir}")

    def before_instantiate_classes(self) -> None:
        # --trainer.precision null: what fits this machine (mt/precision.py).
        config = self.config[self.subcommand] if self.subcommand else self.config
        chosen, note = resolve_precision(config.trainer.precision, config.trainer.accelerator)
        config.trainer.precision = chosen
        if note:
            rank_zero_info(note)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        install_atomic_checkpoint_io(trainer)
        return trainer

    def after_fit(self) -> None:
        """One line naming the best score and its checkpoint, then the run folder."""
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.monitor and callback.best_model_path:
                score = callback.best_model_score
                value = f"{float(score):.2f}" if score is not None else "n/a"
                rank_zero_info(f"[mt] best {callback.monitor} = {value}: {callback.best_model_path}")
                break
        rank_zero_info(f"[mt] run folder: {self.run_dir}")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads a --ckpt_path file for its hyperparameters right after parsing:
        # a truncated file must be one clear error, not a zip reader's traceback.
        subcommand = self.config.get("subcommand")
        if subcommand:
            _check_if_file(self.config[subcommand].get("ckpt_path"))
            _check_checkpoint_model(self.config[subcommand])
            self._use_run_dir(subcommand)

    def _parse_ckpt_path(self) -> None:
        """Lightning's: the model is built with the ``--ckpt_path`` checkpoint's hyperparameters.
        Added: an option the checkpoint predates gets the value it was trained with (the model
        class's ``checkpoint_defaults``), not today's default, so that ``mt test --ckpt_path``
        evaluates an older checkpoint as it was trained."""
        super()._parse_ckpt_path()
        subcommand = self.config.get("subcommand")
        path = _local_ckpt_path(self.config[subcommand].get("ckpt_path")) if subcommand else None
        model = self.config[subcommand].get("model") if path is not None else None
        model_cls = _class_of(model)
        if path is None or not path.is_file() or model_cls is None or model.get("init_args") is None:
            return
        saved = read_checkpoint(path, mmap=True).get("hyper_parameters", {})
        for name, old in getattr(model_cls, "checkpoint_defaults", {}).items():
            if name not in saved and name in model.init_args:
                model.init_args[name] = old

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
def config_name(config: Namespace) -> str:
    """The name of a run's configs: the first ``--config`` other than ``base.yaml``, else the
    model class (``TransformerSeq2Seq``)."""
    for path in config.get("config") or []:
        name = Path(str(getattr(path, "relative", path))).name
        if name != BASE_CONFIG:
            return Path(name).stem
    model = config.get("model")
    class_path = getattr(model, "class_path", None) if model is not None else None
    return str(class_path).rsplit(".", 1)[-1] if class_path else "mt"


def choose_run_dir(subcommand: str, config: Namespace) -> Path:
    """The run folder of this command (rules in the module docstring).

    Raises:
        RunDirError: ``mt fit`` without ``--ckpt_path`` into a folder that holds checkpoints, or
            several processes started at once (srun, torchrun) without ``--run_dir``.
    """
    if inherited := os.environ.get(RUN_DIR_ENV):  # a rank that Lightning's launcher started
        return Path(inherited)
    ckpt_path = config.get("ckpt_path")
    explicit = config.get("run_dir") or config.trainer.get("default_root_dir")
    if explicit:
        run_dir = Path(explicit)
        if subcommand == "fit" and ckpt_path is None and (found := checkpoints_in(run_dir)):
            raise RunDirError(
                f"--run_dir {run_dir} holds the checkpoints of another run ({found[0]}): resume "
                "it with --ckpt_path last (or a checkpoint file), or start a new run in another "
                "folder (another --run_dir, or none for runs/{config name}/version_N)"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    if (ckpt_file := _local_ckpt_path(ckpt_path)) is not None:
        return run_dir_of(ckpt_file)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        raise RunDirError(
            "several processes started at once (srun, torchrun) cannot agree on a new run "
            "folder: pass --run_dir (scripts/slurm/train.sbatch passes runs/{config}/slurm-{job id})"
        )
    root = RUNS_ROOT / config_name(config)
    if subcommand == "fit" and ckpt_path in ("last", LAST_OR_NEW) and (latest := latest_version_dir(root)):
        return latest
    return new_version_dir(root)


def _class_of(spec: Any) -> type | None:
    """The class named by a parsed ``class_path`` spec, or None."""
    class_path = getattr(spec, "class_path", None) if isinstance(spec, Namespace) else None
    if not class_path:
        return None
    module, _, name = str(class_path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def apply_run_dir(config: Namespace, run_dir: Path, subcommand: str) -> None:
    """Point the trainer, its loggers and its checkpoint callbacks into ``run_dir``.

    Loggers write their files into the run folder (``save_dir``); CSV and TensorBoard loggers
    under ``{subcommand}/version_{N}`` (a new version for every command, never an earlier one's
    file). ``ModelCheckpoint`` callbacks without a ``dirpath`` save into ``run_dir/checkpoints``.
    """
    trainer = config.trainer
    trainer.default_root_dir = str(run_dir)
    loggers = trainer.get("logger")
    for spec in loggers if isinstance(loggers, list) else [loggers]:
        cls = _class_of(spec)
        if cls is None or spec.get("init_args") is None:
            continue
        init_args = spec.init_args
        if issubclass(cls, pl_loggers.CSVLogger | pl_loggers.TensorBoardLogger):
            init_args.save_dir, init_args.name, init_args.version = str(run_dir), subcommand, None
        elif "save_dir" in init_args:
            init_args.save_dir = str(run_dir)
            if "name" in init_args and init_args.name is None:  # W&B's run name
                init_args.name = f"{run_dir.parent.name}/{run_dir.name}"
    for spec in trainer.get("callbacks") or []:
        cls = _class_of(spec)
        if cls is not None and issubclass(cls, ModelCheckpoint) and spec.get("init_args") is not None:
            if spec.init_args.get("dirpath") is None:
                spec.init_args.dirpath = str(run_dir / "checkpoints")


def with_base_config(args: list[str]) -> list[str]:
    """``args`` with ``--config DIR/base.yaml`` inserted before the first ``--config DIR/X.yaml``
    whose folder holds a ``base.yaml`` (unless a base config is given already).

    The shipped per-model configs hold only what differs between models; the trainer, loggers,
    callbacks and data settings they share are in ``configs/base.yaml``. ``mt fit --config
    configs/transformer-small.yaml`` is therefore ``mt fit --config configs/base.yaml --config
    configs/transformer-small.yaml`` (LightningCLI merges several ``--config`` in order).
    """
    configs = [
        (i, a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else ""))
        for i, a in enumerate(args)
        if a in ("-c", "--config") or a.startswith("--config=")
    ]
    if not configs or any(Path(path).name == BASE_CONFIG for _, path in configs):
        return args
    for i, path in configs:
        base = Path(path).parent / BASE_CONFIG
        if base.is_file():
            return [*args[:i], "--config", str(base), *args[i:]]
    return args


def main(args: list[str] | None = None) -> int:
    """Run the ``mt`` command; 0 on success (the console script passes it to ``sys.exit``).

    Bad input (an unknown subcommand, option or config key, a missing or malformed corpus file,
    a bad checkpoint or vocabulary size, a run folder that holds another run) exits with status 2
    and a one-line error; a training loss that turns NaN or infinite exits with status 1 and one
    line naming the global step; any other failure raises.
    """
    # The data module restores the position inside the epoch (TranslationDataModule.state_dict),
    # which Lightning's check for a resumable *data loader* does not see.
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before")
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in COMMANDS:  # translate, evaluate, compare, benchmark, download
        return run_command(argv[0], argv[1:])
    if args is None:
        # The command line itself (LightningCLI warns when given both; Lightning's DDP launcher
        # starts the other ranks with sys.argv, base config included).
        sys.argv[1:] = with_base_config(sys.argv[1:])
    else:
        args = with_base_config(list(args))
    inherited_run_dir = os.environ.get(RUN_DIR_ENV)
    strict = {"exit_on_error": False}
    try:
        check_config_files(sys.argv[1:] if args is None else args)
        MTCLI(
            Seq2SeqModule,
            TranslationDataModule,
            subclass_mode_model=True,
            trainer_defaults={
                "logger": {"class_path": "mt.cli.WandbLogger"},
                # Lightning's default is None, which mt reads as "choose for the machine":
                # float32 unless a config or --trainer.precision says otherwise.
                "precision": "32-true",
                # The data module shards its token-budget batches over ranks itself.
                "use_distributed_sampler": False,
                # Persistent: batch randomness that a resumed run reproduces exactly. A fit
                # stopped by SIGTERM saves a checkpoint and exits 143, not 0.
                "callbacks": [StepSeededRNG(), CheckpointOnSigterm()],
            },
            save_config_callback=SaveRunConfig,
            parser_kwargs={**strict, **{name: strict for name in LightningCLI.subcommands()}},
            args=args,
            auto_configure_optimizers=False,
        )
    except ArgumentError as err:
        # An unknown subcommand, option or config key, or a value of the wrong type: one line
        # naming it (jsonargparse's own message), not the usage text.
        print(f"mt: error: {one_line(str(err))}", file=sys.stderr)
        raise SystemExit(2) from None
    except (CheckpointError, DataError, TokenizerError, RunDirError) as err:
        # Bad input (a missing or malformed corpus file, an unusable vocabulary size, a bad
        # checkpoint, a run folder in use): the message names the file/line/option; a traceback
        # would add nothing.
        print(f"mt: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except NonFiniteLossError as err:
        # Not bad input but a failed run: one line naming the step (the traceback would only
        # show Lightning's training loop), exit status 1.
        print(f"mt: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
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
    finally:
        if inherited_run_dir is None:
            os.environ.pop(RUN_DIR_ENV, None)
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
