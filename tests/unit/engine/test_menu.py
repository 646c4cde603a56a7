"""The menu node: keys, phrases, barge-in, retries, the escape, type-ahead."""

from __future__ import annotations

import pytest

from .conftest import texts

# "For sales press 1, for support press 2, for technical support press 3." is 13 words:
# 5.0 s at 2.6 words/s.
MENU = """
start:
  kind: menu
  prompt: "For sales press 1, for support press 2, for technical support press 3."
  reprompt: "Press 1, 2 or 3."
  options:
    - {key: 1, say: [sales, buy, purchase], intent: sales, goto: sales}
    - {key: 2, say: [support], intent: support, goto: support}
    - {key: 3, say: [technical support], intent: tech, goto: tech}
sales: {kind: hangup, prompt: "Sales."}
support: {kind: hangup, prompt: "Support."}
tech: {kind: hangup, prompt: "Tech."}
"""
PROMPT_S = 13 / 2.6


@pytest.fixture
def menu(sim):
    return sim.flow(MENU)


def test_key_picks_its_option(sim, menu):
    j, call, _ = sim.run(menu, [(1, "1")])
    assert j.path == ["start", "sales"]
    assert j.visits[1].via == "option"
    assert j.outcome == "hangup"
    assert j.intent == "sales"
    [inp] = j.inputs
    assert (inp.via, inp.value, inp.result, inp.reason) == ("dtmf", "1", "option", "menu-key")
    assert call.ended == "normal"


@pytest.mark.parametrize("said, target", [
    ("sales", "sales"),
    ("I'd like to BUY something", "sales"),  # a synonym, anywhere in the sentence, any case
    ("purchase", "sales"),
    ("support please", "support"),
    ("I need technical support", "tech"),  # the longest phrase wins over "support"
])
def test_spoken_choice_with_synonyms(sim, menu, said, target):
    j, _, _ = sim.run(menu, [(1, said)])
    assert j.path == ["start", target]
    [inp] = j.inputs
    assert (inp.via, inp.value, inp.result, inp.confidence) == ("speech", said, "option", 1.0)


def test_longest_phrase_wins_whatever_the_option_order(sim):
    flow = sim.flow("""
        start:
          kind: menu
          prompt: "Say what you need."
          options:
            - {say: [technical support], goto: tech}
            - {say: [support], goto: support}
        support: {kind: hangup}
        tech: {kind: hangup}
    """)
    assert sim.run(flow, [(1, "technical support")]).journey.path == ["start", "tech"]
    assert sim.run(flow, [(1, "general support")]).journey.path == ["start", "support"]


MULTI = """
start:
  kind: menu
  prompt: "Enter an extension."
  inter_digit_timeout: 2s
  options:
    - {key: 1, goto: one}
    - {key: 12, goto: twelve}
    - {key: 3, goto: three}
one: {kind: hangup}
twelve: {kind: hangup}
three: {kind: hangup}
"""


def test_multi_digit_key_completes_at_once(sim):
    j, _, _ = sim.run(sim.flow(MULTI), [(1, "1"), (1, "2")])
    assert j.path == ["start", "twelve"]
    [inp] = j.inputs
    assert (inp.value, inp.reason, inp.t) == ("12", "menu-key", 2.0)


def test_prefix_key_waits_for_the_inter_digit_timeout(sim):
    j, _, _ = sim.run(sim.flow(MULTI), [(1, "1")])
    assert j.path == ["start", "one"]
    [inp] = j.inputs
    assert (inp.value, inp.reason) == ("1", "inter-digit-timeout")
    assert inp.t == pytest.approx(1.0 + 2.0)  # the key, then the 2 s inter-digit timeout


def test_slow_second_key_is_not_joined(sim):
    # "1", then "2" after the inter-digit timeout: option 1 was already chosen.
    j, _, _ = sim.run(sim.flow(MULTI), [(1, "1"), (2.5, "2")])
    assert j.path == ["start", "one"]


def test_unknown_key_is_a_no_match_at_once(sim):
    j, _, _ = sim.run(sim.flow(MULTI), [(1, "9"), (1, "3")])
    assert [(i.value, i.result, i.reason) for i in j.inputs] == [
        ("9", "no-match", "no-such-key"), ("3", "option", "menu-key")]
    assert j.path == ["start", "three"]


