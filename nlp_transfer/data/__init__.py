"""Data: built-in offline datasets, user data loading and checking, splits, tokenization."""

from .builtin import BUILTIN_DATASETS, BuiltinDataset, list_builtin_datasets, load_builtin_dataset
from .custom import load_text_classification_dataset, read_table
from .fetch import ChecksumError, DownloadError, PackageFile, UnsafeArchiveError, default_cache_dir
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
    "load_text_classification_dataset",
    "read_table",
    "stratified_split",
]
