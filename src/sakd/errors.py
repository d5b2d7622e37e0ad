"""Errors a user can act on. The CLI prints their message (no traceback) and exits with status 2."""


class SakdError(Exception):
    """Base class of every error sakd raises on purpose."""


class ConfigError(SakdError, ValueError):
    """A configuration value, model name, option or override is wrong."""


class DatasetNotFoundError(SakdError, FileNotFoundError):
    """A data set is not where the configuration says."""


class CheckpointError(SakdError):
    """A checkpoint is missing, unreadable or does not fit the model it is loaded into."""


class TrainingDivergedError(SakdError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Preempted(SakdError):
    """A stop signal (SIGTERM/SIGUSR1) ended training after its step and a checkpoint; ``sakd
    train --resume`` continues exactly there. Exit status 75 (EX_TEMPFAIL: try again)."""

    exit_code = 75
