"""Read a PyTorch ``state_dict`` file into numpy arrays without importing torch.

Two on-disk formats exist:

* legacy (``torch.save`` before PyTorch 1.6, or ``_use_new_zipfile_serialization=False``): five
  pickles one after another (magic number, protocol version, sys info, the state dict whose
  tensors point at storages through persistent ids, the list of storage keys), then each storage's
  raw bytes, preceded by its element count as a little-endian int64, in the order of that list;
* zip (PyTorch >= 1.6): ``<root>/data.pkl`` holds the state dict, ``<root>/data/<key>`` each
  storage's raw bytes.

The unpickler resolves only the handful of globals a state dict needs (``OrderedDict``, torch's
tensor-rebuild functions, the storage types), so a file holding anything else is refused rather
than executed: loading weights never runs code from the file.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# numpy has no bfloat16: those storages are widened to float32 on load (see _storage_array).
_BFLOAT16 = "bfloat16"

STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class StateDictError(ValueError):
    """The file is not a PyTorch state dict this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self):
        return STORAGE_DTYPES[self.name]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == _BFLOAT16 else self.dtype.itemsize


@dataclass
class _Storage:
    """A storage named in the pickle; its bytes arrive later (legacy) or from the archive (zip)."""

    storage_type: _StorageType
    key: str
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _StorageView:
    """Legacy files can pickle a view into a storage: (root storage, element offset, length)."""

    root: _Storage
    offset: int
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A tensor waiting for its storage bytes: materialised by ``_materialise``."""

    storage: _Storage | _StorageView
    storage_offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}


class _PlainUnpickler(pickle.Unpickler):
    """For the legacy header pickles: plain data only, no globals at all."""

    def find_class(self, module, name):
        raise StateDictError(f"refusing to load {module}.{name}: not part of a PyTorch file header")


def _load_plain(file):
    return _PlainUnpickler(file).load()


class _StateDictUnpickler(pickle.Unpickler):
    """Builds ``_TensorRef`` placeholders; storages are collected in ``self.storages`` by key."""

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise StateDictError(f"refusing to load {module}.{name}: not part of a plain state dict") from None

    def persistent_load(self, persistent_id):
        if not (isinstance(persistent_id, tuple) and persistent_id and persistent_id[0] == "storage"):
            raise StateDictError(f"unexpected persistent id {persistent_id!r}")
        # legacy: (tag, type, key, location, numel, view_metadata); zip: (tag, type, key, location, numel)
        storage_type, key, _location, numel = persistent_id[1:5]
        if not isinstance(storage_type, _StorageType):
            raise StateDictError(f"unsupported storage type {storage_type!r}")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(storage_type, str(key), int(numel))
        view_metadata = persistent_id[5] if len(persistent_id) > 5 else None
        if view_metadata is not None:
            _view_key, offset, view_numel = view_metadata
            return _StorageView(storage, int(offset), int(view_numel))
        return storage


def _storage_array(raw: bytes, storage_type: _StorageType) -> np.ndarray:
    if storage_type.dtype == _BFLOAT16:
        # bfloat16 is the top half of a float32.
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, dtype=storage_type.dtype)


def _materialise(ref: _TensorRef) -> np.ndarray:
    storage, base = ref.storage, 0
    if isinstance(storage, _StorageView):
        storage, base = storage.root, storage.offset
    if storage.data is None:
        raise StateDictError(f"storage {storage.key} has no data in the file")
    flat = storage.data[base:]
    itemsize = flat.itemsize
    needed = ref.storage_offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride)) + 1
    if any(n == 0 for n in ref.size):
        return np.zeros(ref.size, dtype=flat.dtype)
    if needed > flat.size:
        raise StateDictError(f"tensor of size {ref.size} overruns storage {storage.key}")
    view = np.lib.stride_tricks.as_strided(
        flat[ref.storage_offset :],
        shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride),
        writeable=False,
    )
    # A copy: contiguous, writable, and independent of the storage buffer.
    return np.array(view)


def _tensors_to_arrays(state) -> dict[str, np.ndarray]:
    if not isinstance(state, dict):
        raise StateDictError(f"expected a state dict (a mapping of names to tensors), got {type(state).__name__}")
    arrays = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise StateDictError(f"entry {name!r} is not a tensor ({type(value).__name__})")
        arrays[str(name)] = _materialise(value)
    return arrays


def _load_legacy(file) -> dict[str, np.ndarray]:
    magic = _load_plain(file)
    if magic != LEGACY_MAGIC_NUMBER:
        raise StateDictError("not a PyTorch file (wrong magic number)")
    protocol_version = _load_plain(file)
    if protocol_version != LEGACY_PROTOCOL_VERSION:
        raise StateDictError(f"unsupported legacy protocol version {protocol_version}")
    sys_info = _load_plain(file)
    if not isinstance(sys_info, dict):
        raise StateDictError("not a PyTorch file (no sys info after the protocol version)")
    if not sys_info.get("little_endian", True):
        raise StateDictError("big-endian PyTorch files are not supported")
    unpickler = _StateDictUnpickler(file)
    state = unpickler.load()
    storage_keys = _load_plain(file)
    for key in storage_keys:
        storage = unpickler.storages[key]
        (numel,) = struct.unpack("<q", file.read(8))
        raw = file.read(numel * storage.storage_type.itemsize)
        if len(raw) != numel * storage.storage_type.itemsize:
            raise StateDictError(f"file ends inside storage {key}")
        storage.data = _storage_array(raw, storage.storage_type)
    return _tensors_to_arrays(state)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise StateDictError("a zip file without exactly one data.pkl")
        root = pickles[0][: -len("data.pkl")]
        byteorder_name = root + "byteorder"
        if byteorder_name in archive.namelist() and archive.read(byteorder_name).strip() != b"little":
            raise StateDictError("big-endian PyTorch files are not supported")
        with archive.open(pickles[0]) as pickled:
            unpickler = _StateDictUnpickler(pickled)
            state = unpickler.load()
        for key, storage in unpickler.storages.items():
            raw = archive.read(f"{root}data/{key}")
            storage.data = _storage_array(raw, storage.storage_type)
    return _tensors_to_arrays(state)


def load_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return the tensors of a ``torch.save``-d state dict as numpy arrays, in file order.

    Reads both the legacy (pre-1.6) format and the zip format. Raises ``StateDictError`` for any
    other file, or for a pickle that holds anything but tensors.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as file:
            return _load_legacy(file)
    except StateDictError as error:
        raise StateDictError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, TypeError, ValueError, IndexError) as error:
        raise StateDictError(f"{path}: not a PyTorch state dict ({type(error).__name__}: {error})") from None
