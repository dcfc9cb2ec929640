"""The tunelens app: search by description, listen from the best-matching moment, explore a track and ask it
questions, see the whole library. Start it with `tunelens app --library LIB`.

It composes library calls (index.search, index.tracks, caption.qa); nothing here is needed by a batch job.
"""
from __future__ import annotations

from itertools import islice
from pathlib import Path

import polars as pl
import streamlit as st

from tunelens.app import resources as R
from tunelens.app.playlists_page import playlists_page, start_query, start_radio
from tunelens.app.uploads import similar_to_clip
from tunelens.index.core.display import clock as m_ss
from tunelens.index.core.display import code_literal as code
from tunelens.index.core.display import markdown_literal as md
from tunelens.index.core.library import LibraryError
from tunelens.index.core.tracks import TrackFilter, tag_probs
from tunelens.index.curation.dupes import load_duplicates
from tunelens.index.curation.quality import QUALITY_FLAGS
from tunelens.index.search import MAX_QUERY_CHARS, Hit, similar, to_csv, to_m3u
from tunelens.index.search.hybrid import parse_for
from tunelens.index.search.nearest import ranked_hits
from tunelens.index.search.query import Facet, ParsedQuery, remove_phrase

PAGES = ["Search", "Track", "Playlists", "Library"]
EXAMPLES = ["slow solo piano", "choir singing", "fast drums and percussion beat", "acoustic guitar", "flute melody"]


def clock(seconds: float | None) -> str:
    return "–" if seconds is None else m_ss(int(seconds))  # floored, as the audio player shows time


def top_tags(tags_json: str | None, n: int = 4) -> list[str]:
    return [t for t, p in sorted(tag_probs(tags_json).items(), key=lambda kv: -kv[1])[:n] if p >= 0.2]


def open_track(track_id: str) -> None:
    st.session_state["page"] = "Track"
    st.session_state["track_ref"] = track_id


def more_like(track_id: str) -> None:
    st.session_state["page"] = "Search"
    st.session_state["similar_to"] = track_id


def clear_similar() -> None:
    st.session_state.pop("similar_to", None)


def remove_chip(phrase: str) -> None:
    """A chip's ✕: its words leave the query, and the search runs again without them."""
    st.session_state["q"] = remove_phrase(st.session_state.get("q", ""), phrase)


# sidebar widgets a hard facet of the query sets (and that go back to "any" when the facet is gone)
TEMPO_RANGE, DURATION_STEP = (40, 220), 1.0


def facet_filters(q: ParsedQuery | None, table: pl.DataFrame) -> dict[str, object]:
    """Sidebar widget values the query's hard facets stand for: tempo range, key, folder, artist."""
    out: dict[str, object] = {}
    for f in q.facets if q else []:
        if not f.hard:
            continue
        if f.kind == "tempo" and "tempo_bpm" in table.columns and table["tempo_bpm"].drop_nulls().len():
            lo, hi = TEMPO_RANGE
            out["f_tempo"] = (max(lo, int(f.low or lo)), min(hi, int(round(f.high)) if f.high else hi))
        elif f.kind == "key":
            out["f_keys"] = [f.value]
        elif f.kind == "folder":
            out["f_folder"] = f.value
        elif f.kind == "artist":
            out["f_tag_field"], out["f_tag_value"] = "artist", _common_part(f)
    return out


def _common_part(f: Facet) -> str:
    """The words of an artist facet the sidebar's "contains" filter matches all its artists by."""
    return f.label.split(": ", 1)[1]


def sync_filters(q: ParsedQuery | None, table: pl.DataFrame) -> None:
    """Set the sidebar filters a new query's hard facets stand for, and reset those an earlier query had set."""
    if st.session_state.get("_synced_q") == (q.text if q else None):
        return
    defaults = {"f_tempo": TEMPO_RANGE, "f_keys": [], "f_folder": "(all)", "f_tag_field": "artist", "f_tag_value": ""}
    wanted = facet_filters(q, table)
    for k in st.session_state.get("_query_filters", []):
        if k not in wanted:
            st.session_state[k] = defaults[k]
    for k, v in wanted.items():
        st.session_state[k] = v
    st.session_state["_query_filters"] = list(wanted)
    st.session_state["_synced_q"] = q.text if q else None


def chips(q: ParsedQuery) -> None:
    """What the query was understood as, one removable chip per concept and facet."""
    items = q.chips()
    if not items:
        return
    cols = st.columns(min(len(items), 6) + 1, vertical_alignment="center")
    cols[0].caption("understood as:")
    for i, (label, phrase) in enumerate(items):
        cols[1 + i % 6].button(f"{md(label)}  ✕", key=f"chip_{i}", on_click=remove_chip, args=(phrase,),
                               help=f"Remove “{phrase}” from the query")