def test_bargein_stops_the_prompt_at_once(sim, menu):
    j, call, _ = sim.run(menu, [(1.5, "2")])
    first = j.prompts[0]
    assert first.interrupted is True
    assert first.played_s == pytest.approx(1.5)
    start, prompt, completed = call.played[0]
    assert (start, completed) == (0.0, False)
    assert j.inputs[0].t == 1.5
    assert j.path == ["start", "support"]


def test_without_bargein_keys_during_the_prompt_are_ignored(sim):
    flow = sim.flow(MENU.replace('  reprompt:', '  bargein: false\n  reprompt:'))
    j, call, _ = sim.run(flow, [(1, "2"), (PROMPT_S, "1")])  # "1" comes 1 s after the prompt ended
    first = j.prompts[0]
    assert first.interrupted is False
    assert first.played_s == pytest.approx(PROMPT_S, abs=1e-3)
    assert call.played[0][2] is True
    assert [n["value"] for n in j.notes if n["what"] == "ignored-input"] == ["2"]
    assert j.path == ["start", "sales"]


def test_speech_is_ignored_by_a_keys_only_menu(sim):
    flow = sim.flow(MENU.replace('  reprompt:', '  input: dtmf\n  reprompt:'))
    j, _, _ = sim.run(flow, [(1, "sales"), (1, "2")])
    assert j.path == ["start", "support"]
    assert [i.result for i in j.inputs] == ["option"]


def test_keys_are_ignored_by_a_speech_only_menu(sim):
    flow = sim.flow(MENU.replace('  reprompt:', '  input: speech\n  reprompt:'))
    j, _, _ = sim.run(flow, [(1, "1"), (1, "support")])
    assert j.path == ["start", "support"]


def test_failures_count_and_escalate(sim):
    # No escape after 2 failures here (after_failures 5), so each kind can escalate.
    flow = sim.flow("""
        start:
          kind: menu
          prompt: "Pick one."
          reprompt: "Again, pick one."
          no_input:
            prompts: ["Silence one.", "Silence two."]
            max: 4
          options:
            - {key: 1, goto: agent}
    """, after_failures=5)
    # A wrong key, silence, another wrong key, silence, then a good key.
    j, _, services = sim.run(flow, [(2, "9"), (12, "8"), (10, "1")])
    assert [(i.via, i.result) for i in j.inputs] == [
        ("dtmf", "no-match"), ("timeout", "no-input"), ("dtmf", "no-match"), ("timeout", "no-input"),
        ("dtmf", "option")]
    played = texts(j)
    # The nth failure of a kind plays its nth prompt: the node's own for no_input,
    # the flow's defaults for no_match.
    assert [t for t in played if t.startswith(("Silence", "No match"))] == [
        "No match one.", "Silence one.", "No match two.", "Silence two."]
    # The full prompt once, then the reprompt on every re-ask.
    assert played.count("Pick one.") == 1
    assert played.count("Again, pick one.") == 4
    assert j.path == ["start", "agent"]
    payload = services.router.payloads[0]
    assert payload["attempts"] == {"start": {"no_input": 2, "no_match": 2}}
    assert payload["reason"] == "choice"


def test_third_failure_of_a_kind_plays_the_last_prompt(sim):
    flow = sim.flow("""
        start:
          kind: menu
          prompt: "Pick one."
          no_input: {prompts: ["Silence one.", "Silence two."], max: 5}
          options:
            - {key: 1, goto: done}
        done: {kind: hangup}
    """, after_failures=5)
    j, _, _ = sim.run(flow, [(20, "1")])  # after the third silence (a cycle is 6.5 s)
    silences = [t for t in texts(j) if t.startswith("Silence")]
    assert silences == ["Silence one.", "Silence two.", "Silence two."]
    assert j.path[-1] == "done"


def test_two_failures_in_a_row_escape_with_the_escape_prompt(sim, menu):
    j, _, services = sim.run(menu, [(PROMPT_S + 1, "9")])  # a wrong key, then silence
    assert [i.result for i in j.inputs] == ["no-match", "no-input"]
    assert j.path == ["start", "agent"]
    assert j.visits[-1].via == "failures"
    played = texts(j)
    assert played[-2:] == ["Let me put you through.", "Connecting you."]
    assert j.outcome == "handoff"
    assert services.router.payloads[0]["reason"] == "failures"
    assert any(n["what"] == "escape-after-failures" for n in j.notes)


