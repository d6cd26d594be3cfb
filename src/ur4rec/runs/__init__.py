"""Run folders: their layout, checkpoints, and loading a finished run for inference."""

from ur4rec.runs.layout import BEST, LAST, LOG_FILE, RUN_FILES, read_log, stage_dir
from ur4rec.runs.load import build, load_run, open_run

__all__ = [
    "BEST",
    "LAST",
    "LOG_FILE",
    "RUN_FILES",
    "build",
    "load_run",
    "open_run",
    "read_log",
    "stage_dir",
]
