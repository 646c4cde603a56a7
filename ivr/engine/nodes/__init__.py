"""Node handlers, one module per kind, looked up in HANDLERS by the node's kind."""

from __future__ import annotations

from .callback import run_callback
from .gather import run_gather
from .handoff import run_handoff
from .hangup import run_hangup
from .hold import run_hold
from .logic import run_branch, run_goto, run_return, run_set, run_subflow
from .menu import run_menu
from .say import run_say
from .voicemail import run_voicemail

HANDLERS = {
    "menu": run_menu,
    "gather": run_gather,
    "say": run_say,
    "play": run_say,
    "set": run_set,
    "branch": run_branch,
    "goto": run_goto,
    "subflow": run_subflow,
    "return": run_return,
    "hold": run_hold,
    "voicemail": run_voicemail,
    "callback": run_callback,
    "handoff": run_handoff,
    "hangup": run_hangup,
}
