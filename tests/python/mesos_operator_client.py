#!/usr/bin/env python3
"""A small Mesos v1 operator HTTP API client, standard library only.

Written from Apache Mesos's published documentation of the v1 operator API
(docs/operator-http-api.md, docs/recordio.md) and of the master's HTTP
endpoints (docs/endpoints/master/*.md), not from Proffer's code:

* every call is ``POST /api/v1`` with a JSON ``Call`` body
  (``{"type": "GET_STATE"}``); reads answer ``200 OK`` with a JSON
  ``Response`` whose payload sits under the lower-cased type
  (``{"type": "GET_STATE", "get_state": {...}}``); changes answer
  ``200 OK`` or ``202 Accepted`` with no body;
* ``SUBSCRIBE`` answers ``200 OK`` with a chunked stream of RecordIO records
  (``<length>\\n<json event>``): ``SUBSCRIBED`` with the whole state, then
  ``TASK_ADDED``, ``TASK_UPDATED``, ``AGENT_ADDED``, ``AGENT_REMOVED``,
  ``FRAMEWORK_ADDED``, ``FRAMEWORK_UPDATED``, ``FRAMEWORK_REMOVED`` and
  ``HEARTBEAT``;
* malformed calls answer ``400``, unsupported media types ``415``;
* the master's JSON endpoints: ``/version``, ``/master/state``,
  ``/master/state-summary``, ``/master/slaves``, ``/master/frameworks``,
  ``/master/tasks``, ``/master/roles``, ``/master/redirect`` (307),
  ``/metrics/snapshot``.

Run as a program it checks all of that against a master and prints one JSON
summary line (exit status non-zero with a message on any failure):

    mesos_operator_client.py --master 127.0.0.1:5050 --expect-tasks 2

With ``--expect-tasks N`` it prints ``subscribed`` on stderr once the event
stream is open and waits (up to ``--timeout``) until it has seen N tasks added
and finished on the stream.
"""

import argparse
import http.client
import json
import queue
import sys
import threading
import time

API = "/api/v1"


class MesosError(Exception):
    """The master answered something the documentation does not allow."""


