"""The condition language: what it accepts, what it refuses (with a column),
how it evaluates, and the clock functions open(), time_between() and weekday()."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ivr.flows import Report
from ivr.flows.expr import (
    Env,
    ExprError,
    basic_functions,
    compile_expr,
    evaluate,
    render_template,
    template_fields,
)
from ivr.flows.fields import INVALID, Ctx, Struct
from ivr.flows.hours import Hours, local_time_between, local_weekday
from ivr.flows.yamlsrc import load

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    """An aware UTC datetime from 'YYYY-MM-DD HH:MM'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def hours(yaml_text: str) -> Hours:
    """Opening hours read the way a flow's hours: section is read."""
    value, problems = load(yaml_text)
    assert problems == []
    report = Report()
    out = Struct(Hours).parse(value, Ctx(report))
    assert out is not INVALID and report.items == []
    return out


OFFICE = hours("""
timezone: Europe/London
weekly:
  mon-fri: "08:00-20:00"
  sat: "09:00-13:00"
closed: [2026-12-25, 2026-12-26, 2027-01-01]
""")


def run(source: str, variables: dict[str, Any] | None = None, *, when: dt.datetime | None = None,
        named_hours: dict[str, Hours] | None = None) -> Any:
    """Evaluate a condition with the functions a call gets (the clock ones fixed at `when`)."""
    scope = dict(variables or {})
    fns = basic_functions(scope)
    now = when or at("2026-06-01 12:00")
    table = named_hours if named_hours is not None else {"office": OFFICE}
    fns["open"] = lambda name: table[name].is_open(now) if name in table else False
    fns["time_between"] = lambda a, b, tz=None: local_time_between(now, a, b, tz)
    fns["weekday"] = lambda tz=None: local_weekday(now, tz)
    return evaluate(compile_expr(source), Env(scope, fns))


# ---- what the language accepts ------------------------------------------------

@pytest.mark.parametrize("source", [
    'tier == "gold"',
    "count >= 3 and not blocked or vip",
    'lang in ["en", "fr"]',
    'lang not in ("de",)',
    "-balance < 0",
    "a + b * 2 - c % 3",
    "1 < x <= 10",
    "x == null and y != none_at_all and flag == true",
    'open("office") and weekday("Europe/London") != "sun"',
    'time_between("08:00", "18:00") or time_between("22:00", "06:00", "Europe/London")',
    'matches(caller, "^\\\\+44") and starts_with(caller, "+44")',
    'len(account) == 8 and int(account) > 0 and lower(name) == "bob" and defined("account")',
])
def test_allowed(source):
    compile_expr(source)


def test_names_and_hours_are_collected():
    ex = compile_expr('open("office") and tier == "gold" or open("night") and len(account) > 2 and true')
    assert ex.names == {"tier", "account"}  # true is a constant, functions are not names
    assert ex.hours == {"office", "night"}


# ---- what it refuses, and where -----------------------------------------------

@pytest.mark.parametrize(("source", "col", "message", "hint"), [
    ("vars.account", 1, "Attribute is not allowed", "plain names"),
    ("account[0]", 1, "Subscript is not allowed", None),
    ("(lambda: 1)()", 1, "unknown function", None),
    ("[x for x in y]", 1, "ListComp is not allowed", None),
    ('__import__("os").system("ls")', 1, "unknown function", None),
    ('opn("office")', 1, "unknown function 'opn'", "did you mean 'open'?"),
    ("len(a, b)", 1, "len() takes 1..1 argument(s)", None),
    ("int(x=1)", 1, "int() takes", None),
    ("open(office)", 1, "needs the name of opening hours in quotes", None),
    ("a & b", 1, "BinOp is not allowed", None),
    ("a / b", 1, "BinOp is not allowed", None),
    ("a ** 2", 1, "BinOp is not allowed", None),
    ('x if y else z', 1, "IfExp is not allowed", None),
    ("(x := 1)", 2, "NamedExpr is not allowed", None),
    ('f"{x}"', 1, "JoinedStr is not allowed", None),
    ("{1: 2}", 1, "Dict is not allowed", None),
    ("a is None", 1, "Compare is not allowed", None),
    ('tier == "gold" and vars.x', 20, "Attribute is not allowed", None),
    ('tier = "gold"', 6, "syntax error", "compare with == (not =)"),
    ("count +", 7, "syntax error", None),  # ends too early: at the dangling '+'
    ("a and (b", 7, "syntax error", None),
])
def test_refused(source, col, message, hint):
    with pytest.raises(ExprError) as err:
        compile_expr(source)
    assert message in err.value.message
    assert err.value.col == col
    if hint:
        assert hint in err.value.hint


