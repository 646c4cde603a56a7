"""Helpers shared by test_journey.py and test_journey_errors.py: journey files written and loaded."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ivr.harness.journey import Journey, JourneyError, load_journeys


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def one(tmp_path: Path, text: str) -> Journey:
    journeys = load_journeys(write(tmp_path, "j.yaml", text))
    assert len(journeys) == 1
    return journeys[0]


def steps(tmp_path: Path, *lines: str) -> list:
    text = "journey: j\nsteps:\n" + "".join(f"  {line}\n" for line in lines)
    return list(one(tmp_path, text).steps)


def problems(tmp_path: Path, text: str, name: str = "j.yaml") -> list[str]:
    path = write(tmp_path, name, text)
    with pytest.raises(JourneyError) as info:
        load_journeys(path)
    # Shown relative to the folder, so that the tests can spell them out.
    return [p.replace(f"{tmp_path}/", "") for p in info.value.problems]


def where(problem: str) -> str:
    """`j.yaml:4:5` of a problem line."""
    return ":".join(problem.split(":")[:3])
