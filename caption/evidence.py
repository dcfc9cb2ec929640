"""What the evidence of one track supports: judgements shared by the captioner and music QA.

Every judgement carries a strength: "clear" (stated plainly), "likely" (stated with a hedge), "possible"
(the best reading of weak evidence: given only when asked, with a low confidence) or absent (not stated).
Thresholds on tagger probabilities and measured descriptors were set on the demo corpus
(`scripts/eval_captions.py` figures). Captions state facts unprompted, so they use stricter thresholds
(`CAPTION_THRESHOLDS`) than answers to a question, which carry their confidence with them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tunelens.caption.descriptors import Descriptors
from tunelens.index.core.tracks import tag_probs

# Instrument tags of the two musicnn taggers, with the word a caption uses for each.
INSTRUMENT_TAGS = {
    "piano": "piano", "guitar": "guitar", "strings": "strings", "violin": "violin", "cello": "cello",
    "harpsichord": "harpsichord", "flute": "flute", "sitar": "sitar", "harp": "harp", "synth": "synthesizer",
    "drums": "drums", "choir": "choir",
}
VOCAL_TAGS = ("vocal", "vocals", "singing", "voice", "choir", "choral", "female", "male", "woman", "man",
              "female vocal", "male vocal", "female voice", "male voice", "female vocalists", "male vocalists",
              "female vocalist", "opera")
NO_VOCAL_TAGS = ("no vocal", "no vocals", "no voice", "instrumental")
GENRE_TAGS = {
    "classical": "classical", "classic": "classical", "rock": "rock", "pop": "pop", "jazz": "jazz", "techno": "techno",
    "electronic": "electronic", "electronica": "electronic", "ambient": "ambient", "metal": "metal", "indian": "Indian",
    "country": "country", "blues": "blues", "folk": "folk", "funk": "funk", "soul": "soul", "Hip-Hop": "hip-hop",
    "House": "house", "punk": "punk", "new age": "new age", "dance": "dance", "opera": "opera",
}
MOOD_TAGS = {"Mellow": "mellow", "chill": "relaxed", "chillout": "relaxed", "sad": "melancholic", "happy": "happy",
             "beautiful": "beautiful", "soft": "soft", "quiet": "quiet", "loud": "loud", "weird": "strange",
             "sexy": "sensual", "catchy": "catchy", "easy listening": "easy-going"}
DANCE_TAGS = ("dance", "techno", "House", "party", "beat", "beats", "electro", "funk", "disco")


@dataclass(frozen=True)
class Thresholds:
    """Tuned on the demo corpus (see scripts/eval_captions.py --tune)."""
    instrument_clear: float = 0.6
    instrument_likely: float = 0.4
    instrument_possible: float = 0.15  # the strongest instrument tag, if no other reaches `instrument_likely`
    genre_clear: float = 0.5
    genre_likely: float = 0.3
    mood_likely: float = 0.3
    vocals_clear: float = 0.5
    vocals_likely: float = 0.25
    no_vocals: float = 0.1  # every vocal tag below this: clearly no singing
    tempo_confidence: float = 0.3  # below: tempo is hedged
    tempo_min_confidence: float = 0.15  # below: tempo is only "possible"
    tempo_possible: float = 0.0
    key_clear: float = 0.15  # correlation margin over the runner-up key
    key_likely: float = 0.05
    key_possible: float = 0.0  # asked for the key, the best-fitting one is given however small its margin
    slow_below: float = 80.0
    fast_above: float = 110.0


# Set so that at most ~10% of demo-corpus captions state a contradicted instrument, tempo class or key:
# the taggers confuse brass and organ with violin below 0.7, and keys or tempi with a small margin are
# often a fifth or an octave off.
CAPTION_THRESHOLDS = Thresholds(instrument_clear=0.7, instrument_likely=0.7, instrument_possible=0.7, key_likely=0.15,
                                key_possible=0.15, key_clear=0.2, tempo_min_confidence=0.6, tempo_confidence=0.6,
                                tempo_possible=0.6)


@dataclass
class Judgement:
    value: object
    strength: str  # "clear" | "likely" | "possible"
    evidence: str
    score: float = 0.0  # the probability or measure it rests on, for ranking judgements of one kind


parse_tags = tag_probs  # the catalog's `tags` column (JSON of predicted tag → probability, or null) as a dict


@dataclass
class Evidence:
    descriptors: Descriptors
    tags: dict[str, float] = field(default_factory=dict)  # predicted tag → probability (may be empty)

    @classmethod
    def from_row(cls, row: dict) -> Evidence:
        """From a joined catalog + captions row (descriptor columns and the catalog's `tags` JSON)."""
        d = Descriptors(**{k: row.get(k) for k in Descriptors.__dataclass_fields__})
        if d.energy_db is None:
            d.energy_db = []
        return cls(d, parse_tags(row.get("tags")))


def _p(ev: Evidence, tag: str) -> float:
    return float(ev.tags.get(tag, 0.0))


def _strength(x: float, clear: float, likely: float, possible: float | None = None) -> str | None:
    if x >= clear:
        return "clear"
    if x >= likely:
        return "likely"
    return "possible" if possible is not None and x >= possible else None


def instrument(ev: Evidence, tag: str, th: Thresholds = Thresholds()) -> Judgement | None:
    """One instrument tag on its own (a direct question); "possible" only when it is the strongest instrument tag."""
    p = _p(ev, tag)
    strongest = max(INSTRUMENT_TAGS, key=lambda t: _p(ev, t))
    s = _strength(p, th.instrument_clear, th.instrument_likely, th.instrument_possible if tag == strongest else None)
    return None if s is None else Judgement(INSTRUMENT_TAGS[tag], s, f"tag '{tag}' p={p:.2f}", p)


def instruments(ev: Evidence, th: Thresholds = Thresholds()) -> list[Judgement]:
    """The instruments heard, strongest first; the strongest weak one as "possible" when nothing is likely."""
    out = [j for j in (instrument(ev, tag, th) for tag in INSTRUMENT_TAGS) if j is not None]
    if any(j.strength != "possible" for j in out):
        out = [j for j in out if j.strength != "possible"]
    if any(j.value == "violin" for j in out) and any(j.value == "strings" for j in out):
        out = (
            [j for j in out if j.value != "violin"]
            if _p(ev, "strings") >= _p(ev, "violin")
            else [j for j in out if j.value != "strings"]
        )
    return sorted(out, key=lambda j: -j.score)


def vocals(ev: Evidence, th: Thresholds = Thresholds()) -> Judgement | None:
    """True: singing; False: instrumental; None: the tags do not say."""
    if not ev.tags:
        return None
    tag, p = max(((t, _p(ev, t)) for t in VOCAL_TAGS), key=lambda x: x[1])
    if p >= th.vocals_clear:
        return Judgement(True, "clear", f"tag '{tag}' p={p:.2f}")
    if p >= th.vocals_likely:
        return Judgement(True, "likely", f"tag '{tag}' p={p:.2f}")
    return Judgement(False, "clear" if p < th.no_vocals else "likely", f"strongest vocal tag '{tag}' p={p:.2f}")


def _ranked(ev: Evidence, table: dict[str, str], clear: float, likely: float) -> list[Judgement]:
    best: dict[str, Judgement] = {}
    for tag, word in table.items():
        p = _p(ev, tag)
        if p >= likely and (word not in best or p > best[word].score):
            best[word] = Judgement(word, "clear" if p >= clear else "likely", f"tag '{tag}' p={p:.2f}", p)
    return sorted(best.values(), key=lambda j: -j.score)


def genres(ev: Evidence, th: Thresholds = Thresholds()) -> list[Judgement]:
    return _ranked(ev, GENRE_TAGS, th.genre_clear, th.genre_likely)


def moods(ev: Evidence, th: Thresholds = Thresholds()) -> list[Judgement]:
    return _ranked(ev, MOOD_TAGS, 2.0, th.mood_likely)


def tempo(ev: Evidence, th: Thresholds = Thresholds()) -> Judgement | None:
    d = ev.descriptors
    s = _strength(d.tempo_confidence, th.tempo_confidence, th.tempo_min_confidence, th.tempo_possible)
    if d.tempo_bpm is None or s is None:
        return None
    return Judgement(
        float(d.tempo_bpm), s, f"onset autocorrelation peak {d.tempo_confidence:.2f} at {d.tempo_bpm:.0f} BPM"
    )


def tempo_class(bpm: float, th: Thresholds = Thresholds()) -> str:
    return "slow" if bpm < th.slow_below else "fast" if bpm > th.fast_above else "moderate"


def key(ev: Evidence, th: Thresholds = Thresholds()) -> Judgement | None:
    d = ev.descriptors
    s = _strength(d.key_confidence, th.key_clear, th.key_likely, th.key_possible)
    if not d.key or s is None:
        return None
    return Judgement(d.key, s, f"chroma vs key profiles, margin {d.key_confidence:.3f} over the next key")


def loudness_word(ev: Evidence) -> str | None:
    lufs = ev.descriptors.loudness_lufs
    if lufs is None:
        return None
    for floor, word in ((-9, "very loud"), (-14, "loud"), (-20, "moderately loud"), (-30, "quiet")):
        if lufs > floor:
            return word
    return "very quiet"


def brightness_word(ev: Evidence) -> str:
    hz = ev.descriptors.brightness_hz
    return "dark" if hz < 1200 else "warm" if hz < 2000 else "bright" if hz < 3500 else "very bright"


def energy_shape(ev: Evidence) -> dict[str, str]:
    """How the track starts, develops and ends, from RMS in ten spans (dB relative to the loudest)."""
    e = ev.descriptors.energy_db or []
    if len(e) < 4:
        return {}
    body = sorted(e)[len(e) // 2]
    start = (
        "starts quietly"
        if e[0] < body - 6
        else "starts at full strength"
        if e[0] >= body - 1.5
        else "starts a little softer"
    )
    end = "fades out" if e[-1] < body - 10 else "ends softly" if e[-1] < body - 4 else "ends at full strength"
    first, second = sum(e[: len(e) // 2]) / (len(e) // 2), sum(e[len(e) // 2 :]) / (len(e) - len(e) // 2)
    shape = "builds up" if second > first + 4 else "winds down" if first > second + 4 else "keeps a steady level"
    return {"start": start, "end": end, "shape": shape}


def danceability(ev: Evidence, th: Thresholds = Thresholds()) -> Judgement | None:
    """A pulse that is regular, strong and in the dance range, or taggers that hear dance music."""
    d = ev.descriptors
    tag_p = max((_p(ev, t) for t in DANCE_TAGS), default=0.0)
    if d.tempo_bpm is None:
        return None
    in_range = 90 <= d.tempo_bpm <= 140
    score = 0.5 * tag_p + 0.3 * d.tempo_confidence + 0.2 * (1.0 if in_range else 0.0) + 0.1 * min(d.onset_rate / 4, 1.0)
    value = score >= 0.45
    strength = "clear" if abs(score - 0.45) > 0.15 else "likely"
    return Judgement(
        value,
        strength,
        f"dance tags {tag_p:.2f}, pulse clarity {d.tempo_confidence:.2f}, "
        f"{d.tempo_bpm:.0f} BPM, {d.onset_rate:.1f} onsets/s (score {score:.2f})",
    )
