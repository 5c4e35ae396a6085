"""Record and refuse every attempt to resolve a non-local host name during a test.

Offline mode must mean no network call at all, not a call that fails and is retried (the first
symptom is a load that takes 25 s of retries and then succeeds from the cache anyway).
"""

from __future__ import annotations

import socket

LOCAL = {"localhost", "127.0.0.1", "::1", "0.0.0.0", None}


def block_network(monkeypatch) -> list[str]:
    """Returns the list that collects refused host names; a test asserts it stays empty.

    huggingface_hub (2.x) fetches an "agent harnesses" registry once per process to build its
    User-Agent header, even for cache-only loads; that probe is best-effort, not a model download,
    and fails silently offline. It is answered here the way the library answers it after a failed
    fetch, so what remains counted are real requests for model files.
    """
    attempts: list[str] = []
    try:
        from huggingface_hub.utils import _detect_agent

        monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)
    except (ImportError, AttributeError):  # other huggingface_hub versions: no such probe
        pass
    real_getaddrinfo = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOCAL and not str(name).startswith("127."):
            attempts.append(str(name))
            raise socket.gaierror(socket.EAI_NONAME, f"network blocked in this test: {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    return attempts
