"""Music QA: answer a question about one track from its measured descriptors and predicted tags.

`answer(question, evidence)` recognises what is asked (tempo, key, mode, loudness, duration, an
instrument, vocals, genre, mood, energy, danceability, how it starts or ends) and answers from the
judgements of `caption.evidence`, with the evidence used and a confidence. Anything else, or a question
the evidence cannot settle, gets "I can't tell that from the audio" rather than a guess.
"""
from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from tunelens.caption import evidence as E
from tunelens.caption.base import Answer, load_captioner
from tunelens.caption.evidence import ANSWER_THRESHOLDS, Evidence, Thresholds, instrument_sources, parse_tags
from tunelens.index.core.display import clock

CANT_TELL = "I can't tell that from the audio."
MAX_QUESTION_CHARS = 1000
# Instruments a listener may ask about that neither the taggers nor the recogniser know: they can't be confirmed.
UNKNOWN_INSTRUMENTS = ("ukulele", "mandolin", "bagpipe", "bagpipes", "steel drum", "steel drums", "didgeridoo",
                       "theremin", "erhu", "koto", "shamisen", "tabla", "djembe", "bongos", "congas", "kalimba",
                       "dulcimer", "lute", "recorder", "piccolo", "cornet", "euphonium", "celesta", "zither")
# Other ways of naming an instrument the vocabulary knows (lower case, as questions are matched).
SYNONYMS = {"violins": "violin", "string": "strings", "string section": "strings", "string quartet": "strings",
            "drum": "drums", "drum kit": "drums", "percussion": "drums", "synth": "synthesizer",
            "keyboard": "piano", "chorus": "choir", "guitars": "guitar", "flutes": "flute", "cellos": "cello",
            "organ": "church organ", "pipe organ": "church organ", "sax": "saxophone", "horn": "French horn",
            "french horn": "French horn", "horns": "brass", "bass guitar": "electric bass",
            "upright bass": "double bass", "contrabass": "double bass", "kettle drums": "timpani",
            "rhodes": "electric piano", "trumpets": "trumpet", "trombones": "trombone", "clarinets": "clarinet",
            "overdriven guitar": "distorted guitar", "vibes": "vibraphone",
            "bells": "glockenspiel"}


_PATTERNS = [
    ("lyrics", r"\b(lyric|lyrics|words|what (is|are) (she|he|they) (singing|saying))\b"),
    ("outside",
     r"\b(who|composer|composed|wrote|written|artist|band|year|when was|released|label|title|name of|country of)\b"),
    ("danceability", r"\b(danc\w*|groove|groovy)\b"),
    ("start", r"\b(start|starts|begin|begins|beginning|intro|opening|open)\b"),
    ("end", r"\b(end|ends|ending|outro|finish|finishes|close|closes)\b"),
    ("mode", r"\b(major|minor)\b"),
    ("key", r"\b(key|tonality|tonic|tonal centre|tonal center)\b"),
    ("tempo", r"\b(tempo|bpm|beats per minute|how fast|how slow|speed|pace|fast|slow|quick|up-?tempo)\b"),
    ("duration", r"\b(how long|length|duration|minutes|seconds|runtime|run time)\b"),
    ("loudness", r"\b(loud|loudness|quiet|volume|lufs|dynamic range|loudness range)\b"),
    ("vocals", r"\b(sing|sings|singing|singer|vocal|vocals|voice|voices|sung|instrumental|rap|rapping)\b"),
    ("instrument", r"\b(instrument|instruments|played on|playing|plays|what.*play)\b"),
    ("genre", r"\b(genre|style|kind of music|type of music|what kind|what type|classical|jazz|rock|pop|electronic)\b"),
    ("mood", r"\b(mood|feel|feeling|emotion|emotional|happy|sad|calm|relaxing|mellow|melancholic|cheerful)\b"),
    ("energy", r"\b(energy|energetic|intense|intensity|calm|powerful|build|builds)\b"),
]


