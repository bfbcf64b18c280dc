#!/usr/bin/env python3
"""A small Mesos v1 scheduler HTTP API client, standard library only.

Written from Apache Mesos's published documentation of the v1 scheduler API
(docs/scheduler-http-api.md and docs/recordio.md), not from Proffer's code:

* every call is ``POST /api/v1/scheduler`` with a JSON ``Call`` body;
* ``SUBSCRIBE`` is answered ``200 OK`` with a chunked stream of RecordIO records
  (``<length>\\n<json event>``) and a ``Mesos-Stream-Id`` header that every
  later call must carry; other calls are answered ``202 Accepted``;
* each event carries its payload under its lower-cased type
  (``{"type": "OFFERS", "offers": {...}}``);
* status updates with a ``uuid`` must be acknowledged.

Run as a program it drives a whole framework life cycle against a master and
prints one JSON summary line; it exits non-zero with a message on any failure:

    mesos_scheduler_client.py --master 127.0.0.1:5050 --tasks 3

subscribe -> offers -> launch -> updates -> acknowledge -> TASK_FINISHED ->
reconcile (explicit and implicit) -> teardown (and the stream ends).
"""

import argparse
import http.client
import json
import queue
import sys
import threading
import time

PATH = "/api/v1/scheduler"


class MesosError(Exception):
    """The master refused a call, or the stream broke."""


