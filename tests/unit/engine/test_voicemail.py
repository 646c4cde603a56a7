"""The voicemail node: a slot is reserved before the mailbox is offered."""

from __future__ import annotations

import asyncio

import pytest

from ivr.engine.virtual import VirtualCall
from ivr.flows.model import Mailbox
from ivr.services.memory import MemoryVoicemail

from .conftest import texts

VOICEMAIL = """
start:
  kind: voicemail
  mailbox: box
  greeting: "Leave a message."
  max_length: 30s
  full: box_full
box_full:
  kind: callback
  queue: general
"""
GREETING = "Leave a message."
RECORD_AT = 3 / 2.6 + 0.5  # after the greeting (three words) and the beep


class SpyVoicemail(MemoryVoicemail):
    """MemoryVoicemail that logs what the engine asked of it, with the loop time."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.log: list[tuple[str, float]] = []

    def _log(self, what: str) -> None:
        self.log.append((what, asyncio.get_running_loop().time()))

    async def reserve(self, mailbox, call_id, limits=None):
        res = await super().reserve(mailbox, call_id, limits)
        self._log("reserve" if res else "no-room")
        return res

    async def commit(self, reservation, recording, meta):
        self._log("commit")
        return await super().commit(reservation, recording, meta)

    async def release(self, reservation):
        self._log("release")
        await super().release(reservation)


@pytest.fixture
def flow(sim):
    return sim.flow(VOICEMAIL)


def test_message_is_reserved_then_committed(sim, flow):
    vm = SpyVoicemail(limits={"box": 2})
    held: list[int] = []
    script = [(1, lambda c: held.append(len(vm.box("box").held))),  # during the greeting
              (2, "please call me back about my bill")]
    j, call, _ = sim.run(flow, script, services=sim.services(voicemail=vm))
    assert held == [1]
    assert [w for w, _ in vm.log] == ["reserve", "commit"]
    assert vm.log[0][1] == 0.0  # reserved before the greeting
    [msg] = vm.box("box").messages
    assert msg["text"] == "please call me back about my bill"
    assert msg["caller"] == call.caller and msg["call_id"] == call.call_id
    # 7 words at 2.6 words/s, then 5 s of silence ends the recording.
    assert msg["seconds"] == pytest.approx(3 - RECORD_AT + 7 / 2.6 + 5)
    assert vm.box("box").held == {}
    assert j.voicemail["mailbox"] == "box" and j.voicemail["message_id"] == msg["id"]
    assert j.voicemail["ended_by"] == "silence"
    assert j.outcome == "voicemail"
    played = texts(j)
    assert played[0] == GREETING
    assert j.prompts[1].id == "tone:beep"
    assert played[-1] == "Thank you, your message has been saved. Goodbye."
    assert call.ended == "normal"


def test_message_carries_the_call_variables_and_intent(sim):
    flow = sim.flow("""
        start:
          kind: menu
          prompt: "Press 1 to leave a message."
          options:
            - {key: 1, intent: messages, set: {topic: billing}, goto: vm}
        vm: {kind: voicemail, mailbox: box, full: agent}
    """)
    vm = MemoryVoicemail()
    sim.run(flow, [(1, "1"), (6, "hello")], services=sim.services(voicemail=vm))
    [msg] = vm.box("box").messages
    assert msg["intent"] == "messages"
    assert msg["variables"] == {"topic": "billing"}


def test_hash_ends_the_message(sim, flow):
    vm = MemoryVoicemail()
    # Speak at 3 s, press hash 1 s later: the recording ends on the key, not on silence.
    j, _, _ = sim.run(flow, [(3, "hello there"), (1, "#")], services=sim.services(voicemail=vm))
    assert j.outcome == "voicemail"
    assert j.voicemail["ended_by"] == "key"
    assert vm.box("box").messages[0]["seconds"] == pytest.approx(4 - RECORD_AT)


def test_the_hash_that_ends_a_message_is_not_input_for_the_next_node(sim):
    flow = sim.flow("""
        start:
          kind: voicemail
          mailbox: box
          greeting: "Leave a message."
          review: false
          full: agent
          next: more
        more:
          kind: menu
          prompt: "Press 1 to leave another, or 2 to finish."
          options:
            - {key: 1, goto: start}
            - {key: 2, goto: done}
        done: {kind: hangup}
    """)
    j, _, _ = sim.run(flow, [(2, "hello"), (1, "#"), (2, "2")])
    assert [(i.node, i.value, i.result) for i in j.inputs] == [("more", "2", "option")]
    assert j.path == ["start", "more", "done"]


def test_speaking_twice_makes_one_message(sim, flow):
    vm = MemoryVoicemail()
    sim.run(flow, [(2, "first part"), (2, "second part")], services=sim.services(voicemail=vm))
    [msg] = vm.box("box").messages
    assert msg["text"] == "first part second part"


def test_the_message_ends_at_max_length(sim):
    flow = sim.flow(VOICEMAIL.replace("max_length: 30s", "max_length: 4s"))
    vm = MemoryVoicemail()
    j, _, _ = sim.run(flow, [(2, "a very long story " * 10)], services=sim.services(voicemail=vm))
    assert j.voicemail["ended_by"] == "max-length"
    assert vm.box("box").messages[0]["seconds"] == pytest.approx(4.0)


def test_voicemail_next_continues_the_flow(sim):
    flow = sim.flow(VOICEMAIL.replace("  full: box_full", "  full: box_full\n  next: thanks")
                    + "thanks: {kind: hangup, prompt: \"Thanks.\"}\n")
    j, _, _ = sim.run(flow, [(2, "hello")])
    assert j.path == ["start", "thanks"]
    assert texts(j)[-1] == "Thanks."
    assert j.outcome == "voicemail"  # the resolution stands


def test_full_mailbox_goes_to_full_and_never_plays_the_greeting(sim, flow):
    vm = SpyVoicemail(limits={"box": 1})
    vm.box("box").messages.append({"id": "old"})
    j, call, _ = sim.run(flow, [(8, "1")], services=sim.services(voicemail=vm))
    assert j.path == ["start", "box_full"]
    assert j.visits[1].via == "full"
    assert GREETING not in texts(j)
    assert all(p.id != "tone:beep" for p in j.prompts)
    assert all(p.describe() != GREETING for _, p, _ in call.played)
    assert [w for w, _ in vm.log] == ["no-room"]
    assert any(n["what"] == "mailbox-full" for n in j.notes)
    assert j.outcome == "callback"


def test_nothing_said_releases_the_slot(sim, flow):
    vm = SpyVoicemail(limits={"box": 1})
    j, _, _ = sim.run(flow, services=sim.services(voicemail=vm))
    assert [w for w, _ in vm.log] == ["reserve", "release"]
    assert vm.box("box").messages == [] and vm.box("box").held == {}
    assert "No message was recorded." in texts(j)
    assert j.voicemail is None
    assert j.outcome == "hangup"


@pytest.mark.parametrize("hangup_at", [0.5, RECORD_AT + 2])  # during the greeting; recording, silent
def test_hanging_up_before_speaking_releases_the_slot(sim, flow, hangup_at):
    vm = SpyVoicemail(limits={"box": 1})
    j, call, _ = sim.run(flow, [(hangup_at, "hangup")], services=sim.services(voicemail=vm))
    assert [w for w, _ in vm.log] == ["reserve", "release"]
    assert vm.box("box").messages == []
    assert vm.box("box").held == {}
    assert j.outcome == "abandoned"
    assert j.voicemail is None
    assert "No message was recorded." not in texts(j)  # nobody is there to hear it
    assert call.ended is None


def test_hanging_up_after_speaking_keeps_the_message(sim, flow):
    vm = SpyVoicemail(limits={"box": 1})
    j, _, _ = sim.run(flow, [(2, "it is about my bill"), (1, "hangup")], services=sim.services(voicemail=vm))
    assert [w for w, _ in vm.log] == ["reserve", "commit"]
    assert vm.box("box").messages[0]["text"] == "it is about my bill"
    assert j.outcome == "voicemail"


def test_two_calls_race_for_the_last_slot(sim, flow):
    vm = SpyVoicemail(limits={"box": 1})
    services = sim.services(voicemail=vm)
    first, second = VirtualCall(caller="+441632960001"), VirtualCall(caller="+441632960002")

    async def both():
        return await asyncio.gather(
            sim.call(flow, [(2, "message from the first caller"), (8, "1")], call=first, services=services),
            sim.call(flow, [(2, "message from the second caller"), (8, "1")], call=second, services=services),
        )

    runs = sim.until_done(both())
    offered = [r for r in runs if GREETING in texts(r.journey)]
    assert len(offered) == 1
    [other] = [r for r in runs if r is not offered[0]]
    assert other.journey.path == ["start", "box_full"]
    assert [w for w, _ in vm.log] == ["reserve", "no-room", "commit"]
    [msg] = vm.box("box").messages
    assert msg["call_id"] == offered[0].call.call_id
    assert offered[0].journey.outcome == "voicemail"
    assert other.journey.outcome == "callback"


def test_a_released_slot_can_be_offered_again(sim, flow):
    vm = MemoryVoicemail(limits={"box": 1})
    services = sim.services(voicemail=vm)
    first = sim.run(flow, [(0.5, "hangup")], services=services)
    assert first.journey.outcome == "abandoned"
    second = sim.run(flow, [(2, "second try")], services=services)
    assert second.journey.outcome == "voicemail"
    assert [m["text"] for m in vm.box("box").messages] == ["second try"]


def test_a_long_message_keeps_its_slot_while_others_call(sim):
    flow = sim.flow(VOICEMAIL.replace("max_length: 30s", "max_length: 20m"))
    vm = SpyVoicemail(limits={"box": Mailbox(max_messages=1, max_message=3600, max_total=7200)})
    services = sim.services(voicemail=vm)
    long_story = " ".join(["word"] * 2340)  # 15 minutes of talking

    async def both():
        first = asyncio.ensure_future(sim.call(flow, [(2, long_story)], services=services))
        await asyncio.sleep(12 * 60)  # a second caller arrives while the first is still talking
        second = await sim.call(flow, [(8, "1")], call=VirtualCall(caller="+441632960002"), services=services)
        return await first, second

    first, second = sim.until_done(both())
    assert first.journey.outcome == "voicemail"
    assert first.journey.errors == []
    assert second.journey.path == ["start", "box_full"]
    assert [m["call_id"] for m in vm.box("box").messages] == [first.call.call_id]


def test_review_plays_the_message_back_then_saves_it(sim, flow):
    vm = MemoryVoicemail()
    # Speak at 2 s, press # at 4 s; the review prompt follows: 1 listens, then # saves.
    j, call, _ = sim.run(flow, [(2, "call me on my mobile"), (2, "#"), (1, "1"), (4, "#")],
                         services=sim.services(voicemail=vm))
    played = [p for _, p, _ in call.played]
    [back] = [p for p in played if p.id == "your message"]
    assert back.pcm is not None and back.text == "call me on my mobile"
    assert [n["choice"] for n in j.notes if n["what"] == "review"] == ["listen", "save"]
    assert [m["text"] for m in vm.box("box").messages] == ["call me on my mobile"]
    assert texts(j)[-1] == "Thank you, your message has been saved. Goodbye."


def test_recording_again_keeps_only_the_last_take(sim, flow):
    vm = SpyVoicemail()
    j, _, _ = sim.run(flow, [(2, "first try"), (1, "#"), (1, "2"), (2, "second try"), (1, "#"), (1, "#")],
                      services=sim.services(voicemail=vm))
    assert [m["text"] for m in vm.box("box").messages] == ["second try"]
    assert [n["take"] for n in j.notes if n["what"] == "recorded"] == [1, 2]
    assert [w for w, _ in vm.log] == ["reserve", "commit"]  # one slot for every take
    assert [p.id for p in j.prompts].count("tone:beep") == 2


def test_silence_at_the_review_saves_the_message(sim, flow):
    vm = MemoryVoicemail()
    j, _, _ = sim.run(flow, [(2, "hello")], services=sim.services(voicemail=vm))
    assert [n["choice"] for n in j.notes if n["what"] == "review"] == ["save"]
    assert len(vm.box("box").messages) == 1


def test_a_message_is_cut_to_the_mailbox_longest(sim):
    flow = sim.flow(VOICEMAIL.replace("max_length: 30s", "max_length: 10m"),
                    extra="mailboxes:\n  box: {max_message: 20s}\n")
    vm = MemoryVoicemail()
    j, _, _ = sim.run(flow, [(2, "word " * 200)], services=sim.services(voicemail=vm))
    assert j.voicemail["ended_by"] == "max-length"
    assert vm.box("box").messages[0]["seconds"] == pytest.approx(20.0)


def test_total_seconds_limit_shortens_then_refuses(sim, flow):
    limits = Mailbox(max_messages=10, max_total=30, max_message=60, min_message=2)
    vm = MemoryVoicemail(limits={"box": limits})
    vm.box("box").messages.append({"id": "old", "seconds": 22.0})
    services = sim.services(voicemail=vm)
    j, _, _ = sim.run(flow, [(2, "word " * 100)], services=services)
    assert vm.box("box").messages[-1]["seconds"] == pytest.approx(8.0)  # the 8 s left in the box
    assert ("box", "80%") in vm.notices and ("box", "full") in vm.notices
    again, _, _ = sim.run(flow, [(8, "1")], services=services)
    assert again.path == ["start", "box_full"]


def test_an_expired_slot_is_offered_again(sim, flow):
    vm = MemoryVoicemail(limits={"box": 1})

    async def scenario():
        loop = asyncio.get_running_loop()
        first = await vm.reserve("box", "a")
        assert await vm.reserve("box", "b") is None
        await asyncio.sleep(first.expires_at - loop.time() + 1)
        assert await vm.reserve("box", "b") is not None

    sim.until_done(scenario())
