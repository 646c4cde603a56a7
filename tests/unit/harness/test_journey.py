"""Journey files: every step kind in its long and short forms, the defaults, several
journeys and folders, and the guide's examples. The ways a journey can be broken,
reported with its file, line and column, are in test_journey_errors.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from journey_helpers import one, problems, steps, where, write  # sibling module

from ivr.harness import journey as journey_module
from ivr.harness.journey import (
    JOURNEY_KEYS,
    STEP_KINDS,
    Dial,
    ExpectHandoff,
    ExpectHangup,
    ExpectHoldMusic,
    ExpectPrompt,
    ExpectVoicemail,
    Hangup,
    JourneyError,
    Press,
    Say,
    Silence,
    Wait,
    load_journeys,
    load_many,
)

# ---- the complete format -------------------------------------------------------------

FULL = """
    # The whole format, every step kind in its long form.
    journey: billing by key
    description: the billing menu by keys
    target: sip:ivr@127.0.0.1:5060
    caller: +441632960001
    headers: {X-Test-Run: "42"}
    language: en-GB
    timeout: 3m
    tags: [smoke, billing]
    steps:
      - dial: {caller: "+441632960002", headers: {X-Leg: b}}
      - expect_prompt: {text: "Welcome", wav: prompts/welcome.wav, id: main_menu, match: audio, threshold: 0.6, within: 10s, whole: true}
      - press: {keys: "1", method: info, gap: 250ms, duration: 80ms}
      - say: {text: billing please}
      - silence: 5s
      - wait: 1.5s
      - expect_hold_music: {within: 20s, for: 3s}
      - expect_handoff: {target: "sip:agents@", queue: billing, intent: billing, reason: choice, context: {account: "12345678"}, within: 45s}
      - expect_voicemail: {within: 25s}
      - expect_hangup: {within: 5s}
      - hangup