def test_a_success_resets_the_failure_streak(sim):
    flow = sim.flow("""
        start:
          kind: menu
          prompt: "First menu."
          options:
            - {key: 1, goto: second}
        second:
          kind: menu
          prompt: "Second menu."
          options:
            - {key: 1, goto: done}
        done: {kind: hangup, prompt: "Done."}
    """)
    # A failure in each menu, each followed by a good answer: never two in a row.
    script = [(1, "9"), (2, "1"), (2, "9"), (2, "1")]
    j, _, _ = sim.run(flow, script)
    assert [i.result for i in j.inputs] == ["no-match", "option", "no-match", "option"]
    assert j.path == ["start", "second", "done"]
    assert j.outcome == "hangup"


def test_retry_then_is_used_when_max_is_below_after_failures(sim):
    flow = sim.flow("""
        start:
          kind: menu
          prompt: "Pick one."
          no_match: {max: 1, then: retry_desk}
          options:
            - {key: 1, goto: done}
        done: {kind: hangup}
        retry_desk: {kind: handoff, queue: retries}
    """, after_failures=3)
    j, _, services = sim.run(flow, [(1, "9")])
    assert j.path == ["start", "retry_desk"]
    assert j.visits[-1].via == "retry"
    assert "Let me put you through." not in texts(j)
    assert services.router.payloads[0]["queue"] == "retries"
    assert services.router.payloads[0]["reason"] == "failures"


@pytest.mark.parametrize("confidence", [0.2, 0.49])
def test_low_confidence_speech_is_confirmed_and_a_no_is_a_no_match(sim, menu, confidence):
    j, _, _ = sim.run(menu, [(1, ("say", "sales", confidence)), (2, "no"), (3, "1")])
    first = j.inputs[0]
    assert (first.via, first.value, first.result, first.confidence) == ("speech", "sales", "no-match", confidence)
    assert "Did you say sales? Say yes or press 1. Otherwise say no or press 2." in texts(j)
    assert [n["answer"] for n in j.notes if n["what"] == "confirm"] == ["no"]
    assert "No match one." in texts(j)
    assert j.path == ["start", "sales"]  # chosen later by key


@pytest.mark.parametrize("answer", ["yes", "1", "yeah"])
def test_low_confidence_speech_confirmed_takes_the_option(sim, menu, answer):
    j, _, _ = sim.run(menu, [(1, ("say", "sales", 0.3)), (2, answer)])
    assert [i.result for i in j.inputs] == ["option"]
    assert j.path == ["start", "sales"]


@pytest.mark.parametrize("answer", ["0", "agent"])
def test_the_escape_works_inside_a_confirmation(sim, menu, answer):
    j, _, _ = sim.run(menu, [(1, ("say", "sales", 0.3)), (2, answer)])
    assert [i.result for i in j.inputs] == ["escape"]
    assert j.path[-1] == menu.escape.to


def test_silence_at_a_confirmation_is_a_no(sim, menu):
    j, _, _ = sim.run(menu, [(1, ("say", "sales", 0.3))])
    assert [n["answer"] for n in j.notes if n["what"] == "confirm"][:1] == ["no"]
    assert j.inputs[0].result == "no-match"


def test_node_confidence_overrides_the_default(sim):
    flow = sim.flow(MENU.replace('  reprompt:', '  confidence: 0.9\n  reprompt:'))
    j, _, _ = sim.run(flow, [(1, ("say", "sales", 0.8)), (2, "no"), (3, ("say", "sales", 0.95))])
    assert [i.result for i in j.inputs] == ["no-match", "option"]


@pytest.mark.parametrize("action", ["0", "talk to an agent", "OPERATOR please"])
def test_escape_by_key_or_phrase(sim, menu, action):
    j, _, services = sim.run(menu, [(1, action)])
    assert j.path == ["start", "agent"]
    assert j.visits[-1].via == "escape"
    assert j.inputs[0].result == "escape"
    assert "Let me put you through." not in texts(j)  # that is for failures
    assert services.router.payloads[0]["reason"] == "escape"
    assert j.outcome == "handoff"


OVERRIDE = """
start:
  kind: menu
  prompt: "Pick one."
  escape: {keys: ["9"], phrases: [front desk], to: desk}
  options:
    - {key: 1, goto: done}
done: {kind: hangup}
desk: {kind: handoff, queue: desk}
"""


