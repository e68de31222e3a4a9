"""Titles an enroll made hard to tell apart: a new title and the bundle's titles it looks like.

Enrolling a fork of a title the bundle knows (an icon theme derived from another, a webtoon's
spin-off by the same studio) makes queries of either likely to name the other. On the enroll
benchmark's five icon draws the trained-title images that enrolled titles took went to forks of
their own title (mate took gnome's, elementary-xfce elementary's), to titles of the same family
or look (papirus took paper's, from which it grew, and numix's) and a few elsewhere; on the
fonts, to families of the same kind (sans, serif; docs/benchmarks.md, thirteenth and nineteenth
sessions). Pairs below `SHARE` go unnamed: in the nineteenth session's draws they took most of
what was lost in every draw but the one that lost most. The user should hear of a look-alike when
it happens, not find it in the answers later.

For each title touched by an enroll, some of its images are held out one at a time and ranked
against every title's exemplars (`TitleExemplars.scores`, the nearest-exemplar score that names
authors): the share whose nearest title is another is how much it looks like that one. The
titles nearest to it on average are held out the same way against it. A pair is reported when
either share reaches `SHARE`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.title_exemplars import TitleExemplars

SHARE = 0.15  # of a title's held-out images nearest the other title; below that, ordinary confusion
PER_TITLE = 16  # held-out images per title examined
CANDIDATES = 2  # the titles nearest on average to the touched title's images, examined the other way
# Held-out queries in all: about 9 ms each past 50,000 exemplars (a graph search, then exact scores),
# so a catalog-scale enroll spends at most ~10 s here; titles beyond it are left unexamined.
BUDGET = 1024


@dataclass(frozen=True)
class LookAlike:
    title: str  # touched by the enroll
    other: str
    share: float  # of `title`'s held-out images whose nearest title is `other`
    share_back: float  # of `other`'s held-out images whose nearest title is `title`

    def describe(self) -> str:
        return (f"look-alike: {self.title} and {self.other}: {self.share:.0%} of {self.title}'s images "
                f"are nearest {self.other}, {self.share_back:.0%} of {self.other}'s nearest {self.title}; "
                "queries of either may be named the other")


def look_alikes(exemplars: TitleExemplars, names: list[str], rows: list[int], seed: int = 0
                ) -> tuple[list[LookAlike], int]:
    """Look-alike pairs of the titles at `rows` (into `names`, the bundle's titles), most alike
    first; and how many of `rows` were left unexamined, past `BUDGET` (a title of one image has
    nothing to hold out and is not examined either)."""
    rng = np.random.default_rng(seed)
    n_titles = len(names)
    members = exemplars.rows_of_titles(n_titles)
    counts = np.array([len(m) for m in members])
    eligible = [row for row in rows if counts[row] >= 2]
    examined = eligible[:BUDGET // (PER_TITLE * (2 + CANDIDATES))]  # itself, its candidates, its nearest
    found: dict[frozenset, LookAlike] = {}
    for row in examined:
        scores = _held_out(exemplars, members[row], n_titles, rng)
        nearest = _nearest_shares(scores, n_titles)
        average = scores.mean(axis=0)
        average[row] = -np.inf
        others = {int(t) for t in np.argsort(-average)[:CANDIDATES]}
        elsewhere = np.where(np.arange(n_titles) == row, 0.0, nearest)
        if elsewhere.max() > 0:  # the title most of its held-out images went to, if any went astray
            others.add(int(elsewhere.argmax()))
        for other in sorted(others):
            if other == row or counts[other] < 2:
                continue
            back = _nearest_shares(_held_out(exemplars, members[other], n_titles, rng), n_titles)[row]
            pair = LookAlike(names[row], names[other], float(nearest[other]), float(back))
            if max(pair.share, pair.share_back) >= SHARE:
                key = frozenset((row, other))
                if key not in found or _strength(pair) > _strength(found[key]):
                    found[key] = pair
    return sorted(found.values(), key=_strength, reverse=True), len(eligible) - len(examined)


def _held_out(exemplars: TitleExemplars, rows: np.ndarray, n_titles: int, rng) -> np.ndarray:
    """[k, titles] scores of up to PER_TITLE of `rows`, each left out of its own title."""
    chosen = rng.permutation(rows)[:PER_TITLE]
    return exemplars.scores(exemplars.vectors[chosen], n_titles, exclude=chosen)


def _nearest_shares(scores: np.ndarray, n_titles: int) -> np.ndarray:
    """[titles] the share of the held-out images whose best-scored title is each title."""
    return np.bincount(scores.argmax(axis=1), minlength=n_titles) / max(len(scores), 1)


def _strength(pair: LookAlike) -> float:
    return max(pair.share, pair.share_back)