def test_columns_count_from_the_text_as_written():
    # Leading spaces (as in `vars: {x: "=  a.b"}`) are part of the column count.
    with pytest.raises(ExprError) as err:
        compile_expr("   a.b")
    assert err.value.col == 4
    with pytest.raises(ExprError) as err:
        compile_expr("  1 +")
    assert err.value.col == 5


# ---- evaluation ------------------------------------------------------------------

@pytest.mark.parametrize(("source", "variables", "result"), [
    ('tier == "gold"', {"tier": "gold"}, True),
    ("count + 1", {"count": 2}, 3),
    ("a % 3", {"a": 10}, 1),
    ("not blocked", {}, True),
    ('account == 42', {"account": "42"}, True),  # keyed digits arrive as text
    ('account > 9', {"account": "10"}, True),
    ('lang in ["en", "fr"]', {"lang": "fr"}, True),
    ("vip or fallback", {"fallback": "yes"}, "yes"),
    ("1 < x <= 10", {"x": 10}, True),
    ("1 < x <= 10", {"x": 11}, False),
    ("-x", {"x": 4}, -4),
    ("len(account)", {"account": "12345678"}, 8),
    ('matches(caller, "^\\\\+44")', {"caller": "+441234"}, True),
    ('starts_with(caller, "+1")', {"caller": "+441234"}, False),
    ('lower(name) == "bob"', {"name": "BOB"}, True),
    ('int("12") + 1', {}, 13),
])
def test_evaluate(source, variables, result):
    assert run(source, variables) == result


@pytest.mark.parametrize(("source", "result"), [
    ("missing", None),
    ("missing == null", True),
    ("missing != null", False),
    ("missing > 3", False),  # no exception: an unset variable is simply empty
    ("missing < 3", False),
    ('missing in ["a"]', False),
    ("missing not in [1]", True),
    ("len(missing)", 0),
    ("missing + 1", None),
    ("-missing", None),
    ('int("x")', None),
    ("lower(missing)", None),
    ('defined("missing")', False),
    ('matches(missing, "x")', False),
    ('matches("x", "[")', None),  # a bad pattern at run time is null, not a crash
])
def test_unknown_names_are_null(source, result):
    assert run(source, {}) == result


def test_defined_looks_at_the_variable_named():
    assert run('defined("account")', {"account": "1"}) is True
    assert run('defined("account")', {"account": ""}) is False


def test_comparing_text_with_numbers_that_are_not_numbers():
    assert run("x > 3", {"x": "abc"}) is False
    assert run("x == 3", {"x": "abc"}) is False


# ---- opening hours -----------------------------------------------------------------

@pytest.mark.parametrize(("when", "is_open"), [
    ("2026-03-27 07:59", False),  # Friday before the change: London is on GMT (UTC+0)
    ("2026-03-27 08:00", True),
    ("2026-03-27 19:59", True),
    ("2026-03-27 20:00", False),
    ("2026-03-30 06:59", False),  # Monday after the change: BST (UTC+1), 07:59 local
    ("2026-03-30 07:00", True),  # 08:00 local: a clock-blind check would say closed
    ("2026-03-30 18:59", True),  # 19:59 local
    ("2026-03-30 19:00", False),  # 20:00 local: a clock-blind check would say open
    ("2026-10-23 07:00", True),  # Friday before clocks go back: still BST
    ("2026-10-26 07:00", False),  # Monday after: GMT again, 07:00 local
    ("2026-10-26 08:00", True),
    ("2026-03-28 12:30", True),  # Saturday 12:30 GMT
    ("2026-03-28 13:00", False),
    ("2026-03-29 12:00", False),  # Sunday: not in the weekly hours at all
])
def test_open_across_a_dst_change_in_london(when, is_open):
    assert OFFICE.is_open(at(when)) is is_open
    assert run('open("office")', when=at(when)) is is_open


