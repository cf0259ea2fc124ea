"""The SDK end to end: a real child ``python3`` writes to a real Unix socket that the test listens on,
the way ``spanhub run`` does (bound before the child starts, read to EOF)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import unittest
from pathlib import Path
from typing import Dict, List, Optional, Tuple

SDK_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = SDK_DIR.parent.parent
ROOT_SPAN = "00000000000000aa"
RUN_ID = "run-python-sdk-test"
CHILD_TIMEOUT_SECONDS = 120


class RunSocket:
    """A per-run listener like spanhub run's: a 0700 directory, a 0600 socket, one connection read to EOF."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="spanhub-py-")
        os.chmod(self.dir, 0o700)
        self.path = os.path.join(self.dir, "run.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self.listener.listen(1)
        self.received = bytearray()
        self.connections = 0

    def env(self) -> Dict[str, str]:
        return child_env(SPANHUB_RUN_SOCKET=self.path, SPANHUB_RUN_ID=RUN_ID, SPANHUB_PARENT_SPAN=ROOT_SPAN)

    def accept(self, child: subprocess.Popen) -> Optional[socket.socket]:
        """The child's connection, or None once the child has exited without connecting."""
        self.listener.settimeout(0.05)
        while True:
            try:
                connection, _ = self.listener.accept()
                break
            except socket.timeout:
                if child.poll() is None:
                    continue
            # The child has exited: a connection it made may still wait in the backlog.
            self.listener.setblocking(False)
            try:
                connection, _ = self.listener.accept()
                break
            except BlockingIOError:
                return None
        self.connections += 1
        connection.setblocking(True)
        return connection

    def read_to_eof(self, connection: socket.socket) -> None:
        with connection:
            while True:
                chunk = connection.recv(1 << 16)
                if not chunk:
                    return
                self.received += chunk

    def events(self) -> List[dict]:
        """Every line the child wrote; each must be a whole JSON object."""
        text = self.received.decode("utf-8")
        if not text:
            return []
        assert text.endswith("\n"), f"the last line is unfinished: {text[-80:]!r}"
        return [json.loads(line) for line in text[:-1].split("\n")]

    def close(self) -> None:
        self.listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def child_env(**variables: str) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPANHUB_")}
    env["PYTHONPATH"] = str(SDK_DIR)
    env.update(variables)
    return env


class Child:
    """What a child script did: its events, output and exit status."""

    def __init__(self, events: List[dict], stdout: str, stderr: str, returncode: int) -> None:
        self.events = events
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode

    def output(self) -> dict:
        """The JSON object the script printed last."""
        return json.loads(self.stdout.strip().splitlines()[-1])

    def starts(self) -> Dict[str, dict]:
        """span_start events by span name (names are unique in the scripts that use this)."""
        return {event["name"]: event for event in self.events if event["type"] == "span_start"}

    def ends(self) -> Dict[str, dict]:
        return {event["span_id"]: event for event in self.events if event["type"] == "span_end"}

    def of_type(self, event_type: str) -> List[dict]:
        return [event for event in self.events if event["type"] == event_type]


def run_child(source: str, env: Optional[Dict[str, str]] = None, run_socket: Optional[RunSocket] = None) -> Child:
    """Runs ``source`` as a script in a child python3 with the run's variables (or ``env``) and collects."""
    own_socket = run_socket is None and env is None
    if own_socket:
        run_socket = RunSocket()
    work_dir = tempfile.mkdtemp(prefix="spanhub-py-job-")
    try:
        script = os.path.join(work_dir, "job.py")
        Path(script).write_text(textwrap.dedent(source), "utf-8")
        child = subprocess.Popen(
            [sys.executable, script],
            env=env if env is not None else run_socket.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        reader = None
        if run_socket is not None:

            def read() -> None:
                connection = run_socket.accept(child)
                if connection is not None:
                    run_socket.read_to_eof(connection)

            reader = threading.Thread(target=read)
            reader.start()
        stdout, stderr = communicate(child)
        if reader is not None:
            reader.join(CHILD_TIMEOUT_SECONDS)
        events = run_socket.events() if run_socket is not None else []
        return Child(events, stdout, stderr, child.returncode)
    finally:
        shutil.rmtree(work_dir)
        if own_socket:
            run_socket.close()


def communicate(child: subprocess.Popen, stdin: Optional[str] = None) -> Tuple[str, str]:
    """The child's output once it has exited; a child that hangs is killed and fails the test."""
    try:
        return child.communicate(stdin, timeout=CHILD_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise


class SpanTreeTest(unittest.TestCase):
    def test_nested_steps_carry_tags_logs_and_parent_links(self) -> None:
        child = run_child(
            """
            import json
            from spanhub import span, current_span
            with span("load", source="s3") as load:
                load.tag(rows=10)
                load.log("fetched page 1")
                with span("parse", tags={"kind": "csv"}, kind="other") as parse:
                    inner = current_span().id
            print(json.dumps({"load": load.id, "parse": parse.id, "inner": inner, "outside": current_span().id}))
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        out = child.output()
        starts = child.starts()
        self.assertEqual(starts["load"]["span_id"], out["load"])
        self.assertEqual(starts["load"]["parent_id"], ROOT_SPAN)
        self.assertEqual(starts["load"]["kind"], "step")
        self.assertEqual(starts["load"]["tags"], {"source": "s3"})
        self.assertEqual(starts["parse"]["parent_id"], out["load"])
        self.assertEqual(starts["parse"]["kind"], "other")
        self.assertEqual(starts["parse"]["tags"], {"kind": "csv"})
        self.assertEqual(out["inner"], out["parse"])
        self.assertEqual(out["outside"], ROOT_SPAN)
        [tag] = child.of_type("span_tag")
        self.assertEqual(tag, {"type": "span_tag", "span_id": out["load"], "tags": {"rows": 10}})
        [log] = child.of_type("span_log")
        self.assertEqual((log["span_id"], log["text"]), (out["load"], "fetched page 1"))
        ends = child.ends()
        self.assertEqual({ends[out["load"]]["status"], ends[out["parse"]]["status"]}, {"ok"})
        self.assertLessEqual(starts["load"]["start_ms"], log["ts_ms"])
        self.assertLessEqual(log["ts_ms"], ends[out["load"]]["end_ms"])
        # Inner spans end before outer ones, and no event names the run: the socket is the run's own.
        self.assertEqual([e["span_id"] for e in child.of_type("span_end")], [out["parse"], out["load"]])
        self.assertTrue(all("run_id" not in event for event in child.events))
        self.assertEqual(len(child.events), 6)

    def test_traced_sync_and_async_functions(self) -> None:
        child = run_child(
            """
            import asyncio, json
            from spanhub import span, traced, current_span

            @traced
            def transform(rows):
                return [row * 2 for row in rows], current_span().id

            @traced("fetch page")
            async def fetch(page):
                await asyncio.sleep(0)
                with span("decode") as decode:
                    await asyncio.sleep(0)
                return page, current_span().id, decode.parent_id

            class Loader:
                @traced(name="loader")
                def load(self):
                    return current_span().name

            rows, transform_id = transform([1, 2])
            page, fetch_id, decode_parent = asyncio.run(fetch(3))
            print(json.dumps({
                "rows": rows, "transform": transform_id, "page": page, "fetch": fetch_id,
                "decode_parent": decode_parent, "method": Loader().load(),
                "names": [transform.__name__, fetch.__name__], "is_coroutine": asyncio.iscoroutinefunction(fetch),
            }))
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        out = child.output()
        self.assertEqual((out["rows"], out["page"], out["method"]), ([2, 4], 3, "loader"))
        self.assertEqual(out["names"], ["transform", "fetch"])
        self.assertTrue(out["is_coroutine"])
        starts = child.starts()
        self.assertEqual(starts["transform"]["span_id"], out["transform"])
        self.assertEqual(starts["fetch page"]["span_id"], out["fetch"])
        self.assertEqual(starts["decode"]["parent_id"], out["fetch"])
        self.assertEqual(out["decode_parent"], out["fetch"])
        self.assertEqual({starts[name]["parent_id"] for name in ("transform", "fetch page", "loader")}, {ROOT_SPAN})
        # The coroutine's span ends after the span opened inside it: it lasted until the coroutine returned.
        ends = [event["span_id"] for event in child.of_type("span_end")]
        self.assertLess(ends.index(starts["decode"]["span_id"]), ends.index(out["fetch"]))

    def test_traced_generators_span_their_iteration(self) -> None:
        child = run_child(
            """
            import asyncio, json
            from spanhub import span, traced, current_span

            @traced
            def rows(n):
                for i in range(n):
                    with span(f"read {i}"):
                        pass
                    received = yield i
                    if received == "stop":
                        raise ValueError("told to stop")
                return "all read"

            def delegate():
                return (yield from rows(2))

            @traced("stream")
            async def stream():
                for i in range(2):
                    await asyncio.sleep(0)
                    yield current_span().name

            seen = {}
            with span("consumer") as consumer:
                items = []
                for item in rows(2):
                    items.append((item, current_span().name))
                    with span(f"use {item}"):
                        pass
                seen["items"] = items
                gen = delegate()
                seen["delegated"] = [next(gen), next(gen)]
                try:
                    next(gen)
                except StopIteration as stop:
                    seen["returned"] = stop.value
                early = rows(5)
                next(early)
                early.close()
                failing = rows(5)
                next(failing)
                try:
                    failing.send("stop")
                except ValueError as error:
                    seen["error"] = str(error)

            async def consume():
                return [(item, current_span().name) async for item in stream()]

            seen["async"] = asyncio.run(consume())
            print(json.dumps({"consumer": consumer.id, **seen}))
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        out = child.output()
        # Between items the consumer's span is current, inside the generator the generator's.
        self.assertEqual(out["items"], [[0, "consumer"], [1, "consumer"]])
        self.assertEqual(out["async"], [["stream", "root"], ["stream", "root"]])
        self.assertEqual((out["delegated"], out["returned"], out["error"]), ([0, 1], "all read", "told to stop"))
        starts = [event for event in child.events if event["type"] == "span_start"]
        generator_spans = [start for start in starts if start["name"] == "rows"]
        self.assertEqual(len(generator_spans), 4)
        self.assertEqual({start["parent_id"] for start in generator_spans}, {out["consumer"]})
        first = generator_spans[0]["span_id"]
        self.assertEqual([s["parent_id"] for s in starts if s["name"] in ("read 0", "read 1")][:2], [first, first])
        self.assertEqual({s["parent_id"] for s in starts if s["name"].startswith("use ")}, {out["consumer"]})
        ends = child.ends()
        statuses = [ends[start["span_id"]]["status"] for start in generator_spans]
        self.assertEqual(statuses, ["ok", "ok", "cancelled", "failed"])
        self.assertEqual(ends[generator_spans[3]["span_id"]]["error"]["message"], "told to stop")
        [stream] = [start for start in starts if start["name"] == "stream"]
        self.assertEqual((stream["parent_id"], ends[stream["span_id"]]["status"]), (ROOT_SPAN, "ok"))
        # The generator's span ends after the last item was read, not when the generator was made.
        end_order = [event["span_id"] for event in child.events if event["type"] == "span_end"]
        last_read = next(s for s in starts if s["name"] == "read 1")["span_id"]
        self.assertLess(end_order.index(last_read), end_order.index(first))

    def test_instrument_makes_rpc_spans_and_passes_private_members_through(self) -> None:
        child = run_child(
            """
            import asyncio, concurrent.futures, json
            from spanhub import span, instrument, current_span
            pool = concurrent.futures.ThreadPoolExecutor(1)

            class Billing:
                Error = KeyError
                region = "eu"
                def charge(self, amount):
                    return amount * 2
                async def refund(self, amount):
                    await asyncio.sleep(0)
                    with span("ledger") as ledger:
                        pass
                    return amount, ledger.parent_id, current_span().id
                def _secret(self):
                    return current_span().id
                def broken(self):
                    raise self.Error("no such invoice")
                def submit(self, amount):
                    return pool.submit(lambda: amount + 1)
                def sleep(self, value):
                    return asyncio.sleep(0, result=value)
                def __enter__(self):
                    return self
                def __exit__(self, *exc_info):
                    return None

            api = instrument(Billing())
            with api as entered:
                charged = entered.charge(21)
            refunded, ledger_parent, inside = asyncio.run(api.refund(5))
            try:
                api.broken()
            except KeyError as error:
                caught = str(error)
            future = api.submit(1)
            submitted = future.result()
            pool.shutdown(wait=True)  # the span ends in the future's done callback, on the pool's thread
            slept = asyncio.run(api.sleep(8))
            print(json.dumps({
                "charged": charged, "refunded": refunded, "ledger_parent": ledger_parent, "inside": inside,
                "secret": api._secret(), "region": api.region, "error_class": api.Error is KeyError, "caught": caught,
                "isinstance": isinstance(api, Billing), "entered_is_proxy": entered is api,
                "future_kept": isinstance(future, concurrent.futures.Future), "submitted": submitted, "slept": slept,
            }))
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        out = child.output()
        self.assertEqual((out["charged"], out["refunded"], out["region"]), (42, 5, "eu"))
        self.assertTrue(out["error_class"])
        self.assertTrue(out["isinstance"])
        self.assertTrue(out["entered_is_proxy"])
        self.assertEqual(out["secret"], ROOT_SPAN)
        starts = child.starts()
        self.assertEqual(
            set(starts),
            {"rpc:Billing.charge", "rpc:Billing.refund", "ledger", "rpc:Billing.broken", "rpc:Billing.submit", "rpc:Billing.sleep"},
        )
        self.assertEqual((out["future_kept"], out["submitted"], out["slept"]), (True, 2, 8))
        charge = starts["rpc:Billing.charge"]
        self.assertEqual(
            (charge["kind"], charge["rpc_service"], charge["rpc_method"], charge["parent_id"]),
            ("rpc", "Billing", "charge", ROOT_SPAN),
        )
        refund = starts["rpc:Billing.refund"]
        self.assertEqual(refund["rpc_method"], "refund")
        self.assertEqual(out["ledger_parent"], refund["span_id"])
        self.assertEqual(out["inside"], refund["span_id"])
        ends = child.ends()
        self.assertEqual(ends[refund["span_id"]]["status"], "ok")
        broken = ends[starts["rpc:Billing.broken"]["span_id"]]
        self.assertEqual((broken["status"], broken["error"]["type"]), ("failed", "KeyError"))
        self.assertEqual(out["caught"], "'no such invoice'")
        self.assertEqual(len(ends), len(starts))
        self.assertTrue(all(ends[starts[name]["span_id"]]["status"] == "ok" for name in ("rpc:Billing.submit", "rpc:Billing.sleep")))


class ContextTest(unittest.TestCase):
    def test_asyncio_tasks_inherit_the_span_of_their_creator(self) -> None:
        child = run_child(
            """
            import asyncio, json
            from spanhub import span, current_span

            async def work(i):
                await asyncio.sleep(0)
                with span(f"child{i}") as child:
                    await asyncio.sleep(0)
                return child.parent_id

            async def main():
                outside = await asyncio.create_task(work("-outside"))
                with span("parent") as parent:
                    parents = await asyncio.gather(*(asyncio.create_task(work(i)) for i in range(3)))
                return {"parent": parent.id, "parents": parents, "outside": outside}

            print(json.dumps(asyncio.run(main())))
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        out = child.output()
        self.assertEqual(out["parents"], [out["parent"]] * 3)
        self.assertEqual(out["outside"], ROOT_SPAN)
        starts = child.starts()
        self.assertEqual({starts[f"child{i}"]["parent_id"] for i in range(3)}, {out["parent"]})

    def test_each_new_thread_starts_from_the_run_root(self) -> None:
        child = run_child(
            """
            import json, threading
            from spanhub import span, current_span
            seen = {}

            def in_thread():
                seen["current"] = current_span().id
                with span("in-thread") as s:
                    with span("in-thread-child") as c:
                        seen["child_parent"] = c.parent_id
                seen["thread_span"] = s.id

            with span("main-step") as main:
                thread = threading.Thread(target=in_thread)
                thread.start()
                thread.join()
            print(json.dumps({"main": main.id, **seen}))
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        out = child.output()
        self.assertEqual(out["current"], ROOT_SPAN)
        starts = child.starts()
        self.assertEqual(starts["in-thread"]["parent_id"], ROOT_SPAN)
        self.assertEqual(out["child_parent"], out["thread_span"])
        self.assertEqual(starts["main-step"]["parent_id"], ROOT_SPAN)

    def test_a_forked_child_reports_on_the_same_connection(self) -> None:
        child = run_child(
            """
            import json, os
            from spanhub import span
            with span("parent") as parent:
                pid = os.fork()
                if pid == 0:
                    with span("in fork") as forked:
                        forked.tag(pid=os.getpid())
                    os._exit(0)
                os.waitpid(pid, 0)
            print(json.dumps({"parent": parent.id}))
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        starts = child.starts()
        self.assertEqual(starts["in fork"]["parent_id"], child.output()["parent"])
        self.assertEqual(child.ends()[starts["in fork"]["span_id"]]["status"], "ok")
        self.assertEqual(len(child.of_type("span_tag")), 1)

    def test_parent_span_variable_follows_the_current_span(self) -> None:
        child = run_child(
            """
            import json, os, subprocess, sys
            from spanhub import span
            seen = {"before": os.environ["SPANHUB_PARENT_SPAN"]}
            with span("outer") as outer:
                seen["in_outer"] = os.environ["SPANHUB_PARENT_SPAN"]
                with span("inner") as inner:
                    seen["in_inner"] = os.environ["SPANHUB_PARENT_SPAN"]
                    seen["subprocess"] = subprocess.run(
                        [sys.executable, "-c", "import os; print(os.environ['SPANHUB_PARENT_SPAN'])"],
                        capture_output=True, text=True, check=True,
                    ).stdout.strip()
                seen["after_inner"] = os.environ["SPANHUB_PARENT_SPAN"]
                try:
                    with span("failing"):
                        raise RuntimeError("restored anyway")
                except RuntimeError:
                    seen["after_failure"] = os.environ["SPANHUB_PARENT_SPAN"]
            seen["after"] = os.environ["SPANHUB_PARENT_SPAN"]
            print(json.dumps({"outer": outer.id, "inner": inner.id, **seen}))
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        out = child.output()
        self.assertEqual((out["before"], out["after"]), (ROOT_SPAN, ROOT_SPAN))
        self.assertEqual(out["in_outer"], out["outer"])
        self.assertEqual((out["in_inner"], out["subprocess"]), (out["inner"], out["inner"]))
        self.assertEqual((out["after_inner"], out["after_failure"]), (out["outer"], out["outer"]))


class OutcomeTest(unittest.TestCase):
    def test_an_exception_is_recorded_with_its_traceback_and_propagates(self) -> None:
        child = run_child(
            """
            import json
            from spanhub import span, traced
            original = ValueError("bad value")
            try:
                with span("boom"):
                    raise original
            except ValueError as error:
                caught_same = error is original

            class Unprintable(Exception):
                def __str__(self):
                    raise RuntimeError("no text")

            try:
                with span("unprintable"):
                    raise Unprintable()
            except Unprintable:
                pass

            class LedgerError(Exception):
                pass

            @traced
            def main():
                print(json.dumps({"caught_same": caught_same}), flush=True)
                raise LedgerError("ledger closed")

            main()
            """
        )
        self.assertEqual(child.returncode, 1)
        self.assertTrue(child.output()["caught_same"])
        self.assertIn("LedgerError: ledger closed", child.stderr)
        starts, ends = child.starts(), child.ends()
        boom = ends[starts["boom"]["span_id"]]
        self.assertEqual(boom["status"], "failed")
        self.assertEqual((boom["error"]["type"], boom["error"]["message"]), ("ValueError", "bad value"))
        self.assertIn("Traceback (most recent call last)", boom["error"]["stack"])
        self.assertIn("raise original", boom["error"]["stack"])
        self.assertTrue(boom["error"]["stack"].rstrip().endswith("ValueError: bad value"))
        unprintable = ends[starts["unprintable"]["span_id"]]
        self.assertEqual((unprintable["status"], unprintable["error"]["type"]), ("failed", "Unprintable"))
        self.assertEqual(unprintable["error"]["message"], "Unprintable()")
        main = ends[starts["main"]["span_id"]]
        self.assertEqual((main["status"], main["error"]["type"]), ("failed", "LedgerError"))

    def test_failed_gives_the_reason_and_no_traceback(self) -> None:
        child = run_child(
            """
            from spanhub import span, Failed
            try:
                with span("outer"):
                    with span("check"):
                        raise Failed("no rows")
            except Failed as failure:
                print(failure)
            """
        )
        self.assertEqual((child.returncode, child.stdout.strip()), (0, "no rows"))
        for end in child.of_type("span_end"):
            self.assertEqual(end["status"], "failed")
            self.assertEqual(end["error"], {"type": "Failed", "message": "no rows"})
        self.assertEqual(len(child.of_type("span_end")), 2)

    def test_interrupts_and_task_cancellation_end_spans_cancelled(self) -> None:
        child = run_child(
            """
            import asyncio
            from spanhub import span
            try:
                with span("interrupted"):
                    raise KeyboardInterrupt
            except KeyboardInterrupt:
                pass

            async def slow():
                with span("cancelled task"):
                    await asyncio.sleep(3600)

            async def main():
                task = asyncio.create_task(slow())
                await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

            asyncio.run(main())
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        starts, ends = child.starts(), child.ends()
        interrupted = ends[starts["interrupted"]["span_id"]]
        self.assertEqual((interrupted["status"], interrupted["error"]["type"]), ("cancelled", "KeyboardInterrupt"))
        cancelled = ends[starts["cancelled task"]["span_id"]]
        self.assertEqual((cancelled["status"], cancelled["error"]["type"]), ("cancelled", "asyncio.exceptions.CancelledError"))
        self.assertNotIn("stack", cancelled["error"])


class WriterTest(unittest.TestCase):
    def test_ten_thousand_spans_arrive_intact(self) -> None:
        child = run_child(
            """
            from spanhub import span
            for i in range(10_000):
                with span(f"step {i}", i=i) as s:
                    s.log(f"line {i}")
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        starts = child.of_type("span_start")
        self.assertEqual(len(starts), 10_000)
        self.assertEqual([start["tags"]["i"] for start in starts], list(range(10_000)))
        self.assertTrue(all(start["name"] == f"step {start['tags']['i']}" for start in starts))
        self.assertEqual(len({start["span_id"] for start in starts}), 10_000)
        self.assertTrue(all(len(start["span_id"]) == 16 for start in starts))
        logs = {log["span_id"]: log["text"] for log in child.of_type("span_log")}
        self.assertTrue(all(logs[start["span_id"]] == f"line {start['tags']['i']}" for start in starts))
        ends = child.ends()
        self.assertEqual(len(ends), 10_000)
        self.assertTrue(all(ends[start["span_id"]]["status"] == "ok" for start in starts))

    def test_concurrent_threads_never_interleave_lines(self) -> None:
        child = run_child(
            """
            import threading
            from spanhub import span

            def work(letter):
                for i in range(300):
                    with span(f"{letter}{i}", payload=letter * 3000) as s:
                        s.log(letter * 2000)
                        s.tag(i=i)

            threads = [threading.Thread(target=work, args=(letter,)) for letter in "abcdefgh"]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        # Every line parsed (events() fails otherwise); now every payload is whole and in its span.
        starts = child.of_type("span_start")
        self.assertEqual(len(starts), 8 * 300)
        self.assertTrue(all(start["tags"]["payload"] == start["name"][0] * 3000 for start in starts))
        names = {start["span_id"]: start["name"] for start in starts}
        logs = child.of_type("span_log")
        self.assertEqual(len(logs), 8 * 300)
        self.assertTrue(all(log["text"] == names[log["span_id"]][0] * 2000 for log in logs))
        self.assertEqual(len(child.ends()), 8 * 300)

    def test_without_the_socket_variable_nothing_is_sent_and_code_still_runs(self) -> None:
        run_socket = RunSocket()
        try:
            child = run_child(
                """
                import asyncio, json, os, socket
                connected = []
                class RecordingSocket(socket.socket):
                    def connect(self, address):
                        connected.append(address)
                        super().connect(address)
                socket.socket = RecordingSocket

                from spanhub import span, traced, instrument, current_span, Failed
                env_seen = []

                @traced
                def double(x):
                    return x * 2

                @traced("named")
                async def triple(x):
                    return x * 3

                class Client:
                    def get(self):
                        return "got"

                client = Client()
                with span("load", source="s3") as s:
                    s.tag(rows=10)
                    s.log("fetched")
                    current_span().tag(a=1)
                    env_seen.append(os.environ.get("SPANHUB_PARENT_SPAN"))
                try:
                    with span("check"):
                        raise Failed("no rows")
                except Failed as failure:
                    reason = str(failure)
                print(json.dumps({
                    "double": double(2), "triple": asyncio.run(triple(2)), "get": instrument(client).get(),
                    "same_client": instrument(client) is client, "same_function": traced(len) is len,
                    "reason": reason, "env": env_seen, "connects": len(connected), "current": current_span().id,
                }))
                """,
                env=child_env(SPANHUB_PARENT_SPAN=ROOT_SPAN),
                run_socket=run_socket,
            )
        finally:
            run_socket.close()
        self.assertEqual(child.returncode, 0, child.stderr)
        self.assertEqual(child.stderr, "")
        self.assertEqual(
            child.output(),
            {
                "double": 4, "triple": 6, "get": "got", "same_client": True, "same_function": True,
                "reason": "no rows", "env": [ROOT_SPAN], "connects": 0, "current": None,
            },
        )  # fmt: skip
        self.assertEqual(run_socket.connections, 0)

    def test_the_script_keeps_running_after_the_listener_closes(self) -> None:
        run_socket = RunSocket()
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(
                    """
                    import sys
                    from spanhub import span, traced
                    for i in range(10):
                        with span(f"before {i}"):
                            pass
                    print("half", flush=True)
                    sys.stdin.readline()

                    @traced
                    def after(i):
                        with span(f"after {i}", i=i) as s:
                            s.log("still here")
                        return i

                    total = sum(after(i) for i in range(1000))
                    print("done", total, flush=True)
                    """
                )],
                env=run_socket.env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            self.assertEqual(child.stdout.readline().strip(), "half")
            connection = run_socket.accept(child)
            # Read the first half's 20 lines, then hang up while the script still writes.
            with connection:
                while run_socket.received.count(b"\n") < 20:
                    chunk = connection.recv(1 << 16)
                    self.assertTrue(chunk, "the script hung up before its first 20 lines")
                    run_socket.received += chunk
            run_socket.listener.close()
            os.unlink(run_socket.path)
            stdout, stderr = communicate(child, "go\n")
        finally:
            run_socket.close()
        self.assertEqual((child.returncode, stdout.strip()), (0, "done 499500"), stderr)
        self.assertEqual(len(run_socket.events()), 20)
        warnings = stderr.splitlines()
        self.assertEqual(len(warnings), 1, stderr)
        self.assertTrue(warnings[0].startswith("spanhub: the run socket"), warnings[0])

    def test_a_socket_that_is_not_there_costs_one_warning(self) -> None:
        missing = os.path.join(tempfile.mkdtemp(prefix="spanhub-py-"), "gone.sock")
        try:
            child = run_child(
                """
                from spanhub import span
                for i in range(100):
                    with span("step") as s:
                        s.tag(i=i)
                print("done")
                """,
                env=child_env(SPANHUB_RUN_SOCKET=missing, SPANHUB_PARENT_SPAN=ROOT_SPAN),
            )
        finally:
            shutil.rmtree(os.path.dirname(missing))
        self.assertEqual((child.returncode, child.stdout.strip()), (0, "done"))
        self.assertEqual(len(child.stderr.splitlines()), 1, child.stderr)
        self.assertTrue(child.stderr.startswith(f"spanhub: the run socket {missing} failed"), child.stderr)

    def test_tag_values_are_cut_at_four_kib_and_made_json(self) -> None:
        child = run_child(
            """
            from spanhub import span

            class Opaque:
                def __repr__(self):
                    return "<Opaque 7>"

            circular = []
            circular.append(circular)
            with span("tags") as s:
                s.tag(
                    long_text="x" * 10_000, wide="é" * 3000, big_list=list(range(2000)), small=[1, {"a": None}],
                    number=1.5, flag=True, nothing=None, opaque=Opaque(), nested={"o": Opaque()},
                    nan=float("nan"), circular=circular, exact="y" * 4096,
                )
                s.tag({("tuple", "key"): 1, 2: "two"})
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        first, second = (tag["tags"] for tag in child.of_type("span_tag"))
        for key, original_bytes in (("long_text", 10_000), ("wide", 6000), ("big_list", len(json.dumps(list(range(2000)), separators=(",", ":"))))):
            value = first[key]
            self.assertIsInstance(value, str)
            self.assertLessEqual(len(value.encode("utf-8")), 4096, key)
            self.assertTrue(value.endswith(f"… [cut by spanhub: {original_bytes} bytes]"), value[-60:])
        self.assertTrue(first["long_text"].startswith("x" * 4000))
        self.assertTrue(first["big_list"].startswith("[0,1,2,3,"))
        self.assertEqual(first["exact"], "y" * 4096)
        self.assertEqual(
            {key: first[key] for key in ("small", "number", "flag", "nothing", "opaque", "nested", "nan")},
            {"small": [1, {"a": None}], "number": 1.5, "flag": True, "nothing": None, "opaque": "<Opaque 7>",
             "nested": {"o": "<Opaque 7>"}, "nan": "nan"},
        )  # fmt: skip
        self.assertEqual(first["circular"], "[[...]]")
        self.assertEqual(second, {"('tuple', 'key')": 1, "2": "two"})


class LinesDecodeTest(unittest.TestCase):
    """The lines the SDK writes are what spanhub's own JSON-lines decoder accepts."""

    DECODER = REPO_DIR / "packages/spanhub/dist/src/protocols/jsonLines.js"

    @unittest.skipUnless(DECODER.exists() and shutil.which("node"), "needs `npm run build` and node")
    def test_every_event_decodes_for_the_run(self) -> None:
        child = run_child(
            """
            from spanhub import span, instrument, Failed
            class Store:
                def put(self, key):
                    return key
            with span("load", source="s3") as s:
                s.tag(rows=10)
                s.log("fetched")
                instrument(Store()).put("k")
                try:
                    with span("check"):
                        raise Failed("no rows")
                except Failed:
                    pass
                try:
                    with span("parse"):
                        raise ValueError("bad")
                except ValueError:
                    pass
            """
        )
        self.assertEqual(child.returncode, 0, child.stderr)
        decode = (
            f"import {{ decodeJsonEvent }} from {json.dumps(self.DECODER.as_uri())};"
            "let input = ''; process.stdin.on('data', (d) => (input += d));"
            "process.stdin.on('end', () => console.log(JSON.stringify(input.trim().split('\\n').map((line) =>"
            f"  decodeJsonEvent(JSON.parse(line), {{ runId: {json.dumps(RUN_ID)}, receivedAt: 0 }})))));"
        )
        lines = "".join(json.dumps(event) + "\n" for event in child.events)
        decoded = json.loads(
            subprocess.run(
                ["node", "--input-type=module", "-e", decode], input=lines, capture_output=True, text=True, check=True
            ).stdout
        )
        self.assertEqual(len(decoded), len(child.events))
        self.assertEqual({event["runId"] for event in decoded}, {RUN_ID})
        by_name = {event["name"]: event for event in decoded if event["kind"] == "span_start"}
        self.assertEqual(by_name["load"]["parentId"], ROOT_SPAN)
        self.assertEqual((by_name["rpc:Store.put"]["rpcService"], by_name["rpc:Store.put"]["rpcMethod"]), ("Store", "put"))
        ends = {event["spanId"]: event for event in decoded if event["kind"] == "span_end"}
        self.assertEqual(ends[by_name["check"]["spanId"]]["status"], "failed")
        self.assertEqual(ends[by_name["check"]["spanId"]]["error"], {"type": "Failed", "message": "no rows"})
        self.assertEqual(ends[by_name["load"]["spanId"]]["status"], "ok")
        # Microsecond times survive: the decoder keeps them as integer microseconds.
        start_ms = next(event for event in child.events if event.get("name") == "load")["start_ms"]
        self.assertEqual(by_name["load"]["time"], round(start_ms * 1000))


class PackageTest(unittest.TestCase):
    def test_pip_installs_it_without_an_index(self) -> None:
        venv = tempfile.mkdtemp(prefix="spanhub-py-venv-")
        try:
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            pip = subprocess.run(
                [os.path.join(venv, "bin", "pip"), "install", "--no-index", "--no-cache-dir", str(SDK_DIR)],
                capture_output=True, text=True,
            )  # fmt: skip
            self.assertEqual(pip.returncode, 0, pip.stdout + pip.stderr)
            imported = subprocess.run(
                [os.path.join(venv, "bin", "python"), "-c", "import spanhub; print(spanhub.__file__, spanhub.__version__)"],
                capture_output=True, text=True, cwd=venv, check=True,
            )  # fmt: skip
            location, version = imported.stdout.split()
            self.assertTrue(location.startswith(venv), location)
            self.assertRegex(version, r"^\d+\.\d+\.\d+$")
        finally:
            shutil.rmtree(venv)

    def test_sources_parse_as_python_3_9(self) -> None:
        for source in (SDK_DIR / "spanhub.py", SDK_DIR / "_backend" / "spanhub_build.py"):
            ast.parse(source.read_text("utf-8"), filename=str(source), feature_version=(3, 9))


if __name__ == "__main__":
    unittest.main()
