"""JSON Schema of the flow language, generated from the model, and the hand-off schema.

`flows.schema.json` at the repository root is `schema_json()` written out; the
`# yaml-language-server: $schema=./flows.schema.json` line at the top of a flow
file gives designers completion, hover text and squiggles in their editor.
The loader stays the authority (it knows about targets, loops and the escape);
the schema catches what can be seen key by key, before the file is saved.

Choices made here:

* Every struct (Prompt, Retry, Option ...) is one entry in `$defs` and is
  referred to by name, so the file stays readable and each struct is
  described once.
* Nodes are told apart by `kind` with `if {kind: const} then {$ref}` under
  `allOf`, not with `oneOf`. With `oneOf`, a node with one bad key fails every
  alternative, and editors and validators report a pile of errors from kinds
  the designer never meant. With `if`/`then` only the node's own kind is
  checked, so the message is about the key that is wrong, and the editor
  completes the keys of that kind. An unknown or missing kind is caught by the
  `enum` and `required` of the common part.
* Each field's fragment comes from its FieldType's `schema()`; the few that
  disagree with what the loader accepts are corrected in `_FIXES` below, so
  the schema neither flags what the loader takes nor passes what it refuses.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any

from .fields import (
    NAME_RE,
    Duration,
    FieldType,
    Key,
    ListOf,
    MapOf,
    Phrases,
    Struct,
    Text,
    spec_fields,
    yaml_name,
)
from .hours import DAYS, DateT, TimeZone, WeeklyHours
from .model import NODE_KINDS, Condition, Flow, Node, Subflow

DRAFT = "https://json-schema.org/draft/2020-12/schema"
FLOWS_SCHEMA_ID = "https://ivr-engine.dev/schemas/flows-v1.json"

NODES_DOC = "the steps of the flow: each key is a node id, each value a node with a kind"
SUBFLOWS_DOC = "reusable steps: each key is a subflow name, called with a `subflow` node"
SUBFLOW_NODES_DOC = "the steps of this subflow: node ids to nodes (ids are local to the subflow)"


def _anchored(pattern: str) -> str:
    return "^(?:" + pattern + ")$"


# ---- corrections to FieldType.schema() -------------------------------------
# Each entry takes the FieldType and the fragment its schema() returned and
# gives the fragment to publish. They only ever move the schema towards what
# the loader does; once fields.py/hours.py/model.py carry the same fix, the
# entry changes nothing and can go.

# A YAML scalar typed as an integer is all digits, so a Text whose pattern
# matches no digit string can never accept one.
_DIGIT_SAMPLES = ("0", "1", "7", "10", "42", "2024", "12345678")


def _fix_text(ft: Text, sch: dict) -> dict:
    types = sch.get("type")
    if ft.pattern is not None and isinstance(types, list) and "integer" in types \
            and not any(ft.pattern.fullmatch(d) for d in _DIGIT_SAMPLES):
        sch["type"] = "string"
    return sch


def _fix_key(ft: Key, sch: dict) -> dict:
    # The pattern bounds strings to 8 keys; an unquoted number needs the same bound.
    sch["maximum"] = 10 ** 8 - 1
    return sch


def _fix_duration(ft: Duration, sch: dict) -> dict:
    # A bare number is seconds; the loader checks it against the same bounds.
    sch["minimum"] = ft.minimum
    if ft.maximum is not None:
        sch["maximum"] = ft.maximum
    return sch


def _fix_phrases(ft: Phrases, sch: dict) -> dict:
    # The loader takes any scalar as a phrase (`say: [1, one]`, and `yes` that
    # YAML 1.1 reads as true) but refuses an empty one.
    phrase = {"type": ["string", "number", "boolean"], "minLength": 1}
    return {"anyOf": [phrase, {"type": "array", "items": phrase}]}


def _fix_condition(ft: Condition, sch: dict) -> dict:
    # `when: true` is a valid condition; YAML reads it as a boolean.
    return {"type": ["string", "boolean"]}


def _fix_timezone(ft: TimeZone, sch: dict) -> dict:
    # An IANA name (UTC, Europe/London, America/Argentina/Buenos_Aires, Etc/GMT+5),
    # never a number. No enum: the list depends on the installed tzdata, and the
    # committed schema must not change from one machine to the next.
    return {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$"}


def _fix_date(ft: DateT, sch: dict) -> dict:
    # The loader refuses impossible dates; the pattern at least refuses month 13 and day 32.
    return {"type": "string", "pattern": r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"}


def _ci(word: str) -> str:
    """A case-insensitive regex for `word` (JSON Schema regexes take no flags)."""
    # Only letters and spaces occur; a space is left bare because `\ ` is an
    # error in the unicode-mode regexes editors compile patterns with.
    if not re.fullmatch(r"[A-Za-z ]+", word):
        raise ValueError(f"_ci takes letters and spaces only, not {word!r}")
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def _fix_weekly(ft: WeeklyHours, sch: dict) -> dict:
    # Keys must be day specs the loader understands; hours stop at 24, minutes at 59;
    # `closed` in any case.
    day = "(" + "|".join(_ci(d) for d in DAYS) + ")[A-Za-z]*"
    part = rf"\s*{day}(\s*-\s*{day})?\s*"
    every = r"\s*(" + "|".join(_ci(w) for w in ("daily", "every day", "all")) + r")\s*"
    days = rf"^({every}|{part}(,{part})*)$"
    clock = r"([01]?\d|2[0-4]):[0-5]\d"
    rng = {"type": "string", "pattern": rf"^\s*({clock}\s*-\s*{clock}|{_ci('closed')})\s*$"}
    return {"type": "object", "propertyNames": {"pattern": days},
            "additionalProperties": {"anyOf": [rng, {"type": "array", "items": rng}]}}


_FIXES: list[tuple[type, Callable[[Any, dict], dict]]] = [
    (Text, _fix_text),
    (Key, _fix_key),
    (Duration, _fix_duration),
    (Phrases, _fix_phrases),
    (Condition, _fix_condition),
    (TimeZone, _fix_timezone),
    (DateT, _fix_date),
    (WeeklyHours, _fix_weekly),
]


def _leaf(ft: FieldType) -> dict:
    sch = copy.deepcopy(ft.schema())
    for cls, fix in _FIXES:
        if isinstance(ft, cls):
            sch = fix(ft, sch)
    return sch


# ---- defaults ----------------------------------------------------------------

_NO_DEFAULT = object()


def _plain(v: Any) -> bool:
    """A value that JSON can carry as it is (not a Prompt or another struct)."""
    if v is None or isinstance(v, str | bool | int | float):
        return True
    if isinstance(v, list):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def _duration_text(secs: float) -> str:
    """Seconds as a designer would write them: 5s, 2m, 1h, 500ms."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size and secs % size == 0:
            return f"{secs / size:g}{unit}"
    if 0 < secs < 1:
        return f"{secs * 1000:g}ms"
    return f"{secs:g}s"


