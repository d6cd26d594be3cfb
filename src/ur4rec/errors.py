"""User-facing errors: the CLI prints their message and exits non-zero, no traceback."""


class Ur4recError(Exception):
    """A problem the user can fix (bad input, missing file, unknown name)."""


class DataError(Ur4recError):
    """A data file is missing, malformed or does not match what was expected."""


class ChecksumError(DataError):
    """A downloaded file does not match its pinned SHA-256 digest."""


class NonFiniteScoresError(Ur4recError):
    """A model produced NaN or infinite scores; such scores must never count as hits."""
