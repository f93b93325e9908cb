"""One schema of config keys, read from the yaml files that define them.

Every key of RecBole's and this package's yaml files is written ``key: default  # (type) text``;
that comment is the schema. This module parses it, so the defaults and the validator can never
disagree:

- ``(int)``, ``(float)``, ``(str)``, ``(bool)``, ``(dict)``, ``(list)``, ``(list of int)``,
  ``(list or int or None)``, ... give the accepted types (an ``int`` is a valid ``float``);
- ``Range in ['a', 'b']`` in the text gives the accepted values, ``Range in [lo, hi]`` numeric
  bounds (RecBole's convention, used by the package yamls too);
- a key whose default is ``~`` (or whose type is str/dict/list) also accepts None.

A key's entry in the current model's own yaml wins over other models' entries (``loss_type``
means different things to different models). RecBole's yamls state types but no numeric ranges;
:data:`NUMERIC_BOUNDS` adds the bounds RecBole's code relies on (it fails late, with a traceback
or silently, outside them). It holds bounds only, never types: types come from the yamls.

Only keys the user set (config files, ``config_dict``, command line) are checked; a key no yaml
defines is unknown: an error with a suggestion when it is one typo away from a known key, else a
one-line warning (models may read keys of their own).
"""

import ast
import difflib
import functools
import glob
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Optional, Tuple

from recbole_ext import paths


class ConfigValueError(ValueError):
    """A config key with a value of the wrong type or outside its range, or an unknown key."""


# Bounds RecBole's yamls do not state (see the module docstring): key -> (low, high, low_open).
NUMERIC_BOUNDS = {
    "epochs": (1, None, False),
    "train_batch_size": (1, None, False),
    "eval_batch_size": (1, None, False),
    "MAX_ITEM_LIST_LENGTH": (1, None, False),
    "eval_step": (0, None, False),
    "stopping_step": (1, None, False),
    "hidden_size": (1, None, False),
    "embedding_size": (1, None, False),
    "inner_size": (1, None, False),
    "n_heads": (1, None, False),
    "n_layers": (0, None, False),
    "num_layers": (1, None, False),
    "worker": (0, None, False),
    "learning_rate": (0, None, True),
    "weight_decay": (0, None, False),
    "max_operation_run": (1, None, False),
    "loss_decimal_place": (0, None, False),
    "topk": (1, None, False),
    "nproc": (1, None, False),
}
_PROBABILITY_SUFFIXES = ("dropout_prob", "dropout_ratio", "dropout_rate")

# Keys RecBole sets in code or reads from its command line, and the run scripts' own flags.
CODE_KEYS = {
    "model", "dataset", "config_files", "MODEL_TYPE", "MODEL_INPUT_TYPE", "device", "single_spec",
    "local_rank", "world_size", "ip", "port", "offset", "nproc", "group_offset", "eval_type",
    "valid_metric_bigger", "verbose", "result_file", "traceback", "trust_checkpoint",
    "valid_neg_sample_args", "test_neg_sample_args",
}

_LINE = re.compile(r"^([A-Za-z_][\w\-]*)\s*:\s*(?P<default>[^#]*?)\s*#\s*\((?P<type>[^)]*)\)(?P<text>.*)$")
_RANGE = re.compile(r"Range in (\[[^\]]*\])")
_TYPE_NAMES = {"int": "int", "float": "float", "str": "str", "string": "str", "bool": "bool",
               "dict": "dict", "list": "list", "tuple": "list", "none": "none"}


@dataclass
class KeySpec:
    name: str
    types: Tuple[str, ...] = ()
    element: Optional[str] = None  # 'list of <element>'
    choices: Optional[tuple] = None
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    nullable: bool = False
    sources: list = field(default_factory=list)

    def describe(self):
        kinds = " or ".join(f"list of {self.element}" if t == "list" and self.element else t
                            for t in self.types if t != "none")
        if self.choices:
            return f"one of {list(self.choices)}"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        if not bounds:
            return kinds or "a value"
        bound = " and ".join(bounds)
        return f"{kinds} ({'values ' if 'list' in self.types else ''}{bound})" if "list" in self.types else f"{kinds} {bound}"


def _parse_type(text):
    types, element = [], None
    for part in re.split(r"\s+or\s+", text.strip().lower()):
        words = part.split()
        if not words:
            continue
        name = _TYPE_NAMES.get(words[0])
        if name is None:
            continue
        types.append(name)
        if name == "list" and len(words) >= 3 and words[1] == "of":
            element = _TYPE_NAMES.get(words[2])
    return tuple(dict.fromkeys(types)), element


def _parse_range(text):
    match = _RANGE.search(text)
    if not match:
        return None, None, None
    try:
        values = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        return None, None, None  # RecBole has one malformed range (a missing quote); skip it
    if values and all(isinstance(v, str) for v in values):
        return tuple(values), None, None
    if len(values) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None, values[0], values[1]
    return None, None, None


def parse_yaml_comments(path):
    """``{key: KeySpec}`` for the top-level keys of one yaml file."""
    specs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = _LINE.match(line.rstrip("\n"))
            if not match:
                continue
            types, element = _parse_type(match.group("type"))
            choices, low, high = _parse_range(match.group("text"))
            default = match.group("default").strip()
            spec = KeySpec(
                match.group(1), types, element, choices, low, high,
                nullable=default in ("~", "null", "None") or "none" in types, sources=[path],
            )
            specs[spec.name] = spec
    return specs


def _recbole_properties():
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "properties")


@functools.lru_cache(maxsize=None)
def _file_specs(path):
    return parse_yaml_comments(path)


