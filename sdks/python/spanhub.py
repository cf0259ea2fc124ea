"""spanhub's Python SDK: report spans from a script started by ``spanhub run``.

``spanhub run -- python3 job.py`` binds a per-run Unix socket before it starts the
script and names it in ``SPANHUB_RUN_SOCKET``; the run's root span is
``SPANHUB_PARENT_SPAN``. This module writes one JSON line per span event to that
socket. Without ``SPANHUB_RUN_SOCKET`` every call is a cheap no-op, so a script
runs the same outside spanhub. Standard library only; it never raises into the
script because of its own trouble.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import os
import socket
import sys
import threading
import time
import traceback
import types
from typing import Any, Callable, Mapping, Optional, TypeVar

__all__ = ["Failed", "Span", "current_span", "instrument", "span", "traced"]
__version__ = "0.1.0"

SOCKET_ENV = "SPANHUB_RUN_SOCKET"
PARENT_ENV = "SPANHUB_PARENT_SPAN"
TAG_LIMIT_BYTES = 4096
# Logs and tracebacks are not tags but still must not make lines of many megabytes.
TEXT_LIMIT_BYTES = 64 * 1024
# A listener that stops reading must not hang the script forever.
SEND_TIMEOUT_SECONDS = 30.0

F = TypeVar("F", bound=Callable[..., Any])


class Failed(Exception):
    """Raise to end the current span (and those around it) as failed with this reason and no traceback."""


class Span:
    """One span: tag it and log to it while it is open. Made by ``span()`` and the decorators."""

    __slots__ = ("id", "name", "parent_id")

    def __init__(self, span_id: Optional[str], name: str, parent_id: Optional[str]) -> None:
        self.id = span_id
        self.name = name
        self.parent_id = parent_id

    def tag(self, tags: Optional[Mapping[Any, Any]] = None, /, **more_tags: Any) -> None:
        """Merges tags into the span; a mapping takes keys that are not Python names."""
        if _writer is None or self.id is None:
            return
        merged = {**tags, **more_tags} if tags else more_tags
        _writer.emit({"type": "span_tag", "span_id": self.id, "tags": _clean_tags(merged)})

    def log(self, text: Any) -> None:
        """Appends a line of text, with its time, to the span's logs."""
        if _writer is None or self.id is None:
            return
        _writer.emit({"type": "span_log", "span_id": self.id, "ts_ms": _now_ms(), "text": _text(text)})

    def __repr__(self) -> str:
        return f"Span(id={self.id!r}, name={self.name!r}, parent_id={self.parent_id!r})"


def span(name: str, /, *, kind: str = "step", tags: Optional[Mapping[Any, Any]] = None, **more_tags: Any):
    """A context manager (``with`` or ``async with``) around one child span of the current span.

    Tags named ``kind`` or ``tags`` go in the ``tags`` mapping.
    """
    if _writer is None:
        return _NOOP_SCOPE
    merged = {**tags, **more_tags} if tags else more_tags
    return _SpanScope(name, kind, merged, None, None)


def traced(target: Any = None, /, *, name: Optional[str] = None, kind: str = "step") -> Any:
    """Decorator: each call of the function is a span. ``@traced``, ``@traced("name")`` or ``@traced(name=...)``.

    Works on plain and ``async def`` functions; a coroutine's span lasts until it returns.
    """
    if isinstance(target, str):
        name, target = target, None
    if target is None:
        return lambda fn: traced(fn, name=name, kind=kind)
    if _writer is None:
        return target
    return _wrap(target, name or _function_name(target), kind, None, None)


def _function_name(fn: Any) -> str:
    """``Class.method`` or ``function``; a function defined inside another goes by its own name."""
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or _safe_repr(fn)
    return fn.__name__ if "<locals>" in qualname else qualname


def instrument(client: Any) -> Any:
    """A proxy for ``client`` on which each public method call is an ``rpc`` span ``rpc:Class.method``.

    ``_``-prefixed members, attributes that are not methods, and classes pass through untouched.
    """
    if _writer is None:
        return client
    return _Instrumented(client)


def current_span() -> Span:
    """The innermost open span of this thread or task; outside any, the run's root span."""
    if _writer is None:
        return _NOOP_SPAN
    return _current.get() or _ROOT


# --- spans and their scopes ---------------------------------------------------------------------

_current: contextvars.ContextVar[Optional[Span]] = contextvars.ContextVar("spanhub_current_span", default=None)


