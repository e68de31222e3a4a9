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
    # What the collector needed and could not read ("no genre tag", "no painter"): the title
    # is stored but not marked complete, and a re-run reads it again.
    missing: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> images left out on purpose


@dataclass
class Summary:
    """Counts of one run, with a reason for everything not collected."""

    titles: int = 0
    images: int = 0
    new_titles: int = 0  # titles the catalog did not hold before this run
    episodes: int = 0  # images new to titles the catalog already held (new episodes, new posters)
    changes: list[str] = field(default_factory=list)  # metadata changes, one line each (also in history)
    skipped: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # titles stored without a field they need
    stopped: str | None = None  # the signal that stopped the run early, if one did

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def lines(self) -> list[str]:
        lines = [f"collected {self.images} images from {self.titles} titles",
                 f"new: {self.new_titles} titles, {self.episodes} images of titles already in the catalog, "
                 f"{len(self.changes)} metadata changes"]
        lines.extend(f"  changed {line}" for line in self.changes)
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"skipped {count}: {reason}")
        if self.incomplete:
            lines.append(f"incomplete {len(self.incomplete)} titles (stored, read again on the next run):")
            lines.extend(f"  {line}" for line in self.incomplete)
        if self.quarantined:
            lines.append(f"quarantined {len(self.quarantined)} broken downloads:")
            lines.extend(f"  {line}" for line in self.quarantined)
        if self.failed:
            lines.append(f"failed {len(self.failed)}:")
            lines.extend(f"  {line}" for line in self.failed)
        return lines

    def collected_nothing(self) -> bool:
        """No title, or several titles and not one image: the site or its parsing is broken."""
        return self.titles == 0 or (self.titles >= 2 and self.images == 0 and not self._all_known())

    def _all_known(self) -> bool:
        # A re-run that finds every title or image already in the catalog collected nothing new, rightly.
        known = ("title already complete", "title finished", "image already in")
        return any(reason.startswith(known) for reason in self.skipped)

    def why_nothing(self) -> str:
        if self.titles == 0:
            reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
            return f"no title was read ({reasons or 'the title list was empty'})"
        return (f"{self.titles} titles read but 0 images stored ({len(self.failed)} failed, "
                f"{len(self.quarantined)} quarantined)")
