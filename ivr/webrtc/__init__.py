"""Browser callers over WebRTC: signalling on `ivr serve`'s HTTP server, media with aiortc.

Modules, each holding one thing:

- protocol: the signalling messages (JSON over the WebSocket), parsed and checked;
- access: the Origin check and the optional token;
- ice: host addresses offered, STUN/TURN servers, trickled remote candidates;
- track: the outgoing audio track, ticked by the process's media clock;
- inbound: the caller's audio as 20 ms PCM16 8 kHz frames, and in-band DTMF;
- call: WebRtcCall, the engine's Call protocol for one browser caller;
- session: one socket's call from offer to the end;
- server: the `/softphone/ws` handler, its limits and the registry of live calls.

The softphone page (softphone.html) is served at `/softphone`. Nothing here is
imported until `ivr serve` starts its HTTP server, so the other commands never
load aiortc.
"""
