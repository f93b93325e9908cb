"""The dataset cache (``save_dataset``), in a format that cannot run code, keyed by the data.

Why not RecBole's cache: RecBole pickles the whole Dataset to ``saved/<dataset>-<Class>.pth``
and unpickles whatever file sits there on the next run, asked for or not. Unpickling is code
execution, so a file planted in the working directory (or shipped inside a shared folder) runs
with the user's rights. The alternative of keeping pickle but signing it (an HMAC with a secret
stored on the machine) only moves the question to the secret: anyone who can read the key file
can forge a signature for any payload, and a per-user key file is exactly what leaks with a
copied home folder, a shared container image or a backup. A cache format that *cannot* express
code does not depend on any secret, so that is what this module writes:

- one ``.npz`` file read with ``numpy.load(allow_pickle=False)``: numeric and fixed-width unicode
  arrays only, plus one uint8 array holding a JSON header;
- the header describes the Dataset's attributes with a closed set of tags (plain JSON values,
  dicts, lists, tuples, RecBole's ``FeatureType``/``FeatureSource`` enums, arrays, tensors,
  pandas frames, ragged object arrays). Nothing in the file names a class or a function: the
  object is created as the class *this run* chose, and only its data is filled in. A file that
  uses any other tag is refused. A planted file can therefore at most hold wrong data, and it is
  only read when the key inside matches (below) and this run asked for caching.

The cache is read only when this run sets ``save_dataset: True``. Its key digests the content
of every atomic file of the dataset (:func:`dataset_content_digest`) and every config key that
shapes the dataset (RecBole's ``dataset_arguments``, ``seed``, ``repeatable``, this package's
``overall.yaml`` keys and the model's package yaml keys), plus the dataset class: the key is part
of the file name and is checked again inside the file, so a stale cache is never served.
Attributes of a type outside the closed set make the dataset uncacheable (a warning; it is then
rebuilt every run), never pickled.
"""

import hashlib
import json
import os
import zipfile
from enum import Enum
from logging import getLogger

import numpy as np
import pandas as pd
import torch

CACHE_FORMAT = "recbole_ext-dataset/1"
_SKIPPED_ATTRIBUTES = ("config", "logger")  # restored from the current run, never stored
_CHUNK = 1 << 20


class UncacheableError(TypeError):
    """An attribute whose type the safe format does not cover."""


# ---------------------------------------------------------------------------------------------
# Keys


def atomic_files(config):
    """The atomic files of ``config['dataset']`` (``<data_path>/<dataset>.*``), sorted."""
    folder, name = config["data_path"], config["dataset"]
    if not os.path.isdir(folder):
        return []
    prefix = f"{name}."
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder)
        if f.startswith(prefix) and os.path.isfile(os.path.join(folder, f))
    )


