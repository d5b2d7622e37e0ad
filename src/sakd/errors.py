"""Errors a user can act on. The CLI prints their message (no traceback) and exits with status 2."""


class SakdError(Exception):
    """Base class of every error sakd raises on purpose. Raised in a DataLoader worker, PyTorch
    re-raises it with the worker's traceback as its text: its message is that text's last line."""

    def __str__(self) -> str:
        text = super().__str__()
        if text.startswith("Caught ") and "Original Traceback" in text:  # from a DataLoader worker
            last = text.rstrip().splitlines()[-1]
            return last.split(": ", 1)[1] if ": " in last else last
        return text


class ConfigError(SakdError, ValueError):
    """A configuration value, model name, option or override is wrong."""


class DatasetNotFoundError(SakdError, FileNotFoundError):
    """A data set is not where the configuration says."""


class BadDataError(SakdError):
    """A file of a data set cannot be read (a corrupt or truncated image)."""


class WriteError(SakdError, OSError):
    """A file sakd writes cannot be written (a full disk, a read-only folder); nothing half-written is left."""


class CheckpointError(SakdError):
    """A checkpoint is missing, unreadable or does not fit the model it is loaded into."""


class TrainingDivergedError(SakdError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Preempted(SakdError):
    """A stop signal (SIGTERM/SIGUSR1) ended training after its step and a checkpoint; ``sakd
    train --resume`` continues exactly there. Exit status 75 (EX_TEMPFAIL: try again)."""

    exit_code = 75
