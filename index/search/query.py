"""Reading a search query the way a listener means it: "slow sad piano", "Bach on the organ", "fast drums around
120 bpm", "instrumental jazz from the 80s", "quiet guitar under 3 minutes", "choir, no organ".

`parse` splits a query, deterministically and offline (no language model writes anything), into
  - concepts for the encoder's text side, each kept on its own ("sad" and "piano" both count), and concepts to
    avoid ("no drums");
  - facets on what `tunelens index` measured (tempo, key and mode, loudness, energy shape, duration) or predicted
    (vocals), and on the files' own tags and folders (artist, album, genre, year, folder).
Adjectives ("slow", "quiet", "short", "minor") become soft preferences; numbers, keys, names, years and folders
become hard filters. What `parse` cannot place stays semantic, so nothing typed is dropped. Every facet keeps the
words it was read from (`Facet.phrase`): removing those words from the query removes the facet (the app's chips).
The ranking that uses a parsed query is `index.search.hybrid`.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from tunelens.embed.descriptors import PITCH_CLASSES
from tunelens.index.core.display import clock

# -- tempo: BPM bands of the adjectives, and the ramp (octaves) over which agreement falls from +1 to -1 ----------
# "slow prefers < ~85 BPM and penalises > 110": log2(110 / 85) = 0.37 octave. Fixed a priori from the usual
# tempo vocabulary (largo/adagio < 80, andante ~ 76-108, allegro > 120), not tuned on any corpus we report.
TEMPO_RAMP = math.log2(110 / 85)
TEMPO_BANDS: dict[str, tuple[float | None, float | None, str]] = {
    # word → (prefer at or above, prefer at or below, label)
    "very slow": (None, 70.0, "very slow (< 70 BPM)"),
    "slow": (None, 85.0, "slow (< 85 BPM)"),
    "moderate": (85.0, 115.0, "moderate tempo (85-115 BPM)"),
    "fast": (110.0, None, "fast (> 110 BPM)"),
    "very fast": (140.0, None, "very fast (> 140 BPM)"),
    "not too fast": (None, 115.0, "not too fast (< 115 BPM)"),
    "not too slow": (85.0, None, "not too slow (> 85 BPM)"),
}
TEMPO_WORDS = {
    "slow": "slow", "slower": "slow", "slowly": "slow", "slow-paced": "slow", "downtempo": "slow", "largo": "very slow",
    "adagio": "slow", "lento": "very slow", "grave": "very slow", "unhurried": "slow", "leisurely": "slow",
    "fast": "fast", "faster": "fast", "quick": "fast", "rapid": "fast", "up-tempo": "fast", "uptempo": "fast",
    "fast-paced": "fast", "allegro": "fast", "presto": "very fast", "vivace": "fast", "speedy": "fast",
    "mid-tempo": "moderate", "midtempo": "moderate", "moderate": "moderate", "andante": "moderate",
    "moderato": "moderate", "medium tempo": "moderate", "moderate tempo": "moderate", "medium-tempo": "moderate",
}
# "fast" and "slow" in compounds that are not about tempo: they stay words of the description
NOT_TEMPO = ("fast food", "slow motion", "slow cooker", "fast forward", "fast lane", "quick step", "quickstep")
TEMPO_NUMBER_TOLERANCE = 0.04  # "120 bpm" keeps tracks measured within 4% (the tempo accuracy we report)

# -- loudness and energy: relative to the library (a rank in it), since mastering levels differ by era -----------
LOUDNESS_WORDS = {"quiet": "quiet", "soft": "quiet", "gentle": "quiet", "hushed": "quiet", "delicate": "quiet",
                  "quieter": "quiet", "softer": "quiet", "calmer": "quiet", "louder": "loud",
                  "loud": "loud", "powerful": "loud", "intense": "loud", "energetic": "loud", "heavy": "loud"}
SHAPE_PHRASES = {"builds up": "builds", "building up": "builds", "build up": "builds", "builds": "builds",
                 "crescendo": "builds", "gets louder": "builds", "rising": "builds",
                 "fades out": "fades", "fading": "fades", "dies down": "fades", "gets quieter": "fades"}
DYNAMIC_WORDS = {"dynamic": "dynamic", "compressed": "compressed"}
# moods whose usual reading includes a measurable hint: a weak preference, beside the word itself as a concept
MOOD_HINTS = {"sad": ("minor", "quiet"), "melancholic": ("minor", "quiet"), "melancholy": ("minor", "quiet"),
              "gloomy": ("minor", None), "dark": ("minor", None), "somber": ("minor", "quiet"),
              "sombre": ("minor", "quiet"), "happy": ("major", None), "cheerful": ("major", None),
              "joyful": ("major", None), "bright": ("major", None), "calm": (None, "quiet"),
              "peaceful": (None, "quiet"), "relaxing": (None, "quiet"), "angry": (None, "loud"),
              "aggressive": (None, "loud")}
HINT_WEIGHT = 0.5  # a mood's hint counts half a stated facet

# -- duration ------------------------------------------------------------------------------------------------
SHORT_S, LONG_S = 180.0, 360.0  # "short": under 3 minutes; "long": over 6 (soft, a ramp of 0.5 octave)
DURATION_RAMP = 0.5
DURATION_NOUNS = ("track", "tracks", "song", "songs", "piece", "pieces", "tune", "tunes", "one", "ones", "clip",
                  "clips", "music", "recording", "recordings")

# -- vocals ------------------------------------------------------------------------------------------------------
VOCAL_YES = ("female vocals", "female vocal", "male vocals", "male vocal", "female voice", "male voice",
             "female singer", "male singer", "with a singer", "with singers", "with vocals", "with singing",
             "with a voice", "with voices",
             "with lyrics", "vocal", "vocals", "singing", "sung", "singer", "singers", "a cappella", "acapella",
             "lyrics")
VOCAL_NO = ("instrumental", "instrumentals", "no vocals", "no vocal", "no singing", "no singer", "no voice",
            "no voices", "no lyrics", "without vocals", "without singing", "without a singer", "without voice",
            "without voices", "without lyrics", "not vocal", "wordless")

# -- concepts ------------------------------------------------------------------------------------------------
STOPWORDS = frozenset("""a an the some something anything any music musics song songs track tracks piece pieces
tune tunes recording recordings sound sounds sounding sounded stuff kind sort type of for to me i i'm im want wanna
need play find show give get like that this these those is are be with and or on in at by from featuring feat
please really very quite rather just bit little lot lots which who whose it its it's plus more than into also
playing played plays performed""".split())
SEPARATORS = re.compile(r"\s*(?:[,;/+&|]|\band\b|\bwith\b|\bplus\b|\bfeaturing\b|\bfeat\.?|\bon\b|\bover\b"
                        r"|\bunder\b|\bbut\b)\s*")
# compounds a listener writes as one idea, besides the encoder's own multi-word concepts
COMPOUNDS = ("acoustic guitar", "electric guitar", "classical guitar", "bass guitar", "electric bass", "double bass",
             "upright bass", "church organ", "pipe organ", "hammond organ", "french horn", "english horn",
             "string quartet", "string orchestra", "string ensemble", "string section", "brass section",
             "brass band", "big band", "jazz band", "rock band", "drum kit", "drum machine", "steel drums",
             "synth pad", "synth lead", "electric piano", "grand piano", "hip hop", "hip-hop", "drum and bass",
             "rock and roll", "rhythm and blues", "new age", "easy listening", "heavy metal", "hard rock",
             "classic rock", "film score", "video game", "male voice", "female voice", "male vocal", "female vocal",
             "boys choir", "solo piano", "wind ensemble", "woodwind quintet", "chamber music", "lo-fi", "bossa nova")
NEGATORS = ("no", "without", "not", "minus", "except", "excluding", "but no", "but not", "non", "never", "nothing but")

# -- catalogue facets --------------------------------------------------------------------------------------------
YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b(?!\s*(?:bpm|beats))")
DECADE = re.compile(r"(?<![\w-])(?:the\s+)?(?:(1[89]|20)(\d)0s|['’]?(\d)0s)\b")

NOTE_NAMES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
ACCIDENTALS = {"#": 1, "♯": 1, "sharp": 1, "b": -1, "♭": -1, "flat": -1, "": 0}


@dataclass(frozen=True)
class Facet:
    """One constraint or preference read from the query. `phrase` is the text it came from."""

    # tempo | key | mode | loudness | shape | dynamics | duration | vocals | artist | album | genre | year | folder
    kind: str
    label: str  # how it is shown: "slow (< 85 BPM)", "artist: Johann Sebastian Bach"
    phrase: str
    hard: bool = False  # a filter (tracks not matching are left out); else a preference in the ranking
    low: float | None = None  # BPM, seconds or year: prefer (or require) at least this
    high: float | None = None
    value: str | None = None  # "D minor", "minor", "quiet", "yes", artist names joined by " | " ...
    weight: float = 1.0  # of a soft facet, in units of the semantic score's standard deviation

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ParsedQuery:
    text: str
    concepts: list[str] = field(default_factory=list)  # to the encoder, each on its own
    excluded: list[str] = field(default_factory=list)  # to the encoder, to avoid ("no drums")
    facets: list[Facet] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was read differently from how it might look

    def understood(self) -> str:
        """"piano · slow (< 85 BPM) · sad (minor, quiet)" — what the search will look for."""
        parts = list(self.concepts)
        parts += [f"not {c}" for c in self.excluded]
        parts += [f.label for f in self.facets]
        return " · ".join(parts) if parts else "(anything)"

    def chips(self) -> list[tuple[str, str]]:
        """(label, phrase) of every concept and facet, in the query's order of reading: what the app shows."""
        out = [(c, c) for c in self.concepts] + [(f"not {c}", c) for c in self.excluded]
        return out + [(f.label, f.phrase) for f in self.facets]

    def to_dict(self) -> dict:
        return {"text": self.text, "understood": self.understood(), "concepts": self.concepts,
                "excluded": self.excluded, "facets": [f.to_dict() for f in self.facets], "notes": self.notes}


