"""The gather node: digits and speech into a variable, checked by rules and a pattern."""

from __future__ import annotations

import pytest

from .conftest import texts

PIN = """
start:
  kind: gather
  prompt: "Enter your PIN."
  into: pin
  digits: {min: 4, max: 6, terminator: "#"}
  pattern: "^[1-9][0-9]*$"
  next: done
done: {kind: hangup, prompt: "PIN {pin:digits}."}
"""


@pytest.fixture
def pin(sim):
    return sim.flow(PIN, after_failures=3)


@pytest.mark.parametrize("keys, value, reason", [
    ("1234#", "1234", "dtmf-terminator-key"),  # the terminator ends it and is not stored
    ("12345#", "12345", "dtmf-terminator-key"),
    ("123456", "123456", "dtmf-num-digits"),  # max reached: no terminator needed
])
def test_digits_within_the_rules_are_stored(sim, pin, keys, value, reason):
    j, _, _ = sim.run(pin, [(1, keys)])
    assert j.variables["pin"] == value
    [inp] = j.inputs
    assert (inp.via, inp.value, inp.result, inp.reason) == ("dtmf", value, "valid", reason)
    assert j.path == ["start", "done"]
    assert j.visits[-1].via == "next"


def test_inter_digit_timeout_ends_the_entry(sim, pin):
    j, _, _ = sim.run(pin, [(1, "12"), (1, "34")])
    [inp] = j.inputs
    assert (inp.value, inp.result, inp.reason) == ("1234", "valid", "inter-digit-timeout")
    assert inp.t == pytest.approx(2.0 + 2.0)  # last key at 2 s, then 2 s of nothing


def test_keys_spread_within_the_inter_digit_timeout_are_joined(sim, pin):
    script = [(1, "1"), (1.5, "2"), (1.9, "3"), (1.0, "4"), (0.5, "#")]
    j, _, _ = sim.run(pin, script)
    assert j.variables["pin"] == "1234"


@pytest.mark.parametrize("keys", ["123#", "12"])
def test_too_few_digits_is_a_no_match(sim, pin, keys):
    j, _, _ = sim.run(pin, [(1, keys), (5, "5678#")])
    assert [i.result for i in j.inputs] == ["no-match", "valid"]
    assert "No match one." in texts(j)
    assert j.variables["pin"] == "5678"


def test_pattern_rejection_is_a_no_match(sim, pin):
    j, _, _ = sim.run(pin, [(1, "0123#"), (3, "1123#")])
    assert [(i.value, i.result) for i in j.inputs] == [("0123", "no-match"), ("1123", "valid")]
    assert j.variables["pin"] == "1123"


def test_reprompt_is_used_when_asking_again(sim):
    flow = sim.flow(PIN.replace('  into: pin', '  reprompt: "Four to six digits please."\n  into: pin'))
    j, _, _ = sim.run(flow, [(8, "1111#")])  # silence first
    assert texts(j)[:3] == ["Enter your PIN.", "No input one.", "Four to six digits please."]


def test_gather_failures_escape_after_two(sim):
    j, _, services = sim.run(sim.flow(PIN), [(1, "12#")])  # too short, then silence
    assert [i.result for i in j.inputs] == ["no-match", "no-input"]
    assert j.path == ["start", "agent"]
    assert services.router.payloads[0]["reason"] == "failures"
    assert services.router.payloads[0]["attempts"] == {"start": {"no_input": 1, "no_match": 1}}


ACCOUNT = """
start:
  kind: gather
  prompt: "Enter your 8 digit account number, then hash."
  into: account
  digits: {min: 8, max: 8, terminator: "#"}
  next: confirm
confirm:
  kind: say
  prompt: "Account {account:digits}, thank you."
  next: billing
billing:
  kind: handoff
  queue: billing
  context: [account]
"""


@pytest.mark.parametrize("keys", ["0", "0#"])
def test_escape_key_when_min_digits_is_above_one(sim, keys):
    j, _, services = sim.run(sim.flow(ACCOUNT), [(1, keys)])
    assert j.path == ["start", "agent"]
    assert j.inputs[0].result == "escape"
    assert services.router.payloads[0]["reason"] == "escape"
    assert "account" not in j.variables


def test_a_long_number_starting_with_the_escape_key_is_an_entry(sim):
    j, _, _ = sim.run(sim.flow(ACCOUNT), [(1, "01234567")])
    assert j.variables["account"] == "01234567"
    assert j.path[:2] == ["start", "confirm"]