# -- Search ---------------------------------------------------------------------------------------------
def filters_sidebar(table: pl.DataFrame) -> TrackFilter:
    f = TrackFilter()
    with st.sidebar:
        st.subheader("Filters")
        if len(table):
            lo, hi = float(table["duration"].min()), float(table["duration"].max())
            if hi > lo:
                d = st.slider(
                    "Duration (s)", 0.0, float(int(hi) + 1), (0.0, float(int(hi) + 1)), step=1.0, key="f_duration"
                )
                f.min_duration = d[0] if d[0] > 0 else None
                f.max_duration = d[1] if d[1] < int(hi) + 1 else None
        tempi = table["tempo_bpm"].drop_nulls() if "tempo_bpm" in table.columns else pl.Series([])
        if len(tempi):
            t = st.slider("Tempo (BPM)", 40, 220, (40, 220), key="f_tempo")
            f.min_tempo = float(t[0]) if t[0] > 40 else None
            f.max_tempo = float(t[1]) if t[1] < 220 else None
            keys = sorted(table["key"].drop_nulls().unique().to_list())
            f.keys = st.multiselect("Key", keys, key="f_keys")
            mode = st.radio("Mode", ["any", "major", "minor"], horizontal=True, key="f_mode")
            f.mode = None if mode == "any" else mode
        else:
            st.caption("Tempo and key filters appear once the library is measured (run `tunelens index` again).")
        names = R.tag_names(table)
        f.tags = st.multiselect("Predicted tags", names, key="f_tags", help="Each chosen tag with probability ≥ 0.3")
        folders = sorted({p.rsplit("/", 1)[0] for p in table["rel_path"] if "/" in p})
        folder = st.selectbox("Folder", ["(all)"] + folders, key="f_folder")
        f.folder = None if folder == "(all)" else folder
        field_name = st.selectbox("File tag", ["artist", "title", "album", "genre", "date"], key="f_tag_field")
        value = st.text_input(f"{field_name.capitalize()} contains", key="f_tag_value")
        f.file_tag = (field_name, value) if value.strip() else None
        f.exclude_flags = st.multiselect("Hide audio problems", list(QUALITY_FLAGS), key="f_flags",
                                         format_func=lambda x: x.replace("_", " "),
                                         help="Leave out tracks with these quality flags (see the Library page)")
    return f


def result_card(h: Hit, row: dict | None, lib) -> None:
    with st.container(border=True):
        left, right = st.columns([3, 2], vertical_alignment="center")
        with left:
            title = h.title or Path(h.rel_path).stem
            st.markdown(f"**{h.rank}. {md(title)}**" + (f" — {md(h.artist)}" if h.artist else ""))
            facts = [f"score {h.score:.3f}", clock(h.duration)]
            if row and row.get("tempo_bpm"):
                facts.append(f"{row['tempo_bpm']:.0f} BPM")
            if row and row.get("key"):
                facts.append(row["key"])
            st.caption(" · ".join(md(f) for f in facts) + f" · {code(h.rel_path)}")
            if h.why:
                st.caption("why: " + " · ".join(md(w) for w in h.why))
            if row and row.get("caption"):
                st.markdown(f"*{md(row['caption'], 2000)}*")
            tags = top_tags(row.get("tags") if row else None)
            if tags:
                st.markdown(" ".join(f":gray-badge[{t}]" for t in tags))
        with right:
            try:
                data, mime = R.audio_bytes(lib, h.track_id)
                st.audio(data, format=mime, start_time=int(h.best_start_s))
                st.caption(f"Best match at {clock(h.best_start_s)}–{clock(min(h.best_end_s, h.duration))}")
            except ValueError as e:
                st.warning(str(e))
            b1, b2 = st.columns(2)
            b1.button("More like this", key=f"more_{h.rank}_{h.track_id}", on_click=more_like, args=(h.track_id,),
                      width="stretch")
            b2.button("Open track", key=f"open_{h.rank}_{h.track_id}", on_click=open_track, args=(h.track_id,),
                      width="stretch")


