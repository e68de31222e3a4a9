"""What a collector finds, before it is stored: plain records, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageLink:
    url: str
    position: int  # episode number, or 0 for a poster


@dataclass
class TitleRecord:
    source: str  # "naver", "kakao", "mal"
    source_id: str
    name: str
    url: str
    author: str | None = None  # the style's author: the painter or illustrator, or the studio
    genres: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    demographics: tuple[str, ...] = ()
    info: dict[str, str] = field(default_factory=dict)  # synopsis, type, score, members, flags
    images: list[ImageLink] = field(default_factory=list)


@dataclass
class Summary:
    """Counts of one run, with a reason for everything not collected."""

    titles: int = 0
    images: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def lines(self) -> list[str]:
        lines = [f"collected {self.images} images from {self.titles} titles"]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"skipped {count}: {reason}")
        if self.quarantined:
            lines.append(f"quarantined {len(self.quarantined)} broken downloads:")
            lines.extend(f"  {line}" for line in self.quarantined)
        if self.failed:
            lines.append(f"failed {len(self.failed)}:")
            lines.extend(f"  {line}" for line in self.failed)
        return lines