"""


def test_a_complete_journey(tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "welcome.wav").write_bytes(b"RIFF")
    j = one(tmp_path, FULL)
    assert j.name == "billing by key"
    assert j.file == tmp_path / "j.yaml"
    assert j.line == 2
    assert j.description == "the billing menu by keys"
    assert j.target == "sip:ivr@127.0.0.1:5060"
    assert j.caller == "+441632960001"  # kept as typed, not read as a number
    assert j.headers == {"X-Test-Run": "42"}
    assert j.language == "en-GB"
    assert j.timeout == 180
    assert j.tags == ("smoke", "billing")
    assert [s.kind for s in j.steps] == list(STEP_KINDS)
    dial, prompt, press, say, silence, wait, music, handoff, voicemail, hangup_, hangup = j.steps
    assert dial == Dial(line=11, col=5, caller="+441632960002", headers={"X-Leg": "b"})
    assert prompt == ExpectPrompt(line=12, col=5, text="Welcome", wav=(tmp_path / "prompts" / "welcome.wav").resolve(),
                                  id="main_menu", match="audio", threshold=0.6, within=10, whole=True)
    assert press == Press(line=13, col=5, keys="1", method="info", gap=0.25, duration=0.08)
    assert say == Say(line=14, col=5, text="billing please")
    assert silence == Silence(line=15, col=5, seconds=5)
    assert wait == Wait(line=16, col=5, seconds=1.5)
    assert music == ExpectHoldMusic(line=17, col=5, within=20, seconds=3)
    assert handoff == ExpectHandoff(line=18, col=5, target="sip:agents@", queue="billing", intent="billing",
                                    reason="choice", context={"account": "12345678"}, within=45)
    assert voicemail == ExpectVoicemail(line=19, col=5, within=25)
    assert hangup_ == ExpectHangup(line=20, col=5, within=5)
    assert hangup == Hangup(line=21, col=5)
    assert j.call_caller == "+441632960002"
    assert j.call_headers == {"X-Test-Run": "42", "X-Leg": "b"}


def test_journey_defaults(tmp_path):
    j = one(tmp_path, "journey: minimal\nsteps:\n  - hangup\n")
    assert (j.description, j.target, j.caller, j.headers, j.tags) == (None, None, None, {}, ())
    assert j.language == "en-US"
    assert j.timeout == 120
    assert j.dial is None
    assert j.call_caller is None and j.call_headers == {}


def test_the_dial_step_falls_back_on_the_journey(tmp_path):
    j = one(tmp_path, "journey: j\ncaller: '100'\nheaders: {X-A: '1'}\nsteps:\n  - dial\n  - hangup\n")
    assert j.dial == Dial(line=5, col=5)
    assert j.call_caller == "100"
    assert j.call_headers == {"X-A": "1"}


# ---- short forms and defaults, kind by kind ------------------------------------------

def test_expect_prompt_short_form_and_defaults(tmp_path):
    (s,) = steps(tmp_path, '- expect_prompt: "Welcome to Acme Energy"')
    assert s == ExpectPrompt(line=3, col=5, text="Welcome to Acme Energy", within=15.0)
    assert (s.wav, s.id, s.match, s.threshold, s.whole) == (None, None, "auto", None, False)


def test_expect_prompt_by_id_or_wav_alone(tmp_path):
    (tmp_path / "w.wav").write_bytes(b"RIFF")
    by_id, by_wav = steps(tmp_path, "- expect_prompt: {id: main_menu, match: event}", "- expect_prompt: {wav: w.wav}")
    assert (by_id.id, by_id.match, by_id.text) == ("main_menu", "event", None)
    assert by_wav.wav == (tmp_path / "w.wav").resolve()


def test_press_short_form_and_defaults(tmp_path):
    a, b, c, d = steps(tmp_path, "- press: 12#", '- press: "*"', "- press: 0", "- press: {keys: ABCD}")
    assert a == Press(line=3, col=5, keys="12#", method="rfc4733", gap=0.3, duration=0.1)
    assert (b.keys, c.keys, d.keys) == ("*", "0", "ABCD")
    assert a.within is None


def test_say_short_and_wav_forms(tmp_path):
    write(tmp_path, "caller/billing.wav", "RIFF")
    a, b = steps(tmp_path, '- say: "billing please"', "- say: {wav: caller/billing.wav}")
    assert a == Say(line=3, col=5, text="billing please")
    assert b == Say(line=4, col=5, wav=(tmp_path / "caller" / "billing.wav").resolve())


def test_silence_and_wait(tmp_path):
    a, b, c = steps(tmp_path, "- silence: 5s", "- wait: 300ms", "- wait: 2")
    assert a == Silence(line=3, col=5, seconds=5)
    assert b == Wait(line=4, col=5, seconds=0.3)
    assert c.seconds == 2  # a bare number is seconds


def test_expect_hold_music_forms(tmp_path):
    a, b, c, d = steps(tmp_path, "- expect_hold_music: 3s", "- expect_hold_music", "- expect_hold_music: {within: 1m}",
                       "- expect_hold_music: {for: 10s}")
    assert a == ExpectHoldMusic(line=3, col=5, within=10, seconds=3)
    assert b == ExpectHoldMusic(line=4, col=5, within=10, seconds=2)
    assert (c.within, c.seconds) == (60, 2)
    assert (d.within, d.seconds) == (10, 10)


def test_expect_handoff_forms(tmp_path):
    a, b, c, d = steps(tmp_path, "- expect_handoff", "- expect_handoff: {}", "- expect_handoff:",
                       "- expect_handoff: {queue: billing}")
    assert a == ExpectHandoff(line=3, col=5, within=30)
    assert b == ExpectHandoff(line=4, col=5, within=30)
    assert c == ExpectHandoff(line=5, col=5, within=30)
    assert (d.queue, d.target, d.intent, d.reason, d.context) == ("billing", None, None, None, {})


def test_expect_voicemail_hangup_and_hangup_bare(tmp_path):
    a, b, c, d, e = steps(tmp_path, "- expect_voicemail", "- expect_hangup", "- hangup", "- expect_voicemail: {}",
                          "- expect_hangup: {within: 1m}")
    assert a == ExpectVoicemail(line=3, col=5, within=20)
    assert b == ExpectHangup(line=4, col=5, within=10)
    assert c == Hangup(line=5, col=5, within=None)
    assert d.within == 20
    assert e.within == 60


def test_dial_forms(tmp_path):
    (a,) = steps(tmp_path, "- dial")
    assert a == Dial(line=3, col=5)
    (b,) = steps(tmp_path, '- dial: {caller: "+44"}')
    assert (b.caller, b.headers) == ("+44", {})
    assert b.telephone_event and "tones" not in b.describe()
    (c,) = steps(tmp_path, "- dial: {telephone_event: false}")
    assert not c.telephone_event and c.describe() == "dial (keys as tones only)"


def test_block_style_steps(tmp_path):
    text = """
        journey: block style
        steps:
          - expect_prompt:
              text: >-
                For billing,
                press 1.
              within: 20s
          - press:
              keys: "1"
              method: inband
    """
    prompt, press = one(tmp_path, text).steps
    assert (prompt.line, prompt.col, prompt.text, prompt.within) == (3, 5, "For billing, press 1.", 20)
    assert (press.line, press.col, press.keys, press.method) == (8, 5, "1", "inband")


def test_describe(tmp_path):
    (tmp_path / "welcome.wav").write_bytes(b"RIFF")
    labels = [s.describe() for s in steps(
        tmp_path,
        '- dial: {caller: "+44"}',
        '- expect_prompt: "Welcome to Acme Energy. Calls may be recorded for training."',
        "- expect_prompt: {id: main_menu, match: event}",
        "- expect_prompt: {wav: welcome.wav}",
        "- press: 1",
        "- press: {keys: 12#, method: info}",
        "- say: billing please",
        "- say: {wav: welcome.wav}",
        "- silence: 5s",
        "- wait: 300ms",
        "- expect_hold_music: 2m",
        "- expect_handoff",
        "- expect_handoff: {queue: billing, reason: choice, context: {account: '1'}}",
        "- expect_voicemail",
        "- expect_hangup",
        "- hangup",
    )]
    assert labels == [
        "dial as +44",
        'expect prompt "Welcome to Acme Energy. Calls may be re\u2026"',
        "expect prompt main_menu (event)",
        "expect prompt welcome.wav",
        "press 1 (rfc4733)",
        "press 12# (info)",
        'say "billing please"',
        "say welcome.wav",
        "silence 5s",
        "wait 300ms",
        "expect hold music for 2m",
        "expect handoff",
        "expect handoff (queue billing, reason choice, account=1)",
        "expect voicemail beep",
        "expect hangup",
        "hang up",
    ]


# ---- several journeys, several files ---------------------------------------------------

MULTI = """
    journeys:
      - journey: first
        steps:
          - press: 1
      - journey: second
        timeout: 30s
        steps:
          - hangup
