"""The JSON Schema of the flow language: generated from the model, valid, current,
and in agreement with the loader on what it accepts and refuses."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from ivr.engine.handoff import HANDOFF_SCHEMA, build_payload
from ivr.flows.diagnostics import Report
from ivr.flows.fields import spec_fields, yaml_name
from ivr.flows.model import NODE_KINDS
from ivr.flows.parse import parse_text
from ivr.flows.schema import flow_schema, handoff_schema, schema_json

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = ("python -c \"from ivr.flows.schema import schema_json; "
              "open('flows.schema.json','w').write(schema_json())\"")


class _TextDates(yaml.SafeLoader):
    """The safe loader, minus YAML 1.1's timestamp type.

    `closed: [2026-12-25]` would otherwise arrive as datetime.date, which JSON
    has no type for. We drop the resolver rather than convert dates back with
    isoformat(), because conversion rewrites what was typed (`2026-1-5` would
    become a valid-looking `2026-01-05` the flow loader refuses). Without it the
    value is the text as written, which is what the flow loader reads and what
    an editor using YAML 1.2 (no timestamp type) shows the schema.
    """


_TextDates.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str):
    return yaml.load(text, Loader=_TextDates)  # a SafeLoader subclass: no Python objects


@pytest.fixture(scope="module")
def schema() -> dict:
    return flow_schema()


@pytest.fixture(scope="module")
def validator(schema) -> Draft202012Validator:
    return Draft202012Validator(schema)


@pytest.fixture(scope="module")
def default_flow() -> dict:
    return load_yaml((ROOT / "flows.yaml").read_text(encoding="utf-8"))


def errors(validator, doc) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


# ---- the schema itself ----------------------------------------------------------

def test_schema_is_valid_draft_2020_12(schema):
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://ivr-engine.dev/schemas/flows-v1.json"
    assert schema["title"] and schema["description"]


def test_committed_schema_is_current():
    committed = (ROOT / "flows.schema.json").read_text(encoding="utf-8")
    assert committed == schema_json(), f"flows.schema.json is stale; regenerate it from the repo root with:\n  {REGENERATE}"


def test_schema_json_is_stable_pretty_json(schema):
    text = schema_json()
    assert text.endswith("}\n")
    assert json.loads(text) == schema
    assert text == schema_json("flows")
    assert '\n  "$defs": {' in text  # indent 2, keys sorted


def test_schema_json_handoff_and_unknown():
    assert json.loads(schema_json("handoff")) == HANDOFF_SCHEMA
    with pytest.raises(ValueError, match="flows, handoff"):
        schema_json("nodes")


def _patterns(obj) -> set[str]:
    if isinstance(obj, dict):
        found = {obj["pattern"]} if isinstance(obj.get("pattern"), str) else set()
        return found.union(*(_patterns(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_patterns(v) for v in obj))
    return set()


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to compile JavaScript regexes")
def test_patterns_compile_as_editor_regexes(schema):
    # Editors compile `pattern` as JavaScript regexes with the unicode flag, which
    # refuse some escapes Python takes (such as a backslash before a space).
    patterns = sorted(_patterns(schema))
    script = "for (const p of JSON.parse(require('fs').readFileSync(0, 'utf8'))) new RegExp(p, 'u');"
    run = subprocess.run(["node", "-e", script], input=json.dumps(patterns), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_top_level_keys_come_from_the_model(schema):
    from ivr.flows.model import Flow
    expected = {yaml_name(f) for f in spec_fields(Flow)} | {"nodes", "subflows"}
    assert set(schema["properties"]) == expected
    assert schema["additionalProperties"] is False
    assert {"start", "escape", "nodes"} <= set(schema["required"])


def test_every_node_kind_appears(schema):
    defs = schema["$defs"]
    assert defs["node"]["properties"]["kind"]["enum"] == list(NODE_KINDS)
    for kind, cls in NODE_KINDS.items():
        node = defs[f"node-{kind}"]
        assert node["properties"]["kind"]["const"] == kind
        assert node["additionalProperties"] is False
        assert set(node["properties"]) == {yaml_name(f) for f in spec_fields(cls)}
        guard = {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                 "then": {"$ref": f"#/$defs/node-{kind}"}}
        assert guard in defs["node"]["allOf"]


def test_descriptions_on_every_property(schema):
    for name, obj in schema["$defs"].items():
        for key, prop in obj.get("properties", {}).items():
            assert prop.get("description"), f"$defs/{name}: {key} has no description"
    for key, prop in schema["properties"].items():
        assert prop.get("description"), f"top level: {key} has no description"


def test_only_listening_nodes_take_escape(schema):
    takes = {k for k in NODE_KINDS if "escape" in schema["$defs"][f"node-{k}"]["properties"]}
    assert takes == {"menu", "gather", "callback"}


def test_defaults_are_published_and_valid(schema):
    defs = schema["$defs"]
    assert defs["node-menu"]["properties"]["input"]["default"] == "both"
    assert defs["node-hold"]["properties"]["max_wait"]["default"] == "1m"
    assert defs["Digits"]["properties"]["terminator"]["default"] == "#"
    assert defs["Escape"]["properties"]["keys"]["default"] == ["0"]
    seen = 0
    for name, obj in defs.items():
        for key, prop in obj.get("properties", {}).items():
            if "default" in prop:
                seen += 1
                check = Draft202012Validator({**prop, "$defs": defs})
                assert check.is_valid(prop["default"]), f"$defs/{name}: default of {key} fails its own schema"
    assert seen > 10


# ---- flows against the schema -----------------------------------------------------

def test_default_flow_validates(validator, default_flow):
    assert errors(validator, default_flow) == []


def test_default_flow_validates_with_plain_safe_load(validator):
    # The same file as most tools read it: YAML 1.1 dates come back as date
    # objects, so they are turned back into text first (see _TextDates for why
    # the other tests keep the text instead).
    import datetime as dt

    def text_dates(v):
        if isinstance(v, dict):
            return {k: text_dates(x) for k, x in v.items()}
        if isinstance(v, list):
            return [text_dates(x) for x in v]
        return v.isoformat() if isinstance(v, dt.date) else v

    flow = yaml.safe_load((ROOT / "flows.yaml").read_text(encoding="utf-8"))
    assert errors(validator, text_dates(flow)) == []


@pytest.mark.parametrize("key", [1, "1", "#", "*", "12", 0])
def test_keys_may_be_numbers_or_text(validator, default_flow, key):
    flow = copy.deepcopy(default_flow)
    flow["nodes"]["main_menu"]["options"][0]["key"] = key
    flow["escape"]["keys"] = key
    assert errors(validator, flow) == []


MINIMAL = """
start: hello
escape: {to: agent}
nodes:
  hello: {kind: menu, prompt: Hi, options: [{key: 1, goto: agent}]}
  agent: {kind: handoff, queue: general}
