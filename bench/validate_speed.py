"""How long `ivr validate` takes on a large flow, phase by phase.

    python bench/validate_speed.py 10000

Prints the node count and the median of 5 runs of: our YAML load, the model
build, the rules and the whole check, next to PyYAML's own C loader reading the
same file into plain Python objects (no positions, no checks) as a yardstick:
the ratio says how the whole validation compares with merely loading the YAML.
Target: a 10,000-node flow in under a second.
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bigflow import big_flow  # noqa: E402

from ivr.flows import Report, _gc_paused, check_file, parse_text, validate  # noqa: E402
from ivr.flows.yamlsrc import load  # noqa: E402


def _median(fn, runs: int = 5) -> float:
    # Each phase runs as check_file runs it: with the cyclic GC paused.
    times = []
    for _ in range(runs):
        with _gc_paused():
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        gc.collect()
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
        t_pyyaml = _median(lambda: yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    print(f"nodes={nodes} lines={text.count(chr(10))} yaml_load={t_yaml:.3f}s parse(yaml+model)={t_parse:.3f}s "
          f"rules={t_rules:.3f}s check_file={t_all:.3f}s pyyaml_c_load={t_pyyaml:.3f}s "
          f"ratio_check_vs_pyyaml={t_all / t_pyyaml:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000)
