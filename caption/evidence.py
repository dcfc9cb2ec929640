"""What the evidence of one track supports: judgements shared by the captioner and music QA.

Every judgement carries a strength: "clear" (stated plainly), "likely" (stated with a hedge), "possible"
(the best reading of weak evidence: given only when asked, with a low confidence) or absent (not stated).
For each kind of fact, "clear" and "likely" start at the score down to which the statements of that strength were
right at least 95% and 80% of the time on development-corpus soundfonts the recogniser was not trained on
(`scripts/calibrate_evidence.py` writes `weights/calibration.json`); "possible" (answers only) at 50%.
Captions state facts unprompted and several at once, so `CAPTION_THRESHOLDS` asks 98% for a plain statement
and 95% for a hedged one, has no "possible" level, and no genre or mood (no corpus of ours can check them; the
description lists them as tag readings). Answers to a question (`ANSWER_THRESHOLDS`) carry their confidence.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path

from tunelens.embed.descriptors import Descriptors
from tunelens.embed.musicnn_encoder import INSTRUMENT_PREFIX
from tunelens.index.core.tracks import VOICE_TAGS, tag_probs

# Instrument tags of the two musicnn taggers, with the word a caption uses for each.
INSTRUMENT_TAGS = {
    "piano": "piano", "guitar": "guitar", "strings": "strings", "violin": "violin", "cello": "cello",
    "harpsichord": "harpsichord", "flute": "flute", "sitar": "sitar", "harp": "harp", "synth": "synthesizer",
    "drums": "drums", "choir": "choir",
}
# The recogniser's classes (`instrument: NAME` tags of the default encoder), with the word a caption uses for each
# when it differs from the class name; a word shared with a tagger tag (piano, flute...) is one instrument.
RECOGNISER_PREFIX = INSTRUMENT_PREFIX
RECOGNISER_WORDS = {"brass section": "brass", "drum kit": "drums", "string ensemble": "strings",
                    "french horn": "French horn"}
# The recogniser's classes a general word covers: "Is there brass?" is answered from the trumpet too, and the
# word is true of a clip with any of them (how `scripts/calibrate_evidence.py` scores it).
WORD_MEMBERS = {"brass": ("brass section", "trumpet", "trombone", "french horn", "tuba"),
                "strings": ("string ensemble", "violin", "viola", "cello", "double bass"),
                "drums": ("drum kit", "timpani"), "guitar": ("acoustic guitar", "electric guitar", "distorted guitar"),
                "synthesizer": ("synth lead", "synth pad"), "piano": ("piano", "electric piano")}
# A general word a more precise one makes redundant when both are heard.
GENERAL_WORDS = {word: WORD_MEMBERS[word] for word in ("guitar", "synthesizer")}
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
    """Scores at which a judgement is clear, likely or possible. The defaults serve answers to a question;
    captions use `CAPTION_THRESHOLDS` (measured precision)."""
    instrument_clear: float = 0.6  # musicnn instrument tags
    instrument_likely: float = 0.4
    instrument_possible: float = 0.15
    instrument_absent: float = 0.1  # every source below this: "No, I don't hear it"
    instrument_absent_likely: float = 0.1  # every source below this: "Probably not"
    recogniser_clear: float = 0.8  # the recogniser's `instrument: NAME` probabilities
    recogniser_likely: float = 0.5
    recogniser_possible: float = 0.2
    recogniser_absent: float = 0.1
    recogniser_absent_likely: float = 0.1
    lead_clear: float = 0.8  # the recogniser's most probable instrument, judged as "the lead instrument"
    lead_likely: float = 0.5
    genre_clear: float = 0.5
    genre_likely: float = 0.3
    mood_likely: float = 0.3
    vocals_clear: float = 0.5
    vocals_likely: float = 0.25
    no_vocals: float = 0.1  # every vocal tag below this: clearly no singing
    tempo_confidence: float = 0.3  # below: tempo is hedged
    tempo_min_confidence: float = 0.15  # below: tempo is only "possible"
    tempo_possible: float = 0.0
    key_clear: float = 0.6  # the key model's probability for the key
    key_likely: float = 0.4
    key_possible: float = 0.0  # asked for the key, the likeliest one is given however unsure
    slow_below: float = 80.0
    fast_above: float = 110.0


CALIBRATION = Path(__file__).parent / "weights" / "calibration.json"


_CALIBRATED = json.loads(CALIBRATION.read_text()) if CALIBRATION.exists() else {}


# Thresholds a score must fall below (a claim of absence): for them "never" is minus infinity, not infinity.
BELOW_THRESHOLDS = frozenset({"no_vocals", "instrument_absent", "instrument_absent_likely", "recogniser_absent",
                              "recogniser_absent_likely"})


def calibrated_thresholds(values: dict[str, float | None]) -> Thresholds:
    """The defaults with the calibrated levels in `values` (None: no score reached the required precision, so
    never at that strength); "absent" is kept no looser than "possible"."""
    names = {f.name for f in fields(Thresholds)}

    def never(k: str) -> float:
        return float("-inf") if k in BELOW_THRESHOLDS else float("inf")

    th = replace(Thresholds(), **{k: (never(k) if v is None else float(v)) for k, v in values.items() if k in names})
    return replace(th, instrument_absent=min(th.instrument_absent, th.instrument_possible),
                   instrument_absent_likely=min(th.instrument_absent_likely, th.instrument_possible),
                   recogniser_absent=min(th.recogniser_absent, th.recogniser_possible),
                   recogniser_absent_likely=min(th.recogniser_absent_likely, th.recogniser_possible))


def caption_thresholds(th: Thresholds) -> Thresholds:
    """What captions use: no "possible" level, and no genre or mood (nothing we have measured their precision)."""
    never = float("inf")
    return replace(th, genre_clear=never, genre_likely=never, mood_likely=never,
                   instrument_possible=th.instrument_likely, recogniser_possible=th.recogniser_likely,
                   tempo_possible=th.tempo_min_confidence, key_possible=th.key_likely)


ANSWER_THRESHOLDS = calibrated_thresholds(_CALIBRATED.get("answer_thresholds", {}))
CAPTION_THRESHOLDS = caption_thresholds(calibrated_thresholds(_CALIBRATED.get("caption_thresholds", {})))


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


@lru_cache(maxsize=1)
def instrument_sources() -> dict[str, list[tuple[str, str]]]:
    """Each instrument word → its (tag, source) pairs: source "tagger" (a musicnn tag) or "recogniser"."""
    from tunelens.embed.musicnn_encoder import instrument_classes

    out: dict[str, list[tuple[str, str]]] = {}
    for tag, word in INSTRUMENT_TAGS.items():
        out.setdefault(word, []).append((tag, "tagger"))
    for name in instrument_classes():
        out.setdefault(RECOGNISER_WORDS.get(name, name), []).append((RECOGNISER_PREFIX + name, "recogniser"))
    return out


def _source_strength(p: float, source: str, th: Thresholds) -> str | None:
    if source == "recogniser":
        return _strength(p, th.recogniser_clear, th.recogniser_likely, th.recogniser_possible)
    return _strength(p, th.instrument_clear, th.instrument_likely, th.instrument_possible)


_RANK = {"clear": 3, "likely": 2, "possible": 1}


def _relative(p: float, source: str, th: Thresholds) -> float:
    """A source's probability relative to its own "clear" threshold, so the two sources rank on one scale."""
    clear = th.recogniser_clear if source == "recogniser" else th.instrument_clear
    return p / clear if clear > 0 else p