def dataset_content_digest(config):
    """SHA-256 over the names and full contents of the dataset's atomic files (hex string).

    Full hashing, not size+mtime: it costs about as much as reading the files once, which RecBole
    does anyway to build the dataset (see the report of issue 14 for the measurement)."""
    digest = hashlib.sha256()
    for path in atomic_files(config):
        digest.update(os.path.basename(path).encode("utf-8") + b"\0")
        digest.update(str(os.path.getsize(path)).encode("ascii") + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def shaping_keys(config):
    """Config keys that change what a dataset object holds."""
    from recbole.utils.argument_list import dataset_arguments

    from recbole_ext import schema

    keys = set(dataset_arguments) | {"seed", "repeatable", "dataset"}
    keys |= schema.package_overall_keys() | schema.package_model_keys(config["model"])
    return sorted(keys)


def cache_key(config, dataset_class):
    from recbole_ext.trainer import _plain

    record = {
        "format": CACHE_FORMAT,
        "class": f"{dataset_class.__module__}.{dataset_class.__qualname__}",
        "content": dataset_content_digest(config),
        "config": {k: _plain(config[k]) for k in shaping_keys(config)},
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def cache_file(config, dataset_class, key):
    return os.path.join(config["checkpoint_dir"], f'{config["dataset"]}-{dataset_class.__name__}-{key[:16]}.npz')


# ---------------------------------------------------------------------------------------------
# Encoding: closed set of tags; arrays go to the npz, everything else to the JSON header


def _enum_classes():
    from recbole.utils import FeatureSource, FeatureType

    return {"FeatureType": FeatureType, "FeatureSource": FeatureSource}


class _Encoder:
    def __init__(self):
        self.arrays = {}

    def _array(self, array):
        name = f"a{len(self.arrays)}"
        self.arrays[name] = array
        return name

    def _ndarray(self, value):
        if value.dtype.kind in "biufU":
            return {"t": "nd", "k": self._array(value)}
        if value.dtype.kind == "O":
            flat = value.ravel()
            if value.ndim == 1 and all(isinstance(v, str) for v in flat):
                return {"t": "nd_str", "k": self._array(flat.astype(str))}
            if value.ndim == 1 and all(isinstance(v, np.ndarray) and v.ndim == 1 for v in flat):
                lengths = np.fromiter((len(v) for v in flat), dtype=np.int64, count=len(flat))
                parts = [v for v in flat if len(v)]
                dtype = parts[0].dtype if parts else np.dtype(np.int64)
                values = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
                if values.dtype.kind not in "biufU":
                    raise UncacheableError(f"ragged array of {values.dtype}")
                return {"t": "ragged", "v": self._array(values), "n": self._array(lengths)}
        raise UncacheableError(f"array of dtype {value.dtype}")

    def encode(self, value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"t": "py", "v": value}
        if isinstance(value, Enum):
            name = type(value).__name__
            if _enum_classes().get(name) is not type(value):
                raise UncacheableError(f"enum {name}")
            return {"t": "enum", "c": name, "v": value.value}
        if isinstance(value, np.generic):
            return {"t": "np", "k": self._array(np.asarray(value))}
        if isinstance(value, np.ndarray):
            return self._ndarray(value)
        if isinstance(value, torch.Tensor):
            if value.layout != torch.strided:
                raise UncacheableError("sparse tensor")
            return {"t": "tensor", "v": self._ndarray(value.detach().cpu().numpy())}
        if isinstance(value, pd.DataFrame):
            return {"t": "frame", "cols": [[str(c), self._ndarray(value[c].to_numpy())] for c in value.columns]}
        if isinstance(value, dict):
            return {"t": "dict", "v": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, (list, tuple)):
            return {"t": type(value).__name__, "v": [self.encode(v) for v in value]}
        raise UncacheableError(type(value).__name__)


def _decode(node, arrays):
    tag = node["t"]
    if tag == "py":
        return node["v"]
    if tag == "enum":
        return _enum_classes()[node["c"]](node["v"])
    if tag == "np":
        return arrays[node["k"]][()]
    if tag == "nd":
        return arrays[node["k"]]
    if tag == "nd_str":
        return arrays[node["k"]].astype(object)
    if tag == "ragged":
        values, lengths = arrays[node["v"]], arrays[node["n"]]
        column = np.empty(len(lengths), dtype=object)
        column[:] = np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []
        return column
    if tag == "tensor":
        return torch.from_numpy(np.array(_decode(node["v"], arrays)))
    if tag == "frame":
        return pd.DataFrame({name: _decode(col, arrays) for name, col in node["cols"]})
    if tag == "dict":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in node["v"]}
    if tag == "list":
        return [_decode(v, arrays) for v in node["v"]]
    if tag == "tuple":
        return tuple(_decode(v, arrays) for v in node["v"])
    raise ValueError(f"unknown tag {tag!r}")


# ---------------------------------------------------------------------------------------------
# Save and load


def save(config, dataset):
    """Write ``dataset`` to its keyed cache file (atomically); returns the path or None."""
    logger = getLogger()
    key = cache_key(config, type(dataset))
    encoder = _Encoder()
    try:
        attributes = {k: encoder.encode(v) for k, v in vars(dataset).items() if k not in _SKIPPED_ATTRIBUTES}
    except UncacheableError as error:
        logger.warning(f"save_dataset: {type(dataset).__name__} holds a {error} the safe cache cannot store; not cached")
        return None
    header = {"format": CACHE_FORMAT, "key": key, "attributes": attributes}
    encoder.arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    path = cache_file(config, type(dataset), key)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = path + ".partial.npz"
    try:
        np.savez(partial, **encoder.arrays)
        os.replace(partial, path)
    except BaseException:  # interrupted or failed: leave no half-written cache behind
        if os.path.exists(partial):
            os.remove(partial)
        raise
    logger.info(f"Saving filtered dataset into [{path}]")
    return path


def load(config, dataset_class):
    """The cached dataset for this run's data and config, or None (never unpickles)."""
    logger = getLogger()
    key = cache_key(config, dataset_class)
    path = cache_file(config, dataset_class, key)
    requested = config["dataset_save_path"]
    if requested and os.path.abspath(requested) != os.path.abspath(path) and os.path.exists(requested):
        logger.warning(
            f"dataset_save_path {requested}: ignored; recbole-ext reads only its own keyed cache "
            f"({path}); RecBole's pickled caches are never loaded (unpickling can run code)"
        )
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        header = json.loads(arrays.pop("header").tobytes().decode("utf-8"))
        if header.get("format") != CACHE_FORMAT or header.get("key") != key:
            return None
        attributes = {k: _decode(v, arrays) for k, v in header["attributes"].items()}
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        logger.warning(f"{path}: not a readable recbole-ext dataset cache ({error}); rebuilding")
        return None
    dataset = dataset_class.__new__(dataset_class)
    vars(dataset).update(attributes)
    dataset.config, dataset.logger = config, logger
    logger.info(f"Load filtered dataset from: [{path}]")
    return dataset
