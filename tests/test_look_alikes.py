"""Look-alike titles after an enroll: a fork of a known title is named, a distinct title is not."""

import numpy as np

import inference.look_alikes as look_alikes_module
from inference.look_alikes import look_alikes
from inference.title_exemplars import TitleExemplars


def _exemplars(centres: list[np.ndarray], per_title: int = 20, spread: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = np.concatenate([c + spread * rng.normal(size=(per_title, len(c))) for c in centres])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    titles = np.repeat(np.arange(len(centres)), per_title).astype(np.int32)
    return TitleExemplars("descriptor", np.zeros(vectors.shape[1], np.float32), None,
                          vectors.astype(np.float32), titles)


def test_a_fork_is_named_with_both_shares_and_a_distinct_title_is_not():
    dim = 16
    axes = np.eye(dim)
    # 0 and 1 trained and far apart; 2 enrolled, a fork of 0 (the same cluster); 3 enrolled, its own.
    exemplars = _exemplars([axes[0], axes[1], axes[0], axes[2]])
    names = ["gnome", "oxygen", "mate", "gartoon"]
    pairs, unexamined = look_alikes(exemplars, names, [2, 3])
    assert unexamined == 0
    assert [(p.title, p.other) for p in pairs] == [("mate", "gnome")]
    assert pairs[0].share >= 0.25 and pairs[0].share_back >= 0.25  # about half each way: a coin toss
    line = pairs[0].describe()
    assert line.startswith("look-alike: mate and gnome: ") and "of gnome's nearest mate" in line


def test_titles_past_the_budget_are_counted_and_single_images_skipped(monkeypatch):
    dim = 8
    exemplars = _exemplars([np.eye(dim)[i] for i in range(6)])
    exemplars = TitleExemplars(exemplars.output, exemplars.mean, None, exemplars.vectors[:-19],
                               exemplars.titles[:-19])  # title 5 keeps one image: nothing to hold out
    per_title = look_alikes_module.PER_TITLE * (2 + look_alikes_module.CANDIDATES)
    monkeypatch.setattr(look_alikes_module, "BUDGET", 2 * per_title)
    pairs, unexamined = look_alikes(exemplars, [f"t{i}" for i in range(6)], [1, 2, 3, 4, 5])
    assert pairs == [] and unexamined == 2  # 1 and 2 examined; 3 and 4 not; 5 has one image


def test_the_enroll_summary_shows_the_most_alike_pairs_and_counts_the_rest():
    from inference.enrollment import LOOK_ALIKES_SHOWN, EnrollReport
    from inference.look_alikes import LookAlike

    pairs = [LookAlike(f"new{i}", "old", 0.9 - i / 100, 0.2) for i in range(LOOK_ALIKES_SHOWN + 2)]
    lines = EnrollReport(images=9, look_alikes=pairs, unexamined=3).summary().splitlines()
    assert lines[0].startswith("enrolled 9 images")
    assert [line.split(":")[1].strip() for line in lines[1:LOOK_ALIKES_SHOWN + 1]] == \
        [f"new{i} and old" for i in range(LOOK_ALIKES_SHOWN)]
    assert lines[-2:] == ["look-alikes: 2 more pairs, less alike",
                          "look-alikes: 3 of the titles enrolled were not examined (the check's budget was "
                          "spent on the others)"]
