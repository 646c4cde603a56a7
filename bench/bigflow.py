"""Generate a large, valid flow for benchmarks: `python bench/bigflow.py 10000 > /tmp/big.yaml`.

A binary tree of menus (three options each: up to two sub-menus, the rest
leaves); every leaf is a branch on opening hours, a gather, a say with a
template and a hand-off, so every rule has real work to do. A flow of M menus
has 9M + 6 nodes; M is chosen so there are at least `n`.
"""

from __future__ import annotations

import sys


def big_flow(n: int) -> str:
    """YAML text of a valid flow with at least `n` nodes (at most 8 more)."""
    menus = max(1, -(-(n - 6) // 9))
    lines = [
        "version: 1", "name: Big flow", "start: m0",
        "escape:", "  to: agent",
        "hours:", "  office:", "    timezone: Europe/London", "    weekly:", '      mon-fri: "08:00-18:00"',
        "nodes:",
        "  agent:", "    kind: handoff", "    queue: general", "    on_failure: bye",
        "  bye:", "    kind: hangup", '    prompt: "Goodbye."',
    ]
    leaves: list[str] = []
    made = 0
    for i in range(menus):
        lines += [f"  m{i}:", "    kind: menu", f'    prompt: "Menu {i}, press 1, 2 or 3."', "    options:"]
        kids = [c for c in (2 * i + 1, 2 * i + 2) if c < menus]
        for k in (1, 2, 3):
            if k <= len(kids):
                target = f"m{kids[k - 1]}"
            else:
                made += 1
                target = f"n{made}"
                g, s, h = f"{target}_g", f"{target}_s", f"{target}_h"
                leaves += [f"  {target}:", "    kind: branch", "    cases:",
                           '      - when: open("office") and x == 1', f"        goto: {g}", f"    else: {s}",
                           f"  {g}:", "    kind: gather", '    prompt: "Enter your number."', "    into: x",
                           "    digits: {min: 4, max: 8}", f"    next: {s}",
                           f"  {s}:", "    kind: say", '    prompt: "Thanks {x}."', f"    next: {h}",
                           f"  {h}:", "    kind: handoff", f"    queue: q{made % 50}", "    on_failure: bye"]
            lines += [f"      - key: {k}", f"        say: [choice {k} of menu {i}, option {k}]",
                      f"        goto: {target}"]
    return "\n".join(lines + leaves) + "\n"


if __name__ == "__main__":
    sys.stdout.write(big_flow(int(sys.argv[1]) if len(sys.argv) > 1 else 10000))
