"""Music on hold heard on real calls: the music never restarts, and a stream is one stream.

A caller (the test's own SIP client) records every RTP packet it receives and
lays the mu-law payloads out on a timeline by RTP timestamp. The source track
(media/moh/default/acme-theme.wav, a 24 s loop) goes through the same G.711
path; each stretch of music in the recording is located in the track by
normalised cross-correlation (1 s windows, then frame by frame at the found
alignment to get its edges), which gives, for every stretch, where in the
track it started and stopped.

- resume (flows/moh.yaml): hold, an announcement, hold, a key to a menu, a key
  back to another hold node of the class. Every stretch must start within
  100 ms of where the previous one stopped in the track, never at its start.
- stream (flows/moh_stream.yaml): two callers 3 s apart, each interrupted by an
  announcement. Mapping each stretch to the wall clock (by packet arrival
  times), every stretch of both callers must put the track's start at the same
  wall time, within 100 ms: they hear the same moment of the track at once.

The track repeats itself closely (windows a second long match other places of
it at up to 0.987), but the line is bit-exact here, so the true place scores
1.0 and only scores of 0.999 and above count.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivr.audio import g711

from .audio_match import find, pcm_array, through_ulaw
from .conftest import HERE, ROOT, need
from .sipclient import Call, Peer, Rtp, parse_rtp

TRACK = ROOT / "media" / "moh" / "default" / "acme-theme.wav"
RATE = 8000
FRAME = 160
WINDOW = RATE  # 1 s windows to locate stretches of music in the track
HOP = RATE // 5
EXACT = 0.999  # a window (or frame) of music scores ~1.0 at its true place; elsewhere below 0.99
TOLERANCE = 0.100  # seconds


@dataclass
class Stretch:
    """One stretch of music in a recording, located in the track."""

    first: int  # timeline sample where it starts
    end: int  # timeline sample just after it
    delay: int  # timeline sample minus track sample, over the stretch
    length: int  # the track's length in samples

    @property
    def start_s(self) -> float:
        """Where in the track the stretch starts, in seconds."""
        return ((self.first - self.delay) % self.length) / RATE

    @property
    def stop_s(self) -> float:
        """Where in the track it stopped (the end of its last frame), in seconds."""
        return ((self.end - self.delay) % self.length) / RATE

    @property
    def seconds(self) -> float:
        return (self.end - self.first) / RATE


class Recorder:
    """Keeps every RTP packet a call receives, with its arrival time, in a thread of its own
    (the test's main thread sends keys meanwhile)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.packets: list[tuple[float, int, int, int, bytes]] = []  # arrival, pt, seq, ts, payload
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            pt, seq, ts, _ = parse_rtp(data)
            self.packets.append((now, pt, seq, ts, data[12:]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def timeline(self) -> tuple[np.ndarray, float]:
        """The mu-law audio decoded onto one timeline by RTP timestamp, and the wall time
        (monotonic) of its sample 0 as seen by the least delayed packet."""
        audio = [p for p in self.packets if p[1] == 0]
        assert audio, "no audio received"
        base = audio[0][3]
        rel = [((p[3] - base) & 0xFFFFFFFF, p) for p in audio]
        rel = [(r if r < 1 << 31 else r - (1 << 32), p) for r, p in rel]  # a packet reordered before the first
        lo = min(r for r, _ in rel)
        size = max(r for r, _ in rel) - lo + FRAME
        pcm = np.zeros(size)
        for r, p in rel:
            pcm[r - lo:r - lo + len(p[4])] = pcm_array(g711.ulaw_decode(p[4]))
        wall0 = min(p[0] - (r - lo) / RATE for r, p in rel)
        return pcm, wall0


def track() -> np.ndarray:
    """The source track as it arrives over a PCMU line."""
    with wave.open(str(TRACK)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        return pcm_array(through_ulaw(w.readframes(w.getnframes())))


def _frame_matches(rec: np.ndarray, ref: np.ndarray, at: int, delay: int) -> bool:
    """Whether the 20 ms frame at timeline sample `at` is the track's, at this alignment."""
    if at < 0 or at + FRAME > rec.size:
        return False
    x = rec[at:at + FRAME]
    idx = (np.arange(at, at + FRAME) - delay) % ref.size
    y = ref[idx]
    nx, ny = float(np.dot(x, x)), float(np.dot(y, y))
    if nx == 0.0 or ny == 0.0:
        return nx == ny
    return float(np.dot(x, y)) / np.sqrt(nx * ny) >= EXACT


def stretches(rec: np.ndarray, ref: np.ndarray) -> list[Stretch]:
    """The stretches of the track in a recording, in order."""
    # A window may run over the loop's end either way. Only places wholly inside count: `find`
    # also scores partial overlaps with silence beyond the ends, where silence before the music
    # in the recording would line up with nothing.
    looped = np.concatenate([ref[-WINDOW:], ref, ref[:WINDOW]])
    found: list[tuple[int, int]] = []  # (window start, delay)
    for s in range(0, rec.size - WINDOW + 1, HOP):
        chunk = rec[s:s + WINDOW]
        if not chunk.any():
            continue
        m = find(looped, chunk)
        at = int(round(m.offset * RATE))
        if m.score >= EXACT and 0 <= at <= looped.size - WINDOW:
            found.append((s, (s - (at - WINDOW)) % ref.size))
    groups: list[list[tuple[int, int]]] = []
    for s, d in found:
        if groups and groups[-1][-1][1] == d and s - groups[-1][-1][0] <= WINDOW:
            groups[-1].append((s, d))
        else:
            groups.append([(s, d)])
    out = []
    for g in groups:
        d = g[0][1]
        # Edges frame by frame on the timeline's frame grid (packets are whole frames): a
        # window scores 0.999 even with a nearly silent frame or two of something else at
        # an edge, so first move in to a frame of the track, then out while frames match.
        first = g[0][0] // FRAME * FRAME
        while not _frame_matches(rec, ref, first, d):
            first += FRAME
        while _frame_matches(rec, ref, first - FRAME, d):
            first -= FRAME
        end = (g[-1][0] + WINDOW) // FRAME * FRAME
        while not _frame_matches(rec, ref, end - FRAME, d):
            end -= FRAME
        while _frame_matches(rec, ref, end, d):
            end += FRAME
        out.append(Stretch(first, end, d, ref.size))
    return out


def _circular(a: float, length: float) -> float:
    """`a` wrapped into [-length/2, length/2)."""
    return (a + length / 2) % length - length / 2


def _server_with_media(serve, tmp_path: Path, flow: str):
    """`ivr serve` on a copy of tests/interop/flows/<flow> with the repository's media/ beside it."""
    need("espeak-ng")  # the announcements are spoken
    work = tmp_path / "flow"
    work.mkdir()
    shutil.copy(HERE / "flows" / flow, work / flow)
    (work / "media").symlink_to(ROOT / "media", target_is_directory=True)
    return serve(work / flow)


def _press(call: Call, rtp: Rtp, digit: str) -> None:
    call.send_rtp(rtp.dtmf(digit), gap=0.02)


def _wait_bye(call: Call, timeout: float = 30.0) -> None:
    bye = call.peer.recv(lambda m: m.method == "BYE" and call.call_id in (m.get("Call-ID") or ""), timeout)
    call.answer_request(bye)


def test_resume_music_continues_where_it_stopped(serve, tmp_path):
    server = _server_with_media(serve, tmp_path, "moh.yaml")
    ref = track()
    peer = Peer(server.sip_port)
    call = Call(peer)
    rec = Recorder(call.rtp)
    try:
        call.start()
        t0 = time.monotonic()
        rec.start()
        rtp = Rtp()
        call.send_rtp(rtp.audio(3))  # latch the server's RTP to us
        # 0-3 s music, then the announcement (about 1.6 s), music again; 5 leaves for the menu,
        # whose prompt lasts about 1.7 s. The track is used up to about 10.5 s of its 24: no wrap.
        time.sleep(max(0.0, t0 + 8.0 - time.monotonic()))
        _press(call, rtp, "5")
        time.sleep(max(0.0, t0 + 12.0 - time.monotonic()))
        _press(call, rtp, "1")  # back to a hold node of the same class, for 4 s
        _wait_bye(call)
        rec.stop()
    finally:
        rec.stop()
        call.close()
        peer.close()
    (journey,) = server.wait_journeys(1)
    assert journey["path"] == ["queue", "choices", "queue_again", "goodbye"], journey["path"]

    pcm, _ = rec.timeline()
    found = stretches(pcm, ref)
    length = ref.size / RATE
    summary = [f"{s.start_s:.3f}-{s.stop_s:.3f} s of the track ({s.seconds:.2f} s heard)" for s in found]
    print("resume stretches:", "; ".join(summary))
    assert len(found) == 3, summary
    assert all(s.seconds >= 1.2 for s in found), summary
    assert found[0].start_s < TOLERANCE, summary  # a new caller starts at the top
    gaps = []
    for before, after in zip(found, found[1:], strict=False):
        assert after.first > before.end  # something else played in between
        gap = _circular(after.start_s - before.stop_s, length)
        gaps.append(gap)
        assert abs(gap) <= TOLERANCE, (gap, summary)
        assert after.start_s >= 1.0, summary  # never from the start
    print("resume gaps (s):", [round(g, 3) for g in gaps])


def test_stream_callers_hear_the_same_moment(serve, tmp_path):
    server = _server_with_media(serve, tmp_path, "moh_stream.yaml")
    ref = track()
    peers = [Peer(server.sip_port), Peer(server.sip_port)]
    calls = [Call(p) for p in peers]
    recs = [Recorder(c.rtp) for c in calls]
    try:
        for i, (call, rec) in enumerate(zip(calls, recs, strict=True)):
            if i:
                time.sleep(3.0)  # the second caller joins a stream that has run for a while
            call.start()
            rec.start()
            call.send_rtp(Rtp().audio(3))
        for call in calls:
            _wait_bye(call)
    finally:
        for call, rec, peer in zip(calls, recs, peers, strict=True):
            rec.stop()
            call.close()
            peer.close()
    journeys = server.wait_journeys(2)
    assert all(j["path"] == ["queue", "goodbye"] for j in journeys)

    length = ref.size / RATE
    zeros = []  # per stretch: the wall time at which the stream is at the track's start
    for who, rec in zip("AB", recs, strict=True):
        pcm, wall0 = rec.timeline()
        found = stretches(pcm, ref)
        print(f"stream {who}:", "; ".join(f"{s.start_s:.3f}-{s.stop_s:.3f} s ({s.seconds:.2f} s heard)"
                                          for s in found))
        assert len(found) == 2, found  # the announcement splits the music in two
        assert all(s.seconds >= 1.2 for s in found), found
        zeros += [(who, wall0 + s.delay / RATE) for s in found]
    first = zeros[0][1]
    offsets = [(who, _circular(z - first, length)) for who, z in zeros]
    print("stream: track start vs caller A's first stretch (s):", [(w, round(o, 4)) for w, o in offsets])
    assert all(abs(o) <= TOLERANCE for _, o in offsets), offsets


def test_a_hold_announcement_says_the_place_the_router_reports(serve, tmp_path):
    """The HTTP router is asked where the caller stands, just before the announcement."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from .conftest import HERE, with_media
    from .test_sipp import _errors, run_sipp

    asked: list[str] = []

    class Router(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            asked.append(self.path)
            body = json.dumps({"position": 2, "expected_wait_s": 185}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Router)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{http.server_address[1]}"
    try:
        server = serve(with_media(tmp_path, HERE / "flows" / "queue_status.yaml"), "--router", "http",
                       "--router-url", f"{base}/handoff",
                       "--router-status-url", base + "/queues/{queue}?call_id={call_id}")
        proc = run_sipp(tmp_path, "uac_audio_until_bye.xml", server.sip_port, calls=1, timeout=40,
                        bye_ms="20000")
        assert proc.returncode == 0, _errors(tmp_path)
        [journey] = server.wait_journeys(1)
    finally:
        http.shutdown()
        http.server_close()
    assert asked == [f"/queues/billing?call_id={journey['call_id']}"]
    assert [p["text"] for p in journey["prompts"]][0] == \
        "You are number 2 in the queue. Your wait is about 3 minutes."
    assert [(n["position"], n["wait"]) for n in journey["notes"] if n["what"] == "queue-status"] == \
        [(2, "3 minutes")]
