"""WordNet, offline: NLTK's copy when it has one, else one built from Debian's WordNet files.

NLTK cannot read Debian's ``/usr/share/wordnet`` as installed: it wants the files under an NLTK
data root (``<root>/corpora/wordnet/``) plus a ``lexnames`` file, which Debian ships only as the
man page ``lexnames(5WN)``. :func:`provision` copies the database files into the user cache and
derives ``lexnames`` from that man page. :func:`get_wordnet` returns a ready reader, provisioning
on first use, or fails with a message naming both fixes.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

DEBIAN_WORDNET = Path("/usr/share/wordnet")
"""Where Debian's ``wordnet-base`` and ``wordnet-sense-index`` packages put the database."""

DEBIAN_LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")
"""The man page whose table lists the lexicographer files (the content of ``lexnames``)."""

ENV_DATA_DIR = "MEDGR2_NLTK_DATA"
"""Environment override of the NLTK data root medgr2 provisions into."""

REQUIRED_FILES = tuple(
    f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")
) + ("noun.exc", "verb.exc", "adj.exc", "adv.exc", "cntlist.rev", "index.sense")
"""Database files NLTK's WordNet reader opens (plus ``lexnames``, generated); ``index.sense`` comes
from Debian's ``wordnet-sense-index``, the others from ``wordnet-base``."""

OPTIONAL_FILES = ("cntlist", "frames.vrb", "sents.vrb", "sentidx.vrb")

_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_LEX_ROW = re.compile(r"^(\d{2})\t((?:noun|verb|adj|adv)\.\w+)\s*\t")


class WordNetUnavailable(RuntimeError):
    """No WordNet is readable; the message names the fixes."""


def data_root() -> Path:
    """The NLTK data root medgr2 provisions into.

    ``$MEDGR2_NLTK_DATA`` when set, else ``$XDG_CACHE_HOME/medgr2/nltk_data`` (default
    ``~/.cache/medgr2/nltk_data``).
    """
    override = os.environ.get(ENV_DATA_DIR)
    if override:
        return Path(override).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "medgr2" / "nltk_data"


def lexnames_from_man(man_page: Path) -> str:
    """The ``lexnames`` file content (``NN<TAB>name<TAB>category``) parsed from ``lexnames(5WN)``."""
    opener = gzip.open if man_page.suffix == ".gz" else open
    with opener(man_page, "rt", encoding="utf-8", errors="replace") as fh:
        rows = [m.groups() for m in map(_LEX_ROW.match, fh) if m]
    if not rows:
        raise WordNetUnavailable(f"{man_page} holds no lexicographer-file table; is it the lexnames(5WN) page?")
    return "".join(f"{num}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for num, name in rows)


def provision(source: Path = DEBIAN_WORDNET, man_page: Path = DEBIAN_LEXNAMES_MAN,
              root: Path | None = None, *, force: bool = False) -> Path:
    """Build an NLTK-readable WordNet under ``root`` from a Debian-layout folder.

    Args:
        source: A folder holding ``data.noun``, ``index.noun`` ... (Debian: ``/usr/share/wordnet``).
        man_page: The ``lexnames(5WN)`` man page (gzipped or not), from which ``lexnames`` is made.
        root: The NLTK data root to write (default :func:`data_root`).
        force: Rebuild even when a complete copy is already there.

    Returns:
        The NLTK data root (``<root>/corpora/wordnet`` holds the files).
    """
    root = data_root() if root is None else Path(root)
    target = root / "corpora" / "wordnet"
    if not force and all((target / f).is_file() for f in (*REQUIRED_FILES, "lexnames")):
        return root
    missing = [f for f in REQUIRED_FILES if not (source / f).is_file()]
    if missing:
        raise WordNetUnavailable(
            f"{source} is not a WordNet database folder (missing {', '.join(missing)}). " + fixes())
    if not man_page.is_file():
        raise WordNetUnavailable(f"{man_page} is missing: it is needed to write WordNet's lexnames file. " + fixes())
    lexnames = lexnames_from_man(man_page)
    tmp = target.with_name("wordnet.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (*REQUIRED_FILES, *OPTIONAL_FILES):
        if (source / name).is_file():
            shutil.copyfile(source / name, tmp / name)
    (tmp / "lexnames").write_text(lexnames, encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return root


def fixes() -> str:
    """The two ways to make WordNet available, as one sentence."""
    return (
        "Fix: install Debian's WordNet (`apt-get install -y wordnet-base wordnet-sense-index`) and run "
        "`medgr2 setup wordnet`, or install NLTK's copy (`python -m nltk.downloader wordnet` on a machine "
        "with internet, into an NLTK data path)."
    )


def load_reader(root: Path) -> Any:
    """An NLTK ``WordNetCorpusReader`` over ``<root>/corpora/wordnet``.

    ``root`` joins ``nltk.data.path``: NLTK refuses to read corpora outside its data roots.
    """
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():  # "multilingual functions are not available": no OMW, as expected
        warnings.simplefilter("ignore", UserWarning)
        return WordNetCorpusReader(str(Path(root) / "corpora" / "wordnet"), None)


_READER: Any = None


def get_wordnet(*, provision_if_missing: bool = True) -> Any:
    """A WordNet reader: NLTK's own when found, else medgr2's provisioned copy.

    Raises:
        WordNetUnavailable: neither is there and Debian's files are missing too.
    """
    global _READER
    if _READER is not None:
        return _READER
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        _READER = wordnet
        return _READER
    except LookupError:
        pass
    root = data_root()
    if (root / "corpora" / "wordnet" / "lexnames").is_file():
        _READER = load_reader(root)
        return _READER
    if not provision_if_missing or not (DEBIAN_WORDNET / "data.noun").is_file():
        raise WordNetUnavailable("WordNet is not available to NLTK. " + fixes())
    _READER = load_reader(provision())
    return _READER
