"""The testers' harness (`ivr test`): calls a SIP IVR like a person and checks what happens."""