@dataclass(frozen=True)
class CatalogNames:
    """What the library's file tags and folders hold, so that names in a query can be recognised as such."""

    artists: tuple[str, ...] = ()
    albums: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    has_years: bool = False


def remove_phrase(text: str, phrase: str) -> str:
    """`text` without `phrase` (its first whole-word occurrence) and the separators left dangling: removing a chip."""
    if not phrase:
        return text
    m = re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text, flags=re.IGNORECASE)
    if not m:
        return text
    out = text[:m.start()] + " " + text[m.end():]
    out = re.sub(r"\s*,\s*(,\s*)+", ", ", out)
    out = re.sub(r"\b(no|not|without|and|with|but|by|in|from|the|on)\s*$", "", out.strip(), flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", out).strip(" ,;")


class _Text:
    """The query with the spans already read blanked out, so that each word is read once."""

    def __init__(self, text: str):
        self.original = text
        self.low = text.lower().replace("’", "'")
        self.free = [True] * len(text)

    def finditer(self, pattern: str | re.Pattern):
        """Matches in what is still unread (read spans show as commas, so a match never runs across them)."""
        for m in re.finditer(pattern, self.remaining()):
            if all(self.free[m.start():m.end()]):
                yield m

    def take(self, m: re.Match | tuple[int, int]) -> str:
        start, end = (m.start(), m.end()) if isinstance(m, re.Match) else m
        for i in range(start, end):
            self.free[i] = False
        return self.original[start:end].strip()

    def remaining(self) -> str:
        return "".join(c if free else "," for c, free in zip(self.low, self.free))


def _words(phrases) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


def _number(s: str) -> float:
    return float(s.replace(",", "."))


def _minutes(value: str, unit: str | None) -> float:
    unit = (unit or "m").lower()
    return _number(value) * (1.0 if unit.startswith("s") else 60.0)


def key_name(letter: str, accidental: str) -> str:
    """The analyser's spelling of a tonic ("D#" and "Eb" are both "Eb")."""
    return PITCH_CLASSES[(NOTE_NAMES[letter.lower()] + ACCIDENTALS[accidental.lower().strip()]) % 12]


def parse(text: str, names: CatalogNames = CatalogNames(), vocabulary: frozenset[str] = frozenset()) -> ParsedQuery:
    """Read `text` into concepts and facets. `names` are the library's artists, albums, genres and folders;
    `vocabulary` the encoder's own concept words (tags, instruments), which may be split apart but never merged."""
    q = ParsedQuery(text=text)
    t = _Text(text)
    _tempo_numbers(t, q)
    _durations(t, q)
    _keys(t, q)
    _years(t, q, names)
    _folders_and_albums(t, q, names)
    _artists(t, q, names, vocabulary)
    _vocals(t, q)
    _negations(t, q, vocabulary)
    _tempo_words(t, q)
    _dynamics(t, q)
    _genres(t, q, names)
    concepts, all_known = _concepts(t, vocabulary)
    if all_known or q.facets or q.excluded or q.concepts:
        q.concepts += concepts
    elif concepts:  # free description and nothing else: the model reads it as written, whole
        q.concepts = [re.sub(r"\s+", " ", text.strip())]
    _mood_hints(q)
    order = {f: t.low.find(f.phrase.lower()) for f in q.facets}
    q.facets.sort(key=lambda f: order[f])
    return q


def _tempo_numbers(t: _Text, q: ParsedQuery) -> None:
    bpm = r"\s*(?:bpm|beats per minute|beats a minute)"
    for m in t.finditer(r"(?:between\s+)?(\d{2,3})\s*(?:-|–|to|and)\s*(\d{2,3})" + bpm):
        lo, hi = sorted((_number(m.group(1)), _number(m.group(2))))
        q.facets.append(Facet("tempo", f"{lo:.0f}-{hi:.0f} BPM", t.take(m), hard=True, low=lo, high=hi))
    for m in t.finditer(r"(over|above|faster than|more than|at least|under|below|slower than|less than|at most)\s+"
                        r"(\d{2,3})" + bpm):
        n = _number(m.group(2))
        up = m.group(1) in ("over", "above", "faster than", "more than", "at least")
        q.facets.append(Facet("tempo", f"{'>' if up else '<'} {n:.0f} BPM", t.take(m), hard=True,
                              low=n if up else None, high=None if up else n))
    for m in t.finditer(r"(?:(?:around|about|approximately|roughly|near|at|~)\s*)?(\d{2,3}(?:\.\d+)?)" + bpm):
        n = _number(m.group(1))
        lo, hi = n * (1 - TEMPO_NUMBER_TOLERANCE), n * (1 + TEMPO_NUMBER_TOLERANCE)
        q.facets.append(Facet("tempo", f"{n:.0f} BPM (±{TEMPO_NUMBER_TOLERANCE:.0%})", t.take(m), hard=True, low=lo,
                              high=hi))


def _durations(t: _Text, q: ParsedQuery) -> None:
    unit = r"(minutes?|mins?|m|seconds?|secs?|s)\b"
    for m in t.finditer(r"(under|less than|shorter than|below|at most|up to|within|over|more than|longer than|"
                        r"above|at least)\s+(\d+(?:[.,]\d+)?)\s*" + unit):
        n = _minutes(m.group(2), m.group(3))
        up = m.group(1) in ("over", "more than", "longer than", "above", "at least")
        q.facets.append(Facet("duration", f"{'over' if up else 'under'} {clock(n)}", t.take(m), hard=True,
                              low=n if up else None, high=None if up else n))
    for m in t.finditer(r"(\d+(?:[.,]\d+)?)\s*(?:-|–|to)\s*(\d+(?:[.,]\d+)?)\s*" + unit):
        lo, hi = sorted((_minutes(m.group(1), m.group(3)), _minutes(m.group(2), m.group(3))))
        q.facets.append(Facet("duration", f"{clock(lo)}-{clock(hi)} long", t.take(m), hard=True, low=lo, high=hi))
    for m in t.finditer(r"\b(\d+(?:[.,]\d+)?)[- ](minute|min|second|sec)s?(?:[- ]long)?\b"):
        n = _minutes(m.group(1), m.group(2))
        q.facets.append(Facet("duration", f"about {clock(n)}", t.take(m), hard=True, low=n * 0.85, high=n * 1.15))
    nouns = _words(DURATION_NOUNS)
    # "short", "a long piano piece": a length when a noun for a piece follows (within two words) or nothing does
    for m in t.finditer(rf"\b(short|brief|long|lengthy)\b(?=(?:\s+[\w-]+){{0,2}}?\s+(?:{nouns})\b|\s*$|\s*,)"):
        short = m.group(1) in ("short", "brief")
        q.facets.append(Facet("duration", "short (< 3 min)" if short else "long (> 6 min)", t.take(m),
                              low=None if short else LONG_S, high=SHORT_S if short else None))


def _keys(t: _Text, q: ParsedQuery) -> None:
    acc = r"(#|♯|b|♭|-?sharp|-?flat)?"
    # "a minor key" / "in a major key" / "minor key": the mode, not the key of A
    for m in t.finditer(r"\b(?:in\s+)?(?:an?\s+)?(minor|major)(?:\s+(?:key|keys|mode|tonality|scale))\b"):
        q.facets.append(Facet("mode", m.group(1), t.take(m), value=m.group(1)))
    key = rf"(?<![\w'])(?:in\s+(?:the\s+key\s+of\s+)?|key\s+of\s+)?([a-g])\s*{acc}\s*(major|minor|maj|min)\b"
    for m in t.finditer(key):
        mode = "minor" if m.group(3).startswith("min") else "major"
        if t.original[m.start(1)] == "a" and m.start(1) == m.start() and not m.group(2):
            # a lower-case "a minor" with no "in" before it reads as the article: the mode
            q.facets.append(Facet("mode", mode, t.take(m), value=mode))
            continue
        tonic = key_name(m.group(1), (m.group(2) or "").lstrip("-"))
        q.facets.append(Facet("key", f"{tonic} {mode}", t.take(m), hard=True, value=f"{tonic} {mode}"))
    for m in t.finditer(r"\b(?:in\s+)?(?:an?\s+)?(minor|major)\b"):
        q.facets.append(Facet("mode", m.group(1), t.take(m), value=m.group(1)))


def _years(t: _Text, q: ParsedQuery, names: CatalogNames) -> None:
    for m in t.finditer(r"(?:(?:from|in|of)\s+)?" + DECADE.pattern):
        if m.group(1):
            start = int(m.group(1) + m.group(2) + "0")
        else:
            d = int(m.group(3))
            start = (2000 if d <= 2 else 1900) + 10 * d
        if not names.has_years:
            q.notes.append(f"no track has a year tag, so “{m.group(0).strip()}” is searched as a sound")
            continue
        q.facets.append(Facet("year", f"{start}s", t.take(m), hard=True, low=start, high=start + 9))
    for m in t.finditer(r"(before|after|since|until)\s+(1[89]\d\d|20\d\d)\b"):
        y = int(m.group(2))
        lo, hi = (None, y - 1) if m.group(1) == "before" else (None, y) if m.group(1) == "until" else \
            (y + 1, None) if m.group(1) == "after" else (y, None)
        if names.has_years:
            q.facets.append(Facet("year", f"{m.group(1)} {y}", t.take(m), hard=True, low=lo, high=hi))
        else:
            q.notes.append(f"no track has a year tag, so “{m.group(0)}” cannot be used")
            t.take(m)
    for m in t.finditer(r"(?:(?:from|in|of)\s+)?" + YEAR.pattern):
        y = int(m.group(1))
        if names.has_years:
            q.facets.append(Facet("year", str(y), t.take(m), hard=True, low=y, high=y))
        else:
            q.notes.append(f"no track has a year tag, so “{m.group(0).strip()}” cannot be used")
            t.take(m)


def _folders_and_albums(t: _Text, q: ParsedQuery, names: CatalogNames) -> None:
    for m in t.finditer(r"(?:in\s+|from\s+)?(?:the\s+|my\s+)?folder\s+[\"']?([\w./ -]+?)[\"']?(?=,|$)|"
                        r"(?:in|from)\s+(?:the\s+|my\s+)?[\"']?([\w./-]+)[\"']?\s+folder\b"):
        want = (m.group(1) or m.group(2)).strip().strip("/")
        found = [f for f in names.folders if f.lower() == want.lower() or f.lower().endswith("/" + want.lower())]
        if found:
            q.facets.append(Facet("folder", f"folder: {found[0]}", t.take(m), hard=True, value=found[0]))
        else:
            q.notes.append(f"no folder “{want}” in the library")
            t.take(m)
    for m in t.finditer(r"(?:(?:from|on)\s+)?(?:the\s+)?album\s+[\"']?([^,\"']+?)[\"']?(?=,|$)"):
        want = m.group(1).strip()
        found = [a for a in names.albums if want.lower() in a.lower()]
        if found:
            q.facets.append(Facet("album", f"album: {' | '.join(found[:3])}", t.take(m), hard=True,
                                  value=" | ".join(found)))
        else:
            q.notes.append(f"no album “{want}” in the library")
            t.take(m)


def _name_keys(name: str) -> set[str]:
    """How a query may name an artist: the whole name, or its last word (a surname)."""
    words = re.findall(r"[\w'.-]+", name.lower())
    out = {" ".join(words)}
    if words and len(words[-1]) >= 3:
        out.add(words[-1].strip("."))
    return out


def _artists(t: _Text, q: ParsedQuery, names: CatalogNames, vocabulary: frozenset[str]) -> None:
    index: dict[str, list[str]] = {}
    for a in names.artists:
        for k in _name_keys(a):
            index.setdefault(k, []).append(a)
    common = set(STOPWORDS) | set(vocabulary) | set(TEMPO_WORDS) | set(LOUDNESS_WORDS) | set(MOOD_HINTS)
    common |= {w for c in COMPOUNDS for w in c.split()}
    # "by NAME": the words after "by" up to a separator name an artist, known or not
    by = r"\b(?:by|from|composed by|performed by|written by)\s+([a-z][\w'.-]*(?:\s+[a-z][\w'.-]*){0,3})"
    for m in t.finditer(by):
        words = m.group(1).split()
        for n in range(len(words), 0, -1):
            cand = " ".join(words[:n])
            if cand in index:
                span = (m.start(), m.start(1) + len(cand))
                artists = sorted(set(index[cand]))
                q.facets.append(Facet("artist", f"artist: {t.original[m.start(1):m.start(1) + len(cand)]}",
                                      t.take(span), hard=True, value=" | ".join(artists)))
                break
        else:
            if m.group(0).startswith("by"):
                who = t.original[m.start(1):m.end(1)]
                q.notes.append(f"no artist “{who}” in the library, so it is searched as a sound")
    # a bare name ("Bach organ"): a whole name, or a surname that is no common word
    for n in (4, 3, 2, 1):
        for m in t.finditer(r"(?<![\w'-])" + r"\s+".join([r"[\w'.-]+"] * n) + r"(?![\w'-])"):
            cand = re.sub(r"\s+", " ", m.group(0))
            if cand in index and (n > 1 or cand not in common):
                artists = sorted(set(index[cand]))
                q.facets.append(Facet("artist", f"artist: {t.original[m.start():m.end()]}", t.take(m), hard=True,
                                      value=" | ".join(artists)))


def _vocals(t: _Text, q: ParsedQuery) -> None:
    for m in t.finditer(rf"(?<![\w-])(?:{_words(VOCAL_NO)})(?![\w-])"):
        q.facets.append(Facet("vocals", "instrumental (no vocals)", t.take(m), value="no"))
    for m in t.finditer(rf"(?<![\w-])(?:{_words(VOCAL_YES)})(?![\w-])"):
        phrase = t.take(m)
        q.facets.append(Facet("vocals", "with vocals", phrase, value="yes"))
        q.concepts.append(re.sub(r"^with\s+(an?\s+)?", "", phrase.lower()))


def _negations(t: _Text, q: ParsedQuery, vocabulary: frozenset[str]) -> None:
    """"no drums", "without piano", "not piano", "choir but no organ": the words up to the next separator."""
    pattern = rf"(?<![\w-])(?:{_words(NEGATORS)})\s+(?!too\b)([a-z][\w' -]*?)(?=\s*(?:,|;|\band\b|\bbut\b|$))"
    for m in t.finditer(pattern):
        what = m.group(1).strip()
        if what in TEMPO_WORDS or what in ("too fast", "too slow"):
            continue  # "not slow", "not fast": the tempo reading below takes them with their negation
        if what in LOUDNESS_WORDS:
            continue
        t.take(m)
        words = [w for w in what.split() if w not in STOPWORDS]
        if words:
            q.excluded.append(" ".join(words))


def _tempo_words(t: _Text, q: ParsedQuery) -> None:
    blocked = [(m.start(), m.end()) for m in re.finditer(rf"(?<![\w-])(?:{_words(NOT_TEMPO)})(?![\w-])", t.low)]
    pattern = (rf"(?<![\w-])(not too|not overly|not very|not|never)?\s*(very|really|quite|super|extremely)?\s*"
               rf"({_words(TEMPO_WORDS)})(?![\w-])")
    for m in t.finditer(pattern):
        if any(a <= m.start(3) < b for a, b in blocked):
            continue
        word = TEMPO_WORDS[m.group(3)]
        if m.group(2) and word in ("slow", "fast") and m.group(2) != "quite":
            word = f"very {word}"
        neg = m.group(1)
        if neg and neg != "not" and neg != "never" and word in ("slow", "fast", "very slow", "very fast"):
            word = "not too slow" if "slow" in word else "not too fast"
        phrase = t.take(m)
        lo, hi, label = TEMPO_BANDS[word]
        if neg in ("not", "never"):  # "not slow": the opposite preference
            bounds = f"> {hi:.0f}" if hi is not None else f"< {lo:.0f}"
            q.facets.append(Facet("tempo", f"not {word} ({bounds} BPM)", phrase, low=lo, high=hi, value="not"))
        else:
            q.facets.append(Facet("tempo", label, phrase, low=lo, high=hi))


def _dynamics(t: _Text, q: ParsedQuery) -> None:
    for m in t.finditer(rf"(?<![\w-])(not\s+)?({_words(SHAPE_PHRASES)})(?![\w-])"):
        shape = SHAPE_PHRASES[m.group(2)]
        if m.group(1):
            shape = "fades" if shape == "builds" else "builds"
        q.facets.append(Facet("shape", "builds up (energy rises)" if shape == "builds" else "fades (energy falls)",
                              t.take(m), value=shape))
    for m in t.finditer(rf"(?<![\w-])(not\s+(?:too\s+)?)?({_words(LOUDNESS_WORDS)})(?![\w-])"):
        level = LOUDNESS_WORDS[m.group(2)]
        if m.group(1):
            level = "loud" if level == "quiet" else "quiet"
        q.facets.append(Facet("loudness", f"{level} (for this library)", t.take(m), value=level))
        if m.group(2) not in ("quiet", "loud"):  # "gentle", "powerful"... also describe the sound
            q.concepts.append(m.group(2))
    for m in t.finditer(rf"(?<![\w-])({_words(DYNAMIC_WORDS)})(?![\w-])"):
        value = DYNAMIC_WORDS[m.group(1)]
        q.facets.append(Facet("dynamics", "wide dynamics" if value == "dynamic" else "narrow dynamics (compressed)",
                              t.take(m), value=value))


def _genres(t: _Text, q: ParsedQuery, names: CatalogNames) -> None:
    """A genre the files' tags name ("jazz" when some file says Jazz): preferred, and kept as a concept too."""
    by_lower = {g.lower(): g for g in names.genres}
    if not by_lower:
        return
    for m in t.finditer(rf"(?<![\w-])({_words(by_lower)})(?![\w-])"):
        g = by_lower[m.group(1)]
        q.facets.append(Facet("genre", f"genre tag: {g}", t.original[m.start():m.end()], value=g))


def _concepts(t: _Text, vocabulary: frozenset[str]) -> tuple[list[str], bool]:
    """What is left, split at separators into chunks; a chunk made only of known concepts (the encoder's
    vocabulary and COMPOUNDS) is split into them, any other chunk is kept whole, as the user wrote it. Also says
    whether every chunk was made of known concepts."""
    known = set(vocabulary) | set(COMPOUNDS) | set(MOOD_HINTS) | {"solo"}
    out: list[str] = []
    all_known = True
    rest = t.remaining()
    for chunk in SEPARATORS.split(rest):
        every = re.findall(r"[\w'-]+", chunk)
        words = [w for w in every if w not in STOPWORDS]
        if not words:
            continue
        pieces, i = [], 0
        while i < len(words):
            for n in (3, 2, 1):
                cand = " ".join(words[i:i + n])
                if len(words[i:i + n]) == n and (cand in known or (n == 1 and cand.rstrip("s") in known)):
                    pieces.append(cand)
                    i += n
                    break
            else:
                pieces = None
                break
        all_known &= bool(pieces)
        out += pieces if pieces else [" ".join(every)]
    seen: set[str] = set()
    return [c for c in out if not (c in seen or seen.add(c))], all_known


def _mood_hints(q: ParsedQuery) -> None:
    """"sad" is a concept, and also a weak preference for minor and quiet when nothing stated says otherwise."""
    kinds = {f.kind for f in q.facets}
    for c in list(q.concepts):
        if c not in MOOD_HINTS:
            continue
        mode, level = MOOD_HINTS[c]
        if mode and "mode" not in kinds and "key" not in kinds:
            q.facets.append(Facet("mode", f"{c} (likely {mode})", c, value=mode, weight=HINT_WEIGHT))
        if level and "loudness" not in kinds:
            q.facets.append(Facet("loudness", f"{c} (likely {level})", c, value=level, weight=HINT_WEIGHT))
