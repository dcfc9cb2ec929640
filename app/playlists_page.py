"""The app's Playlists page: make a radio, a path or a playlist from a description (also from the search page's
query or a track page), listen through it, save it in the library, refresh it, export it. It calls
`index.playlists` as `tunelens playlist` does."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

import tunelens
from tunelens.app import resources as R
from tunelens.index.core.display import markdown_literal as md
from tunelens.index.playlists import FORMATS, PlaylistRules, delete_playlist, render
from tunelens.index.playlists.export import MEDIA_TYPES

KINDS = {"radio": "Radio from a track", "query": "From a description", "path": "Path between two tracks"}


def start_radio(track_id: str) -> None:
    """From a track page: open this page with a radio from the track."""
    st.session_state.update(page="Playlists", pl_kind="radio", pl_seed=track_id)
    st.session_state.pop("playlist", None)


def start_query(text: str) -> None:
    """From the search page: open this page with a playlist of the query."""
    st.session_state.update(page="Playlists", pl_kind="query", pl_text=text)
    st.session_state.pop("playlist", None)


def _rules() -> PlaylistRules:
    with st.expander("Rules"):
        c = st.columns(3)
        artist = c[0].number_input("At most per artist (0: automatic)", 0, 100, 0, key="pl_artist")
        album = c[1].number_input("At most per album (0: automatic)", 0, 100, 0, key="pl_album")
        tempo = c[2].number_input("Tempo continuity, % (0: off)", 0, 50, 0, key="pl_tempo")
        d = st.columns(3)
        key = d[0].checkbox("Key continuity (for mixing)", key="pl_key")
        flagged = d[1].checkbox("Allow quality-flagged tracks", key="pl_flagged")
        dupes = d[2].checkbox("Allow duplicates and repeated titles", key="pl_dupes")
    return PlaylistRules(max_per_artist=int(artist), max_per_album=int(album), key_continuity=key,
                         tempo_continuity=tempo / 100 if tempo else None, skip_flagged=not flagged,
                         one_per_duplicate=not dupes, no_repeat_title=not dupes)


def _make(lib) -> None:
    kind = st.radio("Make", list(KINDS), format_func=KINDS.get, key="pl_kind", horizontal=True)
    c = st.columns([3, 1, 1])
    if kind == "radio":
        seed = c[0].text_input("Seed track (id or path in the library)", key="pl_seed")
        text = st.text_input("Steer it (optional)", key="pl_steer", placeholder="calmer · no vocals · faster")
    elif kind == "query":
        text = c[0].text_input("Describe it", key="pl_text", placeholder="rainy day jazz · an hour of calm piano")
    else:
        seed = c[0].text_input("From (track id or path)", key="pl_from")
        end = st.text_input("To (track id or path)", key="pl_to")
    by_minutes = c[2].toggle("Minutes", key="pl_by_minutes", disabled=kind == "path")
    length = c[1].number_input("Minutes" if by_minutes and kind != "path" else "Tracks", 3, 600,
                               12 if kind == "path" else 30, key="pl_length")
    rules = _rules()
    if not st.button("Make playlist", type="primary"):
        return
    n, minutes = (None, float(length)) if by_minutes and kind != "path" else (int(length), None)
    try:
        with st.spinner("Making the playlist…"):
            if kind == "radio":
                pl = tunelens.radio(lib, [seed.strip()], text or None, n, minutes, rules,
                                    encoder=R.encoder(lib.manifest.pipeline.model))
            elif kind == "query":
                pl = tunelens.query_playlist(lib, text, n, minutes, rules,
                                             encoder=R.encoder(lib.manifest.pipeline.model))
            else:
                pl = tunelens.path_between(lib, seed.strip(), end.strip(), n, rules)
    except (ValueError, tunelens.LibraryError) as e:
        st.error(str(e))
        return
    st.session_state["playlist"] = pl


def _show(lib, pl, saved: bool) -> None:
    st.subheader(md(pl.name))
    st.caption(f"{len(pl.tracks)} tracks · {pl.duration / 60:.0f} min · {pl.kind}")
    for note in pl.notes:
        st.caption(f"note: {md(note, 1000)}")
    c = st.columns([2, 1, 1, 1, 1])
    name = c[0].text_input("Name", value=pl.name, key=f"pl_name_{saved}")
    if c[1].button("Save" if not saved else "Refresh", key=f"pl_save_{saved}"):
        try:
            if saved:
                pl, change = tunelens.refresh_playlist(lib, pl.name)
                st.success(f"kept {len(change['kept'])}, added {len(change['added'])}, removed "
                           f"{len(change['removed'])}")
            else:
                pl.name = name.strip() or pl.name
                tunelens.save_playlist(lib, pl)
                st.success(f"saved as “{md(pl.name)}”; refresh it after the library changes")
        except (ValueError, tunelens.LibraryError) as e:
            st.error(str(e))
    fmt = c[2].selectbox("Format", FORMATS, key=f"pl_fmt_{saved}", label_visibility="collapsed")
    c[3].download_button("Export", render(pl, fmt), file_name=f"{Path(pl.name.replace(':', '')).name}.{fmt}",
                         mime=MEDIA_TYPES[fmt], key=f"pl_export_{saved}")
    if saved and c[4].button("Delete", key="pl_delete"):
        delete_playlist(lib, pl.name)
        st.rerun()
    for i, t in enumerate(pl.tracks, 1):
        left, right = st.columns([3, 2], vertical_alignment="center")
        facts = [x for x in (f"{t.tempo_bpm:.0f} BPM" if t.tempo_bpm else None, t.key) if x]
        left.markdown(f"**{i}. {md(t.title or Path(t.rel_path).stem)}**" + (f" — {md(t.artist)}" if t.artist else "")
                      + (f"  \n{' · '.join(facts)}" if facts else ""))
        try:
            data, mime = R.audio_bytes(lib, t.track_id)
            right.audio(data, format=mime)
        except ValueError as e:
            right.warning(str(e))


def playlists_page(lib, root: Path) -> None:
    st.title("Playlists")
    make, saved = st.tabs(["New", "Saved"])
    with make:
        _make(lib)
        if st.session_state.get("playlist") is not None:
            _show(lib, st.session_state["playlist"], saved=False)
    with saved:
        pls = tunelens.list_playlists(lib)
        if not pls:
            st.info("No saved playlists yet: make one, or run `tunelens playlist clusters` to sort the library into "
                    "named groups.")
            return
        name = st.selectbox("Playlist", [p.name for p in pls], key="pl_saved")
        _show(lib, next(p for p in pls if p.name == name), saved=True)
