"""Small helpers shared by test modules (import them; fixtures live in conftest.py)."""

from ocs.embedded_redis import free_tcp_port


def get_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (another process may still take it)."""
    return free_tcp_port(host)
