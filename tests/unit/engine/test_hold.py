"""The hold node: music on hold, announcements, keys, and a bounded wait."""

from __future__ import annotations

import pytest

from ivr.engine.services import QueueStatus

from .conftest import texts

HOLD = """
start:
  kind: hold
  music: jazz
  mode: stream
  max_wait: 75s
  announcements:
    - {after: 0s, prompt: "Please hold."}
    - {after: 30s, every: 20s, prompt: "Still holding."}
  options:
    - {key: 1, goto: chosen}
  next: waited
chosen: {kind: hangup, prompt: "Chosen."}
waited: {kind: hangup, prompt: "Waited."}
"""
ANN_S = 2 / 2.6  # each announcement is two words


@pytest.fixture
def hold(sim):
    return sim.flow(HOLD)


def test_announcements_at_after_and_every_then_next_at_max_wait(sim, hold):
    j, call, _ = sim.run(hold)
    played = [(p.text, p.t) for p in j.prompts]
    assert played == [("Please hold.", 0.0), ("Still holding.", 30.0), ("Still holding.", 50.0),
                      ("Still holding.", 70.0), ("Waited.", 75.0)]
    assert all(not p.interrupted for p in j.prompts)
    assert j.path == ["start", "waited"]
    assert j.visits[-1].via == "next" and j.visits[-1].t == 75.0


def test_music_has_its_class_and_mode_and_pauses_for_announcements(sim, hold):
    j, call, _ = sim.run(hold)
    assert {(h.music, h.mode) for h in call.holds} == {("jazz", "stream")}
    spans = [(h.start, h.end) for h in call.holds if h.end != h.start]
    assert spans == [(pytest.approx(ANN_S), 30.0), (pytest.approx(30 + ANN_S), 50.0),
                     (pytest.approx(50 + ANN_S), 70.0), (pytest.approx(70 + ANN_S), 75.0)]
    assert all(h.end is not None for h in call.holds)  # the music is stopped when the hold ends
    notes = [n["what"] for n in j.notes]
    assert "hold-start" in notes and "hold-end" in notes
    end = next(n for n in j.notes if n["what"] == "hold-end")
    assert end["waited_s"] == 75.0


def test_hold_without_announcements_is_one_stretch_of_music(sim):
    flow = sim.flow("""
        start: {kind: hold, max_wait: 10s, next: done}
        done: {kind: hangup}
    """)
    j, call, _ = sim.run(flow)
    assert [(h.music, h.mode, h.start, h.end) for h in call.holds] == [("default", "resume", 0.0, 10.0)]
    assert j.prompts == []
    assert j.duration_s == 10.0


def test_option_key_during_the_music(sim, hold):
    j, call, _ = sim.run(hold, [(12, "1")])
    assert j.path == ["start", "chosen"]
    assert j.visits[-1].via == "option" and j.visits[-1].t == 12.0
    [inp] = j.inputs
    assert (inp.node, inp.value, inp.result, inp.t) == ("start", "1", "option", 12.0)
    assert call.holds[-1].end == 12.0


def test_option_key_during_an_announcement_stops_it(sim, hold):
    j, call, _ = sim.run(hold, [(30.5, "1")])
    ann = j.prompts[1]
    assert (ann.text, ann.interrupted, ann.played_s) == ("Still holding.", True, 0.5)
    assert j.path == ["start", "chosen"]
    assert j.visits[-1].t == 30.5


def test_other_keys_and_speech_are_ignored_on_hold(sim, hold):
    j, _, _ = sim.run(hold, [(5, "7"), (1, "hello"), (30, "9")])
    assert j.path == ["start", "waited"]
    ignored = [n["value"] for n in j.notes if n["what"] == "ignored-input"]
    assert ignored == ["7", "hello", "9"]
    assert not any(p.interrupted for p in j.prompts)


def test_a_key_during_an_announcement_without_options_does_not_stop_it(sim):
    flow = sim.flow("""
        start:
          kind: hold
          max_wait: 20s
          announcements:
            - {after: 5s, prompt: "We are still busy, thank you for waiting."}
          next: done
        done: {kind: hangup}
    """)
    j, _, _ = sim.run(flow, [(6, "1")])
    assert j.prompts[0].interrupted is False
    assert j.path == ["start", "done"]
    assert j.visits[-1].t == 20.0


