"""The open TENS Serial Protocol (TSP): framing, codec and host driver. See docs/protocol.md."""
