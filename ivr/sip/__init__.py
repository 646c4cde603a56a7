"""The SIP and RTP edge: messages, transactions, dialogs, SDP, RTP, and SipCall."""
