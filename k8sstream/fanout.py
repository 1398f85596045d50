"""Run one command in many pods at once: ``run_many(["uptime"], selector="app=web")``.

Pods run concurrently in a bounded pool of threads (``max_workers``); each result is handed
out as soon as that pod finishes, and one failing pod (a non-zero exit, a refused exec, a lost
connection, a timeout) is a result like the others, never an exception that hides them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from .errors import ConfigError, TimeoutExpired
from .process import PIPE, RemoteProcess
from .targets import list_pods

__all__ = ["FanOut", "PodResult", "Summary", "run_many"]

logger = logging.getLogger("k8sstream.fanout")

DEFAULT_MAX_WORKERS = 10
_COMPLETED_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodResult:
    """What one pod did.

    Attributes:
        pod, namespace, container: where it ran (``container`` is ``None`` when the exec
            never started).
        returncode: the remote exit code, or ``None`` when ``error`` is set.
        stdout, stderr: the captured output (bytes, or str with ``text=True``).
        error: why there is no exit code (``ApiError``, ``PodStateError``,
            ``RemoteCommandError``, ``StreamClosedError``, ``TimeoutExpired``, ``ConnectError``
            ...), else ``None``.
        duration: seconds from the start of this pod's exec to its end.
    """

    pod: str
    namespace: str
    returncode: Optional[int] = None
    stdout: Any = None
    stderr: Any = None
    error: Optional[BaseException] = field(default=None, compare=False)
    container: Optional[str] = None
    duration: float = 0.0

    @property
    def output(self) -> Any:
        """Alias for ``stdout``, as on :class:`subprocess.CalledProcessError`."""
        return self.stdout

    @property
    def ok(self) -> bool:
        """The command ran and exited with status 0."""
        return self.error is None and self.returncode == 0


@dataclass(frozen=True)
class Summary:
    """The outcome over all pods.

    Attributes:
        total: pods the command was started for.
        succeeded: pods whose command exited with 0.
        failed: pods whose command exited non-zero, ``{pod: returncode}``.
        errors: pods where it could not run or finish, ``{pod: "ExceptionType: message"}``.
        skipped: matching pods left out because they have completed (Succeeded/Failed).
        cancelled: pods never started because the run was closed early.
        duration: seconds for the whole run.
    """

    total: int
    succeeded: int
    failed: Dict[str, int]
    errors: Dict[str, str]
    skipped: Tuple[str, ...] = ()
    cancelled: Tuple[str, ...] = ()
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """Every pod ran the command and it exited with 0 (and there was at least one pod)."""
        return self.total > 0 and self.succeeded == self.total

    def __str__(self) -> str:
        parts = [f"{self.total} pods: {self.succeeded} succeeded"]
        if self.failed:
            parts.append(
                f"{len(self.failed)} failed ("
                + ", ".join(f"{p}: exit {c}" for p, c in sorted(self.failed.items()))
                + ")"
            )
        if self.errors:
            parts.append(
                f"{len(self.errors)} errors ("
                + ", ".join(f"{p}: {e}" for p, e in sorted(self.errors.items()))
                + ")"
            )
        if self.skipped:
            parts.append(f"{len(self.skipped)} completed pods skipped")
        if self.cancelled:
            parts.append(f"{len(self.cancelled)} cancelled")
        return ", ".join(parts) + f" in {self.duration:.1f} s"


class FanOut:
    """A running :func:`run_many`: iterate it for :class:`PodResult` values in the order the
    pods finish; :attr:`summary` is set once every pod has finished.

    Iterating blocks until the next pod finishes. Closing it (or leaving its ``with`` block)
    before the end cancels the pods not yet started, ends the sessions still running (their
    results carry the error) and waits for the worker threads; it never leaves a thread behind.
    """

    def __init__(
        self,
        args: Sequence[str],
        pods: Sequence[str],
        namespace: str,
        *,
        client: Any,
        container: Optional[str],
        input: Any,
        timeout: Optional[float],
        max_workers: int,
        text: bool,
        skipped: Sequence[str] = (),
    ) -> None:
        self.args = list(args)
        self.pods = list(pods)
        self.namespace = namespace
        self.results: List[PodResult] = []
        self.summary: Optional[Summary] = None
        self._client = client
        self._container = container
        self._input = input
        self._timeout = timeout
        self._text = text
        self._skipped = tuple(skipped)
        self._lock = threading.Lock()
        self._running: Set[RemoteProcess] = set()
        self._closed = False
        self._started = time.monotonic()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, min(max_workers, len(self.pods) or 1)),
            thread_name_prefix="k8sstream-fanout",
        )
        self._futures: Dict[concurrent.futures.Future, str] = {
            self._executor.submit(self._run_one, pod): pod for pod in self.pods
        }
        self._pending = set(self._futures)

    def _run_one(self, pod: str) -> PodResult:
        start = time.monotonic()
        container: Optional[str] = None
        try:
            with self._lock:
                if self._closed:
                    raise _Cancelled()
            proc = RemoteProcess(
                self.args,
                pod=pod,
                namespace=self.namespace,
                container=self._container,
                client=self._client,
                stdin=PIPE if self._input is not None else None,
                stdout=PIPE,
                stderr=PIPE,
                text=self._text,
            )
            container = proc.container
            with self._lock:
                closed = self._closed
                self._running.add(proc)
            try:
                if closed:
                    proc.kill()
                with proc:
                    try:
                        stdout, stderr = proc.communicate(self._input, timeout=self._timeout)
                    except TimeoutExpired as exc:
                        proc.kill()
                        proc.wait()
                        return PodResult(
                            pod,
                            self.namespace,
                            None,
                            exc.stdout,
                            exc.stderr,
                            exc,
                            container,
                            time.monotonic() - start,
                        )
                    except BaseException:
                        proc.kill()
                        raise
                    code = proc.wait()
            finally:
                with self._lock:
                    self._running.discard(proc)
            return PodResult(
                pod, self.namespace, code, stdout, stderr, None, container, time.monotonic() - start
            )
        except _Cancelled:
            raise
        except Exception as exc:  # one pod's failure is its result, not everybody's
            logger.debug("[%s/%s] %s: %s", self.namespace, pod, type(exc).__name__, exc)
            return PodResult(
                pod, self.namespace, None, None, None, exc, container, time.monotonic() - start
            )

    def __iter__(self) -> Iterator[PodResult]:
        try:
            while self._pending:
                done, _ = concurrent.futures.wait(
                    self._pending, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in sorted(done, key=lambda f: self._futures[f]):
                    self._pending.discard(future)
                    if future.cancelled():
                        continue
                    try:
                        result = future.result()
                    except _Cancelled:
                        continue
                    self.results.append(result)
                    yield result
        finally:
            self.close()

    def wait(self) -> Summary:
        """Run to the end, discarding the results not yet seen; returns the summary."""
        for _ in self:
            pass
        assert self.summary is not None
        return self.summary

    def close(self) -> None:
        """Cancel what has not started, end what is running, and wait for the threads."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for future in self._pending:
            future.cancel()
        for proc in running:
            proc.kill()
        self._executor.shutdown(wait=True)
        # Sessions that were ending when close() came in: collect what they returned.
        for future in list(self._pending):
            self._pending.discard(future)
            if future.cancelled():
                continue
            try:
                self.results.append(future.result())
            except _Cancelled:
                pass
        if self.summary is None:
            self.summary = self._summarize()

    def _summarize(self) -> Summary:
        seen = {r.pod for r in self.results}
        return Summary(
            total=len(self.results),
            succeeded=sum(1 for r in self.results if r.ok),
            failed={
                r.pod: r.returncode
                for r in self.results
                if r.error is None and r.returncode not in (None, 0)
            },
            errors={
                r.pod: f"{type(r.error).__name__}: {r.error}"
                for r in self.results
                if r.error is not None
            },
            skipped=self._skipped,
            cancelled=tuple(p for p in self.pods if p not in seen),
            duration=time.monotonic() - self._started,
        )

    def __enter__(self) -> FanOut:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"FanOut(args={self.args!r}, namespace={self.namespace!r}, pods={len(self.pods)}, "
            f"finished={len(self.results)})"
        )