class OperatorClient:
    """Calls on a master's v1 operator API and its JSON endpoints."""

    def __init__(self, master, timeout=30.0):
        host, _, port = master.rpartition(":")
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self.events = queue.Queue()

    def _conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def raw(self, body, content_type="application/json", accept="application/json"):
        """POSTs ``body`` (bytes) to /api/v1; returns (status, body bytes)."""
        conn = self._conn()
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        conn.request("POST", API, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data

    def call(self, call):
        """Sends a JSON call; returns the decoded response (None when it has no body)."""
        status, data = self.raw(json.dumps(call).encode())
        if status not in (200, 202):
            raise MesosError("%s answered %d: %s" % (call["type"], status, data.decode(errors="replace")))
        if not data:
            return None
        response = json.loads(data)
        if response.get("type") != call["type"]:
            raise MesosError("%s answered a %s response" % (call["type"], response.get("type")))
        return response

    def get(self, path):
        """GETs a JSON endpoint; returns (status, headers, decoded body or None)."""
        conn = self._conn()
        conn.request("GET", path)
        resp = conn.getresponse()
        data = resp.read()
        headers = dict((k.lower(), v) for k, v in resp.getheaders())
        conn.close()
        body = json.loads(data) if data and "json" in headers.get("content-type", "") else None
        return resp.status, headers, body

    # -- the event stream ------------------------------------------------

    def subscribe(self):
        """Sends SUBSCRIBE and reads events into ``self.events`` on a thread."""
        conn = self._conn()
        conn.request("POST", API, body=json.dumps({"type": "SUBSCRIBE"}),
                     headers={"Content-Type": "application/json",
                              "Accept": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise MesosError("SUBSCRIBE answered %d: %s" % (resp.status, resp.read()))
        if resp.getheader("Transfer-Encoding", "").lower() != "chunked":
            raise MesosError("SUBSCRIBE is not a chunked stream")
        thread = threading.Thread(target=self._read, args=(resp,), daemon=True)
        thread.start()

    def _read(self, resp):
        """RecordIO: a decimal length, a newline, then that many bytes of JSON."""
        try:
            while True:
                length = b""
                while not length.endswith(b"\n"):
                    byte = resp.read(1)
                    if not byte:
                        self.events.put(None)
                        return
                    length += byte
                record = resp.read(int(length))
                self.events.put(json.loads(record))
        except Exception as err:  # the stream broke: tell the reader
            self.events.put(err)

    def next_event(self, deadline):
        left = deadline - time.time()
        if left <= 0:
            raise MesosError("timed out waiting for an event")
        try:
            event = self.events.get(timeout=left)
        except queue.Empty:
            raise MesosError("timed out waiting for an event")
        if event is None:
            raise MesosError("the master closed the event stream")
        if isinstance(event, Exception):
            raise MesosError("the event stream broke: %s" % event)
        return event


def check(cond, what):
    if not cond:
        raise MesosError(what)


def check_calls(client, summary):
    """Every read and a quota change, in JSON."""
    check(client.call({"type": "GET_HEALTH"})["get_health"]["healthy"] is True, "GET_HEALTH")
    version = client.call({"type": "GET_VERSION"})["get_version"]["version_info"]["version"]
    check(all(p.isdigit() for p in version.split(".")), "GET_VERSION: %r" % version)
    summary["version"] = version
    state = client.call({"type": "GET_STATE"})["get_state"]
    agents = state["get_agents"]["agents"]
    check(len(agents) >= 1, "GET_STATE lists no agent")
    for agent in agents:
        check("value" in agent["agent_info"]["id"], "agent without id")
        check(any(r["name"] == "cpus" and r["type"] == "SCALAR"
                  for r in agent["total_resources"]), "agent without cpus")
    summary["agents"] = len(agents)
    for kind in ("GET_AGENTS", "GET_FRAMEWORKS", "GET_EXECUTORS", "GET_TASKS", "GET_ROLES",
                 "GET_FLAGS", "GET_MAINTENANCE_SCHEDULE", "GET_MAINTENANCE_STATUS"):
        client.call({"type": kind})
    metrics = client.call({"type": "GET_METRICS", "get_metrics": {}})["get_metrics"]["metrics"]
    names = set(m["name"] for m in metrics)
    check("master/uptime_secs" in names, "GET_METRICS without master/uptime_secs")
    client.call({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
        {"role": "py-ops", "guarantees": {"cpus": {"value": 0.5}},
         "limits": {"cpus": {"value": 1}}}]}})
    configs = client.call({"type": "GET_QUOTA"})["get_quota"]["status"].get("configs", [])
    mine = [c for c in configs if c["role"] == "py-ops"]
    check(mine and mine[0]["guarantees"]["cpus"]["value"] == 0.5, "GET_QUOTA: %r" % configs)
    summary["quota_set"] = True


def check_refusals(client, summary):
    """Bad input gets the documented status codes."""
    refusals = {}
    refusals["malformed_json"] = client.raw(b"{nope")[0]
    refusals["unknown_call"] = client.raw(json.dumps({"type": "GET_NOTHING"}).encode())[0]
    refusals["wrong_content_type"] = client.raw(b"{}", content_type="text/plain")[0]
    refusals["unacceptable"] = client.raw(json.dumps({"type": "GET_HEALTH"}).encode(),
                                          accept="text/html")[0]
    want = {"malformed_json": 400, "unknown_call": 400, "wrong_content_type": 415,
            "unacceptable": 406}
    check(refusals == want, "refusals: %r, want %r" % (refusals, want))
    summary["refusals"] = refusals


def check_endpoints(client, summary):
    """The master's JSON endpoints with Mesos's field names."""
    status, _, version = client.get("/version")
    check(status == 200 and version["version"].count(".") == 2, "/version: %r" % version)
    status, _, state = client.get("/master/state")
    check(status == 200, "/master/state: %d" % status)
    for key in ("id", "pid", "hostname", "activated_slaves", "slaves", "frameworks",
                "completed_frameworks"):
        check(key in state, "/master/state has no %r" % key)
    slave = state["slaves"][0]
    for key in ("id", "hostname", "resources", "used_resources", "active"):
        check(key in slave, "a slave has no %r" % key)
    check(isinstance(slave["resources"]["cpus"], (int, float)), "cpus is not a number")
    status, _, summ = client.get("/master/state-summary")
    check(status == 200 and "TASK_RUNNING" in summ["slaves"][0], "/master/state-summary")
    status, _, slaves = client.get("/master/slaves")
    check(status == 200 and len(slaves["slaves"]) == len(state["slaves"]), "/master/slaves")
    status, _, fws = client.get("/master/frameworks")
    check(status == 200 and "frameworks" in fws, "/master/frameworks")
    status, _, tasks = client.get("/master/tasks?limit=10&order=asc")
    check(status == 200 and isinstance(tasks["tasks"], list), "/master/tasks")
    status, _, roles = client.get("/master/roles")
    check(status == 200 and any(r["name"] == "py-ops" for r in roles["roles"]), "/master/roles")
    status, _, metrics = client.get("/metrics/snapshot")
    check(status == 200 and metrics["master/elected"] == 1, "/metrics/snapshot")
    status, headers, _ = client.get("/master/redirect")
    check(status == 307 and headers.get("location", "").startswith("//"), "/master/redirect")
    summary["endpoints"] = True


def watch_tasks(client, expect, deadline, summary):
    """Waits for ``expect`` tasks to be added and to finish on the stream."""
    added, finished, counts = set(), set(), {}
    while len(finished) < expect or len(added) < expect:
        event = client.next_event(deadline)
        kind = event["type"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "TASK_ADDED":
            added.add(event["task_added"]["task"]["task_id"]["value"])
        elif kind == "TASK_UPDATED":
            update = event["task_updated"]
            task = update["status"]["task_id"]["value"]
            added.add(task)
            if update["state"] == "TASK_FINISHED":
                finished.add(task)
    summary["events"] = counts
    summary["tasks_added"] = len(added)
    summary["tasks_finished"] = len(finished)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", default="127.0.0.1:5050")
    parser.add_argument("--expect-tasks", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    deadline = time.time() + args.timeout
    client = OperatorClient(args.master)
    summary = {}
    try:
        client.subscribe()
        first = client.next_event(deadline)
        check(first["type"] == "SUBSCRIBED", "first event is %s" % first["type"])
        sub = first["subscribed"]
        check(sub["heartbeat_interval_seconds"] > 0, "no heartbeat interval")
        summary["subscribed_agents"] = len(sub["get_state"]["get_agents"]["agents"])
        check_calls(client, summary)
        check_refusals(client, summary)
        check_endpoints(client, summary)
        if args.expect_tasks:
            sys.stderr.write("subscribed\n")
            sys.stderr.flush()
            watch_tasks(client, args.expect_tasks, deadline, summary)
    except MesosError as err:
        sys.stderr.write("error: %s\n" % err)
        print(json.dumps(summary))
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
