"""Helpers shared by the node handlers that listen: defaults, failures, escape."""

from __future__ import annotations

from typing import Any

from ...flows.model import Node, Retry
from ..call import PromptAudio
from ..context import CallContext, End, Go
from ..journey import InputRecord
from ..matching import best_match
from ..turn import KeyRules, Turn, TurnResult

# Failed inputs with no success in between, in multiples of escape.after_failures,
# after which the call ends politely.
DEAD_LINE_FACTOR = 3
NO_RESPONSE = "We haven't been able to hear you, so we'll end this call now. Please call again. Goodbye."


def setting(ctx: CallContext, node: Node, name: str) -> Any:
    """The node's own value for a setting, else the flow's default."""
    val = getattr(node, name, None)
    return val if val is not None else getattr(ctx.flow.defaults, name)


async def ask(ctx: CallContext, node: Node, prompts: list, *, keys: KeyRules | None,
              phrases: list[str] | None, bargein: bool | None = None,
              fallback_keys: KeyRules | None = None) -> TurnResult:
    """One listening turn at `node`, with the node's (or the flow's) timers and barge-in.

    While a recogniser listens, silence counts as no input after the speech
    settings' no-speech timeout, unless the node sets its own timeout."""
    rendered = [p if isinstance(p, PromptAudio) else ctx.render(p) for p in prompts]
    own = getattr(node, "timeout", None)
    turn = Turn(ctx, rendered, keys=keys, phrases=phrases, timeout=setting(ctx, node, "timeout"),
                inter_digit=setting(ctx, node, "inter_digit_timeout"),
                bargein=setting(ctx, node, "bargein") if bargein is None else bargein,
                speech_timeout=own if own is not None else ctx.flow.speech.no_speech_timeout,
                fallback_keys=fallback_keys)
    return await turn.run()


async def confirm(ctx: CallContext, node: Node, heard: str) -> str:
    """Ask "did you say ...?" about a result below the confidence threshold.

    Returns "yes", "no" (also for silence or anything else) or "escape". The
    escape's keys and phrases work here too: nobody is trapped in a confirmation."""
    sp = ctx.flow.speech
    esc_keys, esc_phrases, _ = ctx.flow.escape_for(node)
    choices = [(p, "yes") for p in sp.yes] + [(p, "no") for p in sp.no] + [(p, "escape") for p in esc_phrases]
    by_key = {"1": "yes", "2": "no", **{k: "escape" for k in esc_keys}}
    res = await ask(ctx, node, [ctx.render(p, heard=heard) for p in sp.confirm],
                    keys=KeyRules(menu_keys=frozenset(by_key)), phrases=[p for p, _ in choices])
    if res.via == "dtmf":
        answer = by_key.get(res.value, "no")
    elif res.via == "speech":
        answer = best_match(res.value, choices) or "no"
    else:
        answer = "no"
    ctx.note("confirm", heard=heard, answer=answer, via=res.via)
    return answer


def record_input(ctx: CallContext, res: TurnResult, result: str) -> None:
    via = {"nothing": "timeout", "nospeech": "speech"}.get(res.via, res.via)
    ctx.journey.input(InputRecord(ctx.node.id if ctx.node else "", ctx.t(), via, res.value, result,
                                  res.confidence, res.reason))


def succeeded(ctx: CallContext) -> None:
    """A good answer: the failure streak ends and later hand-offs are by choice."""
    ctx.consecutive_failures = 0
    ctx.failures_since_success = 0
    ctx.reason = "choice" if ctx.reason != "overflow" else ctx.reason


def escape(ctx: CallContext, node: Node) -> Go:
    """The caller asked for a person."""
    _, _, to = ctx.flow.escape_for(node)
    ctx.reason = "escape"
    ctx.consecutive_failures = 0
    return Go(to or "", "escape")


async def failed(ctx: CallContext, node: Node, kind: str) -> Go | End | None:
    """Count a failed input; returns where to go when the caller should stop trying.

    After `escape.after_failures` failures in a row the caller is put through to a
    person without having to ask; after the node's own limit its `then` is used.
    A caller who answers nothing at all even after being put through (a dead line,
    or a person who can't be served and can't be called back) is told goodbye
    rather than kept in a loop between a refused hand-off and its fallback.
    """
    counts = ctx.attempts.setdefault(node.id, {"no_input": 0, "no_match": 0})
    counts[kind] += 1
    ctx.consecutive_failures += 1
    ctx.failures_since_success += 1
    _, _, esc_to = ctx.flow.escape_for(node)
    limit = ctx.flow.escape.after_failures if ctx.flow.escape else 2
    if ctx.failures_since_success >= DEAD_LINE_FACTOR * limit:
        ctx.note("no-response", failures=ctx.failures_since_success)
        await ctx.play([PromptAudio(text=NO_RESPONSE, language=ctx.flow.language)])
        return End(ctx.resolution or "hangup", "no response from the caller")
    if ctx.consecutive_failures >= limit:
        ctx.note("escape-after-failures", failures=ctx.consecutive_failures)
        ctx.reason = "failures"
        ctx.consecutive_failures = 0
        if ctx.flow.escape:
            await ctx.play(ctx.flow.escape.prompt)
        return Go(esc_to or "", "failures")
    retry: Retry | None = getattr(node, kind, None)
    max_tries = (retry.max if retry and retry.max else None) or ctx.flow.defaults.max_retries
    if counts[kind] >= max_tries:
        ctx.reason = "failures"
        ctx.consecutive_failures = 0
        return Go((retry.then if retry and retry.then else esc_to) or "", "retry")
    prompts = (retry.prompts if retry and retry.prompts else None) or getattr(ctx.flow.defaults, kind)
    # A key pressed during the apology answers the question about to be asked again.
    await ctx.play([prompts[min(counts[kind], len(prompts)) - 1]], bargein=setting(ctx, node, "bargein"))
    return None
