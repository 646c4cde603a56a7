"""How long `ivr validate` takes on a large flow, phase by phase.

    python bench/validate_speed.py 10000

Prints the node count and the median of 5 runs of: YAML load, model build,
rules, and the whole check. Target: a 10,000-node flow in under a second.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bigflow import big_flow  # noqa: E402

from ivr.flows import Report, check_file, parse_text, validate  # noqa: E402
from ivr.flows.yamlsrc import load  # noqa: E402


def _median(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(n: int) -> None:
    text = big_flow(n)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.yaml"
        path.write_text(text)
        flow, report = check_file(path, check_media=False)
        assert flow is not None, [x.format() for x in report.errors[:5]]
        nodes = len(flow.nodes)
        t_yaml = _median(lambda: load(text))
        t_parse = _median(lambda: parse_text(text, Report("big.yaml")))
        t_rules = _median(lambda: validate(flow, Report("big.yaml"), check_media=False))
        t_all = _median(lambda: check_file(path))
    print(f"nodes={nodes} lines={text.count(chr(10))} yaml_load={t_yaml:.3f}s parse(yaml+model)={t_parse:.3f}s "
          f"rules={t_rules:.3f}s check_file={t_all:.3f}s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000)
