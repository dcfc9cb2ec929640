"""The query parser on a table of phrasings (traps included), and hybrid search on a real measured library."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tunelens.index.search.query import CatalogNames, parse, remove_phrase

NAMES = CatalogNames(
    artists=("Johann Sebastian Bach", "Carl Philipp Emanuel Bach", "Wolfgang Amadeus Mozart", "Nina Simone",
             "The Beatles"),
    albums=("Abbey Road", "Goldberg Variations"), genres=("Classical", "Jazz", "Rock"),
    folders=("jazz", "jazz/live", "classical"), has_years=True,
)


@pytest.fixture(scope="module")
def vocab() -> frozenset[str]:
    from tunelens.embed.musicnn_encoder import tag_names

    return frozenset(n.split(": ", 1)[-1].lower() for n in tag_names())


# (query, what it is understood as). Concepts go to the encoder each on its own; facets are read from measurements
# and tags. Traps: "fast food jingle" is a jingle, not a tempo request ("fast food" is a noun); "80s" is a decade
# and "80 bpm" a tempo; "D minor" is a key and "D" alone just a letter; "a minor key" is the mode but "in a minor"
# and "A minor" the key; "not too slow" is a floor, "not slow" the opposite preference; "Bach organ" is a composer
# and an instrument; an artist the library does not hold stays a sound to search for.
TABLE = [
    ("slow sad piano", "sad · piano · slow (< 85 BPM) · sad (likely minor) · sad (likely quiet)"),
    ("fast drums around 120 bpm", "drums · fast (> 110 BPM) · 120 BPM (±4%)"),
    ("Bach on the organ", "the organ · artist: Bach"),
    ("Bach organ", "organ · artist: Bach"),
    ("instrumental jazz from the 80s", "jazz · instrumental (no vocals) · genre tag: Jazz · 1980s"),
    ("quiet guitar under 3 minutes", "guitar · quiet (for this library) · under 3:00"),
    ("choir, no organ", "choir · not organ"),
    ("fast food jingle", "fast food jingle"),
    ("slow motion soundtrack", "slow motion soundtrack"),
    ("not too slow", "not too slow (> 85 BPM)"),
    ("not too fast", "not too fast (< 115 BPM)"),
    ("not slow", "not slow (> 85 BPM)"),
    ("not fast", "not fast (< 110 BPM)"),
    ("80s", "1980s"),
    ("80 bpm", "80 BPM (±4%)"),
    ("the 1980s", "1980s"),
    ("from 1975", "1975"),
    ("before 1990", "before 1990"),
    ("after 2000", "after 2000"),
    ("D minor", "D minor"),
    ("D", "D"),
    ("in D minor", "D minor"),
    ("piano in a minor key", "piano · minor"),
    ("a minor key", "minor"),
    ("a major", "major"),
    ("in a major", "A major"),
    ("A major", "A major"),
    ("strings in A minor", "strings · A minor"),
    ("F# major", "F# major"),
    ("Bb minor", "Bb minor"),
    ("bb major", "Bb major"),
    ("c# minor", "C# minor"),
    ("e flat major", "Eb major"),
    ("in the key of C sharp minor", "C# minor"),
    ("D# minor", "Eb minor"),
    ("major", "major"),
    ("minor key piano", "piano · minor"),
    ("by Bach", "artist: Bach"),
    ("music by Nina Simone", "artist: Nina Simone"),
    ("Mozart strings", "strings · artist: Mozart"),
    ("the beatles", "artist: the beatles"),
    ("100-120 bpm", "100-120 BPM"),
    ("between 90 and 100 bpm", "90-100 BPM"),
    ("over 140 bpm", "> 140 BPM"),
    ("under 70 bpm", "< 70 BPM"),
    ("at 128 bpm", "128 BPM (±4%)"),
    ("120BPM piano", "piano · 120 BPM (±4%)"),
    ("fast", "fast (> 110 BPM)"),
    ("very fast", "very fast (> 140 BPM)"),
    ("very slow", "very slow (< 70 BPM)"),
    ("slow", "slow (< 85 BPM)"),
    ("moderate tempo", "moderate tempo (85-115 BPM)"),
    ("mid-tempo rock", "rock · moderate tempo (85-115 BPM) · genre tag: Rock"),
    ("up-tempo brass", "brass · fast (> 110 BPM)"),
    ("uptempo dance", "dance · fast (> 110 BPM)"),
    ("allegro strings", "strings · fast (> 110 BPM)"),
    ("adagio", "slow (< 85 BPM)"),
    ("slow dance", "dance · slow (< 85 BPM)"),
    ("short piano piece", "piano · short (< 3 min)"),
    ("a long track", "long (> 6 min)"),
    ("short", "short (< 3 min)"),
    ("long sustained notes", "long sustained notes"),
    ("under 5 minutes", "under 5:00"),
    ("over 10 minutes", "over 10:00"),
    ("3-minute song", "about 3:00"),
    ("2-4 minutes", "2:00-4:00 long"),
    ("instrumental", "instrumental (no vocals)"),
    ("no vocals", "instrumental (no vocals)"),
    ("without vocals", "instrumental (no vocals)"),
    ("with a singer", "singer · with vocals"),
    ("female vocals", "female vocals · with vocals"),
    ("male voice", "male voice · with vocals"),
    ("choir singing", "singing · choir · with vocals"),
    ("a cappella", "a cappella · with vocals"),
    ("no drums", "not drums"),
    ("without piano", "not piano"),
    ("not piano", "not piano"),
    ("harpsichord, not piano", "harpsichord · not piano"),
    ("strings but no piano", "strings · not piano"),
    ("choir but not organ", "choir · not organ"),
    ("quiet", "quiet (for this library)"),
    ("loud rock", "rock · loud (for this library) · genre tag: Rock"),
    ("soft piano", "soft · piano · quiet (for this library)"),
    ("gentle acoustic guitar", "gentle · acoustic guitar · quiet (for this library)"),
    ("powerful brass", "powerful · brass · loud (for this library)"),
    ("builds up", "builds up (energy rises)"),
    ("gets louder", "builds up (energy rises)"),
    ("fades out", "fades (energy falls)"),
    ("dynamic orchestral", "orchestral · wide dynamics"),
    ("happy pop", "happy · pop · happy (likely major)"),
    ("dark ambient", "dark · ambient · dark (likely minor)"),
    ("calm", "calm · calm (likely quiet)"),
    ("string orchestra, violins", "string orchestra · violins"),
    ("church organ", "church organ"),
    ("electric guitar and bass", "electric guitar and bass"),
    ("a solo performer playing alone", "a solo performer playing alone"),
    ("an unaccompanied melody, one single line", "an unaccompanied melody, one single line"),
    ("from the album Abbey Road", "album: Abbey Road"),
    ("album Goldberg Variations", "album: Goldberg Variations"),
    ("in the jazz folder", "folder: jazz"),
    ("folder jazz/live", "folder: jazz/live"),
    ("classical choir", "classical · choir · genre tag: Classical"),
    ("jazz", "jazz · genre tag: Jazz"),
    ("techno", "techno"),
    ("slow piano in D minor under 4 minutes", "piano · slow (< 85 BPM) · D minor · under 4:00"),
    ("fast jazz with a singer, no drums",
     "singer · jazz · not drums · fast (> 110 BPM) · genre tag: Jazz · with vocals"),
]


def test_table_is_large_enough():
    assert len(TABLE) >= 80


@pytest.mark.parametrize("query,understood", TABLE)
def test_parser_table(query, understood, vocab):
    assert parse(query, NAMES, vocab).understood() == understood


def test_hard_and_soft_facets(vocab):
    q = parse("slow piano in D minor between 90 and 100 bpm by Bach", NAMES, vocab)
    kinds = {f.kind: f for f in q.facets}
    assert [f.hard for f in q.facets if f.kind == "tempo"] == [False, True]
    assert kinds["key"].hard and kinds["key"].value == "D minor"
    assert kinds["artist"].hard and set(kinds["artist"].value.split(" | ")) == {
        "Johann Sebastian Bach", "Carl Philipp Emanuel Bach"}


def test_names_the_library_lacks_stay_semantic_with_a_note(vocab):
    q = parse("by Miles Davis", NAMES, vocab)
    assert q.concepts == ["by Miles Davis"] and not q.facets and "Miles Davis" in q.notes[0]
    no_years = CatalogNames(artists=NAMES.artists)
    q = parse("instrumental jazz from the 80s", no_years, vocab)
    assert "80s" in q.concepts and not any(f.kind == "year" for f in q.facets)  # "80s" is also a sound (a tag)
    assert "year tag" in q.notes[0]
    q = parse("in my rock folder", NAMES, vocab)
    assert not q.facets and "no folder" in q.notes[0]


def test_without_a_vocabulary_free_text_stays_whole():
    """An encoder with no tag vocabulary (CLAP) gets a free description as written; facets are still read."""
    assert parse("a dreamy synth texture").concepts == ["a dreamy synth texture"]
    q = parse("slow dreamy synth texture")
    assert q.concepts == ["dreamy synth texture"] and q.facets[0].label == "slow (< 85 BPM)"


@pytest.mark.parametrize("query,phrase,left", [
    ("slow piano, no drums", "slow", "piano, no drums"),
    ("piano over 100 bpm", "over 100 bpm", "piano"),
    ("choir, no organ", "organ", "choir"),
    ("Bach on the organ", "Bach", "on the organ"),
])
def test_removing_a_chip_removes_its_words(query, phrase, left):
    assert remove_phrase(query, phrase) == left


# -- hybrid search on a real library (the 8 demo tracks, measured by `index`) -----------------------------------
@pytest.fixture(scope="module")
def lib(demo_library):
    from tunelens.index import Library

    return Library.open(demo_library)


def _measured(lib):
    from tunelens.index.search.hybrid import facet_table

    ft = facet_table(lib)
    return dict(zip(ft.track_ids, ft.columns["tempo"])), dict(zip(ft.track_ids, ft.columns["key"]))


def test_index_alone_measures_and_search_uses_it(lib):
    import tunelens

    tempo, _ = _measured(lib)
    assert all(np.isfinite(v) for v in tempo.values())  # measured without `tunelens caption`
    hits = tunelens.search(lib, "slow", k=8)
    assert hits.understood == "slow (< 85 BPM)"
    bpm = [tempo[h.track_id] for h in hits]
    slow_first = [b < 85 for b in bpm]
    assert slow_first == sorted(slow_first, reverse=True), bpm  # every slow track before any other
    assert all("BPM" in h.why[0] for h in hits)


def test_hard_facets_filter_and_an_empty_result_says_why(lib):
    import tunelens

    tempo, key = _measured(lib)
    some_key = sorted(k for k in key.values() if k)[0]
    hits = tunelens.search(lib, f"music in {some_key}", k=8)
    assert hits and {key[h.track_id] for h in hits} == {some_key}
    assert all(f"{some_key}: {some_key} ✓" in h.why for h in hits)
    lo = sorted(tempo.values())[len(tempo) // 2]
    hits = tunelens.search(lib, f"over {lo:.0f} bpm", k=8)
    assert hits and all(tempo[h.track_id] >= round(lo) for h in hits)
    empty = tunelens.search(lib, "piano over 300 bpm", k=8)
    assert not empty and "over 300 bpm" in empty.empty_reason


def test_file_tags_and_negation(lib):
    import tunelens

    cat = {r["track_id"]: r for r in lib.ok_tracks().iter_rows(named=True)}
    hits = tunelens.search(lib, "Bach on the organ", k=8)
    assert hits and all("Bach" in cat[h.track_id]["artist"] for h in hits)
    untagged = sum(cat[t]["artist"] is None for t in cat)
    assert not untagged or any("no artist tag" in n for n in hits.notes)
    with_drums = [h.rel_path for h in tunelens.search(lib, "music", k=8)]
    without = [h.rel_path for h in tunelens.search(lib, "music without drums", k=8)]
    drums = [p for p in with_drums if p.startswith("drums/")]
    if drums:
        assert all(without.index(p) >= len(without) - len(drums) for p in drums if p in without)


def test_missing_measurements_are_said_not_guessed(tmp_path, demo_music):
    import tunelens
    from tunelens.embed import load_encoder

    tunelens.index_folder(tmp_path / "lib", demo_music, load_encoder("musicnn"), tunelens.IndexConfig(measure=False))
    lib = tunelens.Library.open(tmp_path / "lib")
    soft = tunelens.search(lib, "slow piano", k=4)
    assert len(soft) == 4 and any("no measured tempo" in n and "neither helps nor hurts" in n for n in soft.notes)
    assert all("not judged" in h.why[-1] for h in soft)
    hard = tunelens.search(lib, "piano 120 bpm", k=4)
    assert not hard and any("left out" in n for n in hard.notes) and "120 bpm" in hard.empty_reason
    report = tunelens.index_folder(tmp_path / "lib", demo_music)  # a later run measures what is missing
    assert report.indexed == 0 and report.measures.measured == len(lib.ok_tracks())


def test_similar_steered_slower(lib):
    import tunelens

    tempo, _ = _measured(lib)
    ref = max(tempo, key=tempo.get)
    hits = tunelens.similar(lib, ref, k=7, steer="slower")
    assert hits.query is not None and "slower than this" in hits.understood
    assert ref not in {h.track_id for h in hits}
    slower = [tempo[h.track_id] < 0.92 * tempo[ref] for h in hits]
    assert slower == sorted(slower, reverse=True)


def test_cli_prints_what_it_understood_and_why(demo_library):
    from typer.testing import CliRunner

    from tunelens.app.cli import app

    r = CliRunner().invoke(app, ["search", "slow piano", "--library", str(demo_library), "-k", "3"])
    assert r.exit_code == 0 and "understood as: piano · slow (< 85 BPM)" in r.output and "BPM" in r.output
    r = CliRunner().invoke(app, ["search", "slow piano", "--library", str(demo_library), "-k", "3", "--json"])
    out = json.loads(r.output)
    assert out["query"]["understood"] == "piano · slow (< 85 BPM)" and len(out["hits"]) == 3
    assert all(h["why"] for h in out["hits"])
    r = CliRunner().invoke(app, ["search", "piano over 300 bpm", "--library", str(demo_library)])
    assert r.exit_code == 0 and "no track matches “over 300 bpm”" in r.output


def test_works_with_a_clap_encoder(tmp_path, music_dir, tiny_encoder):
    """The parser only decides what goes to the model and what to the measurements: a CLAP model (no tags, no
    vocabulary) gets the concepts whole, and a vocals facet says it has nothing to judge by."""
    import tunelens

    tunelens.index_folder(tmp_path / "lib", music_dir, tiny_encoder, tunelens.IndexConfig(processes=0))
    lib = tunelens.Library.open(tmp_path / "lib")
    hits = tunelens.search(lib, "instrumental sine tone under 10 seconds", k=5, encoder=tiny_encoder)
    assert hits.query.concepts == ["sine tone"]
    assert sorted(round(h.duration) for h in hits) == [4, 7, 9]
    assert any("no vocal tags" in n for n in hits.notes)
    assert all(h.why[0].startswith("sounds like sine tone") for h in hits)
