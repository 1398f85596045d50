"""Build the URLs of the streaming subresources. Pure functions."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

Query = List[Tuple[str, str]]


def pod_path(namespace: str, pod: str, subresource: str = "") -> str:
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}"
    return f"{path}/{subresource}" if subresource else path


def remote_command_query(
    command: Optional[Sequence[str]],
    container: Optional[str],
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Query:
    """The query string of exec (with ``command``) or attach (``command=None``).

    Like kubectl: one ``command`` per argv element in order, false flags omitted, and every
    requested stream sent explicitly as ``true`` (the server applies no defaults).
    """
    query: Query = [("command", arg) for arg in command or ()]
    if container:
        query.append(("container", container))
    for name, wanted in (("stderr", stderr), ("stdin", stdin), ("stdout", stdout), ("tty", tty)):
        if wanted:
            query.append((name, "true"))
    return query


def join_url(
    server: str, path: str, query: Sequence[Tuple[str, str]] = (), *, websocket: bool = False
) -> str:
    """Append an API path to the server URL, keeping any path prefix the server URL has."""
    parts = urlsplit(server)
    scheme = parts.scheme
    if websocket:
        scheme = {"https": "wss", "http": "ws"}.get(scheme, scheme)
    full_path = parts.path.rstrip("/") + path
    return urlunsplit((scheme, parts.netloc, full_path, urlencode(list(query)), ""))
