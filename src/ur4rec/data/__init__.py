"""Loading, preprocessing and splitting interaction data."""

from ur4rec.data.dataset import DATASETS, Dataset, DatasetSpec, load_dataset, preprocess
from ur4rec.data.prepare import open_dataset, prepare_dataset
from ur4rec.data.splits import Prefixes, Split, make_split

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "Prefixes",
    "Split",
    "load_dataset",
    "make_split",
    "open_dataset",
    "prepare_dataset",
    "preprocess",
]
