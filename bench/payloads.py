"""Metrics bodies in the wire format, numbered so each message can be matched.

The sequence number rides in `resumen.eventos_procesados_hoy`, which both
servers send back as the first object of every message, so a listener finds it
in the first few hundred characters without parsing the whole text.
"""

import json
import re

API_KEY = "bench-key-0123456789abcdef"

SEQ_FIELD = '"eventos_procesados_hoy":'
_SEQ_PATTERN = re.compile(SEQ_FIELD + r"\s*(\d+)")
# resumen comes first in both servers' messages; this bounds the search.
_SEQ_SEARCH_CHARS = 1000


class Payload:
    """A metrics body with `servers` guild rows, cheap to renumber per POST."""

    def __init__(self, servers: int):
        document = {
            "resumen": {
                "servidores_conectados": servers,
                "eventos_procesados_hoy": 0,
                "uptime_porcentaje": 99.8,
                "ultima_sincronizacion": "2025-11-13T18:00:00.831984Z",
            },
            "estado": {
                "status": "online",
                "uptime_dias": 15,
                "latencia_ms": 45.5,
                "ultima_conexion": "2025-11-13T17:58:00.831984Z",
            },
            "servers": [_server(index) for index in range(servers)],
        }
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        before, after = text.split(SEQ_FIELD + "0", 1)
        self._prefix = (before + SEQ_FIELD).encode()
        self._suffix = after.encode()
        self.servers = servers

    def body(self, seq: int) -> bytes:
        return self._prefix + str(seq).encode() + self._suffix

    @property
    def size(self) -> int:
        return len(self._prefix) + len(self._suffix) + 1


def _server(index: int) -> dict:
    return {
        "server_id": 100_000_000_000_000_000 + index,
        "server_name": f"Servidor de pruebas número {index}",
        "miembros": 10 + index % 5000,
        "canales": 1 + index % 60,
        "status": "conectado" if index % 7 else "desconectado",
    }


def seq_of(text: str) -> int | None:
    """The sequence number a message carries, or None if it carries none."""
    match = _SEQ_PATTERN.search(text, 0, _SEQ_SEARCH_CHARS)
    return int(match.group(1)) if match else None