def instrument(ev: Evidence, word: str, th: Thresholds = ANSWER_THRESHOLDS) -> Judgement | None:
    """One instrument on its own (a direct question), from whichever source is surer."""
    best: Judgement | None = None
    for tag, source in instrument_sources().get(word, []):
        p = _p(ev, tag)
        s = _source_strength(p, source, th)
        if s is None:
            continue
        what = f"recogniser '{tag[len(RECOGNISER_PREFIX):]}'" if source == "recogniser" else f"tag '{tag}'"
        j = Judgement(word, s, f"{what} p={p:.2f}", _relative(p, source, th))
        if best is None or (_RANK[s], j.score) > (_RANK[best.strength], best.score):
            best = j
    return best


def member_words(word: str) -> list[str]:
    """The words of the recogniser's classes a general word covers, less the word itself ("brass" → trumpet,
    trombone, French horn, tuba)."""
    return [w for w in (RECOGNISER_WORDS.get(c, c) for c in WORD_MEMBERS.get(word, ())) if w != word]


def covered_instrument(ev: Evidence, word: str, th: Thresholds = ANSWER_THRESHOLDS) -> tuple[str, Judgement] | None:
    """The surest judgement of the word or of an instrument it covers ("brass": a trumpet heard clearly is brass
    heard clearly), with the word it was made for."""
    judged = [(w, instrument(ev, w, th)) for w in [word, *(member_words(word) if has_recogniser(ev) else [])]]
    judged = [(w, j) for w, j in judged if j is not None]
    return max(judged, key=lambda wj: (_RANK[wj[1].strength], wj[1].score)) if judged else None


def has_recogniser(ev: Evidence) -> bool:
    """Whether the track's tags include the recogniser's (libraries of the default encoder r4 and later)."""
    return any(t.startswith(RECOGNISER_PREFIX) for t in ev.tags)


def instrument_absent(ev: Evidence, word: str, th: Thresholds = ANSWER_THRESHOLDS) -> str | None:
    """How surely the word's instrument is absent: "clear" when every source is below its "absent" threshold,
    "likely" when every source is below its likely-absent one, else None (an instrument no source covers is never
    absent). A general word is absent only as surely as every instrument it covers ("no brass": no trumpet either)."""
    words = [word, *(member_words(word) if has_recogniser(ev) else [])]
    levels = {_absent_by_own_sources(ev, w, th) for w in words}
    return "clear" if levels == {"clear"} else "likely" if levels <= {"clear", "likely"} else None