def _default(f) -> Any:
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:
        return _NO_DEFAULT
    if value is None or not _plain(value):
        return _NO_DEFAULT
    if isinstance(f.metadata["ftype"], Duration) and not isinstance(value, bool):
        # The model keeps seconds; the file is easier to read with the unit.
        return _duration_text(float(value))
    return value


# ---- building ----------------------------------------------------------------

class _Builder:
    """Turns field types into schema fragments, collecting structs in `$defs`."""

    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}
        self._owner: dict[str, type] = {}

    def struct(self, cls: type) -> dict:
        name = cls.__name__
        owner = self._owner.get(name)
        if owner is None:
            self._owner[name] = cls
            self.defs[name] = {}  # reserved first, so a struct that nests itself ends
            self.defs[name] = self.obj(cls)
        elif owner is not cls:
            raise ValueError(f"two structs are named {name}: {owner.__module__} and {cls.__module__}")
        return {"$ref": f"#/$defs/{name}"}

    def field(self, ft: FieldType) -> dict:
        if isinstance(ft, Struct):
            ref = self.struct(ft.cls)
            if ft.shorthand is None:
                return ref
            return {"anyOf": [self.field(ft.shorthand), ref]}
        if isinstance(ft, ListOf):
            item = self.field(ft.item)
            arr: dict = {"type": "array", "items": item}
            if ft.min_items:
                arr["minItems"] = ft.min_items
            if not ft.single_ok:
                return arr
            # One item may stand for a list of one; flatten so editors list every form once.
            forms = item["anyOf"] if set(item) == {"anyOf"} else [item]
            return {"anyOf": [*forms, arr]}
        if isinstance(ft, MapOf):
            return {"type": "object", "propertyNames": {"pattern": _anchored(ft.key_re.pattern)},
                    "additionalProperties": self.field(ft.value)}
        return _leaf(ft)

    def obj(self, cls: type) -> dict:
        """The object schema of a struct: its language fields, nothing else."""
        props: dict[str, dict] = {}
        required: list[str] = []
        for f in spec_fields(cls):
            key = yaml_name(f)
            sch = {**self.field(f.metadata["ftype"]), "description": f.metadata["doc"]}
            default = _default(f)
            if default is not _NO_DEFAULT:
                sch["default"] = default
            props[key] = sch
            if f.metadata["required"]:
                required.append(key)
        out: dict = {"type": "object", "description": _summary(cls), "properties": props,
                     "additionalProperties": False}
        if required:
            out["required"] = required
        return out

    def node(self, kind: str, cls: type[Node]) -> dict:
        out = self.obj(cls)
        out["title"] = f"{kind} node"
        out["properties"]["kind"] = {"const": kind, "description": _kind_doc()}
        return out