def _general_files():
    root = _recbole_properties()
    files = [os.path.join(root, "overall.yaml")]
    files += sorted(glob.glob(os.path.join(root, "dataset", "*.yaml")))
    files += sorted(glob.glob(os.path.join(root, "quick_start_config", "*.yaml")))
    files += [os.path.join(paths.PROPERTIES_DIR, "overall.yaml")]
    files += sorted(glob.glob(os.path.join(paths.PROPERTIES_DIR, "dataset", "*.yaml")))
    return [f for f in files if os.path.isfile(f)]


def _model_files(model):
    files = [os.path.join(_recbole_properties(), "model", f"{model}.yaml"), paths.model_yaml(model)]
    return [f for f in files if os.path.isfile(f)]


def _all_model_files():
    return sorted(glob.glob(os.path.join(_recbole_properties(), "model", "*.yaml"))) + sorted(
        glob.glob(os.path.join(paths.PROPERTIES_DIR, "model", "*.yaml"))
    )


def _merge(specs):
    """One spec from several files' entries of a key (a key other models define): the union of
    the types, no choices (they are per model)."""
    first = specs[0]
    types = tuple(dict.fromkeys(t for s in specs for t in s.types))
    elements = {s.element for s in specs}
    return KeySpec(
        first.name, types, first.element if len(elements) == 1 else None,
        nullable=any(s.nullable for s in specs), sources=[p for s in specs for p in s.sources],
    )


@functools.lru_cache(maxsize=None)
def schema_for(model):
    """``{key: KeySpec}`` as seen by ``model``: its own yamls, then the general ones, then the
    union of every other model's entries."""
    others = {}
    for path in _all_model_files():
        for name, spec in _file_specs(path).items():
            others.setdefault(name, []).append(spec)
    schema = {name: _merge(specs) for name, specs in others.items()}
    for path in _general_files() + _model_files(model):  # later files win, as in Config
        schema.update(_file_specs(path))
    for name, spec in schema.items():
        _add_bounds(spec)
    return schema


def _add_bounds(spec):
    bounds = NUMERIC_BOUNDS.get(spec.name)
    if bounds is None and spec.name.endswith(_PROBABILITY_SUFFIXES):
        bounds = (0, 1, False)
    if bounds is not None and spec.low is None and spec.high is None:
        spec.low, spec.high, spec.low_open = bounds


def known_keys(model):
    from recbole.utils import argument_list

    names = set(schema_for(model)) | CODE_KEYS | _registered_cli_keys
    for attr in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        names.update(getattr(argument_list, attr, []))
    return names


_registered_cli_keys = set()


def register_cli_keys(names):
    """Flags of a command-line parser (they reach RecBole's command-line reader as keys too)."""
    _registered_cli_keys.update(names)


def package_overall_keys():
    return set(_file_specs(os.path.join(paths.PROPERTIES_DIR, "overall.yaml")))


def package_model_keys(model):
    path = paths.model_yaml(model)
    return set(_file_specs(path)) if os.path.isfile(path) else set()


# ---------------------------------------------------------------------------------------------
# Checking values


def _is_type(value, kind, element=None):
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "dict":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, (list, tuple)) and (element is None or all(_is_type(v, element) for v in value))
    if kind == "none":
        return value is None
    return True


def _in_bounds(value, spec):
    numbers = value if isinstance(value, (list, tuple)) else [value]
    for v in numbers:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if v != v:  # NaN
            return False
        if spec.low is not None and (v < spec.low or (spec.low_open and v == spec.low)):
            return False
        if spec.high is not None and v > spec.high:
            return False
    return True


def check_value(key, value, spec):
    """Raise :class:`ConfigValueError` if ``value`` does not fit ``spec``."""
    if value is None and (spec.nullable or set(spec.types) & {"str", "dict", "list"}):
        return
    types = spec.types
    if types and not any(_is_type(value, t, spec.element) for t in types):
        # RecBole str()-converts its str keys (gpu_id, the *_interval filters, ...): a number (the
        # command line's '0' typed as 0) or a list ([0, 25] for '[0,25]') is what users pass
        if not ("str" in types and isinstance(value, (int, float, list, tuple)) and not isinstance(value, bool)):
            raise ConfigValueError(f"config key '{key}': expected {spec.describe()}, got {value!r}")
    if spec.choices and value not in spec.choices:
        raise ConfigValueError(f"config key '{key}': expected {spec.describe()}, got {value!r}")
    if not _in_bounds(value, spec):
        raise ConfigValueError(f"config key '{key}': expected {spec.describe()}, got {value!r}")


def suggestion(key, names):
    """The known key ``key`` is most likely a typo of, or None."""
    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.85)
    if not close:
        lowered = {n.lower(): n for n in names}
        return lowered.get(key.lower())
    return close[0]


def validate(model, user_config, warn=None):
    """Check the keys the user set; raise on a bad value or a near-miss key, warn on other
    unknown keys (once per key and process)."""
    schema = schema_for(model)
    names = known_keys(model)
    for key, value in user_config.items():
        if key not in names:
            close = suggestion(key, names)
            if close is not None:
                raise ConfigValueError(f"unknown config key '{key}': did you mean {close}?")
            if key not in _warned:
                _warned.add(key)
                (warn or _warn)(f"unknown config key '{key}' (no RecBole or recbole-ext yaml defines it); passed on unchanged")
            continue
        spec = schema.get(key)
        if spec is not None:
            check_value(key, value, spec)


_warned = set()


def _warn(message):
    print(f"recbole-ext: warning: {message}", file=sys.stderr)