def classify(question: str) -> tuple[str, str | None]:
    """(kind, instrument named in the question, if any)."""
    q = question.lower()
    named = None
    for word in sorted(
        [w.lower() for w in instrument_sources()] + list(SYNONYMS) + list(UNKNOWN_INSTRUMENTS), key=len, reverse=True
    ):
        if re.search(rf"\b{re.escape(word)}\b", q):
            named = SYNONYMS.get(word) or next((w for w in instrument_sources() if w.lower() == word), word)
            break
    for kind, pattern in _PATTERNS:
        if re.search(pattern, q):
            if kind in ("vocals", "genre") and named and named != "choir":
                return "instrument", named
            return kind, named
    if named:
        return "instrument", named
    return "unknown", None


def _plural(word: str) -> bool:
    return word.endswith("s") and word not in ("bass", "double bass", "electric bass", "brass")


def _a(word: str) -> str:
    """'a trumpet', 'an oboe', 'drums', 'strings', 'brass'."""
    if word == "brass" or _plural(word):
        return word
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _there(word: str) -> str:
    """'there is a trumpet', 'there is brass', 'there are drums'."""
    return f"there {'are' if _plural(word) else 'is'} {_a(word)}"


def _conf(strength: str) -> float:
    return {"clear": 0.9, "likely": 0.6}.get(strength, 0.3)


def _hedge(strength: str) -> str:
    return {"clear": "", "likely": "probably "}.get(strength, "possibly ")


# A string section's members: asked about one of them, strings heard are evidence for it.
STRING_SECTION = ("violin", "cello")