@pytest.mark.parametrize("action", ["9", "the front desk please"])
def test_node_escape_override_uses_its_keys_and_target(sim, action):
    j, _, services = sim.run(sim.flow(OVERRIDE), [(1, action)])
    assert j.path == ["start", "desk"]
    assert j.visits[-1].via == "escape"
    assert services.router.payloads[0]["queue"] == "desk"


@pytest.mark.parametrize("action", ["0", "agent"])
def test_node_escape_override_replaces_the_flow_keys(sim, action):
    j, _, _ = sim.run(sim.flow(OVERRIDE), [(1, action), (2, "1")])
    assert j.inputs[0].result == "no-match"
    assert j.path == ["start", "done"]


def test_override_target_only_keeps_the_flow_keys(sim):
    flow = sim.flow("""
        start:
          kind: menu
          prompt: "Pick one."
          escape: {to: desk}
          options:
            - {key: 1, goto: done}
        done: {kind: hangup}
        desk: {kind: handoff, queue: desk}
    """)
    j, _, _ = sim.run(flow, [(1, "0")])
    assert j.path == ["start", "desk"]


def test_failures_go_to_the_node_escape_target(sim):
    j, _, _ = sim.run(sim.flow(OVERRIDE), [(1, "5"), (1, "6")])
    assert j.path == ["start", "desk"]
    assert j.visits[-1].via == "failures"


def test_typeahead_key_during_a_say_is_used_by_the_next_menu(sim):
    flow = sim.flow("""
        start:
          kind: say
          prompt: "Welcome to the test line, we are glad you called today."
          next: menu
        menu:
          kind: menu
          prompt: "For sales press 1, for support press 2."
          options:
            - {key: 1, goto: sales}
            - {key: 2, goto: support}
        sales: {kind: hangup}
        support: {kind: hangup}
    """)
    j, call, _ = sim.run(flow, [(1, "2")])
    assert j.path == ["start", "menu", "support"]
    welcome = j.prompts[0]
    assert (welcome.interrupted, welcome.played_s) == (True, 1.0)
    # The menu never played its prompt: the key already answered it.
    assert [p.describe() for _, p, _ in call.played] == [welcome.text]
    assert j.inputs[0].node == "menu" and j.inputs[0].value == "2"


def test_typeahead_multi_digit_keys_are_joined(sim):
    flow = sim.flow("""
        start:
          kind: say
          prompt: "Welcome to the test line, we are glad you called today."
          next: menu
        menu:
          kind: menu
          prompt: "Enter an extension."
          options:
            - {key: 1, goto: one}
            - {key: 12, goto: twelve}
        one: {kind: hangup}
        twelve: {kind: hangup}
    """)
    j, _, _ = sim.run(flow, [(1, "12")])
    assert j.path == ["start", "menu", "twelve"]


def test_option_sets_variables(sim):
    flow = sim.flow("""
        start:
          kind: menu
          prompt: "Pick one."
          options:
            - key: 1
              set: {tier: gold, doubled: "= 2 * 21"}
              goto: done
        done: {kind: hangup, prompt: "You are {tier}, {doubled}."}
    """)
    j, _, _ = sim.run(flow, [(1, "1")])
    assert j.variables["tier"] == "gold"
    assert j.variables["doubled"] == 42
    assert texts(j)[-1] == "You are gold, 42."


def test_typeahead_is_not_kept_past_a_menu_without_bargein(sim):
    flow = sim.flow("""
        start:
          kind: say
          prompt: "Welcome to the test line, we are glad you called today."
          next: strict
        strict:
          kind: menu
          prompt: "Listen carefully. Press 1 to go on."
          bargein: false
          options:
            - {key: 1, goto: pin}
        pin:
          kind: gather
          prompt: "Enter your four digit PIN."
          into: pin
          digits: {min: 4, max: 4}
          next: done
        done: {kind: hangup}
    """)
    # "2" during the welcome, "1" after the strict menu's prompt, then the PIN.
    j, _, _ = sim.run(flow, [(1, "2"), (5, "1"), (3, "1234")])
    assert j.prompts[1].interrupted is False  # the strict prompt was heard in full
    assert [(i.node, i.value, i.result) for i in j.inputs] == [
        ("strict", "1", "option"), ("pin", "1234", "valid")]
    assert any(n["what"] == "ignored-input" and n["value"] == "2" for n in j.notes)