def test_open_on_the_day_the_clocks_change():
    daily = hours('timezone: Europe/London\nweekly: {daily: "09:00-17:00"}\n')
    # The same UTC time of day is on different sides of 09:00 local either side of each change.
    assert not daily.is_open(at("2026-03-28 08:30"))  # 08:30 GMT
    assert daily.is_open(at("2026-03-29 08:30"))  # 09:30 BST, on the day itself
    assert daily.is_open(at("2026-10-24 08:30"))  # 09:30 BST
    assert not daily.is_open(at("2026-10-25 08:30"))  # 08:30 GMT, on the day itself


def test_closed_dates():
    assert OFFICE.is_open(at("2026-12-24 12:00"))
    assert not OFFICE.is_open(at("2026-12-25 12:00"))  # a Friday, closed all day
    assert not OFFICE.is_open(at("2027-01-01 12:00"))
    assert OFFICE.is_open(at("2027-01-04 12:00"))


def test_closed_dates_are_local_dates():
    tokyo = hours('timezone: Asia/Tokyo\nweekly: {daily: "00:00-24:00"}\nclosed: [2026-12-25]\n')
    assert tokyo.is_open(at("2026-12-24 14:59"))  # 23:59 on the 24th in Tokyo
    assert not tokyo.is_open(at("2026-12-24 15:00"))  # midnight on the 25th in Tokyo
    assert tokyo.is_open(at("2026-12-25 15:00"))  # the 26th in Tokyo, still the 25th in UTC


def test_several_ranges_a_day_and_closed_days():
    split = hours('timezone: UTC\nweekly:\n  mon-fri: ["09:00-12:00", "13:00-17:00"]\n  sat: closed\n')
    assert split.is_open(at("2026-06-01 11:59"))
    assert not split.is_open(at("2026-06-01 12:30"))  # lunch
    assert split.is_open(at("2026-06-01 13:00"))
    assert not split.is_open(at("2026-06-06 10:00"))  # Saturday


def test_open_with_unknown_hours_is_false_at_run_time():
    # The validator refuses such a flow; the runner must still not crash.
    assert run('open("nope")', when=at("2026-06-01 12:00")) is False


def test_open_in_a_condition():
    source = 'open("office") and tier == "gold"'
    assert run(source, {"tier": "gold"}, when=at("2026-06-01 09:00")) is True
    assert run(source, {"tier": "gold"}, when=at("2026-06-01 21:00")) is False
    assert run(source, {}, when=at("2026-06-01 09:00")) is False


# ---- time_between and weekday -------------------------------------------------------

@pytest.mark.parametrize(("when", "inside"), [
    ("2026-06-01 21:59", False),
    ("2026-06-01 22:00", True),
    ("2026-06-01 23:59", True),
    ("2026-06-02 00:00", True),
    ("2026-06-02 05:59", True),
    ("2026-06-02 06:00", False),
    ("2026-06-02 12:00", False),
])
def test_time_between_across_midnight(when, inside):
    assert local_time_between(at(when), "22:00", "06:00", None) is inside
    assert run('time_between("22:00", "06:00")', when=at(when)) is inside


def test_time_between_in_a_zone():
    # 21:30 UTC in June is 22:30 in London (BST).
    assert run('time_between("22:00", "06:00", "Europe/London")', when=at("2026-06-01 21:30")) is True
    assert run('time_between("22:00", "06:00")', when=at("2026-06-01 21:30")) is False


def test_time_between_same_day_and_bad_times():
    assert local_time_between(at("2026-06-01 09:00"), "08:00", "18:00", None)
    assert not local_time_between(at("2026-06-01 18:00"), "08:00", "18:00", None)
    assert not local_time_between(at("2026-06-01 09:00"), "8am", "6pm", None)


def test_weekday_in_a_zone():
    # 23:30 UTC on Sunday 29 March is 00:30 on Monday in London (BST).
    when = at("2026-03-29 23:30")
    assert local_weekday(when, None) == "sun"
    assert local_weekday(when, "Europe/London") == "mon"
    assert run('weekday("Europe/London") == "mon"', when=when) is True


# ---- prompt templates ----------------------------------------------------------------

def test_template_fields_and_rendering():
    text = "Account {account:digits}, hello {name}."
    assert template_fields(text) == [("account", "digits", 8), ("name", "", 32)]
    assert render_template(text, {"account": "1234", "name": "Ann"}) == "Account 1 2 3 4, hello Ann."
    assert render_template("Hi {missing}!", {}) == "Hi !"
