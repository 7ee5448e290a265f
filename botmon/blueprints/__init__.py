"""One blueprint per surface: the JSON API, the WebSocket stream, the page."""