"""

# (what is wrong, YAML of the broken flow, where the schema error must point)
BAD_FLOWS = [
    ("unknown key in a menu",
     MINIMAL.replace("prompt: Hi,", "prompt: Hi, colour: red,"), "$.nodes.hello", "colour"),
    ("unknown kind", MINIMAL.replace("kind: handoff", "kind: handof"), "$.nodes.agent.kind", "handof"),
    ("say without next",
     MINIMAL + "  bye: {kind: say, prompt: Bye}\n", "$.nodes.bye", "'next' is a required property"),
    ("wrong type", MINIMAL.replace("prompt: Hi,", "prompt: Hi, timeout: [1],"), "$.nodes.hello.timeout",
     "[1] is not of type"),
    ("bad key", MINIMAL.replace("key: 1", "key: x"), "$.nodes.hello.options[0].key", "'x'"),
    ("duration out of range", MINIMAL.replace("prompt: Hi,", "prompt: Hi, timeout: 500,"),
     "$.nodes.hello.timeout", "500"),
    ("escape on a say", MINIMAL + "  bye: {kind: say, prompt: Bye, next: agent, escape: {to: agent}}\n",
     "$.nodes.bye", "escape"),
    ("node id as target with a dot", MINIMAL.replace("goto: agent", "goto: a.b"),
     "$.nodes.hello.options[0].goto", "a.b"),
    ("missing escape", MINIMAL.replace("escape: {to: agent}\n", ""), "$", "'escape' is a required property"),
]


@pytest.mark.parametrize(("what", "text", "path", "words"), BAD_FLOWS, ids=[b[0] for b in BAD_FLOWS])
def test_bad_flows_fail_with_one_precise_error(validator, what, text, path, words):
    assert errors(validator, load_yaml(MINIMAL)) == []
    found = list(validator.iter_errors(load_yaml(text)))
    assert found, f"{what}: the schema accepted it"
    # The kind picks one node schema, so the message is about the broken key only.
    best = best_match(found)
    assert best.json_path == path, errors(validator, load_yaml(text))
    assert words in best.message


@pytest.mark.parametrize(("what", "text", "path", "words"), BAD_FLOWS, ids=[b[0] for b in BAD_FLOWS])
def test_loader_refuses_the_same_flows(what, text, path, words):
    report = Report("bad.yaml")
    parse_text(text, report)
    assert report.errors, f"{what}: the loader accepted what the schema refuses"


def test_loader_forms_the_schema_accepts(validator):
    # Forms the loader takes that the field types' own fragments got wrong.
    text = MINIMAL.replace("options: [", "options: [{say: [yes, 1], goto: agent}, ") + """
  choose:
    kind: branch
    cases: [{when: true, goto: agent}]
    else: agent
