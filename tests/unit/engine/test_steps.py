"""Nodes that take no input: say, play, set, branch, goto, subflow and return, hangup."""

from __future__ import annotations

import datetime as dt

import pytest

from .conftest import LONDON, REPO, texts


def test_say_plays_its_prompts_in_turn_then_goes_on(sim):
    flow = sim.flow("""
        start:
          kind: say
          prompt: ["One two three four five.", {text: "Six seven.", id: second}]
          next: done
        done: {kind: hangup}
    """)
    j, call, _ = sim.run(flow)
    assert texts(j) == ["One two three four five.", "Six seven."]
    assert [(p.t, p.played_s, p.interrupted) for p in j.prompts] == [
        (0.0, pytest.approx(5 / 2.6, abs=1e-3), False), (pytest.approx(5 / 2.6, abs=1e-3), 0.769, False)]
    assert j.prompts[1].id == "second"
    assert [completed for _, _, completed in call.played] == [True, True]
    assert j.path == ["start", "done"]


def test_say_with_bargein_stops_and_skips_the_rest(sim):
    flow = sim.flow("""
        start:
          kind: say
          prompt: ["One two three four five.", "Six seven."]
          next: done
        done: {kind: hangup, prompt: "Bye."}
    """)
    j, _, _ = sim.run(flow, [(1, "5")])
    assert texts(j) == ["One two three four five.", "Bye."]
    assert j.prompts[0].interrupted is True
    assert j.prompts[0].played_s == 1.0


def test_say_without_bargein_ignores_keys(sim):
    flow = sim.flow("""
        start:
          kind: say
          prompt: "One two three four five."
          bargein: false
          next: menu
        menu:
          kind: menu
          prompt: "Press 1."
          options:
            - {key: 1, goto: one}
            - {key: 2, goto: two}
        one: {kind: hangup}
        two: {kind: hangup}
    """)
    j, _, _ = sim.run(flow, [(1, "2"), (2, "1")])
    assert j.prompts[0].interrupted is False
    assert texts(j)[:2] == ["One two three four five.", "Press 1."]  # the menu asked: "2" was not kept
    assert j.path == ["start", "menu", "one"]


def test_play_uses_the_audio_file_length(sim):
    flow = sim.flow("""
        start:
          kind: play
          audio: moh/default/acme-theme.wav
          text: "The theme tune."
          next: done
        done: {kind: hangup}
    """)
    flow.media_dir = str(REPO / "media")
    j, call, _ = sim.run(flow)
    [rec] = j.prompts
    assert rec.audio == str(REPO / "media" / "moh/default/acme-theme.wav")
    assert rec.text == "The theme tune."
    assert rec.played_s == pytest.approx(24.0)  # the file's length, not the words'
    assert j.path == ["start", "done"]
    assert j.duration_s == pytest.approx(24.0)


def test_set_literals_and_expressions(sim):
    flow = sim.flow("""
        start:
          kind: set
          vars:
            count: 3
            name: Robin
            vip: true
            total: "= count + 2"
            shout: "= lower(name) + '!'"
            long_name: "= len(name) > 4"
          next: show
        show:
          kind: say
          prompt: "{name} has {total}, {shout}"
          next: done
        done: {kind: hangup}
    """, extra="variables:\n  brand: Test\n")
    j, _, _ = sim.run(flow)
    assert j.variables == {"brand": "Test", "count": 3, "name": "Robin", "vip": True, "total": 5,
                           "shout": "robin!", "long_name": True}
    assert texts(j)[0] == "Robin has 5, robin!"


def test_set_can_count_round_a_loop(sim):
    flow = sim.flow("""
        start:
          kind: set
          vars: {n: 0}
          next: bump
        bump:
          kind: set
          vars: {n: "= n + 1"}
          next: check
        check:
          kind: branch
          cases:
            - {when: "n < 3", goto: bump}
          else: done
        done: {kind: hangup, prompt: "Counted {n}."}
    """)
    j, _, _ = sim.run(flow)
    assert j.variables["n"] == 3
    assert texts(j) == ["Counted 3."]
    assert j.path == ["start", "bump", "check", "bump", "check", "bump", "check", "done"]
    assert [v.via for v in j.visits[1:]] == ["next", "next", "case", "next", "case", "next", "else"]


CALLER = """
start:
  kind: branch
  cases:
    - when: 'matches(caller, "^[+]44")'
      goto: uk
    - when: 'starts_with(caller, "+1")'
      goto: na
  else: world
uk: {kind: hangup, prompt: "UK."}
na: {kind: hangup, prompt: "North America."}
world: {kind: hangup, prompt: "World."}
"""


@pytest.mark.parametrize("caller, target", [
    ("+441632960001", "uk"),
    ("+12025550100", "na"),
    ("+33123456789", "world"),
    ("anonymous", "world"),
])
def test_branch_on_caller_id(sim, caller, target):
    j, _, _ = sim.run(sim.flow(CALLER), caller=caller)
    assert j.path == ["start", target]
    assert j.visits[1].via == ("else" if target == "world" else "case")
    note = next(n for n in j.notes if n["what"] == "branch")
    assert note["case"] == {"uk": 1, "na": 2, "world": "else"}[target]


HOURS = """
hours:
  office:
    timezone: Europe/London
    weekly:
      mon-fri: "08:00-20:00"
      sat: "09:00-13:00"
    closed: [2026-12-25]
"""

