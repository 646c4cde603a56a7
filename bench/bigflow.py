"""Generate a large, valid flow for benchmarks: `python bench/bigflow.py 10000 > /tmp/big.yaml`.

A tree of menus (three options each) whose leaves are gathers, says, sets and
hand-offs, so every rule has real work to do.
"""

from __future__ import annotations

import sys


def big_flow(n: int) -> str:
    """YAML text of a valid flow with about `n` nodes."""
    lines = [
        "version: 1", "name: Big flow", "start: m0",
        "escape:", "  to: agent",
        "hours:", "  office:", "    timezone: Europe/London", "    weekly:", '      mon-fri: "08:00-18:00"',
        "nodes:",
        "  agent:", "    kind: handoff", "    queue: general", "    on_failure: bye",
        "  bye:", "    kind: hangup", '    prompt: "Goodbye."',
    ]
    count = 2
    leaves: list[str] = []
    menus = ["m0"]
    made = 0
    queue = ["m0"]
    while queue and count < n:
        mid = queue.pop(0)
        lines += [f"  {mid}:", "    kind: menu", f'    prompt: "Menu {mid}, press 1, 2 or 3."', "    options:"]
        count += 1
        for k in (1, 2, 3):
            made += 1
            child = f"n{made}"
            lines += [f"      - key: {k}", f"        say: [choice {k} of {mid}, option {k}]", f"        goto: {child}"]
            if count + len(queue) < n - 4 and made % 4 != 0:
                queue.append(child)
            else:
                g, s, h = f"{child}_g", f"{child}_s", f"{child}_h"
                leaves += [f"  {child}:", "    kind: branch", "    cases:", '      - when: open("office") and x == 1',
                          f"        goto: {g}", f"    else: {s}",
                          f"  {g}:", "    kind: gather", '    prompt: "Enter your number."', "    into: x",
                          "    digits: {min: 4, max: 8}", f"    next: {s}",
                          f"  {s}:", "    kind: say", '    prompt: "Thanks {x}."', f"    next: {h}",
                          f"  {h}:", "    kind: handoff", f"    queue: q{made % 50}", "    on_failure: bye"]
                count += 4
        menus.append(mid)
    # Menus still queued become leaves too.
    for mid in queue:
        lines += [f"  {mid}:", "    kind: say", '    prompt: "Hello."', "    next: agent"]
        count += 1
    return "\n".join(lines + leaves) + "\n"


if __name__ == "__main__":
    sys.stdout.write(big_flow(int(sys.argv[1]) if len(sys.argv) > 1 else 10000))