hours:
  office:
    timezone: America/Argentina/Buenos_Aires
    weekly: {Mon-Fri: "08:00-18:00", sat: Closed, sun: [closed]}
    closed: [2026-12-25]
"""
    assert errors(validator, load_yaml(text)) == []
    report = Report("ok.yaml")
    parse_text(text, report)
    assert report.errors == []


@pytest.mark.parametrize(("field", "value"), [
    ("language", 12), ("timezone", 5), ("weekly", {"someday": "08:00-18:00"}),
    ("weekly", {"mon": "25:00-26:00"}), ("closed", ["2026-13-01"]),
])
def test_schema_refuses_what_the_loader_refuses(validator, field, value):
    flow = load_yaml(MINIMAL)
    if field == "language":
        flow["language"] = value
    else:
        hours = {"timezone": "Europe/London", "weekly": {"mon": "08:00-18:00"}}
        flow["hours"] = {"office": {**hours, field: value}}
    assert errors(validator, flow)


# ---- the hand-off payload ------------------------------------------------------------

def _payload(**changes):
    args = dict(call_id="abc@host", channel="sip", caller="+441234567890", dialled="support",
                language="en-GB", queue="billing", skills=["billing"], priority=5, target=None,
                intent="billing", reason="choice", variables={"account": "12345678"},
                path=["welcome", "main_menu", "billing_agent"], attempts={"main_menu": {"no_match": 1}},
                wait_s=12.3456, started_at="2026-01-05T10:00:00Z", node="billing_agent",
                flow_name="Acme Energy customer line", flow_version="0123456789ab")
    args.update(changes)
    return build_payload(**args)


def test_handoff_schema_is_the_engines():
    assert handoff_schema() is HANDOFF_SCHEMA
    Draft202012Validator.check_schema(handoff_schema())


def test_handoff_payload_validates():
    jsonschema.validate(_payload(), handoff_schema(), cls=Draft202012Validator)
    jsonschema.validate(_payload(reason="escape", intent=None, target="sip:agents@example.com"),
                        handoff_schema(), cls=Draft202012Validator)


def test_handoff_payload_with_unknown_reason_fails():
    payload = _payload()
    payload["reason"] = "bored"  # build_payload itself refuses it, so change it afterwards
    with pytest.raises(jsonschema.ValidationError, match="bored"):
        jsonschema.validate(payload, handoff_schema(), cls=Draft202012Validator)