class _SpanScope:
    __slots__ = ("_name", "_kind", "_tags", "_rpc_service", "_rpc_method", "_parent", "_span", "_token")

    def __init__(
        self,
        name: str,
        kind: str,
        tags: Mapping[Any, Any],
        rpc_service: Optional[str],
        rpc_method: Optional[str],
    ) -> None:
        self._name = name
        self._kind = kind
        self._tags = tags
        self._rpc_service = rpc_service
        self._rpc_method = rpc_method

    def __enter__(self) -> Span:
        self._parent = _current.get() or _ROOT
        opened = Span(os.urandom(8).hex(), self._name, self._parent.id)
        event: dict = {
            "type": "span_start",
            "span_id": opened.id,
            "parent_id": opened.parent_id,
            "name": self._name,
            "kind": self._kind,
            "start_ms": _now_ms(),
        }
        if self._tags:
            event["tags"] = _clean_tags(self._tags)
        if self._rpc_service is not None:
            event["rpc_service"] = self._rpc_service
            event["rpc_method"] = self._rpc_method
        _writer.emit(event)
        self._span = opened
        self._token = _current.set(opened)
        _open_spans.add(opened.id)
        return opened

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        self._end(_outcome(exc))
        self._leave()
        return False

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)

    def _end(self, outcome: dict) -> None:
        """Sends the span's end with ``outcome``: its status and error, as ``_outcome`` makes them."""
        _writer.emit({"type": "span_end", "span_id": self._span.id, "end_ms": _now_ms(), **outcome})
        _open_spans.remove(self._span.id)

    def _resume(self, step: Callable[..., Any], *args: Any) -> Any:
        """Runs one step of a traced generator with its span current."""
        token = _current.set(self._span)
        try:
            return step(*args)
        finally:
            _current.reset(token)

    async def _resume_async(self, step: Callable[..., Any], *args: Any) -> Any:
        token = _current.set(self._span)
        try:
            return await step(*args)
        finally:
            _current.reset(token)

    def _leave(self) -> None:
        """Makes the span's parent current again."""
        try:
            _current.reset(self._token)
        except ValueError:
            # Left in another context than it was entered in (a generator resumed elsewhere).
            _current.set(self._parent)


class _NoopScope:
    """What ``span()`` returns outside spanhub: runs the body, records nothing."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return _NOOP_SPAN

    def __exit__(self, *exc_info: Any) -> bool:
        return False

    async def __aenter__(self) -> Span:
        return _NOOP_SPAN

    async def __aexit__(self, *exc_info: Any) -> bool:
        return False


_NOOP_SPAN = Span(None, "", None)
_NOOP_SCOPE = _NoopScope()


def _wrap(fn: F, name: str, kind: str, rpc_service: Optional[str], rpc_method: Optional[str]) -> F:
    """``fn`` with each call in a span; coroutine functions get a coroutine wrapper so the span lasts."""
    if inspect.isgeneratorfunction(fn):
        return _wrap_generator(fn, lambda: _SpanScope(name, kind, {}, rpc_service, rpc_method))
    if inspect.isasyncgenfunction(fn):
        return _wrap_async_generator(fn, lambda: _SpanScope(name, kind, {}, rpc_service, rpc_method))
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            with _SpanScope(name, kind, {}, rpc_service, rpc_method):
                return await fn(*args, **kwargs)

        return call_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        scope = _SpanScope(name, kind, {}, rpc_service, rpc_method)
        scope.__enter__()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            scope.__exit__(type(error), error, error.__traceback__)
            raise
        scope._leave()
        # A plain function that hands back a coroutine or a future: the span ends when that is done.
        if inspect.iscoroutine(result):
            return _end_when_done(result, scope)
        if callable(getattr(result, "add_done_callback", None)) and callable(getattr(result, "cancelled", None)):
            result.add_done_callback(functools.partial(_end_with_future, scope))
            return result
        scope._end(_OK)
        return result

    return call  # type: ignore[return-value]


def _wrap_generator(fn: F, new_scope: Callable[[], _SpanScope]) -> F:
    """A generator function whose span lasts from the first item to the last, and is current only
    while the generator runs (between items its consumer's span is current)."""

    @functools.wraps(fn)
    def call_generator(*args: Any, **kwargs: Any) -> Any:
        scope = new_scope()
        scope.__enter__()
        scope._leave()
        generator = fn(*args, **kwargs)
        step, value = generator.send, None
        try:
            while True:
                try:
                    item = scope._resume(step, value)
                except StopIteration as stop:
                    scope._end(_OK)
                    return stop.value
                try:
                    step, value = generator.send, (yield item)
                except GeneratorExit:
                    scope._resume(generator.close)
                    raise
                except BaseException as thrown:
                    step, value = generator.throw, thrown
        except BaseException as error:
            scope._end(_outcome(error))
            raise

    return call_generator  # type: ignore[return-value]


def _wrap_async_generator(fn: F, new_scope: Callable[[], _SpanScope]) -> F:
    """``_wrap_generator`` for ``async def`` generators."""

    @functools.wraps(fn)
    async def call_async_generator(*args: Any, **kwargs: Any) -> Any:
        scope = new_scope()
        scope.__enter__()
        scope._leave()
        generator = fn(*args, **kwargs)
        step, value = generator.asend, None
        try:
            while True:
                try:
                    item = await scope._resume_async(step, value)
                except StopAsyncIteration:
                    scope._end(_OK)
                    return
                try:
                    step, value = generator.asend, (yield item)
                except GeneratorExit:
                    await scope._resume_async(generator.aclose)
                    raise
                except BaseException as thrown:
                    step, value = generator.athrow, thrown
        except BaseException as error:
            scope._end(_outcome(error))
            raise

    return call_async_generator  # type: ignore[return-value]


async def _end_when_done(awaitable: Any, scope: _SpanScope) -> Any:
    try:
        result = await awaitable
    except BaseException as error:
        scope._end(_outcome(error))
        raise
    scope._end(_OK)
    return result


def _end_with_future(scope: _SpanScope, future: Any) -> None:
    """A done callback (asyncio or concurrent.futures): the future's outcome is the span's."""
    if future.cancelled():
        scope._end({"status": "cancelled"})
    else:
        scope._end(_outcome(future.exception()))


class _Instrumented:
    """The proxy ``instrument()`` returns."""

    __slots__ = ("_spanhub_target", "_spanhub_service")

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_spanhub_target", target)
        if isinstance(target, (type, types.ModuleType)):
            service = target.__name__
        else:
            service = type(target).__name__
        object.__setattr__(self, "_spanhub_service", service)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._spanhub_target, name)
        if name.startswith("_") or not callable(value) or isinstance(value, type):
            return value
        service = self._spanhub_service
        return _wrap(value, f"rpc:{service}.{name}", "rpc", service, name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, Client) holds, as for the client itself
        return type(self._spanhub_target)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._spanhub_target, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._spanhub_target, name)

    def __dir__(self) -> list:
        return dir(self._spanhub_target)

    def __repr__(self) -> str:
        return f"instrument({self._spanhub_target!r})"

    # A client used as a context manager stays instrumented inside the block.
    def __enter__(self) -> Any:
        entered = self._spanhub_target.__enter__()
        return self if entered is self._spanhub_target else entered

    def __exit__(self, *exc_info: Any) -> Any:
        return self._spanhub_target.__exit__(*exc_info)

    async def __aenter__(self) -> Any:
        entered = await self._spanhub_target.__aenter__()
        return self if entered is self._spanhub_target else entered

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._spanhub_target.__aexit__(*exc_info)


