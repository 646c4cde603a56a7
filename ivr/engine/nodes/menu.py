"""The menu node: choices by key or phrase, retries, and the escape."""

from __future__ import annotations

from ...flows.model import Menu, Option
from ..context import CallContext, Go
from ..matching import best_match
from ..turn import KeyRules
from .common import ask, confirm, escape, failed, record_input, setting, succeeded

ESCAPE = object()  # marks the escape among a menu's choices


async def run_menu(ctx: CallContext, node: Menu) -> Go:
    keys, phrases, _ = ctx.flow.escape_for(node)
    by_key: dict[str, Option | object] = {k: ESCAPE for k in keys}
    by_key.update({o.key: o for o in node.options if o.key})
    choices = [(p, o) for o in node.options for p in o.phrases] + [(p, ESCAPE) for p in phrases]
    dtmf = node.input in ("both", "dtmf")
    speech = node.input in ("both", "speech")
    threshold = setting(ctx, node, "confidence")
    first = True
    while True:
        prompts = node.prompt if first or not node.reprompt else node.reprompt
        first = False
        key_rules = KeyRules(menu_keys=frozenset(by_key))
        res = await ask(ctx, node, prompts, keys=key_rules if dtmf else None,
                        phrases=[p for p, _ in choices] if speech else None, fallback_keys=key_rules)
        picked = None
        if res.via == "dtmf":
            picked = by_key.get(res.value)
        elif res.via == "speech":
            picked = best_match(res.value, choices)
            if picked is not None and res.confidence is not None and res.confidence < threshold:
                # Unsure: ask rather than guess, or send the caller somewhere wrong.
                answer = await confirm(ctx, node, res.value)
                if answer == "escape":
                    record_input(ctx, res, "escape")
                    return escape(ctx, node)
                if answer != "yes":
                    picked = None
        if picked is ESCAPE:
            record_input(ctx, res, "escape")
            return escape(ctx, node)
        if isinstance(picked, Option):
            record_input(ctx, res, "option")
            succeeded(ctx)
            if picked.intent:
                ctx.intent = picked.intent
            for name, val in picked.set.items():
                ctx.variables[name] = ctx.evaluate(val) if hasattr(val, "tree") else val
            return Go(picked.goto or "", "option")
        kind = "no_input" if res.via == "nothing" else "no_match"
        record_input(ctx, res, kind.replace("_", "-"))
        out = await failed(ctx, node, kind)
        if out is not None:
            return out
