"""Alertmanager matchers: parsing, matching and first-match-wins, as tables.

The parse cases come from Alertmanager's documentation ("Label matchers" in
docs/configuration.md) and from its classic parser's tests (pkg/labels/parse_test.go).
"""

from __future__ import annotations

import pytest

from app.catalog.matcher import (
    CompiledMapping,
    MatcherError,
    match_mappings,
    parse_matchers,
    shadows,
)

WATCHDOG = [("alertname", "=", "Watchdog"), ("severity", "=~", "warning|critical")]

PARSES = [
    # Alertmanager docs: the YAML list form, with and without quotes and spaces.
    (["alertname = Watchdog", 'severity =~ "warning|critical"'], WATCHDOG),
    (["foo = bar", "dings != bums"], [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    (['foo = "bar,baz"', "dings != bums"], [("foo", "=", "bar,baz"), ("dings", "!=", "bums")]),
    (['{foo="bar", dings!="bums"}'], [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    # The PromQL-like string form, braces optional, one trailing comma allowed.
    ('{alertname="Watchdog", severity=~"warning|critical"}', WATCHDOG),
    ('{alertname="Watchdog", severity=~"warning|critical",}', WATCHDOG),
    ('alertname="Watchdog", severity=~"warning|critical"', WATCHDOG),
    ('{\n   alertname = "Watchdog",\n   severity =~ "warning|critical",\n}', WATCHDOG),
    # The docs' YAML block example: escaped quotes, a comma and a paren inside quotes.
    ('{quote=~"She said: \\"Hi, all!( How\'re you…)?\\""}\n',
     [("quote", "=~", "She said: \"Hi, all!( How're you…)?\"")]),
    # Alertmanager's parser tests.
    ('{foo=~"bar.*"}', [("foo", "=~", "bar.*")]),
    ('{foo!~"bar.*"}', [("foo", "!~", "bar.*")]),
    ('{foo="bar",baz!~".*quux", derp="wat"}',
     [("foo", "=", "bar"), ("baz", "!~", ".*quux"), ("derp", "=", "wat")]),
    ('{foo=""}', [("foo", "=", "")]),
    ('{foo="bar,quux", job="job1"}', [("foo", "=", "bar,quux"), ("job", "=", "job1")]),
    ('{foo = "bar", dings != "bums", }', [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    ("foo=bar,dings!=bums", [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    ('statuscode=~"5.."', [("statuscode", "=~", "5..")]),
    ("tricky=~~~", [("tricky", "=~", "~~")]),
    ('contains_quote != "\\"" , contains_comma !~ "foo,bar" , ',
     [("contains_quote", "!=", '"'), ("contains_comma", "!~", "foo,bar")]),
    # OpenMetrics escapes; any other backslash stays, so regex escapes need no doubling.
    (r'path="a\\b"', [("path", "=", "a\\b")]),
    (r'msg="line\nnext"', [("msg", "=", "line\nnext")]),
    (r'version=~"v\d+"', [("version", "=~", r"v\d+")]),
    # A quoted label name, as the UTF-8 parser allows.
    ('"service.name"="api"', [("service.name", "=", "api")]),
    ([], []),
]

ERRORS = [
    ('job="value', "unterminated double quote"),
    ('job=value"', "unescaped double quote"),
    ('contains_unescaped_quote = foo"bar', "unescaped double quote"),
    ('{invalid-name = "valid label"}', "expected =, !=, =~ or !~"),
    ('{foo=~"invalid[regexp"}', "bad regex"),
    ('{alertname="Watchdog", severity=~"warning|critical"', "unbalanced braces"),
    ('alertname="Watchdog", severity=~"warning|critical"}', "unbalanced braces"),
    ('{{alertname="Watchdog", severity=~"warning|critical",}}', "duplicate braces"),
    ("job=", "the value is missing"),
    ('a="b",,c="d"', "empty matcher"),
    ("=value", "expected a label name"),
    ("severity", "expected =, !=, =~ or !~"),
    ("x" * 10_000, "limit"),
]


@pytest.mark.parametrize(("spec", "expected"), PARSES)
def test_parse(spec, expected):
    assert [(m.name, m.op, m.value) for m in parse_matchers(spec)] == expected


@pytest.mark.parametrize(("spec", "message"), ERRORS)
def test_parse_errors_say_what_is_wrong(spec, message):
    with pytest.raises(MatcherError, match=message):
        parse_matchers(spec)


@pytest.mark.parametrize("spec", [p[0] for p in PARSES if p[0]])
def test_str_parses_back_to_the_same_matcher(spec):
    for m in parse_matchers(spec):
        assert parse_matchers(str(m)) == [m]


LABELS = {"foo": "bar", "baz": "qux", "id": "12", "severity": "critical"}

MATCHES = [
    # Grafana's documentation of the same operators, on { foo=bar, baz=qux, id=12 }.
    ("foo=bar", True),
    ("foo!=bar", False),
    ('id=~"[0-9]+"', True),
    ('baz!~"q.*"', False),
    # Fully anchored: a regex matches the whole value, and alternation stays inside.
    ('severity=~"crit"', False),
    ('severity=~"crit.*"', True),
    ('severity=~"warning|critical"', True),
    ('severity=~"warn|crit"', False),
    ('severity!~"warning|critical"', False),
    ('foo=~"a)|(b"', False),
    # A missing label is the empty string.
    ('team=""', True),
    ('team!=""', False),
    ('team=~".*"', True),
    ('team=~".+"', False),
    ('team!~".+"', True),
    ('team!="ml"', True),
    # Composition: every matcher must hold (Alertmanager's docs).
    ('{foo="bar", severity=~"warning|critical"}', True),
    ('{foo="bar", severity="none"}', False),
]


@pytest.mark.parametrize(("spec", "expected"), MATCHES)
def test_matches(spec, expected):
    assert all(m.matches(LABELS) for m in parse_matchers(spec)) is expected


def test_a_trailing_newline_does_not_slip_past_the_anchor():
    (m,) = parse_matchers('env=~"prod"')
    assert m.matches({"env": "prod"})
    assert not m.matches({"env": "prod\n"})


def test_watchdog_example_from_the_docs():
    matchers = parse_matchers('{alertname="Watchdog", severity=~"warning|critical"}')
    assert all(m.matches({"alertname": "Watchdog", "severity": "critical"}) for m in matchers)
    assert not all(m.matches({"alertname": "Watchdog", "severity": "none"}) for m in matchers)


def mapping(index: int, spec: str | list[str], *, cont: bool = False) -> CompiledMapping:
    return CompiledMapping(index, f"m{index}", "rb", cont, {}, tuple(parse_matchers(spec)))


ROUTING = [
    # (mappings as (matchers, continue), labels, expected indexes)
    ([('a="1"', False), ('a="1"', False)], {"a": "1"}, [0]),
    ([('a="1"', True), ('a="1"', False), ('a="1"', False)], {"a": "1"}, [0, 1]),
    ([('a="1"', True), ('b="2"', True), ('a="1"', False)], {"a": "1"}, [0, 2]),
    ([('a="2"', False), ('a=~"1|2"', False)], {"a": "1"}, [1]),
    ([('a="2"', False)], {"a": "1"}, []),
    ([([], False), ('a="1"', False)], {"a": "1"}, [0]),
]


@pytest.mark.parametrize(("specs", "labels", "expected"), ROUTING)
def test_first_match_wins_unless_continue(specs, labels, expected):
    mappings = [mapping(i, spec, cont=cont) for i, (spec, cont) in enumerate(specs)]
    assert [m.index for m in match_mappings(mappings, labels)] == expected


SHADOWS = [
    # (earlier, later, does earlier shadow later)
    ('a="1"', '{a="1", b="2"}', True),
    ('{a="1", b="2"}', 'a="1"', False),
    ('a=~"1|2"', 'a="1"', True),
    ('a=~"1|2"', 'a="3"', False),
    ('a!="3"', 'a="1"', True),
    ('a!~"x.*"', '{a="y", b="1"}', True),
    ([], 'a="1"', True),
    ('a=~".*"', 'b="1"', False),  # true in fact, but two regexes are not compared
    ('a=~"1|2"', 'a=~"1"', False),
    ('severity=~"warning|critical"', '{severity="critical", alertname="X"}', True),
]


@pytest.mark.parametrize(("earlier", "later", "expected"), SHADOWS)
def test_shadowing_is_sound(earlier, later, expected):
    assert shadows(parse_matchers(earlier), parse_matchers(later)) is expected
