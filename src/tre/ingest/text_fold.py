"""Text folding for matching identifiers in clinical notes: case- and accent-insensitive words.

Invariant: `fold` maps text to a form in which "LÉONARD" and "leonard" are equal, and
whole-word helpers split on the same word boundaries everywhere in free-text redaction.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from functools import cache
from pathlib import Path

LANGUAGES = ("nl", "fr", "en")


@cache
def _fold_table() -> dict[int, str]:
    """Lower case without accents, one character for one character (offsets are kept)."""
    table: dict[int, str] = {}
    for code in range(0x3000):
        char = chr(code)
        base = unicodedata.normalize("NFD", char)[:1].lower()[:1] or char
        if base != char:
            table[code] = base
    table[0x2019] = "'"  # typographic apostrophe
    return table


def fold(text: str) -> str:
    """`text` in lower case without accents, with every character at its own offset."""
    return text.translate(_fold_table())


WORD = re.compile(r"\w+")


def split_words(text: str) -> tuple[str, ...]:
    return tuple(WORD.findall(fold(text)))


@cache
def stop_words(language: str | None = None) -> frozenset[str]:
    """spaCy's stop words of one language, or of Dutch, French and English, folded.

    They are plain word lists shipped with spaCy: no model is loaded.
    """
    if language is None:
        return frozenset().union(*(stop_words(lang) for lang in LANGUAGES))
    # The word-list module alone: importing the package `spacy.lang.<lang>` would build
    # a whole language pipeline (seconds) to read a set literal.
    spacy = importlib.util.find_spec("spacy")
    assert spacy is not None and spacy.origin is not None, "spaCy comes with presidio-analyzer"
    path = Path(spacy.origin).parent / "lang" / language / "stop_words.py"
    spec = importlib.util.spec_from_file_location(f"_tre_stop_words_{language}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(fold(w) for w in module.STOP_WORDS)


def words_of(text: str) -> tuple[str, ...]:
    return tuple(text.split())