def answer(question: str, ev: Evidence, thresholds: Thresholds = ANSWER_THRESHOLDS) -> Answer:
    th = thresholds
    question = (question or "").strip()
    if not question:
        raise ValueError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"the question is {len(question)} characters long; at most {MAX_QUESTION_CHARS} are allowed")
    kind, named = classify(question)
    d = ev.descriptors
    no_tags = "this library has no predicted tags for the track (its model is not a tagger)"

    if kind == "tempo":
        j = E.tempo(ev, th)
        if j is None:
            return Answer(CANT_TELL + " No tempo stands out from its double or half.", kind,
                          evidence=[f"tempo margin {d.tempo_confidence:.2f}"])
        cls = E.tempo_class(j.value, th)
        weak = ", though its double or half fits almost as well" if j.strength == "possible" else ""
        return Answer(f"It is {_hedge(j.strength)}about {j.value:.0f} BPM, a {cls} tempo{weak}.", kind, j.value,
                      _conf(j.strength), [j.evidence])
    if kind in ("key", "mode"):
        j = E.key(ev, th)
        if j is None:
            return Answer(
                CANT_TELL + " No key stands out clearly.", kind, evidence=[f"key probability {d.key_confidence:.2f}"]
            )
        mode = d.mode
        hedge = _hedge(j.strength)
        if kind == "mode":
            said = {m for m in ("major", "minor") if re.search(rf"\b{m}\b", question.lower())}
            asked = said.pop() if len(said) == 1 else None
            if asked:
                yes = asked == mode
                return Answer(f"{'Yes' if yes else 'No'}, it is {hedge}in {j.value}{_weak_key(j)}.", kind, mode,
                              _conf(j.strength), [j.evidence])
            return Answer(
                f"It is {hedge}in a {mode} key ({j.value}){_weak_key(j)}.", kind, mode, _conf(j.strength), [j.evidence]
            )
        return Answer(f"It is {hedge}in {j.value}{_weak_key(j)}.", kind, j.value, _conf(j.strength), [j.evidence])
    if kind == "duration":
        return Answer(f"It lasts {clock(d.duration)} ({d.duration:.1f} s).", kind, d.duration, 1.0, ["decoded length"])
    if kind == "loudness":
        word = E.loudness_word(ev)
        if word is None:
            return Answer(CANT_TELL, kind)
        lra = f" with a loudness range of {d.loudness_range_lu:.1f} LU" if d.loudness_range_lu is not None else ""
        return Answer(f"It is {word}: {d.loudness_lufs:.1f} LUFS integrated loudness{lra}.", kind, d.loudness_lufs, 0.9,
                      ["ITU-R BS.1770 integrated loudness", "EBU 3342 loudness range"])
    if kind in ("start", "end"):
        shape = E.energy_shape(ev)
        if not shape:
            return Answer(CANT_TELL + " The track is too short to follow its shape.", kind)
        text = shape[kind]
        return Answer(f"It {text}" + (f", and {shape['shape']} overall." if kind == "start" else "."), kind, text, 0.7,
                      ["RMS energy by tenths (dB): " + " ".join(f"{x:.0f}" for x in d.energy_db)])
    if kind == "danceability":
        j = E.danceability(ev, th)
        if j is None:
            return Answer(CANT_TELL, kind)
        text = f"{'' if j.strength == 'clear' else 'probably '}{'yes' if j.value else 'no'}"
        reason = "a steady, clear pulse in the dance range" if j.value else "no steady dance pulse"
        return Answer(f"{text.capitalize()}: {reason}.", kind, j.value, _conf(j.strength), [j.evidence])
    if kind == "energy":
        shape = E.energy_shape(ev)
        word = E.loudness_word(ev) or "unknown loudness"
        if not shape:
            return Answer(CANT_TELL, kind)
        return Answer(f"It is {word}, {shape['shape']}, with {d.onset_rate:.1f} note onsets per second.", kind,
                      shape["shape"], 0.7, [f"{d.loudness_lufs} LUFS", f"onset rate {d.onset_rate:.2f}/s"])
    if not ev.tags and kind in ("instrument", "instruments", "vocals", "genre", "mood"):
        return Answer(CANT_TELL + f" ({no_tags}).", kind)
    if kind == "instrument" and named:
        if named in UNKNOWN_INSTRUMENTS:
            return Answer(f"{CANT_TELL} Neither the taggers nor the instrument recogniser know {named}.",
                          "instrument", None, 0.0, [f"no tag or recogniser class for {named}"])
        sources = instrument_sources()[named]
        if not E.has_recogniser(ev) and all(src == "recogniser" for _, src in sources):
            return Answer(f"{CANT_TELL} This library's model has no instrument recogniser, and its taggers have no "
                          f"tag for {named}.", "instrument", None, 0.0, [f"no tag for {named}"])
        found = E.covered_instrument(ev, named, th)
        if found is not None:
            by, j = found
            # a general word ("brass") heard through an instrument it covers says which one
            heard = "" if by == named else {"clear": f" (I hear {_a(by)})",
                                            "likely": f" (I probably hear {_a(by)})"}.get(j.strength, f" (of {_a(by)})")
            text = {"clear": f"Yes, {_there(named)}{heard}.", "likely": f"Probably yes, {_there(named)}{heard}."}.get(
                j.strength, f"Possibly: there is some evidence of {_a(named)}{heard}, but it is weak."
            )
            return Answer(text, "instrument", True, _conf(j.strength), [j.evidence])
        section = E.instrument(ev, "strings", th) if named in STRING_SECTION else None
        if section is not None and section.strength != "possible":
            return Answer(
                f"Probably: I {'hear' if section.strength == 'clear' else 'probably hear'} strings, "
                f"and a string section usually includes {named}s.",
                "instrument",
                True,
                0.6,
                [section.evidence],
            )
        evidence = [f"{t} p={float(ev.tags.get(t, 0.0)):.2f}" for t, _ in sources]
        # absences are calibrated as if the instrument asked about were there half the time (people ask about
        # what they suspect is there); below "probably not", the evidence leans against it only a little
        absent = E.instrument_absent(ev, named, th)
        text = {"clear": f"No, I don't hear {_a(named)}.",
                "likely": f"Probably not: I don't hear {_a(named)}, though I could miss it."}.get(
            absent, f"Possibly not: the evidence for {_a(named)} is weak.")
        return Answer(text, "instrument", False, _conf(absent or "possible"), evidence)
    if kind in ("instrument", "instruments"):
        js = E.instruments(ev, th)
        if not js:
            return Answer(
                CANT_TELL + " No instrument tag is strong enough.", "instruments", evidence=["all instrument tags weak"]
            )
        parts = [f"{_hedge(j.strength)}{j.value}" for j in js]
        weak = " (weak evidence: no instrument tag is strong)" if js[0].strength == "possible" else ""
        return Answer(f"I hear {', '.join(parts)}{weak}.", "instruments", [j.value for j in js],
                      max(_conf(j.strength) for j in js), [j.evidence for j in js])
    if kind == "vocals":
        j = E.vocals(ev, th)
        if j is None:
            return Answer(CANT_TELL + " The vocal evidence is mixed.", kind)
        if j.value:
            return Answer(f"{'Yes' if j.strength == 'clear' else 'Probably'}, there is singing.", kind, True,
                          _conf(j.strength), [j.evidence])
        return Answer(f"{'No' if j.strength == 'clear' else 'Probably not'}, it sounds instrumental.", kind, False,
                      _conf(j.strength), [j.evidence])
    if kind == "genre":
        js = E.genres(ev, th)
        if not js:
            return Answer(CANT_TELL + " No style tag is strong enough.", kind)
        parts = [j.value if j.strength == "clear" else f"probably {j.value}" for j in js[:2]]
        return Answer(f"It sounds like {' or '.join(parts)} music.", kind, [j.value for j in js[:2]],
                      max(_conf(j.strength) for j in js[:2]), [j.evidence for j in js[:2]])
    if kind == "mood":
        js = E.moods(ev, th)
        if not js:
            return Answer(CANT_TELL + " No mood tag is strong enough.", kind)
        return Answer(f"It feels {', '.join(j.value for j in js[:2])} (likely).", kind, [j.value for j in js[:2]], 0.6,
                      [j.evidence for j in js[:2]])
    if kind == "lyrics":
        return Answer(CANT_TELL + " Words and lyrics are outside what the taggers hear.", "unknown")
    return Answer(CANT_TELL, "unknown")