def _summary(cls: type) -> str:
    return (cls.__doc__ or cls.__name__).strip().split("\n\n")[0].replace("\n", " ")


def _kind_doc() -> str:
    return next(f.metadata["doc"] for f in spec_fields(Node) if f.name == "kind")


def _node_ref(b: _Builder) -> dict:
    """The `nodes` mapping, registering the node schemas on first use."""
    if "node" not in b.defs:
        kinds = list(NODE_KINDS)
        for kind, cls in NODE_KINDS.items():
            b.defs[f"node-{kind}"] = b.node(kind, cls)
        b.defs["node"] = {
            "type": "object",
            "description": "a step of the flow; its kind decides which keys it takes",
            "required": ["kind"],
            "properties": {"kind": {
                "enum": kinds,
                "description": _kind_doc() + ": " + ", ".join(kinds),
                # Not a JSON Schema keyword; editors show it next to each choice.
                "enumDescriptions": [_summary(NODE_KINDS[k]) for k in kinds],
            }},
            "allOf": [{"if": {"properties": {"kind": {"const": k}}, "required": ["kind"]},
                       "then": {"$ref": f"#/$defs/node-{k}"}} for k in kinds],
        }
    return {"type": "object", "minProperties": 1, "propertyNames": {"pattern": _anchored(NAME_RE)},
            "additionalProperties": {"$ref": "#/$defs/node"}}


def flow_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a flow file, built from the model in `model.py`."""
    b = _Builder()
    top = b.obj(Flow)
    # Likewise `nodes` and `subflows` at the top, which the parser reads apart from the fields.
    top["properties"]["nodes"] = {**_node_ref(b), "description": NODES_DOC}
    # `nodes` of a subflow is not a language field (the parser reads it itself), so it is added here.
    sub = b.defs[b.struct(Subflow)["$ref"].rsplit("/", 1)[1]]
    sub["properties"]["nodes"] = {**_node_ref(b), "description": SUBFLOW_NODES_DOC}
    sub["required"] = [*sub.get("required", []), "nodes"]
    top["properties"]["subflows"] = {
        "type": "object", "description": SUBFLOWS_DOC,
        "propertyNames": {"pattern": _anchored(NAME_RE)},
        "additionalProperties": {"$ref": "#/$defs/Subflow"},
    }
    top["required"] = [*top.get("required", []), "nodes"]
    return {
        "$schema": DRAFT,
        "$id": FLOWS_SCHEMA_ID,
        "title": "IVR flow, version 1",
        "description": "A flows.yaml file: menu trees and the other steps of a phone line. "
                       "docs/FLOWS.md explains each node kind.",
        **{k: v for k, v in top.items() if k != "description"},
        "$defs": dict(sorted(b.defs.items())),
    }


def handoff_schema() -> dict:
    """The JSON Schema of the hand-off payload the router receives (see ivr/engine/handoff.py)."""
    # Imported here, not at the top: the flow language must load without the
    # engine (ivr/flows/ sits below ivr/engine/), and only this function needs it.
    from ivr.engine.handoff import HANDOFF_SCHEMA

    return HANDOFF_SCHEMA


SCHEMAS: dict[str, Callable[[], dict]] = {"flows": flow_schema, "handoff": handoff_schema}


def schema_json(which: str = "flows") -> str:
    """One schema as stable, pretty JSON text: `flows` (the default) or `handoff`."""
    make = SCHEMAS.get(which)
    if make is None:
        raise ValueError(f"unknown schema {which!r} (choose from {', '.join(SCHEMAS)})")
    return json.dumps(make(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