def test_every_repeats_from_after(sim):
    flow = sim.flow("""
        start:
          kind: hold
          max_wait: 35s
          announcements:
            - {after: 5s, every: 10s, prompt: "Hold on."}
          next: done
        done: {kind: hangup}
    """)
    j, _, _ = sim.run(flow)
    assert [p.t for p in j.prompts] == [5.0, 15.0, 25.0]


def test_hanging_up_on_hold_abandons_and_stops_the_music(sim, hold):
    j, call, _ = sim.run(hold, [(20, "hangup")])
    assert j.outcome == "abandoned"
    assert call.holds[-1].end == 20.0
    assert j.duration_s == 20.0
    assert texts(j) == ["Please hold."]


JOURNEY = """
start:
  kind: hold
  music: jazz
  max_wait: 60s
  announcements:
    - {after: 3s, prompt: "Please keep holding."}
  options:
    - {key: 5, goto: choices}
  next: done
choices:
  kind: menu
  prompt: "Press one to go back to the queue."
  options:
    - {key: 1, goto: queue}
queue: {kind: hold, music: jazz, max_wait: 4s, next: done}
done: {kind: hangup}
"""


def _music(call) -> list[tuple[float, float, float]]:
    """(start, end, where in the music it began) of each stretch that played."""
    return [(h.start, h.end, h.at) for h in call.holds if h.end != h.start]


def test_resume_music_carries_on_over_an_announcement_a_menu_and_another_hold_node(sim):
    """hold -> announcement -> hold -> menu -> another hold node of the class: each stretch of
    music begins where the last one stopped, never at the start."""
    j, call, _ = sim.run(sim.flow(JOURNEY), [(6, "5"), (3, "1")])
    assert j.path == ["start", "choices", "queue", "done"]
    spans = _music(call)
    assert len(spans) == 3
    assert {(h.music, h.mode) for h in call.holds} == {("jazz", "resume")}
    assert spans[0][2] == 0.0
    for (s0, e0, at0), (s1, _, at1) in zip(spans, spans[1:], strict=False):
        assert s1 > e0  # something else played in between
        assert at1 == pytest.approx(at0 + (e0 - s0))
    assert spans[1][2] == pytest.approx(3.0)
    assert call.music_heard["jazz"] == pytest.approx(sum(e - s for s, e, _ in spans))


def test_stream_music_rejoins_the_running_stream(sim):
    """The class's mode from the flow's `music:` section: every stretch joins the stream at
    the clock's time, so the time on the line is the time in the music."""
    flow = sim.flow(JOURNEY, extra="music:\n  jazz: {mode: stream}\n")
    _, call, _ = sim.run(flow, [(6, "5"), (3, "1")])
    spans = _music(call)
    assert len(spans) == 3 and {h.mode for h in call.holds} == {"stream"}
    assert all(at == start for start, _, at in spans)
    assert call.music_heard == {}


QUEUED = """
start:
  kind: hold
  queue: billing
  max_wait: 30s
  announcements:
    - {after: 5s, prompt: "You are number {position} in the queue. Your wait is about {wait}."}
    - {after: 10s, prompt: "Thank you for holding."}
  next: waited
waited: {kind: hangup, prompt: "Waited."}
"""


@pytest.mark.parametrize(("status", "said"), [
    (QueueStatus(3, 250), "You are number 3 in the queue. Your wait is about 4 minutes."),
    (QueueStatus(1, 20), "You are number 1 in the queue. Your wait is about less than a minute."),
])
def test_announcements_say_the_place_the_router_gives(sim, status, said):
    from ivr.services.memory import RecordingRouter

    j, call, _ = sim.run(sim.flow(QUEUED), services=sim.services(router=RecordingRouter(status=status)))
    assert texts(j)[:2] == [said, "Thank you for holding."]
    # The music stopped for each announcement and carried on after it.
    assert len(call.holds) == 3


def test_an_announcement_the_router_cannot_fill_is_left_out(sim):
    from ivr.services.memory import RecordingRouter

    j, call, _ = sim.run(sim.flow(QUEUED), services=sim.services(router=RecordingRouter(status=None)))
    assert texts(j) == ["Thank you for holding.", "Waited."]
    assert [n["unknown"] for n in j.notes if n["what"] == "announcement-skipped"] == [["position", "wait"]]
    assert len(call.holds) == 2  # no stop and restart of the music for it