def _absent_by_own_sources(ev: Evidence, word: str, th: Thresholds) -> str | None:
    heard_by = {"tagger", "recogniser"} if has_recogniser(ev) else {"tagger"}
    sources = [(t, s) for t, s in instrument_sources().get(word, []) if s in heard_by]
    if not sources:
        return None
    for strength, recogniser, tagger in (("clear", th.recogniser_absent, th.instrument_absent),
                                         ("likely", th.recogniser_absent_likely, th.instrument_absent_likely)):
        if all(_p(ev, t) < (recogniser if s == "recogniser" else tagger) for t, s in sources):
            return strength
    return None


def lead_instrument(ev: Evidence, th: Thresholds = ANSWER_THRESHOLDS) -> Judgement | None:
    """The recogniser's most probable instrument as the one heard most: a statement about the top class alone,
    calibrated on its own (it is right more often than any class at the same probability)."""
    heard = [(t, _p(ev, t)) for t in ev.tags if t.startswith(RECOGNISER_PREFIX)]
    if not heard:
        return None
    tag, p = max(heard, key=lambda x: x[1])
    s = _strength(p, th.lead_clear, th.lead_likely)
    name = tag[len(RECOGNISER_PREFIX):]
    word = RECOGNISER_WORDS.get(name, name)
    return None if s is None else Judgement(word, s, f"recogniser's strongest, '{name}' p={p:.2f}",
                                            _relative(p, "recogniser", th))


def instruments(ev: Evidence, th: Thresholds = ANSWER_THRESHOLDS) -> list[Judgement]:
    """The instruments heard, strongest first; when nothing is likely, only the strongest "possible" one."""
    out = [j for j in (instrument(ev, word, th) for word in instrument_sources()) if j is not None]
    lead = lead_instrument(ev, th)
    if lead is not None:
        same = next((j for j in out if j.value == lead.value), None)
        if same is None or _RANK[lead.strength] > _RANK[same.strength]:
            out = [j for j in out if j.value != lead.value] + [lead]
    if any(j.strength != "possible" for j in out):
        out = [j for j in out if j.strength != "possible"]
    elif out:
        out = [max(out, key=lambda j: j.score)]
    words = {j.value for j in out}
    out = [j for j in out if not set(GENERAL_WORDS.get(j.value, ())) & words]
    if "violin" in words and "strings" in words:
        by = {j.value: j for j in out}
        drop = "violin" if (_RANK[by["strings"].strength], by["strings"].score) >= (
            _RANK[by["violin"].strength], by["violin"].score) else "strings"
        out = [j for j in out if j.value != drop]
    return sorted(out, key=lambda j: (-_RANK[j.strength], -j.score))


def voice_score(ev: Evidence) -> tuple[str, float]:
    """The strongest evidence of singing: a vocal tag of the taggers or the recogniser's choir."""
    return max(((t, _p(ev, t)) for t in VOICE_TAGS), key=lambda x: x[1])


def vocals(ev: Evidence, th: Thresholds = ANSWER_THRESHOLDS) -> Judgement | None:
    """True: singing; False: instrumental; None: the tags do not say."""
    if not ev.tags:
        return None
    tag, p = voice_score(ev)
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


def genres(ev: Evidence, th: Thresholds = ANSWER_THRESHOLDS) -> list[Judgement]:
    return _ranked(ev, GENRE_TAGS, th.genre_clear, th.genre_likely)


def moods(ev: Evidence, th: Thresholds = ANSWER_THRESHOLDS) -> list[Judgement]:
    return _ranked(ev, MOOD_TAGS, 2.0, th.mood_likely)


def tempo(ev: Evidence, th: Thresholds = ANSWER_THRESHOLDS) -> Judgement | None:
    d = ev.descriptors
    s = _strength(d.tempo_confidence, th.tempo_confidence, th.tempo_min_confidence, th.tempo_possible)
    if d.tempo_bpm is None or s is None:
        return None
    return Judgement(
        float(d.tempo_bpm), s, f"{d.tempo_bpm:.0f} BPM, margin {d.tempo_confidence:.2f} over the next tempo candidate"
    )


def tempo_class(bpm: float, th: Thresholds = ANSWER_THRESHOLDS) -> str:
    return "slow" if bpm < th.slow_below else "fast" if bpm > th.fast_above else "moderate"


def key(ev: Evidence, th: Thresholds = ANSWER_THRESHOLDS) -> Judgement | None:
    d = ev.descriptors
    s = _strength(d.key_confidence, th.key_clear, th.key_likely, th.key_possible)
    if not d.key or s is None:
        return None
    return Judgement(d.key, s, f"constant-Q chroma key model, probability {d.key_confidence:.2f}")


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


def danceability(ev: Evidence, th: Thresholds = ANSWER_THRESHOLDS) -> Judgement | None:
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