def search_page(lib, root: Path) -> None:
    table = R.table(root)
    if "q" not in st.session_state and st.query_params.get("q"):
        st.session_state["q"] = st.query_params["q"]
    text = st.session_state.get("q", "") or ""
    parsed = None
    if text.strip() and not st.session_state.get("similar_to"):
        parsed = parse_for(lib, text[:MAX_QUERY_CHARS], R.encoder(lib.manifest.pipeline.model))
    sync_filters(parsed, table)
    f = filters_sidebar(table)
    allowed = None if f.is_empty() else set(f.apply(table)["track_id"])
    k = st.sidebar.slider("Results", 5, 50, 10, step=5, key="k")
    similar_to = st.session_state.get("similar_to")
    if similar_to:
        found = table.filter(pl.col("track_id") == similar_to)
        base = found.row(0, named=True) if len(found) else None
        if base is None:
            st.error("That track is no longer in the library.")
            clear_similar()
            return
        st.subheader(f"Tracks like {md(base['title'] or Path(base['rel_path']).stem)}")
        st.button("← Back to text search", on_click=clear_similar)
        steer = st.text_input("…but", key="steer", placeholder="slower · without vocals · with piano · in a minor key",
                              help="Steer the search away from the track: tempo words are relative to it.")
        hits = similar(lib, similar_to, k=k, allowed=allowed, steer=steer)
        if hits.query is not None:
            st.caption(f"steered by: {md(hits.query.understood())}")
    else:
        st.title("Search your music")
        query = st.text_input("Describe the music", key="q", placeholder="e.g. " + " · ".join(EXAMPLES[:3]))
        by_sound = None if query.strip() else sound_query(lib, k, allowed)
        if by_sound is not None:
            show_hits(by_sound, table, lib, allowed)
            return
        if not query.strip():
            st.info(
                "Type a description of the music you want: instruments, tempo, mood, style. "
                f"For example: *{'*, *'.join(EXAMPLES)}*."
            )
            return
        if len(query) > MAX_QUERY_CHARS:
            st.warning(f"The query is {len(query):,} characters long; only its first {MAX_QUERY_CHARS:,} are used.")
        try:  # the query read above (it set the filters) is the one searched
            hits = ranked_hits(lib, R.encoder(lib.manifest.pipeline.model), parsed, k, allowed=allowed)
        except ValueError as e:
            st.error(str(e))
            return
        if hits.query is not None:
            chips(hits.query)
        for note in hits.notes:
            st.caption(note)
    show_hits(hits, table, lib, allowed)


