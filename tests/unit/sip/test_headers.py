"""Parsed header forms: URIs, name-addr, Via, CSeq, parameters, and where responses go."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip.errors import SipParseError
from ivr.sip.headers import CSeq, NameAddr, Via, format_params, parse_params, response_address
from ivr.sip.lex import split_commas
from ivr.sip.uri import GenericUri, SipUri, parse_uri

# --- SipUri -------------------------------------------------------------------


def test_sip_uri_components() -> None:
    uri = SipUri.parse("sip:alice:secret@Example.COM:5070;transport=tcp;lr?subject=hi&x=1")
    assert uri == SipUri("sip", "alice", "secret", "Example.COM", 5070,
                         {"transport": "tcp", "lr": None}, {"subject": "hi", "x": "1"})
    assert uri.param("TRANSPORT") == "tcp" and uri.hostport == "Example.COM:5070"
    assert str(uri) == "sip:alice:secret@Example.COM:5070;transport=tcp;lr?subject=hi&x=1"


def test_sips_tel_and_host_only() -> None:
    assert SipUri.parse("SIPS:bob@example.com").scheme == "sips"
    assert SipUri.parse("sip:example.com") == SipUri(host="example.com")
    tel = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (tel.scheme, tel.user, tel.host) == ("tel", "+1-201-555-0123", "")
    assert str(tel) == "tel:+1-201-555-0123;phone-context=example.com"


def test_ipv6_hosts() -> None:
    uri = SipUri.parse("sip:ivr@[::1]:5080;maddr=[2001:db8::1]")
    assert (uri.host, uri.port, uri.params["maddr"]) == ("::1", 5080, "[2001:db8::1]")
    assert str(uri) == "sip:ivr@[::1]:5080;maddr=[2001:db8::1]"
    assert SipUri.parse("sip:[2001:db8::9:1]").hostport == "[2001:db8::9:1]"


def test_escapes_are_undone_and_redone() -> None:
    uri = SipUri.parse("sip:I%20have%20spaces;x%3Dy@example.net;n%61me=v%25A")
    assert uri.user == "I have spaces;x=y" and uri.params == {"name": "v%A"}
    assert str(uri) == "sip:I%20have%20spaces;x=y@example.net;name=v%25A"
    assert SipUri.parse(str(uri)) == uri
    assert SipUri.parse("sip:null-%00@h").user == "null-\x00"


@pytest.mark.parametrize("text", [
    "sip:", "sip:@example.com", "sip:user@", "sip:user@host:70000", "sip:user@host:",
    "sip:us er@host", "sip:user@ho st", "sip:user@[::g]", "sip:user@[::1", "sip:%4@host",
    "sip:user@host;lr;lr", "sip:user@host;", "sip:user@host;=x", "sip:user@host?x",
    "sip:user@.host", "sip:user@host..com", "sip:a\"b@host", "tel:", "tel:12 34", "http:x",
    "sip:user@host:5060x",
])
def test_bad_sip_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_other_schemes_stay_opaque() -> None:
    assert parse_uri("urn:service:sos") == GenericUri("urn", "service:sos")
    assert str(parse_uri("HTTP://www.example.com/a?b")) == "http://www.example.com/a?b"
    assert isinstance(parse_uri("sip:x@y"), SipUri)
    for bad in ("<sip:x@y>", "nocolon", "1http://x", "http:", "http:a b", "x:%zz"):
        with pytest.raises(SipParseError):
            parse_uri(bad)


# --- parameters and lists ------------------------------------------------------


def test_parse_params() -> None:
    assert parse_params("") == {}
    assert parse_params(" ;   tag    = 1918181833n ; LR") == {"tag": "1918181833n", "lr": None}
    quoted = parse_params(';x="a;b,c" ;y=[::1]')
    assert quoted == {"x": '"a;b,c"', "y": "[::1]"}
    assert format_params(quoted) == ';x="a;b,c";y=[::1]'


@pytest.mark.parametrize("text", [";", ";;", "tag=1", ";a=", ";a=b c", ";a;A", ';a="x', ';a="x"y',
                                  ";a=<b>", ";a b", ';a "x"'])
def test_bad_params(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_params(text)


def test_split_commas_respects_quotes_and_brackets() -> None:
    value = '"Doe, John" <sip:j@x;a=1,2>, <sip:k@y>;q=0.5 , "a\\",b" <sip:z@z>'
    assert split_commas(value) == ['"Doe, John" <sip:j@x;a=1,2>', "<sip:k@y>;q=0.5",
                                   '"a\\",b" <sip:z@z>']
    assert split_commas("") == [] and split_commas("  ") == []
    assert split_commas("a,,b") == ["a", "", "b"]


# --- NameAddr ------------------------------------------------------------------


def test_name_addr_forms() -> None:
    quoted = NameAddr.parse('"Alice \\"A\\" Smith"  <sip:alice@example.com>;tag=1a')
    assert quoted.display_name == 'Alice "A" Smith' and quoted.tag == "1a"
    assert str(quoted) == '"Alice \\"A\\" Smith" <sip:alice@example.com>;tag=1a'
    tokens = NameAddr.parse("Bob Jones<sip:bob@example.com>")
    assert tokens.display_name == "Bob Jones"
    assert NameAddr.parse('"" <sip:x@y>').display_name == ""
    bare = NameAddr.parse("sip:carol@example.com;tag=9;lr")
    assert bare.display_name is None and bare.params == {"tag": "9", "lr": None}
    assert bare.uri == SipUri(user="carol", host="example.com")
    inside = NameAddr.parse("<sip:carol@example.com;lr>;expires=60")
    assert inside.uri.params == {"lr": None} and inside.params == {"expires": "60"}  # type: ignore[union-attr]
    assert NameAddr.parse("<urn:x:y>").uri == GenericUri("urn", "x:y")


@pytest.mark.parametrize("text", [
    "", '"unterminated <sip:a@b>', '"x" sip:a@b', "<sip:a@b", "< sip:a@b>", "<sip:a@b >",
    "Bell, Alexander <sip:a@b>", "sip:a@b?x=y", "sip:a@b;;", "<sip:a@b>;;", "<sip:a@b> x",
    "<>", '"x"', "<sip:a@b>tag=1",
])
def test_bad_name_addrs(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_display_name_quoting() -> None:
    na = NameAddr(SipUri(user="a", host="b"), 'Q"\\\x01\t')
    assert str(na) == '"Q\\"\\\\\\\x01\t" <sip:a@b>'
    assert NameAddr.parse(str(na)) == na
    with pytest.raises(ValueError):
        str(NameAddr(SipUri(host="b"), "line\r\nbreak"))


# --- Via -------------------------------------------------------------------------


def test_via_fields() -> None:
    via = Via.parse("SIP/2.0/udp pc33.example.com:5066;branch=z9hG4bK776asdhds;rport;ttl=16")
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP", "pc33.example.com", 5066, "z9hG4bK776asdhds")
    assert via.has_rport and via.rport is None and via.params["ttl"] == "16"
    assert via.is_rfc3261_branch and via.sent_by == "pc33.example.com:5066"
    assert str(via) == "SIP/2.0/UDP pc33.example.com:5066;branch=z9hG4bK776asdhds;rport;ttl=16"
    spaced = Via.parse("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
    assert (spaced.transport, spaced.host, spaced.branch) == ("TCP", "spindle.example.com",
                                                              "z9hG4bK9ikj8")
    v6 = Via.parse("SIP/2.0/TLS [2001:db8::9:255]:5061;received=2001:db8::9:255;rport=5061")
    assert (v6.host, v6.port, v6.rport) == ("2001:db8::9:255", 5061, 5061)
    assert str(v6).startswith("SIP/2.0/TLS [2001:db8::9:255]:5061;")
    assert not Via.parse("SIP/2.0/UDP h;branch=z9hG4bK").is_rfc3261_branch
    assert Via.parse("SIP/2.0/UDP h").branch is None


@pytest.mark.parametrize("text", [
    "", "SIP/2.0", "SIP/2.0/UDP", "SIP/2.0/UDP ", "SIP/2.0 UDP host", "SIP/2.0/UDP host:99999",
    "SIP/2.0/UDP host;ttl=256", "SIP/2.0/UDP host;rport=x", "SIP/2.0/UDP host;branch=",
    "SIP/2.0/UDP host;;", "SIP/2.0/UDP ho st", "SIP/2.0/UDP 192.0.2.15;;,;,,", "SIP/2.0/UDP [::1",
    "SIP/2.0/UDP host;received=",
])
def test_bad_vias(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


def test_via_stamped_by_the_server() -> None:
    asks = Via.parse("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport")
    stamped = asks.stamped(("203.0.113.7", 40123))
    assert stamped.params == {"branch": "z9hG4bKa", "rport": "40123", "received": "203.0.113.7"}
    plain = Via.parse("SIP/2.0/UDP pc.example.com;branch=z9hG4bKb")
    assert plain.stamped(("192.0.2.1", 5060)).received == "192.0.2.1"
    same = Via.parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKc")
    assert same.stamped(("192.0.2.1", 5060)) == same


def test_response_address() -> None:
    src = ("203.0.113.7", 40123)
    # RFC 3581: rport asked for -> the packet's source address and port.
    assert response_address(Via.parse("SIP/2.0/UDP 10.0.0.5:5062;rport;branch=z9hG4bK1"),
                            src) == src
    # Already stamped by us (or a proxy in between): received and rport.
    stamped = Via.parse("SIP/2.0/UDP 10.0.0.5;received=198.51.100.2;rport=7000;branch=z9hG4bK1")
    assert response_address(stamped, src) == ("198.51.100.2", 7000)
    # RFC 3261 18.2.2: the source address (received) and the sent-by port.
    assert response_address(Via.parse("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1"),
                            src) == ("203.0.113.7", 5062)
    assert response_address(Via.parse("SIP/2.0/UDP pc.example.com"), src) == ("203.0.113.7", 5060)
    assert response_address(Via.parse("SIP/2.0/UDP h;maddr=239.0.0.1;ttl=1"),
                            src) == ("239.0.0.1", 5060)
    # Reliable transports answer on the connection the request came in on.
    assert response_address(Via.parse("SIP/2.0/TCP 10.0.0.5:5062"), src) == src
    assert response_address(Via.parse("SIP/2.0/TLS 10.0.0.5"), src) == src


# --- CSeq ----------------------------------------------------------------------


def test_cseq() -> None:
    assert CSeq.parse("0009 INVITE") == CSeq(9, "INVITE")
    assert CSeq.parse(" 4294967295\tBYE ") == CSeq(4294967295, "BYE")
    assert str(CSeq(1, "ACK")) == "1 ACK"
    for bad in ("", "1", "INVITE", "4294967296 INVITE", "-1 INVITE", "1 INV ITE", "x INVITE",
                "1 <INVITE>", "١ INVITE", "9" * 40 + " INVITE"):
        with pytest.raises(SipParseError):
            CSeq.parse(bad)


# --- round trips ------------------------------------------------------------------

_alnum = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1,
                 max_size=8)
_hosts = st.one_of(
    st.lists(_alnum, min_size=1, max_size=3).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
_any_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1,
                    max_size=12)
_param_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~", min_size=1, max_size=8)
_uri_params = st.dictionaries(_param_names, st.one_of(st.none(), _any_text), max_size=3)
_ports = st.one_of(st.none(), st.integers(1, 65535))

sip_uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.one_of(st.none(), _any_text),
    password=st.none(),
    host=_hosts,
    port=_ports,
    params=_uri_params,
    headers=st.dictionaries(_any_text, st.text(max_size=6), max_size=2),
)
_gen_values = st.one_of(
    st.none(), _alnum,
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc",),
                          exclude_characters='"\\'), max_size=8).map(lambda s: f'"{s}"'),
)
name_addrs = st.builds(
    NameAddr,
    uri=sip_uris,
    display_name=st.one_of(st.none(), st.text(st.characters(codec="utf-8",
                                                            exclude_characters="\r\n"),
                                              max_size=12)),
    params=st.dictionaries(_param_names, _gen_values, max_size=3),
)
vias = st.builds(
    Via,
    transport=st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"]),
    host=_hosts,
    port=_ports,
    params=st.fixed_dictionaries({"branch": _alnum.map(lambda b: "z9hG4bK" + b)},
                                 optional={"rport": st.one_of(st.none(),
                                                              st.integers(1, 65535).map(str)),
                                           "received": st.ip_addresses().map(str),
                                           "ttl": st.integers(0, 255).map(str)}),
)


@settings(max_examples=300, deadline=None)
@given(sip_uris)
def test_sip_uri_round_trip(uri: SipUri) -> None:
    assert SipUri.parse(str(uri)) == uri


@settings(max_examples=300, deadline=None)
@given(name_addrs)
def test_name_addr_round_trip(na: NameAddr) -> None:
    assert NameAddr.parse(str(na)) == na


@settings(max_examples=300, deadline=None)
@given(vias)
def test_via_round_trip(via: Via) -> None:
    assert Via.parse(str(via)) == via


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from(list('sip:tel@<>";,=?&%[]:.-_ \t\\/aZ09\x00é')), max_size=40))
def test_header_parsers_raise_only_sip_parse_error(text: str) -> None:
    for parser in (SipUri.parse, parse_uri, NameAddr.parse, Via.parse, CSeq.parse, parse_params):
        with contextlib.suppress(SipParseError):
            parser(text)
    split_commas(text)