OPEN = """
start:
  kind: branch
  cases:
    - when: open("office")
      goto: open_line
  else: closed_line
open_line: {kind: hangup, prompt: "Open."}
closed_line: {kind: hangup, prompt: "Closed."}
"""


@pytest.mark.parametrize("when, is_open", [
    (dt.datetime(2026, 11, 23, 10, 0, tzinfo=LONDON), True),  # Monday morning
    (dt.datetime(2026, 11, 23, 23, 0, tzinfo=LONDON), False),  # Monday night
    (dt.datetime(2026, 11, 23, 7, 59, tzinfo=LONDON), False),
    (dt.datetime(2026, 11, 23, 8, 0, tzinfo=LONDON), True),
    (dt.datetime(2026, 7, 6, 19, 30, tzinfo=LONDON), True),  # summer time: 18:30 UTC
    (dt.datetime(2026, 7, 6, 19, 30, tzinfo=dt.UTC), False),  # 20:30 in London
    (dt.datetime(2026, 11, 28, 12, 0, tzinfo=LONDON), True),  # Saturday
    (dt.datetime(2026, 11, 28, 14, 0, tzinfo=LONDON), False),
    (dt.datetime(2026, 11, 29, 12, 0, tzinfo=LONDON), False),  # Sunday
    (dt.datetime(2026, 12, 25, 10, 0, tzinfo=LONDON), False),  # a Friday, but closed
])
def test_branch_on_opening_hours(sim, when, is_open):
    j, _, _ = sim.run(sim.flow(OPEN, extra=HOURS), when=when)
    assert j.path == ["start", "open_line" if is_open else "closed_line"]
    assert j.started_at == when.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def test_opening_hours_follow_the_virtual_clock_during_the_call(sim):
    # The call starts at 19:59:50 and plays 24 s of audio, so the branch runs after 20:00.
    flow = sim.flow("""
        start:
          kind: play
          audio: moh/default/acme-theme.wav
          bargein: false
          next: check
    """ + "\n".join("        " + line for line in OPEN.replace("start:", "check:").splitlines()), extra=HOURS)
    flow.media_dir = str(REPO / "media")
    when = dt.datetime(2026, 11, 23, 19, 59, 50, tzinfo=LONDON)
    j, _, _ = sim.run(flow, when=when)
    assert j.prompts[0].played_s == pytest.approx(24.0)
    assert j.path == ["start", "check", "closed_line"]
    assert j.ended_at == (when + dt.timedelta(seconds=j.duration_s)).astimezone(dt.UTC).isoformat(
        timespec="milliseconds")


def test_goto_jumps(sim):
    flow = sim.flow("""
        start: {kind: goto, to: there}
        there: {kind: hangup, prompt: "There."}
    """)
    j, _, _ = sim.run(flow)
    assert j.path == ["start", "there"]
    assert texts(j) == ["There."]


INNER = """
  inner:
    start: i1
    nodes:
      i1: {kind: set, vars: {depth: 2}, next: i2}
      i2: {kind: say, prompt: "In inner at {depth}.", next: i3}
      i3: {kind: return}
"""
NESTED = """
subflows:
  outer:
    start: o1
    nodes:
      o1: {kind: say, prompt: "In outer.", next: o2}
      o2: {kind: subflow, call: inner, next: o3}
      o3: {kind: say, prompt: "Back in outer.", next: o4}
      o4: {kind: return}
""" + INNER


def test_subflow_and_return_nested_twice(sim):
    flow = sim.flow("""
        start: {kind: subflow, call: outer, next: after}
        after: {kind: hangup, prompt: "Back in main."}
    """, extra=NESTED)
    j, _, _ = sim.run(flow)
    assert j.path == ["start", "outer.o1", "outer.o2", "inner.i1", "inner.i2", "inner.i3",
                      "outer.o3", "outer.o4", "after"]
    vias = {v.node: v.via for v in j.visits}
    assert vias["outer.o1"] == "call" and vias["inner.i1"] == "call"
    assert vias["outer.o3"] == "return" and vias["after"] == "return"
    assert texts(j) == ["In outer.", "In inner at 2.", "Back in outer.", "Back in main."]
    assert j.outcome == "hangup"


def test_the_same_subflow_called_twice_returns_to_each_caller(sim):
    flow = sim.flow("""
        start: {kind: subflow, call: inner, next: middle}
        middle: {kind: subflow, call: inner, next: after}
        after: {kind: hangup}
    """, extra="subflows:\n" + INNER)
    j, _, _ = sim.run(flow)
    assert j.path == ["start", "inner.i1", "inner.i2", "inner.i3", "middle",
                      "inner.i1", "inner.i2", "inner.i3", "after"]


def test_hangup_node_says_goodbye_and_ends(sim):
    flow = sim.flow("""
        start: {kind: hangup, prompt: "Goodbye from {brand}."}
    """, extra="variables:\n  brand: Test\n")
    j, call, _ = sim.run(flow)
    assert texts(j) == ["Goodbye from Test."]
    assert j.outcome == "hangup"
    assert call.ended == "normal"
    assert j.duration_s == pytest.approx(3 / 2.6, abs=1e-3)


def test_caller_hanging_up_during_the_goodbye(sim):
    flow = sim.flow("""
        start: {kind: hangup, prompt: "Goodbye and thank you for calling us today."}
    """)
    j, call, _ = sim.run(flow, [(1, "hangup")])
    assert j.outcome == "abandoned"
    assert j.prompts[0].interrupted is True
    assert call.ended is None  # we did not hang up a call that was already gone