def test_spoken_escape_in_a_digits_gather(sim):
    j, _, _ = sim.run(sim.flow(ACCOUNT), [(1, "I want an agent")])
    assert j.path == ["start", "agent"]
    assert j.visits[-1].via == "escape"


def test_stored_variable_reaches_prompts_and_the_payload(sim):
    flow = sim.flow(ACCOUNT, extra="variables:\n  brand: Test\n")
    j, _, services = sim.run(flow, [(1, "12345678#")])
    assert j.variables["account"] == "12345678"
    assert "Account 1 2 3 4 5 6 7 8, thank you." in texts(j)
    payload = services.router.payloads[0]
    assert payload["variables"] == {"account": "12345678"}  # context: [account] leaves brand out
    assert j.path == ["start", "confirm", "billing"]
    assert j.outcome == "handoff"


COLOUR = """
start:
  kind: gather
  prompt: "Which colour?"
  into: colour
  speech: {phrases: [red, green, dark blue]}
  next: done
done: {kind: hangup, prompt: "You chose {colour}."}
"""


@pytest.mark.parametrize("said, value", [
    ("green", "green"),
    ("I think GREEN please", "green"),
    ("dark blue", "dark blue"),
])
def test_speech_gather_stores_the_phrase(sim, said, value):
    j, _, _ = sim.run(sim.flow(COLOUR), [(1, said)])
    assert j.variables["colour"] == value
    assert texts(j)[-1] == f"You chose {value}."
    inp = j.inputs[0]
    assert (inp.via, inp.value, inp.result) == ("speech", said, "valid")


def test_speech_gather_rejects_other_words_and_confirms_low_confidence(sim):
    script = [(1, "purple"), (3, ("say", "red", 0.1)), (3, "no"), (3, "red")]
    j, _, _ = sim.run(sim.flow(COLOUR, after_failures=3), script)
    assert [i.result for i in j.inputs] == ["no-match", "no-match", "valid"]
    assert [n["answer"] for n in j.notes if n["what"] == "confirm"] == ["no"]
    assert j.variables["colour"] == "red"


def test_speech_gather_low_confidence_confirmed_by_key(sim):
    j, _, _ = sim.run(sim.flow(COLOUR), [(1, ("say", "red", 0.2)), (2, "1")])
    assert [i.result for i in j.inputs] == ["valid"]
    assert j.variables["colour"] == "red"


def test_speech_gather_still_escapes_by_key_and_phrase(sim):
    for action in ("0", "operator"):
        j, _, _ = sim.run(sim.flow(COLOUR), [(1, action)])
        assert j.path == ["start", "agent"], action


def test_speech_gather_ignores_other_keys(sim):
    j, _, _ = sim.run(sim.flow(COLOUR, after_failures=3), [(1, "5"), (4, "red")])
    assert [i.result for i in j.inputs] == ["no-match", "valid"]


def test_free_speech_is_stored_as_said(sim):
    flow = sim.flow("""
        start:
          kind: gather
          prompt: "Tell us what happened."
          into: story
          speech: {free: true}
          next: done
        done: {kind: hangup}
    """)
    j, _, _ = sim.run(flow, [(1, "my meter shows an error")])
    assert j.variables["story"] == "my meter shows an error"


def test_free_speech_checked_by_a_pattern(sim):
    flow = sim.flow("""
        start:
          kind: gather
          prompt: "Say your postcode."
          into: postcode
          speech: {free: true}
          pattern: "^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$"
          next: done
        done: {kind: hangup}
    """, after_failures=3)
    j, _, _ = sim.run(flow, [(1, "hello there"), (3, "SW1A 1AA")])
    assert [i.result for i in j.inputs] == ["no-match", "valid"]
    assert j.variables["postcode"] == "SW1A 1AA"


def test_gather_without_bargein_plays_the_whole_prompt(sim):
    flow = sim.flow(PIN.replace('  into: pin', '  bargein: false\n  into: pin'))
    # "Enter your PIN." is 3 words: 1.15 s; keys during it are ignored.
    j, _, _ = sim.run(flow, [(0.5, "9999#"), (1.0, "1234#")])
    assert j.prompts[0].interrupted is False
    assert j.variables["pin"] == "1234"