# --- how a span ended ------------------------------------------------------------------------------

_OK = {"status": "ok"}
_CANCELLED = (KeyboardInterrupt, GeneratorExit)


def _outcome(error: Optional[BaseException]) -> dict:
    """The ``status`` and ``error`` fields of a span_end for how its block ended."""
    if error is None or isinstance(error, (StopIteration, StopAsyncIteration)):
        return _OK
    if isinstance(error, Failed):
        return {"status": "failed", "error": {"type": "Failed", "message": _text(error)}}
    if isinstance(error, _CANCELLED) or _is_cancelled_error(error):
        return {"status": "cancelled", "error": {"type": _type_name(error), "message": _text(error)}}
    if isinstance(error, SystemExit):
        if error.code is None or error.code == 0:
            return _OK
        return {"status": "failed", "error": {"type": "SystemExit", "message": f"exit status {error.code}"}}
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {
        "status": "failed",
        "error": {"type": _type_name(error), "message": _text(error), "stack": _cut(stack, TEXT_LIMIT_BYTES)},
    }


def _is_cancelled_error(error: BaseException) -> bool:
    # asyncio is imported only by scripts that use it; its CancelledError is a BaseException since 3.8.
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(error, asyncio.CancelledError)


def _type_name(error: BaseException) -> str:
    error_type = type(error)
    if error_type.__module__ in ("builtins", "__main__"):
        return error_type.__qualname__
    return f"{error_type.__module__}.{error_type.__qualname__}"


# --- values on the wire ------------------------------------------------------------------------------


def _now_ms() -> float:
    """Milliseconds since the epoch with microsecond precision."""
    return time.time_ns() // 1000 / 1000


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _dumps(value: Any) -> str:
    # NaN and Infinity are not JSON: allow_nan=False makes them fail, and the caller falls back to repr.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, default=_safe_repr, separators=(",", ":"))


def _cut(text: str, limit: int) -> str:
    """``text`` when its UTF-8 fits in ``limit`` bytes, else its head with a marker that says how much there was."""
    if len(text) * 4 <= limit:
        return text
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    marker = f"… [cut by spanhub: {len(encoded)} bytes]"
    head = encoded[: limit - len(marker.encode("utf-8"))].decode("utf-8", "ignore")
    return head + marker


