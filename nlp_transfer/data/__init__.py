"""Data: built-in offline datasets, and a user's labelled data through one pipeline
(:mod:`.pipeline`: read -> check -> encode labels -> split)."""

from .builtin import BUILTIN_DATASETS, BuiltinDataset, list_builtin_datasets, load_builtin_dataset
from .fetch import ChecksumError, DownloadError, PackageFile, UnsafeArchiveError, default_cache_dir
from .pipeline import load_problem_dataset, load_text_classification_dataset
from .read import read_table
from .splits import stratified_split

__all__ = [
    "BUILTIN_DATASETS",
    "BuiltinDataset",
    "ChecksumError",
    "DownloadError",
    "PackageFile",
    "UnsafeArchiveError",
    "default_cache_dir",
    "list_builtin_datasets",
    "load_builtin_dataset",
    "load_problem_dataset",
    "load_text_classification_dataset",
    "read_table",
    "stratified_split",
]
