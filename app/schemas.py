"""The JSON shapes `tunelens serve` answers with, as pydantic models so that `/docs` and `/openapi.json` document
them. They describe what the library's own `to_dict()` methods return (the CLI's `--json` prints the same), so a
field is named once, in the dataclass it comes from; the models only say what a client may rely on."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FacetOut(BaseModel):
    """One constraint or preference read from the query (`index.search.query.Facet`)."""

    kind: str = Field(description="tempo, key, mode, loudness, shape, dynamics, duration, vocals, artist, album, "
                                  "genre, year or folder")
    label: str = Field(description='how it is shown: "slow (< 85 BPM)"')
    phrase: str = Field(description="the words of the query it came from")
    hard: bool = Field(description="a filter (tracks not matching are left out) rather than a preference")
    low: float | None = None
    high: float | None = None
    value: str | None = None
    weight: float


class QueryOut(BaseModel):
    """What a query was understood as."""

    text: str
    understood: str = Field(description='e.g. "piano + sad · slow (< 85 BPM)"')
    concepts: list[str] = Field(description="phrases searched by sound, each on its own")
    excluded: list[str] = Field(description='phrases to avoid ("no drums")')
    facets: list[FacetOut]
    notes: list[str]


class HitOut(BaseModel):
    """One track found (`index.search.nearest.Hit`)."""

    rank: int
    score: float = Field(description="fused score: higher is better; comparable within one answer only")
    track_id: str = Field(description="16 hexadecimal characters: the id every /v1/tracks route takes")
    path: str
    rel_path: str = Field(description="relative to the library's music folder")
    title: str | None
    artist: str | None
    duration: float = Field(description="seconds")
    best_start_s: float = Field(description="where in the track the query matches best")
    best_end_s: float
    why: list[str] = Field(description="the facets each hit meets or misses, with its measured values")


class SearchOut(BaseModel):
    query: QueryOut | None = Field(description="absent for a search that did not read the query")
    notes: list[str]
    empty_reason: str | None = Field(description="why there are no hits, when there are none")
    hits: list[HitOut]


class TrackOut(BaseModel):
    """A track's catalog fields, file tags, caption, measurements, predicted tags, quality flags and duplicate
    cluster. The fields listed are always present; more (measurements, flags) follow the library's track table."""

    model_config = ConfigDict(extra="allow")
    track_id: str
    rel_path: str
    duration: float | None
    file_tags: dict[str, str | list[str]] = Field(description="the file's own tags (title, artist, album ...)")
    tags: dict[str, float] = Field(description="predicted tag probabilities, strongest first")
    duplicate_cluster: int | None = Field(description="the cluster of `GET /v1/duplicates` it belongs to")


class AnswerOut(BaseModel):
    """An answer to a question about a track (`caption.qa.Answer`); `unknown` when the evidence does not carry it."""

    answer: str
    kind: str
    value: object = Field(default=None, description="BPM, a key, true/false, a list of instruments, seconds ...")
    confidence: float | None
    evidence: list[str]


class LibraryOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    tracks: int
    failed: int
    measured: int = Field(description="tracks with current measurements (tempo, key, loudness)")
    hours: float
    windows: int
    pipeline: dict
    precision: str
    index: dict | str | None
    errors: list[dict[str, str]] = Field(description="files that could not be indexed, and why")


class DuplicateTrackOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    track_id: str
    rel_path: str
    keeper: bool


class DuplicateClusterOut(BaseModel):
    cluster: int
    tracks: list[DuplicateTrackOut] = Field(description="the keeper first")


class DuplicatesOut(BaseModel):
    clusters: list[DuplicateClusterOut]


class ProblemOut(BaseModel):
    """RFC 9457 problem details: every error, as a sentence."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
