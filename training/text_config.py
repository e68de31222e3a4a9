"""Configuration of a text genre run: one dataclass per stage, like the image runs.

Precedence: dataclass defaults < `configs/text/<preset>.yaml` or `--config FILE` < `--set a.b=v`
and the explicit flags. The resolved config is written to the run folder as `config.yaml` and
into the exported model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from training import config as run_config

TEXT_PRESET_DIRS = (Path(__file__).resolve().parents[1] / "configs" / "text", Path("configs") / "text")
ENGINES = ("linear", "keras")


@dataclass(frozen=True)
class TextDataConfig:
    # Manifests with the columns id,group,text,genres[,lang] (genres joined by |), as
    # ../shared/data/package_tags.py writes them; or a catalog's titles with synopses.
    manifest: str | None = None
    val_manifest: str | None = None
    catalog: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    # Rows of these languages only (empty: all). Training on every language lets the
    # multilingual sentence features carry what one language learnt to the others.
    languages: tuple[str, ...] = ()
    min_genre_items: int = 2  # genres with fewer training items cannot be learnt nor thresholded


@dataclass(frozen=True)
class TextModelConfig:
    # TF-IDF blocks: word 1..word_ngrams-grams, and character n-grams inside words (char_ngrams
    # = [min, max]; [] for none). Characters matter for Korean, whose words glue morphemes.
    word_ngrams: int = 2
    char_ngrams: tuple[int, ...] = (2, 4)
    min_df: int = 2
    # Multilingual sentence features (models/sentence_encoder.py) beside TF-IDF, multiplied by
    # this scale (their rows have unit length, like each TF-IDF block's); 0 turns them off.
    sentence_scale: float = 1.0
    engine: str = "linear"  # linear: one-vs-rest logistic regression; keras: a dense sigmoid layer
    c: float = 10.0  # inverse regularisation of the linear model
    class_weight: str | None = "balanced"  # rare genres weigh as much as common ones
    # keras engine only
    epochs: int = 30
    learning_rate: float = 0.01  # Adam; a single sparse layer tolerates a large step
    focal_gamma: float = 0.0  # 0: binary cross-entropy; > 0: the focal loss of the seed study

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"model.engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.char_ngrams and (
            len(self.char_ngrams) != 2 or not 1 <= self.char_ngrams[0] <= self.char_ngrams[1]
        ):
            raise ValueError(f"model.char_ngrams must be [min, max] or [], got {list(self.char_ngrams)}")
        if self.word_ngrams < 0 or (self.word_ngrams == 0 and not self.char_ngrams):
            raise ValueError("model: at least one of word_ngrams and char_ngrams is needed")
        if self.sentence_scale < 0 or self.c <= 0:
            raise ValueError("model.sentence_scale must be >= 0 and model.c > 0")


@dataclass(frozen=True)
class TextRunConfig:
    name: str = "text"
    out_dir: str = "runs"
    # Where sentence features are kept (the image feature store can be shared); default:
    # cache/store beside the run folders.
    store: str | None = None
    data: TextDataConfig = field(default_factory=TextDataConfig)
    model: TextModelConfig = field(default_factory=TextModelConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def store_dir(self) -> Path:
        return Path(self.store) if self.store else Path(self.out_dir) / "cache" / "store"

    def to_yaml(self) -> str:
        return yaml.safe_dump(run_config._plain(asdict(self)), sort_keys=False, allow_unicode=True)


def load_text_config(
    preset: str | None = None, config_file: str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TextRunConfig:
    return run_config.load_config(
        preset, config_file, overrides, root=TextRunConfig, preset_dirs=TEXT_PRESET_DIRS
    )


def list_text_presets() -> list[str]:
    return run_config.list_presets(TEXT_PRESET_DIRS)