"""


def test_several_journeys_in_one_file(tmp_path):
    first, second = load_journeys(write(tmp_path, "multi.yaml", MULTI))
    assert (first.name, first.line, first.steps[0].line, first.steps[0].col) == ("first", 2, 4, 9)
    assert (second.name, second.line, second.timeout) == ("second", 5, 30)
    assert first.file == second.file == tmp_path / "multi.yaml"


def test_a_folder_gives_its_yaml_files_in_order(tmp_path):
    write(tmp_path, "b.yml", "journey: b\nsteps: [hangup]\n")
    write(tmp_path, "a.yaml", MULTI)
    write(tmp_path, "notes.txt", "not a journey")
    write(tmp_path, "sub/c.yaml", "journey: c\nsteps: [hangup]\n")  # subfolders are not read
    names = [j.name for j in load_many([tmp_path])]
    assert names == ["first", "second", "b"]


def test_files_and_folders_together_each_file_once(tmp_path):
    a = write(tmp_path, "a.yaml", "journey: a\nsteps: [hangup]\n")
    write(tmp_path, "b.yaml", "journey: b\nsteps: [hangup]\n")
    assert [j.name for j in load_many([a, tmp_path])] == ["a", "b"]


def test_duplicate_journey_names_across_files(tmp_path):
    write(tmp_path, "a.yaml", MULTI)
    write(tmp_path, "b.yaml", "# again\njourney: second\nsteps: [hangup]\n")
    with pytest.raises(JourneyError) as info:
        load_many([tmp_path])
    assert info.value.problems == [
        f"{tmp_path}/b.yaml:2:10: error: journey 'second' is already defined at {tmp_path}/a.yaml:5 "
        "[duplicate-journey] (hint: give each journey its own name)",
    ]


def test_duplicate_journey_names_in_one_file(tmp_path):
    text = "journeys:\n  - journey: a\n    steps: [hangup]\n  - journey: a\n    steps: [hangup]\n"
    assert [where(p) for p in problems(tmp_path, text)] == ["j.yaml:4:14"]


def test_problems_of_all_files_are_collected(tmp_path):
    write(tmp_path, "a.yaml", "journey: a\nsteps: [hangupp]\n")
    write(tmp_path, "b.yaml", "journey: b\ntimeout: soon\nsteps: [hangup]\n")
    write(tmp_path, "c.yaml", "journey: c\nsteps: [hangup]\n")
    with pytest.raises(JourneyError) as info:
        load_many([tmp_path])
    got = [p.replace(f"{tmp_path}/", "") for p in info.value.problems]
    assert [where(p) for p in got] == ["a.yaml:2:9", "b.yaml:2:10"]
    assert "did you mean 'hangup'?" in got[0]
    assert str(info.value) == "\n".join(info.value.problems)
    assert [d.code for d in info.value.diagnostics] == ["unknown-kind", "bad-duration"]


def test_an_empty_folder_and_a_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(JourneyError) as info:
        load_many([tmp_path / "empty", tmp_path / "nope.yaml"])
    assert info.value.problems == [
        f"{tmp_path}/empty:1:1: error: no journey files (*.yaml, *.yml) in {tmp_path}/empty [no-file]",
        f"{tmp_path}/nope.yaml:1:1: error: no such file: {tmp_path}/nope.yaml [no-file] "
        "(hint: pass a journey file or a folder of them)",
    ]


def test_load_journeys_wants_a_file(tmp_path):
    with pytest.raises(JourneyError, match="is a folder"):
        load_journeys(tmp_path)


# ---- docs/TESTING.md stays true to the loader ------------------------------------------

DOC = Path(__file__).resolve().parents[3] / "docs" / "TESTING.md"


def _journeys_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Journeys\n")
    return text[start:text.index("\n## ", start + 1)]


def _blocks(section: str) -> list[tuple[str, str, str]]:
    """(language, the HTML comment just before, body) of each fenced block."""
    pattern = re.compile(r"(?:<!-- (.*?) -->\n)?```(\w+)\n(.*?)```", re.S)
    return [(m.group(2), m.group(1) or "", m.group(3)) for m in pattern.finditer(section)]


def _table(section: str, heading: str) -> list[str]:
    """The first column of the table under a heading, without its backquotes."""
    part = section[section.index(heading):]
    rows = re.findall(r"^\| `([^`]+)`(?:, `([^`]+)`)? \|", part[: part.index("\n###", 1) if "\n###" in part[1:]
                                                               else len(part)], re.M)
    return [name for row in rows for name in row if name]


def test_the_docs_examples_load(tmp_path, monkeypatch):
    """Every journey, and every list of steps, in a yaml block of the guide loads."""
    monkeypatch.chdir(tmp_path)
    blocks = [b for b in _blocks(_journeys_section()) if b[0] == "yaml"]
    loaded = 0
    for i, (_, comment, body) in enumerate(blocks):
        if comment.startswith("broken:"):
            continue
        if body.startswith("steps:"):  # steps alone, shown in a minimal journey
            body = f"journey: doc {i}\n{body}"
        assert re.match(r"(?:#.*\n)*journeys?:", body), body
        loaded += len(load_journeys(write(tmp_path, f"doc{i}.yaml", body)))
    assert loaded >= 5


def test_the_docs_error_example_is_what_the_loader_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = _blocks(_journeys_section())
    (body,) = [b for _, c, b in blocks if c == "broken: broken.yaml"]
    (expected,) = [b for _, c, b in blocks if c == "errors: broken.yaml"]
    write(tmp_path, "broken.yaml", body)
    with pytest.raises(JourneyError) as info:
        load_journeys(Path("broken.yaml"))
    assert info.value.problems == expected.splitlines()


def test_the_docs_tables_match_the_code():
    section = _journeys_section()
    assert _table(section, "### Step kinds") == list(STEP_KINDS)
    assert _table(section, "### The journey's keys") == list(JOURNEY_KEYS)
    source = Path(journey_module.__file__).read_text(encoding="utf-8")
    codes = set(re.findall(r'\.error\(\s*"([a-z-]+)"', source))
    codes |= set(re.findall(r'Diagnostic\("error", "([a-z-]+)"', source))
    codes |= {"duplicate-key", "yaml-forbidden", "bad-duration"}  # from the YAML reader and the flow field types
    assert set(_table(section, "### When a journey is refused")) == codes
