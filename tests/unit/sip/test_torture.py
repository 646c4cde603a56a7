"""RFC 4475 "SIP Torture Test Messages": all 49, each handled as the RFC says.

The messages are byte-exact files under tests/sip/torture/ (CRLF line ends,
the RFC's <hex> and <allOneLine> notations expanded; every Content-Length
frames the body the RFC describes, which is how the transcription was
checked). `valid/` holds section 3.1.1; `invalid/` holds 3.1.2 and the
transaction (3.2), application (3.3) and RFC 2543 (3.4) messages, several of
which an element must accept.

A message goes through what the UDP transport does with it: `parse`, then
`validate_request` / `validate_response`. The EXPECT table says, per
message, what RFC 4475 requires and why; where the RFC allows either
outcome the table records the choice made here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.sip.errors import SipParseError
from ivr.sip.headers import NameAddr, Via
from ivr.sip.message import SipRequest, SipResponse, parse
from ivr.sip.stream import StreamParser
from ivr.sip.uri import GenericUri, SipUri
from ivr.sip.validate import validate_request, validate_response

TORTURE = Path(__file__).resolve().parents[2] / "sip" / "torture"

ACCEPT = "accept"

# name -> (expected outcome, why). An outcome is ACCEPT or the status the
# element answers with (for responses: the message is dropped).
EXPECT: dict[str, tuple[str | int, str]] = {
    # 3.1.1 Valid messages: a parser must accept all of them.
    "wsinv": (ACCEPT, "3.1.1.1 folding, LWS, escapes in quotes, empty Subject"),
    "intmeth": (ACCEPT, "3.1.1.2 every token/word character, NUL in a quoted-pair"),
    "esc01": (ACCEPT, "3.1.1.3 valid %-escapes in URIs"),
    "escnull": (ACCEPT, "3.1.1.4 escaped NULs in URIs"),
    "esc02": (ACCEPT, "3.1.1.5 % where it is not an escape"),
    "lwsdisp": (ACCEPT, "3.1.1.6 no LWS between display name and <"),
    "longreq": (ACCEPT, "3.1.1.7 long values, 34 Vias in mixed forms"),
    "dblreq": (ACCEPT, "3.1.1.8 octets after the body in a datagram are ignored"),
    "semiuri": (ACCEPT, "3.1.1.9 ';' inside the user part"),
    "transports": (ACCEPT, "3.1.1.10 unknown Via transport"),
    "mpart01": (ACCEPT, "3.1.1.11 binary multipart body with NULs"),
    "unreason": (ACCEPT, "3.1.1.12 UTF-8 reason phrase"),
    "noreason": (ACCEPT, "3.1.1.13 empty reason phrase"),
    # 3.1.2 Invalid messages.
    "badinv01": (400, "3.1.2.1 empty parameters and list elements in Via/Contact"),
    "clerr": (400, "3.1.2.2 Content-Length past the end of a UDP request"),
    "ncl": (400, "3.1.2.3 negative Content-Length"),
    "scalar02": (400, "3.1.2.4 CSeq over 2**32-1 (the RFC names the CSeq as the reason)"),
    "scalarlg": (400, "3.1.2.5 response with CSeq over 2**32-1: dropped"),
    "quotbal": (400, "3.1.2.6 unterminated quoted display name"),
    "ltgtruri": (400, "3.1.2.7 Request-URI in <>: 'reasonable always to reject'"),
    "lwsruri": (400, "3.1.2.8 LWS inside the Request-URI"),
    "lwsstart": (400, "3.1.2.9 several SPs in the Request-Line: rejecting is acceptable"),
    "trws": (400, "3.1.2.10 SPs after SIP-Version: rejecting is acceptable"),
    "escruri": (400, "3.1.2.11 headers in the Request-URI: rejecting is acceptable"),
    "baddate": (ACCEPT, "3.1.2.12 non-GMT Date: the RFC says not to reject unless the "
                        "Date matters to the element; the IVR never reads Date"),
    "regbadct": (400, "3.1.2.13 Contact URI with ?headers outside <>"),
    "badaspec": (400, "3.1.2.14 spaces inside <addr-spec>: reasonable to reject"),
    "baddn": (400, "3.1.2.15 unquoted display name with non-token characters"),
    "badvers": (505, "3.1.2.16 SIP/7.0: 505 Version Not Supported"),
    "mismatch01": (400, "3.1.2.17 CSeq method differs from the Request-Line's"),
    "mismatch02": (400, "3.1.2.18 unknown method, mismatched CSeq: 400 is acceptable"),
    "bigcode": (400, "3.1.2.19 response code over 699: dropped"),
    # 3.2 Transaction layer.
    "badbranch": (ACCEPT, "3.2.1 branch is the bare magic cookie: the RFC allows a 400 or "
                          "falling back to RFC 2543 matching; Via.is_rfc3261_branch is "
                          "False so the transaction layer falls back"),
    # 3.3 Application layer: well-formed messages the application answers.
    "insuf": (400, "3.3.1 missing To, From, Call-ID"),
    "unkscm": (ACCEPT, "3.3.2 unknown Request-URI scheme: parses, application answers 416"),
    "novelsc": (ACCEPT, "3.3.3 novel scheme: parses, application answers 416"),
    "unksm2": (ACCEPT, "3.3.4 unknown schemes in To/From/Contact: parses (416 at a registrar)"),
    "bext01": (ACCEPT, "3.3.5 unknown Require/Proxy-Require: parses, application answers 420"),
    "invut": (ACCEPT, "3.3.6 unknown Content-Type: parses, application answers 415"),
    "regaut01": (ACCEPT, "3.3.7 unknown authorization scheme: parses"),
    "multi01": (400, "3.3.8 several values in single-valued headers"),
    "mcl01": (400, "3.3.9 two different Content-Lengths"),
    "bcast": (ACCEPT, "3.3.10 well-formed response whose 2nd Via is a broadcast address"),
    "zeromf": (ACCEPT, "3.3.11 Max-Forwards 0: a UAS processes it normally"),
    "cparam01": (ACCEPT, "3.3.12 bare Contact URI: ;unknownparam is a header parameter"),
    "cparam02": (ACCEPT, "3.3.13 bracketed Contact URI: ;unknownparam is a URI parameter"),
    "regescrt": (ACCEPT, "3.3.14 escaped Route header inside a bracketed Contact URI"),
    "sdp01": (ACCEPT, "3.3.15 Accept lists only an unknown type: application answers 406"),
    # 3.4 Backward compatibility.
    "inv2543": (ACCEPT, "3.4.1 RFC 2543 INVITE: no branch, tag, Max-Forwards, Content-Length"),
}


def _path(name: str) -> Path:
    for kind in ("valid", "invalid"):
        p = TORTURE / kind / f"{name}.dat"
        if p.exists():
            return p
    raise FileNotFoundError(name)


def load(name: str) -> bytes:
    return _path(name).read_bytes()


def check(data: bytes) -> SipRequest | SipResponse:
    """What the UDP transport does: parse, then validate."""
    msg = parse(data)
    if isinstance(msg, SipRequest):
        validate_request(msg)
    else:
        validate_response(msg)
    return msg


def outcome(name: str) -> str | int:
    try:
        check(load(name))
    except SipParseError as exc:
        return exc.status
    return ACCEPT


def test_corpus_is_the_49_messages() -> None:
    files = {p.stem for p in TORTURE.glob("*/*.dat")}
    assert files == set(EXPECT)
    assert len(files) == 49
    assert {p.stem for p in (TORTURE / "valid").glob("*.dat")} == {
        "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
        "semiuri", "transports", "mpart01", "unreason", "noreason",
    }
    for p in TORTURE.glob("*/*.dat"):
        head = p.read_bytes().partition(b"\r\n\r\n")[0]  # bodies may hold binary
        assert b"\r\n" in head and b"\n" not in head.replace(b"\r\n", b""), p.name


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_handled_as_rfc4475_says(name: str) -> None:
    expected, why = EXPECT[name]
    assert outcome(name) == expected, why


def test_tally_all_49_handled() -> None:
    handled = sum(outcome(name) == expected for name, (expected, _) in EXPECT.items())
    assert handled == 49


@pytest.mark.parametrize("name", sorted(n for n, (e, _) in EXPECT.items() if e == ACCEPT))
def test_accepted_messages_round_trip(name: str) -> None:
    msg = check(load(name))
    again = parse(msg.serialize())
    assert again == msg
    assert again.serialize() == msg.serialize()


@pytest.mark.parametrize("name", sorted(n for n, (e, _) in EXPECT.items() if e == ACCEPT))
def test_stream_framing_matches_datagram(name: str) -> None:
    msg = check(load(name))
    if not msg.has("Content-Length"):
        pytest.skip("no Content-Length: only a datagram can frame it (inv2543)")
    parser = StreamParser()
    wire = msg.serialize() * 2
    for i in range(0, len(wire), 7):
        parser.feed(wire[i : i + 7])
    assert list(parser) == [msg, msg]


def test_wsinv_fields() -> None:
    msg = check(load("wsinv"))
    assert isinstance(msg, SipRequest) and msg.method == "INVITE"
    assert msg.parsed_uri == SipUri(user="vivekg", host="chair-dnrc.example.com",
                                    params={"unknownparam": None})
    assert msg.to_addr == NameAddr(SipUri(user="vivekg", host="chair-dnrc.example.com"),
                                   None, {"tag": "1918181833n"})
    from_ = msg.from_addr
    assert from_.display_name == 'J Rosenberg \\"'
    assert from_.uri == SipUri(user="jdrosen", host="example.com")
    assert from_.tag == "98asjd8"
    assert msg.get("Max-Forwards") == "0068"
    assert msg.cseq.number == 9 and msg.cseq.method == "INVITE"
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.get("Subject") == "" and msg.has("s")
    assert msg.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.get_all("UnknownHeaderWithUnusualValue") == [";;,,;;,;"]
    contact = NameAddr.parse(msg.get("Contact") or "")
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    route = NameAddr.parse(msg.get("Route") or "")
    assert isinstance(route.uri, SipUri)
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert len(msg.body) == 150


def test_intmeth_fields() -> None:
    msg = check(load("intmeth"))
    assert isinstance(msg, SipRequest)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    ruri = msg.parsed_uri
    assert isinstance(ruri, SipUri)
    assert ruri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert ruri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    from_ = msg.from_addr
    assert from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert from_.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_escape_fields() -> None:
    esc01 = check(load("esc01"))
    assert isinstance(esc01, SipRequest)
    ruri = esc01.parsed_uri
    assert isinstance(ruri, SipUri) and ruri.user == "sips:user@example.com"
    assert esc01.to_addr.uri == SipUri(user="user", host="example.com")
    assert esc01.from_addr.uri == SipUri(user="I have spaces", host="example.net")
    contact = NameAddr.parse(esc01.get("m") or "")
    assert contact.uri == SipUri(user="caller", host="host5.example.net",
                                 params={"lr": None, "name": "value%41"})  # not "valueA"

    escnull = check(load("escnull"))
    assert escnull.to_addr.uri == SipUri(user="null-\x00-null", host="example.com")
    users = [NameAddr.parse(c).uri.user for c in escnull.get_all("Contact")]  # type: ignore[union-attr]
    assert users == ["\x00", "\x00\x00"]

    esc02 = check(load("esc02"))
    assert isinstance(esc02, SipRequest) and esc02.method == "RE%47IST%45R"
    assert esc02.to_addr.display_name == "%Z%45"
    assert esc02.get_all("Contact") == ["<sip:alias1@host1.example.com>",
                                        "<sip:alias3@host3.example.com>"]
    assert esc02.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert esc02.top_via.branch == "z9hG4bK209%fzsnel234"


def test_longreq_fields() -> None:
    msg = check(load("longreq"))
    vias = msg.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{i}.example.com" for i in range(33, 0, -1)]
    assert vias[33].received == "192.0.2.5" and vias[33].branch.endswith("branchvalue")  # type: ignore[union-attr]
    to = msg.to_addr
    assert to.display_name.startswith("I have a user name of extremeextreme")  # type: ignore[union-attr]
    assert isinstance(to.uri, SipUri) and to.uri.port == 6000 and len(to.uri.params) == 3
    assert msg.from_addr.tag == "1" + "298" * 50 + "2424"
    name = "Unknown-" + "Long" * 20 + "-Name"
    assert msg.get(name.upper()) == (
        "unknown-" + "long" * 20 + "-value; unknown-" + "long" * 20
        + "-parameter-name = unknown-" + "long" * 20 + "-parameter-value")


def test_other_valid_fields() -> None:
    dblreq = check(load("dblreq"))
    assert isinstance(dblreq, SipRequest) and dblreq.method == "REGISTER" and dblreq.body == b""
    semiuri = check(load("semiuri"))
    assert semiuri.parsed_uri.user == "user;par=u@example.net"  # type: ignore[union-attr]
    assert len(semiuri.get_all("Accept")) == 6
    transports = check(load("transports"))
    assert [v.transport for v in transports.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    mpart = check(load("mpart01"))
    assert len(mpart.body) == 553 and b"\x00" in mpart.body
    assert mpart.body.endswith(b"\r\n--7a9cbec02ceef655--\r\n")
    assert mpart.top_via.has_rport and mpart.top_via.rport is None
    unreason = check(load("unreason"))
    assert isinstance(unreason, SipResponse) and unreason.status == 200
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = check(load("noreason"))
    assert isinstance(noreason, SipResponse) and (noreason.status, noreason.reason) == (100, "")


def test_accepted_semantics_fields() -> None:
    cparam01 = check(load("cparam01"))
    c1 = NameAddr.parse(cparam01.get("Contact") or "")
    assert c1.params == {"unknownparam": None} and c1.uri.params == {}  # type: ignore[union-attr]
    cparam02 = check(load("cparam02"))
    c2 = NameAddr.parse(cparam02.get("Contact") or "")
    assert c2.params == {} and c2.uri.params == {"unknownparam": None}  # type: ignore[union-attr]
    regescrt = check(load("regescrt"))
    c3 = NameAddr.parse(regescrt.get("Contact") or "")
    assert c3.uri.headers == {"Route": "<sip:sip.example.com>"}  # type: ignore[union-attr]
    assert isinstance(check(load("unkscm")).parsed_uri, GenericUri)  # type: ignore[union-attr]
    novelsc = check(load("novelsc"))
    assert novelsc.parsed_uri == GenericUri("soap.beep", "//192.0.2.103:3002")  # type: ignore[union-attr]
    unksm2 = check(load("unksm2"))
    assert unksm2.to_addr.uri == GenericUri("isbn", "2983792873")
    assert unksm2.from_addr.uri == GenericUri("http", "//www.example.com")
    badbranch = check(load("badbranch"))
    assert badbranch.top_via.branch == "z9hG4bK" and not badbranch.top_via.is_rfc3261_branch
    inv2543 = check(load("inv2543"))
    assert inv2543.top_via.branch is None and inv2543.from_addr.tag is None
    assert inv2543.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")  # no Content-Length: the rest
    bcast = check(load("bcast"))
    assert Via.parse(bcast.get_all("Via")[1]).host == "255.255.255.255"


@pytest.mark.parametrize(("name", "reason"), [
    ("insuf", "Missing To, From, Call-ID"),
    ("mismatch01", "CSeq method mismatch"),
    ("multi01", "Multiple To"),
    ("mcl01", "Multiple Content-Length"),
    ("badvers", "Version Not Supported"),
    ("escruri", "Headers in Request-URI"),
    ("scalar02", "Bad CSeq number"),
])
def test_rejection_reasons(name: str, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        check(load(name))
    assert info.value.reason == reason


def test_rejected_requests_can_still_be_answered() -> None:
    # The 400 for clerr needs the request's Via, From, To, Call-ID and CSeq.
    from ivr.sip.message import make_response

    for name in ("clerr", "mismatch01", "quotbal", "badinv01"):
        with pytest.raises(SipParseError) as info:
            check(load(name))
        request = info.value.message
        assert isinstance(request, SipRequest), name
        response = make_response(request, info.value.status, to_tag="x1")
        assert response.status == 400
        assert response.get("Call-ID") == request.get("Call-ID")
        assert parse(response.serialize()) == response
