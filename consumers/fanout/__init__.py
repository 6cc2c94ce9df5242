"""The live service: the dashboard pages, the WebSocket feed and live progress."""