class _Cancelled(Exception):
    """A queued pod found the run closed before it started."""


def run_many(
    args: Sequence[str],
    *,
    selector: Optional[str] = None,
    pods: Optional[Sequence[str]] = None,
    namespace: Optional[str] = None,
    container: Optional[str] = None,
    input: Any = None,
    timeout: Optional[float] = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
    text: bool = False,
    client: Any = None,
) -> FanOut:
    """Run one command in every pod matching ``selector`` (or in the named ``pods``).

    Args:
        args: the command as an argv list.
        selector: a label selector (``"app=web,tier!=db"``); ``""`` means every pod in the
            namespace. Pods that have completed (Succeeded/Failed) are skipped.
        pods: pod names instead of a selector.
        namespace: default the client's.
        container: default as kubectl chooses, per pod.
        input: bytes (str with ``text``) sent to every pod's stdin, followed by end of file.
        timeout: seconds per pod; a pod that takes longer is ended and its result carries
            :class:`~k8sstream.TimeoutExpired` with the output so far.
        max_workers: how many pods run at once.
        text: decode output as text.
        client: the :class:`~k8sstream.Client`; default from ``KUBECONFIG``.

    Returns:
        A :class:`FanOut`: iterate it for the results as pods finish, then read ``summary``::

            with k8sstream.run_many(["uptime"], selector="app=web") as run:
                for result in run:
                    print(result.pod, result.returncode, result.stdout)
            print(run.summary)

    Blocks only to list the pods (one REST request); the commands start in the background.

    Raises:
        ConfigError: neither or both of ``selector`` and ``pods``, or ``max_workers`` < 1.
        ApiError: listing the pods was refused.
    """
    from .client import default_client

    if (selector is None) == (pods is None):
        raise ConfigError("run_many needs exactly one of selector= and pods=")
    if max_workers < 1:
        raise ConfigError("max_workers must be at least 1")
    if isinstance(args, (str, bytes)):
        raise ConfigError("run_many takes the command as an argv list, not a string")
    client = client or default_client()
    ns = namespace or client.namespace
    skipped: List[str] = []
    if selector is not None:
        names = []
        for pod in list_pods(selector, ns, client=client):
            name = str((pod.get("metadata") or {}).get("name"))
            if (pod.get("status") or {}).get("phase") in _COMPLETED_PHASES:
                skipped.append(name)
            else:
                names.append(name)
    else:
        names = list(dict.fromkeys(pods or ()))
    return FanOut(
        args,
        names,
        ns,
        client=client,
        container=container,
        input=input,
        timeout=timeout,
        max_workers=max_workers,
        text=text,
        skipped=skipped,
    )