def _text(value: Any) -> str:
    """A log line or message as text (what ``print`` would show), at most 64 KiB."""
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception:
            value = _safe_repr(value)
    return _cut(value, TEXT_LIMIT_BYTES)


def _clean_tags(tags: Mapping[Any, Any]) -> dict:
    """Tags ready for JSON: string keys, values JSON can carry (else their repr), each value's JSON at most 4 KiB."""
    cleaned = {}
    for key, value in tags.items():
        key = key if isinstance(key, str) else str(key)
        if isinstance(value, str):
            cleaned[key] = _cut(value, TAG_LIMIT_BYTES)
        elif value is None or isinstance(value, (bool, int)):
            cleaned[key] = value
        else:
            try:
                encoded = _dumps(value)
            except (ValueError, TypeError, RecursionError):
                # NaN, a circular structure, keys JSON cannot have: the value is kept as its repr.
                cleaned[key] = _cut(_safe_repr(value), TAG_LIMIT_BYTES)
                continue
            cut = _cut(encoded, TAG_LIMIT_BYTES)
            cleaned[key] = value if cut is encoded else cut
    return cleaned


# --- the writer ------------------------------------------------------------------------------------


class _Writer:
    """The one connection to the run's socket: connected on the first event, one whole line per write.

    Any failure of the socket (it is gone, the listener closed it, it stalled) makes the writer
    dead: later events are dropped, and one warning goes to stderr.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._sock: Optional[socket.socket] = None
        self._dead = False
        self._lock = threading.RLock()
        self._writing = False
        self._torn = False
        self._warned = False
        self._send_flags = getattr(socket, "MSG_NOSIGNAL", 0)  # EPIPE instead of a SIGPIPE that kills the script

    def emit(self, event: dict) -> None:
        if self._dead:
            return
        try:
            data = self._encode(event)
        except Exception as error:
            self._warn(f"an event could not be encoded and was dropped ({error!r})", fatal=False)
            return
        with self._lock:
            # Reentered by a signal handler that interrupted our own write: a line now would tear it.
            if self._dead or self._writing:
                return
            self._writing = True
            try:
                self._send(data)
            finally:
                self._writing = False

    def _send(self, data: bytes) -> None:
        try:
            if self._sock is None:
                self._sock = self._connect()
            if self._torn:
                data = b"\n" + data
                self._torn = False
            self._sock.sendall(data, self._send_flags)
        except OSError as error:
            self._warn(f"the run socket {self._path} failed ({error}); later spans are dropped", fatal=True)
        except BaseException:
            # Interrupted mid-line (KeyboardInterrupt): start the next line on a fresh one.
            self._torn = True
            raise

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(SEND_TIMEOUT_SECONDS)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _encode(event: dict) -> bytes:
        # "replace" turns lone surrogates (undecodable file names) into "?" instead of failing.
        return (_dumps(event) + "\n").encode("utf-8", "replace")

    def _warn(self, message: str, fatal: bool) -> None:
        if fatal:
            self._dead = True
            if self._sock is not None:
                try:
                    self._sock.close()
                except OSError:
                    pass
                self._sock = None
        if not self._warned:
            self._warned = True
            try:
                sys.stderr.write(f"spanhub: {message}\n")
            except Exception:
                pass

    def after_fork_in_child(self) -> None:
        self._lock = threading.RLock()
        self._writing = False


class _OpenSpans:
    """Keeps ``SPANHUB_PARENT_SPAN`` on the newest open span, so a subprocess started in a step links to it.

    The variable is process-wide: with spans open in several threads it names the newest of them,
    and it never names a span that has ended. When none is open it is back to the run's root.
    """

    def __init__(self, root_id: Optional[str]) -> None:
        self._root_id = root_id
        self._open: dict = {}
        self._lock = threading.RLock()

    def after_fork_in_child(self) -> None:
        self._lock = threading.RLock()

    def add(self, span_id: str) -> None:
        with self._lock:
            self._open[span_id] = None
            os.environ[PARENT_ENV] = span_id

    def remove(self, span_id: str) -> None:
        with self._lock:
            self._open.pop(span_id, None)
            newest = next(reversed(self._open), self._root_id)
            if newest is not None:
                os.environ[PARENT_ENV] = newest
            else:
                os.environ.pop(PARENT_ENV, None)


_ROOT = Span(os.environ.get(PARENT_ENV) or None, "root", None)
_open_spans = _OpenSpans(_ROOT.id)
_writer: Optional[_Writer] = _Writer(os.environ[SOCKET_ENV]) if os.environ.get(SOCKET_ENV) else None


def _after_fork_in_child() -> None:
    # A forked child keeps the connection; its locks may have been held by threads the child does not have.
    _writer.after_fork_in_child()
    _open_spans.after_fork_in_child()


if _writer is not None and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
