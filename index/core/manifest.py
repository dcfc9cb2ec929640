"""`manifest.json`: which model and pipeline made a library's vectors."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunelens.embed.base import PipelineSpec

FORMAT_VERSION = 2  # 2: track ids hash the path relative to the music folder (index.core.library._upgrade)


@dataclass
class Manifest:
    pipeline: PipelineSpec
    precision: str = "fp32"
    format_version: int = FORMAT_VERSION
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    index: dict = field(default_factory=dict)  # the index request and what was built (index.ann)

    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version, "pipeline": self.pipeline.to_dict(), "precision": self.precision,
            "created": self.created, "updated": self.updated, "index": self.index,
        }

    @classmethod
    def load(cls, path: Path) -> Manifest:
        d = json.loads(path.read_text())
        return cls(pipeline=PipelineSpec.from_dict(d["pipeline"]), precision=d.get("precision", "fp32"),
                   format_version=d.get("format_version", 1), created=d.get("created", 0.0),
                   updated=d.get("updated", 0.0), index=d.get("index", {}))
