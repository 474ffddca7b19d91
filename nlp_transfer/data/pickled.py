"""Read pickled data files without running arbitrary code: an unpickler that knows a few types.

``pickle.load`` calls whatever callable a file names, so a pickle is code. A data file that only
exists as a pickle (scikit-learn's cached 20 Newsgroups, ``20news-bydate_py3.pkz``) is read
here only after its sha256 matched the pinned one, and with :class:`RestrictedUnpickler`, which
resolves only the exact ``(module, name)`` pairs the file is known to hold and refuses every
other one: a file naming ``os.system`` (or anything else) fails before anything is called.
"""

from __future__ import annotations

import io
import pickle
import zlib
from collections.abc import Mapping

import numpy as np


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose ``find_class`` resolves only an allow-list.

    Args:
        file: Binary file object holding the pickle.
        allowed: ``{(module, name): object}``: what each allowed global reference resolves to
            (it may be a safe stand-in, e.g. a plain ``dict`` subclass for a library's class).
    """

    def __init__(self, file, allowed: Mapping[tuple[str, str], object]):
        super().__init__(file)
        self.allowed = dict(allowed)

    def find_class(self, module: str, name: str) -> object:
        """Resolve a global reference of the pickle, if allowed.

        Raises:
            pickle.UnpicklingError: ``module.name`` is not on the allow-list.
        """
        try:
            return self.allowed[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in self.allowed)
            raise pickle.UnpicklingError(
                f"Refusing to load {module}.{name} from a pickled data file: only {allowed} "
                "are allowed. The file is not the one this loader was written for."
            ) from None


class Bunch(dict):
    """Stand-in for ``sklearn.utils.Bunch`` (a dict); scikit-learn itself is never imported."""


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's own ndarray rebuilder, in any version

SKLEARN_CACHE_TYPES: dict[tuple[str, str], object] = {
    ("sklearn.utils", "Bunch"): Bunch,
    ("sklearn.utils._bunch", "Bunch"): Bunch,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
"""What scikit-learn's dataset caches hold: ``Bunch`` dicts of numpy arrays, lists and str."""


def load_restricted(data: bytes, allowed: Mapping[tuple[str, str], object]) -> object:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (call only on verified bytes).

    Raises:
        pickle.UnpicklingError: The pickle names a type that is not allowed, or is corrupt.
    """
    return RestrictedUnpickler(io.BytesIO(data), allowed).load()


def parse_20newsgroups(raw: bytes) -> dict[str, dict[str, list]]:
    """Parse scikit-learn's ``20news-bydate_py3.pkz`` (zlib-compressed pickle) into splits.

    The pickle is ``{"train": Bunch, "test": Bunch}``, each with ``data`` (list of posts,
    headers kept), ``target`` (int64 array), ``target_names`` (the 20 newsgroup names) and
    ``filenames``; it holds only :data:`SKLEARN_CACHE_TYPES`. Call this only on bytes whose
    sha256 was checked.

    Args:
        raw: The ``.pkz`` file's bytes.

    Returns:
        ``{"train": {"text": [...], "label": [...]}, "test": {...}}``, label ids into the
        newsgroup names (``label_names`` of the dataset entry, checked equal here).

    Raises:
        pickle.UnpicklingError: The pickle names a type outside :data:`SKLEARN_CACHE_TYPES`.
        ValueError: The content is not the expected structure.
    """
    cache = load_restricted(zlib.decompress(raw), SKLEARN_CACHE_TYPES)
    if not isinstance(cache, dict) or set(cache) != {"train", "test"}:
        raise ValueError("20 Newsgroups cache: expected a dict with 'train' and 'test'.")
    splits = {}
    for split, bunch in cache.items():
        texts, target = bunch.get("data"), bunch.get("target")
        names = bunch.get("target_names")
        if not (isinstance(texts, list) and all(isinstance(t, str) for t in texts)):
            raise ValueError(f"20 Newsgroups cache: {split} 'data' is not a list of str.")
        if not (isinstance(target, np.ndarray) and target.dtype.kind in "iu"):
            raise ValueError(f"20 Newsgroups cache: {split} 'target' is not an integer array.")
        if len(texts) != len(target) or list(names) != list(NEWSGROUPS):
            raise ValueError(f"20 Newsgroups cache: {split} lengths or label names differ.")
        splits[split] = {"text": texts, "label": [int(t) for t in target]}
    return splits


NEWSGROUPS = (
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.autos",
    "rec.motorcycles",
    "rec.sport.baseball",
    "rec.sport.hockey",
    "sci.crypt",
    "sci.electronics",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
    "talk.politics.mideast",
    "talk.politics.misc",
    "talk.religion.misc",
)
