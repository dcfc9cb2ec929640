"""Text from file tags, paths and queries made safe to show: anyone can write a tag, so a title may hold control
characters, a right-to-left override, lone surrogates, markdown or markup. `clean` is for any output (terminal,
playlist files, JSON for people); `markdown_literal` additionally makes a string show as itself in Markdown (the
app), so a title like `![x](http://host/pixel.png)` stays text and never becomes an image or a link."""
from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls except tab and newline, DEL, and the bidirectional embeddings, overrides and isolates that
# make "evil\u202eexe.txt" show as "eviltxt.exe"
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
REPLACEMENT = "\ufffd"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&])")
# The app's Markdown turns bare "http://…", "www.…" and "name@host" in text into links, escaped or not (found by
# tests/test_hostile.py in Chromium); an invisible WORD JOINER inside each breaks the pattern, not the reading
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?=@)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def clean(text: object, limit: int | None = None, one_line: bool = False) -> str:
    """`text` as a string without control or direction-changing characters (each shown as �), newlines kept unless
    `one_line`, cut to `limit` characters with an ellipsis."""
    if text is None:
        return ""
    s = unicodedata.normalize("NFC", str(text))
    if one_line:
        s = re.sub(r"[\r\n\t]+", " ", s)
    s = _UNSAFE.sub(REPLACEMENT, s)
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 1, 0)] + "…"
    return s


def markdown_literal(text: object, limit: int | None = 300) -> str:
    """`text` cleaned, on one line, with every Markdown (and Streamlit directive) character escaped and a word
    joiner inside anything an autolink would start from: it renders as these characters, never as a link or an
    image."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, clean(text, limit, one_line=True)))


def code_literal(text: object, limit: int | None = 300) -> str:
    """`text` cleaned, on one line, as a Markdown code span that no backtick in it can end early."""
    s = clean(text, limit, one_line=True)
    fence = "`" * (max((len(m) for m in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def clock(seconds: float) -> str:
    """A time as m:ss, rounded to the second: the one way tunelens writes a duration or a moment for people."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"