def sound_query(lib, k: int, allowed: set[str] | None):
    """Tracks like a dropped or recorded clip (None while there is none)."""
    with st.expander("…or search by sound: drop a clip, or record one"):
        dropped = st.file_uploader("An audio clip (up to 10 minutes)", key="clip",
                                   type=["wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "aif", "aiff"])
        recorded = st.audio_input("Or record from the microphone", key="rec")
    clip = dropped or recorded
    if clip is None:
        return None
    st.subheader("Tracks like your clip")
    try:
        return similar_to_clip(lib, clip.getvalue(), getattr(clip, "name", "clip.wav"), k, allowed)
    except ValueError as e:  # not audio, too long, too large: a sentence, and nothing else on the page
        st.error(str(e))
        st.stop()


def show_hits(hits, table: pl.DataFrame, lib, allowed: set[str] | None) -> None:
    if allowed is not None:
        st.caption(f"Filters keep {len(allowed):,} of {len(table):,} tracks.")
    if not hits:
        why = getattr(hits, "empty_reason", None)
        st.warning(f"No results: {md(why)}. Remove a chip, or widen the filters in the sidebar."
                   if why and why != "the filters leave no track" else
                   "No track matches these filters. Widen or clear them in the sidebar.")
        return
    shown = table.filter(pl.col("track_id").is_in([h.track_id for h in hits]))
    rows = {r["track_id"]: r for r in shown.iter_rows(named=True)}
    c1, c2, c3, _ = st.columns([1, 1, 1.4, 3])
    c1.download_button("Export M3U", to_m3u(hits), file_name="tunelens.m3u", mime="audio/x-mpegurl")
    c2.download_button("Export CSV", to_csv(hits), file_name="tunelens.csv", mime="text/csv")
    query = getattr(hits, "query", None)
    if query is not None and query.text and not st.session_state.get("similar_to"):
        c3.button("Make a playlist", on_click=start_query, args=(query.text,),
                  help="A playlist of this search, ordered for listening, with the playlist rules")
    for h in hits:
        result_card(h, rows.get(h.track_id), lib)


# -- Track ----------------------------------------------------------------------------------------------
def track_page(lib, root: Path) -> None:
    if "track_ref" not in st.session_state and st.query_params.get("track"):
        st.session_state["track_ref"] = st.query_params["track"]
    ref = st.text_input("Track id or path in the library", key="track_ref")
    if not ref.strip():
        st.info("Open a track from the search results, or paste its id or its path in the library.")
        return
    row = R.catalog_track(lib, ref)
    if row is None:
        st.error(
            f"{ref.strip()[:200]!r} is not a playable track of this library. Only tracks in the library's "
            "catalog can be opened."
        )
        return
    full = R.table(root).filter(pl.col("track_id") == row["track_id"])
    info = full.row(0, named=True) if len(full) else row
    st.title(md(info["title"] or Path(info["rel_path"]).stem))
    st.caption(" · ".join([md(x) for x in (info.get("artist"), info.get("album")) if x]
                          + [clock(info["duration"]), code(info["rel_path"])]))
    st.image(
        R.spectrogram(info["path"], info["content_hash"]), caption="Mel spectrogram (time →, pitch ↑)", width="stretch"
    )
    data, mime = R.audio_bytes(lib, info["track_id"])
    st.audio(data, format=mime)
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Description")
        if info.get("caption"):
            st.markdown(md(info["caption"], 2000))
            with st.expander("Evidence and details"):
                st.markdown(md(info.get("description") or "", 5000))
            m = st.columns(4)
            m[0].metric("Tempo", f"{info['tempo_bpm']:.0f} BPM" if info.get("tempo_bpm") else "–")
            m[1].metric("Key", info.get("key") or "–")
            m[2].metric(
                "Loudness", f"{info['loudness_lufs']:.1f} LUFS" if info.get("loudness_lufs") is not None else "–"
            )
            m[3].metric("Length", clock(info["duration"]))
        else:
            st.info("Not captioned yet: run `tunelens caption --library LIB` for a description and measurements.")
        st.subheader("Ask about this track")
        qa_box(lib, info)
    with right:
        st.subheader("Top tags")
        probs = sorted(tag_probs(info.get("tags")).items(), key=lambda kv: -kv[1])[:10]
        if probs:
            st.bar_chart(pl.DataFrame({"tag": [t for t, _ in probs], "probability": [p for _, p in probs]}), x="tag",
                         y="probability", horizontal=True, height=300)
        else:
            st.caption("This library's model stores no tags.")
        st.button("Radio from this track", on_click=start_radio, args=(info["track_id"],), width="stretch")
        st.subheader("Similar tracks")
        for h in similar(lib, info["track_id"], k=5):
            st.button(f"{md(h.title or Path(h.rel_path).stem)} · {h.score:.2f}", key=f"sim_{h.track_id}",
                      on_click=open_track, args=(h.track_id,), width="stretch")


def qa_box(lib, info: dict) -> None:
    from tunelens.caption.qa import MAX_QUESTION_CHARS, answer, evidence_for

    history = st.session_state.setdefault(f"qa_{info['track_id']}", [])
    for role, text, note in history:
        with st.chat_message(role):
            st.markdown(md(text, 2000))  # the question as typed, the answer quoting tags: shown as text
            if note:
                st.caption(md(note, 2000))
    question = st.chat_input("What key is it in? Is there singing? How does it end?", key="qa_input")
    if question is None:
        return
    question = question.strip()
    if not question:
        st.warning("Ask a question about the music, e.g. “what is the tempo?”")
        return
    with st.spinner("Listening…"):
        try:
            a = answer(question[:MAX_QUESTION_CHARS], evidence_for(info["track_id"], lib))
            reply = a.text
            note = f"Evidence: {'; '.join(a.evidence)}" if a.evidence else ""
            if note and a.confidence is not None:
                note += f" · confidence {a.confidence:.1f}"
        except Exception as e:  # noqa: BLE001 - any analysis failure is shown as a sentence, never a traceback
            reply, note = f"I could not analyse this track: {e}", ""
    history += [("user", question[:300], ""), ("assistant", reply, note)]
    st.rerun()


# -- Library --------------------------------------------------------------------------------------------
def library_page(lib, root: Path) -> None:
    st.title("Library")
    cat = lib.catalog
    ok = cat.filter(pl.col("status") == "ok")
    failed = cat.filter(pl.col("status") != "ok")
    table = R.table(root)
    p = lib.manifest.pipeline
    m = st.columns(4)
    m[0].metric("Tracks", f"{len(ok):,}")
    m[1].metric("Hours of audio", f"{ok['duration'].sum() / 3600:.1f}")
    m[2].metric("Captioned", f"{table['caption'].is_not_null().sum():,}")
    m[3].metric("Failed files", f"{len(failed):,}")
    st.caption(
        f"Model `{p.model}` · encoder `{p.encoder_version}` · {p.sample_rate} Hz, {p.window_seconds:g} s windows, "
        f"{p.pooling} pooling · pipeline version {p.pipeline_version} · `{root}`"
    )
    st.subheader("Map of the collection")
    pts = R.map_points(root)
    names = R.tag_names(pts)
    color_by = st.selectbox("Colour by", ["folder"] + [f"tag: {n}" for n in names], key="map_color")
    if color_by.startswith("tag: "):
        tag = color_by[5:]
        pts = pts.with_columns(pl.Series("colour", [tag_probs(j).get(tag, 0.0) for j in pts["tags"]]))
    else:
        pts = pts.with_columns(pl.col("folder").alias("colour"))
    import altair as alt

    chart = (
        alt.Chart(pts.select("x", "y", "colour", "rel_path", "track_id").to_pandas())
        .mark_circle(size=70)
        .encode(x=alt.X("x", axis=None), y=alt.Y("y", axis=None), color="colour", tooltip=["rel_path", "colour"])
        .add_params(alt.selection_point(name="pick", fields=["track_id"]))
        .properties(height=420)
    )
    event = st.altair_chart(chart, width="stretch", on_select="rerun", key="map")
    picked = event.get("selection", {}).get("pick") if event else None
    if picked:
        tid = picked[0].get("track_id")
        st.button(f"Open {md(pts.filter(pl.col('track_id') == tid)['rel_path'][0])}", on_click=open_track,
                  args=(tid,))
    else:
        st.caption(
            "Similar tracks sit close together (a 2-D projection of the track vectors). Click a point to open it."
        )
    st.subheader("Files that could not be indexed")
    if not len(failed):
        st.success("Every file was indexed.")
    else:
        for r in failed.head(200).iter_rows(named=True):
            st.markdown(f"- {code(r['rel_path'])}: {md(r['error'], 1000)}")
        if len(failed) > 200:
            st.caption(f"…and {len(failed) - 200:,} more (see `tunelens info`).")
    st.subheader("Audio problems")
    counts = {f: int(table[f"flag_{f}"].sum()) for f in QUALITY_FLAGS}
    if not any(counts.values()):
        st.success("No track is silent, clipped, low-passed, mis-sized, offset or fake stereo.")
    else:
        st.caption(" · ".join(f"{f.replace('_', ' ')}: {n}" for f, n in counts.items() if n))
        flagged = table.filter(pl.col("quality_flags").list.len() > 0).sort("rel_path")
        for r in flagged.head(200).iter_rows(named=True):
            st.markdown(f"- {code(r['rel_path'])}: {', '.join(r['quality_flags']).replace('_', ' ')}")
    st.subheader("Duplicates")
    clusters = load_duplicates(lib)
    if clusters is None:
        st.caption(f"Not checked since the library last changed. Run `tunelens dupes --library {root}` to find them.")
    elif not len(clusters):
        st.success("No recording is stored twice.")
    else:
        n = clusters["cluster"].n_unique()
        st.caption(f"{n} recordings stored more than once; {int((~clusters['keeper']).sum())} spare copies.")
        for _, part in islice(clusters.group_by("cluster", maintain_order=True), 100):
            lines = [
                f"- {'**keep**' if r['keeper'] else 'spare'} {code(r['rel_path'])} "
                f"({'' if r['keeper'] else r['relation'] + '; '}{r['matched_by']}, {r['bitrate_kbps']:.0f} kbps)"
                for r in part.iter_rows(named=True)
            ]
            st.markdown("\n".join(lines))


def main() -> None:
    st.set_page_config(page_title="tunelens", page_icon="🎧", layout="wide")
    root = R.library_path()
    if root is None:
        st.error("No library given. Start the app with `tunelens app --library LIB`.")
        return
    try:
        lib = R.library(root)
    except Exception as e:  # noqa: BLE001
        st.error(f"Cannot open the library at {root}: {e}")
        return
    if "page" not in st.session_state:
        st.session_state["page"] = (
            st.query_params.get("page", "Search")
            if st.query_params.get("page") in PAGES
            else ("Track" if st.query_params.get("track") else "Search")
        )
    with st.sidebar:
        st.markdown("## tunelens")
        st.radio("Page", PAGES, key="page", label_visibility="collapsed")
        st.divider()
    page = {"Search": search_page, "Track": track_page, "Playlists": playlists_page,
            "Library": library_page}[st.session_state["page"]]
    try:
        page(lib, root)
    except LibraryError as e:  # a damaged library file: the sentence that names it, not a traceback
        st.error(md(str(e), 1000))


main()