def _weak_key(j: E.Judgement) -> str:
    return ", though other keys fit almost as well" if j.strength == "possible" else ""


def locate(ref: str, library=None) -> tuple[Path, dict | None]:
    """The audio file for a track id, a library path or any audio file, and its catalog row when it has one."""
    row = None
    if library is not None:
        from tunelens.index.search import find_track

        row = find_track(library, ref)
        if row is not None:
            return Path(row["path"]), row
    path = Path(ref)
    if not path.exists():
        raise ValueError(f"{ref} is neither a track of the library nor an audio file")
    return path, row


def evidence_for(ref: str, library=None) -> Evidence:
    """Evidence for a track id or path: stored descriptors and tags when the library has them, else measured now
    (with tags from the default musicnn tagger)."""
    from tunelens.embed.descriptors import analyse

    path, row = locate(ref, library)
    if row is not None:
        from tunelens.index.core.captions import CaptionStore
        from tunelens.index.core.measures import current_measures

        measured = current_measures(library).filter(pl.col("track_id") == row["track_id"])
        if len(measured):
            return Evidence.from_row({**measured.row(0, named=True), "tags": row.get("tags")})
        caps = CaptionStore(library.root).read()
        stored = caps.filter(
            (caps["track_id"] == row["track_id"])
            & (caps["status"] == "ok")
            & (caps["content_hash"] == row["content_hash"])
        )
        if len(stored):
            return Evidence.from_row({**stored.row(0, named=True), "tags": row.get("tags")})
    d = analyse(path)
    if row is not None and row.get("tags"):
        return Evidence(d, parse_tags(row["tags"]))
    from tunelens.embed import load_encoder
    from tunelens.embed.audio import AudioError
    from tunelens.embed.pipeline import embed_file

    encoder = load_encoder("musicnn")
    try:
        emb = embed_file(path, encoder)
    except AudioError:  # measured above, so readable; too short for a window: no tags
        return Evidence(d, {})
    return Evidence(d, {n: float(p) for n, p in zip(encoder.tag_names, emb.tag_probs)})


def ask(track: str, question: str, library=None, model: str | None = None, options: object = None) -> Answer:
    """Answer `question` about `track` (a track id or path in `library`, or any audio file), as `tunelens ask`
    does: from the offline rules (`model` None or "describe") or an audio LM (`model` "qwen2-audio:FOLDER",
    `options` its `AudioLMOptions`)."""
    from tunelens.index import Library

    lib = Library.coerce(library) if library is not None else None
    ev = evidence_for(str(track), lib)
    return load_captioner(model, options).answer(question, ev, locate(str(track), lib)[0])