class SchedulerClient:
    """One framework's connection to a master's v1 scheduler API."""

    def __init__(self, master, timeout=30.0):
        host, _, port = master.rpartition(":")
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self.stream_id = None
        self.framework_id = None
        self.events = queue.Queue()
        self._stream = None
        self._reader = None

    # -- the event stream ------------------------------------------------

    def subscribe(self, framework_info):
        """Sends SUBSCRIBE, checks the answer and starts reading events."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        body = json.dumps({"type": "SUBSCRIBE",
                           "subscribe": {"framework_info": framework_info}})
        conn.request("POST", PATH, body=body, headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Connection": "close",
        })
        resp = conn.getresponse()
        if resp.status != 200:
            raise MesosError("SUBSCRIBE answered %d: %s" % (resp.status, resp.read().decode()))
        if resp.getheader("Content-Length") is not None:
            raise MesosError("SUBSCRIBE answer has a Content-Length (must be chunked)")
        if (resp.getheader("Transfer-Encoding") or "").lower() != "chunked":
            raise MesosError("SUBSCRIBE answer is not chunked")
        self.stream_id = resp.getheader("Mesos-Stream-Id")
        if not self.stream_id:
            raise MesosError("SUBSCRIBE answer has no Mesos-Stream-Id header")
        self._stream = (conn, resp)
        first = self._read_record(resp)
        if first.get("type") != "SUBSCRIBED":
            raise MesosError("first event is %r, not SUBSCRIBED" % first.get("type"))
        self.framework_id = first["subscribed"]["framework_id"]["value"]
        self._reader = threading.Thread(target=self._read_events, args=(resp,), daemon=True)
        self._reader.start()
        return first

    @staticmethod
    def _read_record(resp):
        """Reads one RecordIO record: the length, a newline, then that many bytes."""
        digits = b""
        while True:
            c = resp.read(1)
            if not c:
                raise EOFError("stream ended")
            if c == b"\n":
                break
            digits += c
        length = int(digits.decode())
        data = resp.read(length)
        if len(data) != length:
            raise EOFError("stream ended inside a record")
        return json.loads(data.decode())

    def _read_events(self, resp):
        try:
            while True:
                self.events.put(self._read_record(resp))
        except (EOFError, OSError, ValueError) as e:
            self.events.put({"type": "_CLOSED", "reason": str(e)})

    def next_event(self, deadline):
        """The next event, or MesosError once `deadline` (time.monotonic()) passes."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise MesosError("timed out waiting for an event")
        try:
            return self.events.get(timeout=left)
        except queue.Empty:
            raise MesosError("timed out waiting for an event") from None

    # -- calls -----------------------------------------------------------

    def raw_call(self, call, headers):
        """POSTs `call` (a dict) with `headers`: (status, text body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("POST", PATH, body=json.dumps(call), headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def call(self, kind, payload=None):
        """Sends a call of type `kind` (payload under its lower-cased name); expects 202."""
        call = {"type": kind, "framework_id": {"value": self.framework_id}}
        if payload is not None:
            call[kind.lower()] = payload
        status, text = self.raw_call(call, {
            "Content-Type": "application/json",
            "Mesos-Stream-Id": self.stream_id,
        })
        if status != 202:
            raise MesosError("%s answered %d: %s" % (kind, status, text))

    def acknowledge(self, status):
        self.call("ACKNOWLEDGE", {
            "agent_id": status["agent_id"],
            "task_id": status["task_id"],
            "uuid": status["uuid"],
        })


def scalar(resources, name):
    return sum(r["scalar"]["value"] for r in resources
               if r.get("name") == name and r.get("type") == "SCALAR")


def task_resources(cpus, mem):
    return [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ]


def run_scenario(master, tasks, timeout):
    """The framework life cycle; returns a summary dict or raises MesosError."""
    client = SchedulerClient(master)
    deadline = time.monotonic() + timeout
    summary = {"events": {}, "tasks": {}, "acknowledged": 0, "reconciled": {}}

    # A call before SUBSCRIBE's stream id is known must be refused.
    status, text = client.raw_call(
        {"type": "REVIVE", "framework_id": {"value": "nobody"}},
        {"Content-Type": "application/json"})
    if status != 400 or "Mesos-Stream-Id" not in text:
        raise MesosError("a call without Mesos-Stream-Id answered %d: %s" % (status, text))

    subscribed = client.subscribe({
        "user": "nobody", "name": "python-mesos-client",
        "roles": ["*"], "capabilities": [{"type": "MULTI_ROLE"}],
        "failover_timeout": 0,
    })
    summary["heartbeat_interval_seconds"] = subscribed["subscribed"].get(
        "heartbeat_interval_seconds")
    summary["framework_id"] = client.framework_id
    summary["stream_id"] = client.stream_id

    pending = ["py-task-%d" % i for i in range(tasks)]
    states = {}

    def on_update(status):
        task = status["task_id"]["value"]
        states[task] = status["state"]
        if status.get("reason") == "REASON_RECONCILIATION":
            summary["reconciled"][task] = status["state"]
        if "uuid" in status:
            client.acknowledge(status)
            summary["acknowledged"] += 1

    # Launch every task on the offers that come, until all have finished.
    while len([t for t in states.values() if t == "TASK_FINISHED"]) < tasks:
        event = client.next_event(deadline)
        kind = event["type"]
        summary["events"][kind] = summary["events"].get(kind, 0) + 1
        if kind == "_CLOSED":
            raise MesosError("event stream closed: %s" % event["reason"])
        if kind == "ERROR":
            raise MesosError("ERROR event: %s" % event["error"]["message"])
        if kind == "OFFERS":
            for offer in event["offers"]["offers"]:
                cpus = scalar(offer["resources"], "cpus")
                mem = scalar(offer["resources"], "mem")
                launch = []
                while pending and cpus >= 0.1 and mem >= 16:
                    name = pending.pop(0)
                    cpus -= 0.1
                    mem -= 16
                    launch.append({
                        "name": name,
                        "task_id": {"value": name},
                        "agent_id": offer["agent_id"],
                        "resources": task_resources(0.1, 16),
                        "command": {"value": "echo hello from $MESOS_TASK_ID $PROFFER_TASK_ID"},
                    })
                if launch:
                    client.call("ACCEPT", {
                        "offer_ids": [offer["id"]],
                        "operations": [{"type": "LAUNCH",
                                        "launch": {"task_infos": launch}}],
                        "filters": {"refuse_seconds": 1.0},
                    })
                else:
                    client.call("DECLINE", {"offer_ids": [offer["id"]],
                                            "filters": {"refuse_seconds": 1.0}})
        elif kind == "UPDATE":
            on_update(event["update"]["status"])

    summary["tasks"] = dict(states)
    # No more offers are needed.
    client.call("SUPPRESS", {})

    # Explicit, then implicit reconciliation: an UPDATE for each task, by reason.
    client.call("RECONCILE", {"tasks": [{"task_id": {"value": t}} for t in states]})
    while len(summary["reconciled"]) < tasks:
        event = client.next_event(deadline)
        if event["type"] == "UPDATE":
            on_update(event["update"]["status"])
        elif event["type"] == "_CLOSED":
            raise MesosError("event stream closed: %s" % event["reason"])
    client.call("RECONCILE", {"tasks": []})

    # TEARDOWN: the master ends the stream.
    client.call("TEARDOWN")
    while True:
        event = client.next_event(deadline)
        if event["type"] == "_CLOSED":
            break
    summary["closed_after_teardown"] = True

    # The stream id of a torn down framework is no longer accepted.
    status, text = client.raw_call(
        {"type": "REVIVE", "framework_id": {"value": client.framework_id}},
        {"Content-Type": "application/json", "Mesos-Stream-Id": client.stream_id})
    summary["call_after_teardown"] = status
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--master", required=True, help="HOST:PORT of the master")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for everything")
    args = parser.parse_args()
    try:
        summary = run_scenario(args.master, args.tasks, args.timeout)
    except (MesosError, OSError, KeyError, ValueError) as e:
        print("mesos scheduler client failed: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
