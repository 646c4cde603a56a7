"""Nodes that decide without the caller: set, branch, goto, subflow, return."""

from __future__ import annotations

from ...flows.expr import Expr
from ...flows.model import Branch, CallSubflow, Goto, Return, SetVars
from ..context import CallContext, End, Go


async def run_set(ctx: CallContext, node: SetVars) -> Go:
    for name, val in node.vars.items():
        ctx.variables[name] = ctx.evaluate(val) if isinstance(val, Expr) else val
        ctx.journey.emit("set", name=name, value=ctx.variables[name])
    return Go(node.next or "", "next")


async def run_branch(ctx: CallContext, node: Branch) -> Go:
    for i, case in enumerate(node.cases, 1):
        if ctx.evaluate(case.when):
            ctx.note("branch", case=i, when=case.when.source)
            return Go(case.goto or "", "case")
    ctx.note("branch", case="else")
    return Go(node.otherwise or "", "else")


async def run_goto(ctx: CallContext, node: Goto) -> Go:
    return Go(node.to or "", "next")


async def run_subflow(ctx: CallContext, node: CallSubflow) -> Go:
    sub = ctx.flow.subflows[node.call]
    ctx.returns.append(node.next or "")
    return Go(f"{node.call}.{sub.start}", "call")


async def run_return(ctx: CallContext, node: Return) -> Go | End:
    if not ctx.returns:
        return End("error", "return outside a subflow")
    return Go(ctx.returns.pop(), "return")
