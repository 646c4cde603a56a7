"""Journey files refused: every way a journey can be broken, reported with its
file, line and column (the valid forms are in test_journey.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from journey_helpers import one, problems, steps, where, write  # sibling module

from ivr.harness.journey import JourneyError, load_journeys


def step_problems(tmp_path: Path, *lines: str) -> list[str]:
    """Problems of a journey whose steps start on line 3, at column 3 (`- ` at column 3)."""
    return problems(tmp_path, "journey: j\nsteps:\n" + "".join(f"  {line}\n" for line in lines))


# ---- broken journeys -----------------------------------------------------------------

def test_misspelt_step_kind(tmp_path):
    assert step_problems(tmp_path, "- expect_promt: Welcome") == [
        "j.yaml:3:5: error: unknown step kind 'expect_promt' [unknown-kind] (hint: did you mean 'expect_prompt'?)",
    ]


def test_unknown_step_kind_lists_the_kinds(tmp_path):
    (p,) = step_problems(tmp_path, "- dance")
    assert p.startswith("j.yaml:3:5: error: unknown step kind 'dance' [unknown-kind] (hint: step kinds: dial, ")


def test_unknown_keys(tmp_path):
    text = """
        journey: j
        colour: red
        steps:
          - press: {keys: "1", methd: info}
          - expect_hangup: {withn: 5s}
    """
    assert problems(tmp_path, text) == [
        "j.yaml:2:1: error: unknown key 'colour' [unknown-key] (hint: keys: journey, description, target, caller, "
        "headers, language, timeout, tags, steps)",
        "j.yaml:4:24: error: unknown key 'methd' in press [unknown-key] (hint: did you mean 'method'?)",
        "j.yaml:5:21: error: unknown key 'withn' in expect_hangup [unknown-key] (hint: did you mean 'within'?)",
    ]


def test_a_field_that_is_not_under_its_step(tmp_path):
    text = """
        journey: j
        steps:
          - expect_prompt: Welcome
            within: 5s
          - press: 1
            say: hello
    """
    assert problems(tmp_path, text) == [
        "j.yaml:4:5: error: a step has one key, its kind; 'within' is a second key [bad-step] "
        "(hint: indent within under expect_prompt:, or write expect_prompt: {..., within: ...})",
        "j.yaml:6:5: error: a step has one key, its kind; 'say' is a second key [bad-step] "
        "(hint: start another step with '- say:')",
    ]


def test_wrong_types(tmp_path):
    text = """
        journey: j
        headers: X-A
        tags: {a: b}
        steps:
          - expect_prompt: {text: [a, b], threshold: high, whole: maybe}
          - wait: {for: 2s}
          - expect_handoff: billing
          - hangup: now
          - expect_handoff: {context: {account: {n: 1}}}
          - [press, 1]
    """
    got = problems(tmp_path, text)
    assert [where(p) for p in got] == ["j.yaml:2:10", "j.yaml:3:7", "j.yaml:5:27", "j.yaml:5:46", "j.yaml:5:59",
                                       "j.yaml:6:11", "j.yaml:7:21", "j.yaml:8:13", "j.yaml:9:41", "j.yaml:10:5"]
    assert "headers: expected a mapping of names to values, got 'X-A'" in got[0]
    assert "expect_prompt text: expected text, got a list" in got[2]
    assert "expect_prompt threshold: expected a number from 0 to 1, got 'high'" in got[3]
    assert "expect_prompt whole: expected true or false, got 'maybe'" in got[4]
    assert "wait takes a duration, got a mapping" in got[5]
    assert "expect_handoff takes a mapping of fields, got 'billing'" in got[6]
    assert "hangup takes no value, got 'now'" in got[7]
    assert "expect_handoff context account: expected text, got a mapping" in got[8]
    assert "a step is a kind and its value, got a list" in got[9]


def test_missing_required_values(tmp_path):
    assert problems(tmp_path, "description: no name\nsteps: [hangup]\n") == [
        "j.yaml:1:1: error: a journey needs a name [missing-field] (hint: add journey: <a short name>)",
    ]
    assert [where(p) for p in problems(tmp_path, "journey: j\n")] == ["j.yaml:1:1"]
    assert [where(p) for p in problems(tmp_path, "journey: j\nsteps: []\n")] == ["j.yaml:2:8"]
    assert [where(p) for p in problems(tmp_path, "journey: j\nsteps:\n")] == ["j.yaml:2:1"]
    assert [where(p) for p in problems(tmp_path, "journey: ''\nsteps: [hangup]\n")] == ["j.yaml:1:10"]
    got = step_problems(tmp_path, "- press", "- press: {method: info}", "- say: {}", "- expect_prompt: {within: 5s}",
                        "- silence", "- wait:")
    assert got == [
        'j.yaml:3:5: error: press needs a value [missing-value] (hint: for example press: "12#" (quote keys: '
        "a bare # starts a comment))",
        "j.yaml:4:5: error: press needs keys [missing-field] (hint: for example press: {keys: \"1\", method: info})",
        "j.yaml:5:5: error: say needs text or wav [missing-field] (hint: for example say: \"billing please\")",
        "j.yaml:6:5: error: expect_prompt needs text, wav or id [missing-field] "
        "(hint: for example expect_prompt: \"Welcome to Acme Energy\")",
        "j.yaml:7:5: error: silence needs a value [missing-value] (hint: for example silence: 5s)",
        "j.yaml:8:5: error: wait needs a value [missing-value] (hint: for example wait: 2s)",
    ]


def test_bad_durations(tmp_path):
    text = """
        journey: j
        timeout: soon
        steps:
          - expect_prompt: {text: hi, within: 10x}
          - silence: 0s
          - press: {keys: "1", gap: 0s, duration: 0ms}
          - expect_hold_music: forever
    """
    assert problems(tmp_path, text) == [
        "j.yaml:2:10: error: timeout: 'soon' is not a duration [bad-duration] "
        "(hint: write a number with a unit: 5s, 500ms, 2m, 1h)",
        "j.yaml:4:39: error: expect_prompt within: '10x' is not a duration [bad-duration] "
        "(hint: write a number with a unit: 5s, 500ms, 2m, 1h)",
        "j.yaml:5:14: error: silence: must be longer than 0 [bad-duration] (hint: for example silence: 5s)",
        "j.yaml:6:43: error: press duration: must be longer than 0 [bad-duration] (hint: for example 5s, 500ms, 2m)",
        "j.yaml:7:24: error: expect_hold_music for: 'forever' is not a duration [bad-duration] "
        "(hint: write a number with a unit: 5s, 500ms, 2m, 1h)",
    ]


def test_dial_only_first(tmp_path):
    assert step_problems(tmp_path, "- press: 1", "- dial: {caller: '1'}", "- dial") == [
        "j.yaml:4:5: error: dial can only be the first step [dial-not-first] "
        "(hint: move it to the top, or leave it out: the call is dialled before the first step anyway)",
        "j.yaml:5:5: error: dial can only be the first step [dial-not-first] "
        "(hint: move it to the top, or leave it out: the call is dialled before the first step anyway)",
    ]


def test_bad_keys_are_shown_where_they_are(tmp_path):
    got = step_problems(tmp_path, '- press: "12x#e"', "- press: {keys: 1a}", '- press: ""', "- press: 1.5")
    assert got == [
        "j.yaml:3:15: error: press: 'x' is not a key [bad-key] (hint: keys are 0-9, *, #, A-D)",
        "j.yaml:3:17: error: press: 'e' is not a key [bad-key] (hint: keys are 0-9, *, #, A-D)",
        "j.yaml:4:20: error: press: 'a' is not a key [bad-key] (hint: write the keys A-D in capitals)",
        "j.yaml:5:12: error: press: no keys given [bad-key] (hint: for example press: \"1\")",
        "j.yaml:6:13: error: press: '.' is not a key [bad-key] (hint: keys are 0-9, *, #, A-D)",
    ]


def test_a_bare_hash_is_a_comment(tmp_path):
    (p,) = step_problems(tmp_path, "- press: #")
    assert where(p) == "j.yaml:3:5"
    assert "a bare # starts a comment" in p


def test_wav_paths_are_relative_to_the_journey_file(tmp_path, monkeypatch):
    write(tmp_path, "journeys/media/hello.wav", "RIFF")
    path = write(tmp_path, "journeys/j.yaml", "journey: j\nsteps:\n  - say: {wav: media/hello.wav}\n")
    monkeypatch.chdir(tmp_path)  # not the journey's folder
    (say,) = load_journeys(Path("journeys/j.yaml"))[0].steps
    assert say.wav == (tmp_path / "journeys" / "media" / "hello.wav").resolve()
    path.write_text("journey: j\nsteps:\n  - say: {wav: hello.wav}\n  - expect_prompt: {wav: media}\n")
    with pytest.raises(JourneyError) as info:
        load_journeys(path)
    media = (tmp_path / "journeys" / "media").resolve()
    assert info.value.problems == [
        f"{path}:3:16: error: say wav: hello.wav does not exist (looked for {media.parent}/hello.wav) [no-wav] "
        "(hint: relative paths are read from the journey file's folder)",
        f"{path}:4:26: error: expect_prompt wav: media is a folder, not a file (looked for {media}) [no-wav] "
        "(hint: relative paths are read from the journey file's folder)",
    ]


def test_absolute_wav_path(tmp_path):
    wav = write(tmp_path, "elsewhere/x.wav", "RIFF")
    (s,) = steps(tmp_path, f"- say: {{wav: '{wav}'}}")
    assert s.wav == wav.resolve()


def test_say_takes_text_or_wav_not_both(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    assert step_problems(tmp_path, "- say: {text: hi, wav: a.wav}") == [
        "j.yaml:3:21: error: say takes text or wav, not both [conflict] (hint: use two say steps to send both)",
    ]


def test_match_needs_its_evidence(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    got = step_problems(tmp_path, "- expect_prompt: {wav: a.wav, match: event}",
                        "- expect_prompt: {id: menu, match: audio}",
                        "- expect_prompt: {wav: a.wav, id: menu, match: transcript}",
                        "- expect_prompt: {text: hi, match: transcript}",
                        "- expect_prompt: {text: hi, match: sound}")
    assert [where(p) for p in got] == ["j.yaml:3:40", "j.yaml:4:38", "j.yaml:5:50", "j.yaml:7:38"]
    assert "match: event needs id or text" in got[0]
    assert "match: audio needs text or wav" in got[1]
    assert "match: transcript needs text" in got[2]
    assert "expect_prompt match: 'sound' is not one of auto, audio, transcript, event" in got[3]


def test_methods_and_reasons_are_checked(tmp_path):
    got = step_problems(tmp_path, "- press: {keys: '1', method: inbnd}", "- expect_handoff: {reason: choise}")
    assert got == [
        "j.yaml:3:32: error: press method: 'inbnd' is not one of rfc4733, info, inband [bad-value] "
        "(hint: did you mean 'inband'?)",
        "j.yaml:4:30: error: expect_handoff reason: 'choise' is not one of choice, escape, failures, overflow "
        "[bad-value] (hint: did you mean 'choice'?)",
    ]


def test_target_language_and_headers(tmp_path):
    text = """
        journey: j
        target: ivr@127.0.0.1
        language: english please
        headers: {From: me, "X Bad": 1, X-Ok: "2"}
        steps:
          - dial: {headers: {Call-ID: x, X-Empty: }}
    """
    assert problems(tmp_path, text) == [
        "j.yaml:2:9: error: target: 'ivr@127.0.0.1' is not a SIP address [bad-value] "
        "(hint: for example sip:ivr@127.0.0.1:5060)",
        "j.yaml:3:11: error: language: 'english please' is not a language tag (en-US, en-GB, fr-FR) [bad-value]",
        "j.yaml:4:11: error: the From header cannot be set here [bad-header] (hint: set the caller id with caller:)",
        "j.yaml:4:21: error: 'X Bad' is not a SIP header name [bad-header] "
        "(hint: use letters, digits and -, for example X-Test-Run)",
        "j.yaml:6:22: error: the Call-ID header cannot be set here [bad-header] "
        "(hint: the dialer sets this header itself)",
        "j.yaml:6:34: error: dial headers X-Empty: expected text, got nothing [bad-value]",
    ]


def test_tags(tmp_path):
    assert one(tmp_path, "journey: j\ntags: smoke\nsteps: [hangup]\n").tags == ("smoke",)
    assert one(tmp_path, "journey: j\ntags: [a, b, a]\nsteps: [hangup]\n").tags == ("a", "b")
    assert [where(p) for p in problems(tmp_path, "journey: j\ntags: [ok, two words]\nsteps: [hangup]\n")] == [
        "j.yaml:2:12"]


def test_every_problem_is_reported_at_once(tmp_path):
    text = """
        journey: everything wrong
        timeout: 2x
        stepz: []
        steps:
          - expect_promt: hello
          - press: 9z
          - dial
          - say: {wav: missing.wav}
          - expect_prompt: {within: 5s}
          - wait: soon
    """
    got = problems(tmp_path, text)
    assert [where(p) for p in got] == ["j.yaml:2:10", "j.yaml:3:1", "j.yaml:5:5", "j.yaml:6:13", "j.yaml:7:5",
                                       "j.yaml:8:16", "j.yaml:9:5", "j.yaml:10:11"]
    assert "did you mean 'steps'?" in got[1]
    assert "did you mean 'expect_prompt'?" in got[2]


def test_yaml_problems(tmp_path):
    (p,) = problems(tmp_path, 'journey: j\nsteps:\n  - say: "unclosed\n')
    assert where(p) == "j.yaml:3:10"
    assert "[yaml-syntax]" in p
    (p,) = problems(tmp_path, "journey: j\njourney: k\nsteps: [hangup]\n")
    assert p.startswith("j.yaml:2:1: error: duplicate key 'journey' (first defined at line 1) [duplicate-key]")


def test_not_a_journey_file(tmp_path):
    assert problems(tmp_path, "# nothing\n") == [
        "j.yaml:1:1: error: the journey file is empty [not-a-journey] (hint: start with journey: <name> and steps:)",
    ]
    (p,) = problems(tmp_path, "start: welcome\nnodes: {}\n")
    assert p.startswith("j.yaml:1:1: error: a journey file is a mapping with journey: and steps:")
    (p,) = problems(tmp_path, "- journey: j\n")
    assert where(p) == "j.yaml:1:1"


def test_broken_multi_journey_files(tmp_path):
    assert [where(p) for p in problems(tmp_path, "journeys: []\n")] == ["j.yaml:1:11"]
    assert [where(p) for p in problems(tmp_path, "journeys:\n  - hello\n  - journey: x\n    steps: [hangup]\n"
                                                 "target: sip:a@b\n")] == ["j.yaml:2:5", "j.yaml:5:1"]
