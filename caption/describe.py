"""The default, offline captioner: fluent sentences from measured descriptors and predicted tags.

It states only what a judgement in `caption.evidence` supports, hedges "likely" judgements, and leaves
out what the evidence does not cover. Phrasings vary by track (chosen from a hash of the track id), so
a catalogue does not read as one template, while the same track always gets the same caption.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from tunelens.caption import evidence as E
from tunelens.caption.base import Caption
from tunelens.caption.evidence import ANSWER_THRESHOLDS, CAPTION_THRESHOLDS, Evidence, Thresholds
from tunelens.index.core.display import clock

NAME = "describe"
VERSION = "describe-5"  # 4: recogniser instruments, calibrated thresholds, no genre/mood; 5: "likely with singing"


def _pick(options: list[str], seed: int, slot: int) -> str:
    return options[(seed + 7 * slot) % len(options)]


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


class DescribeCaptioner:
    """Captions and answers from the evidence alone, by the rules of `caption.evidence` (no model writes text)."""

    name = NAME
    version = VERSION

    def __init__(self, thresholds: Thresholds = CAPTION_THRESHOLDS):
        self.th = thresholds

    def caption(self, ev: Evidence, track_id: str = "", path=None) -> Caption:
        """`path` is unused: this captioner works from the evidence alone."""
        th = self.th
        seed = int(hashlib.blake2b(track_id.encode(), digest_size=4).hexdigest(), 16)
        inst = E.instruments(ev, th)
        voc = E.vocals(ev, th)
        gen = E.genres(ev, th)
        moods = E.moods(ev, th)
        tempo = E.tempo(ev, th)
        key = E.key(ev, th)
        shape = E.energy_shape(ev)

        clear_inst = [j.value for j in inst if j.strength == "clear"]
        likely_inst = [j.value for j in inst if j.strength == "likely"]
        genre = next((j for j in gen if j.value not in ("dance",)), None)
        mood = [j.value for j in moods][:2]

        # Sentence 1: what it is.
        noun = _pick(["piece", "track", "recording"], seed, 0)
        adjectives = ([_join(mood)] if mood else [])
        if genre is not None:
            g = genre.value if genre.strength == "clear" else f"{genre.value}-leaning"
            adjectives.append(g)
        lead = " ".join(adjectives + [noun])
        if clear_inst:
            s1 = _pick(
                [f"{_article(lead).capitalize()} {lead} for {_join(clear_inst)}",
                 f"{_article(lead).capitalize()} {lead} built on {_join(clear_inst)}",
                 f"{_join(clear_inst).capitalize()} carr{'y' if len(clear_inst) > 1 else 'ies'} this {lead}"],
                seed,
                1,
            )
        else:
            s1 = f"{_article(lead).capitalize()} {lead}"
        if likely_inst:
            s1 += _pick([f", likely with {_join(likely_inst)}", f", probably featuring {_join(likely_inst)}"], seed, 2)
        if voc is not None:
            if voc.value and voc.strength == "clear":
                s1 += _pick([", with singing", ", with voices"], seed, 3)
            elif voc.value:
                s1 += ", likely with singing"
            elif voc.strength == "clear":
                s1 += _pick([", instrumental", " with no vocals"], seed, 3)
        s1 += "."

        # Sentence 2: tempo and key.
        parts = []
        if tempo is not None:
            cls = E.tempo_class(tempo.value, th)
            bpm = f"{tempo.value:.0f} BPM"
            parts.append(
                f"{_pick(['moves at', 'runs at', 'sits at'], seed, 4)} "
                f"{'about ' if tempo.strength == 'clear' else 'roughly '}{bpm}"
                f" ({cls if tempo.strength == 'clear' else 'likely ' + cls})"
            )
        if key is not None:
            parts.append(f"{'is in' if key.strength == 'clear' else 'is likely in'} {key.value}")
        s2 = ("It " + _join(parts) + ".") if parts else ""

        # Sentence 3: how it unfolds.
        s3 = ""
        if shape:
            s3 = f"It {shape['start']}, {shape['shape']} and {shape['end']}."
        caption = " ".join(s for s in (s1, s2, s3) if s)

        details = []
        d = ev.descriptors
        details.append(f"Duration {clock(d.duration)}.")
        loose = ANSWER_THRESHOLDS  # the description lists weaker evidence too, each item with its strength
        for j in E.instruments(ev, loose):
            details.append(f"Instrument: {j.value} ({j.strength}; {j.evidence}).")
        if voc is not None:
            details.append(f"Vocals: {'yes' if voc.value else 'no'} ({voc.strength}; {voc.evidence}).")
        for j in E.genres(ev, loose)[:3]:  # tag readings: no corpus of ours measured their precision
            details.append(f"Style: {j.value} (tag reading, uncalibrated; {j.evidence}).")
        for j in E.moods(ev, loose)[:3]:
            details.append(f"Mood: {j.value} (tag reading, uncalibrated; {j.evidence}).")
        for label, j in (("Tempo", E.tempo(ev, loose)), ("Key", E.key(ev, loose))):
            if j is not None:
                value = f"{j.value:.1f} BPM" if label == "Tempo" else j.value
                details.append(f"{label}: {value} ({j.strength}; {j.evidence}).")
        loud = E.loudness_word(ev)
        if loud:
            lra = f", loudness range {d.loudness_range_lu:.1f} LU" if d.loudness_range_lu is not None else ""
            details.append(f"Loudness: {loud}, {d.loudness_lufs:.1f} LUFS integrated{lra}.")
        details.append(
            f"Tone: {E.brightness_word(ev)} (median spectral centroid {d.brightness_hz:.0f} Hz); "
            f"{d.onset_rate:.1f} note onsets per second."
        )
        if shape:
            details.append(
                f"Shape: {shape['start']}, {shape['shape']}, {shape['end']} (energy by tenths, dB: "
                + " ".join(f"{x:.0f}" for x in d.energy_db)
                + ")."
            )
        return Caption(caption=caption, description=" ".join(details))

    def answer(self, question: str, ev: Evidence, path: str | Path | None = None):
        """`caption.qa.answer`: rules over the evidence, with a confidence; `path` is unused."""
        from tunelens.caption.qa import answer

        return answer(question, ev)


def load_describe(arg: str = "", options: object = None) -> DescribeCaptioner:
    """The registry's factory for `describe` (it takes no argument or options)."""
    if arg:
        raise ValueError(f"the describe captioner takes no argument (got describe:{arg})")
    return DescribeCaptioner()
