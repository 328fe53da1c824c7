#!/usr/bin/env python3
"""End-to-end test of deploy/compose: the image, the cluster, Grafana's calls.

Brings the compose deployment up under a unique project name on a free host
port, pushes data for two tenants by remote write, queries it through the
frontend exactly as Grafana's Prometheus datasource does (health check,
form-POSTed queries, label values for template variables, each tenant's
X-Scope-OrgID), then: stops one store container (queries stay complete),
cuts one store off the network (writes keep succeeding), restarts
everything (the data is still there). Always tears down.

    tests/e2e/compose_test.sh [--single] [--keep] [--no-build]

--single runs against one `strata --target all` (deploy/compose/up
--single); the store-failure steps are then skipped. STRATA_IMAGE_BUILD_FLAGS
is passed to deploy/image/build (e.g. --debug). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy", "loadgen"))
from remote_write import Series, push  # noqa: E402

COMPOSE = os.path.join(ROOT, "deploy", "compose")
STEP_MS = 15_000
POINTS = 40  # 10 minutes of 15 s samples

results: list[tuple[str, bool, str]] = []


def log(message: str) -> None:
    print(f"e2e: {message}", flush=True)


def check(name: str, ok: bool, detail: str = "") -> bool:
    results.append((name, ok, detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}", flush=True)
    return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Env:
    def __init__(self, project: str, port: int, single: bool):
        self.project, self.port, self.single = project, port, single
        self.base = f"http://127.0.0.1:{port}"
        self.env = dict(os.environ, COMPOSE_PROJECT_NAME=project, STRATA_PORT=str(port),
                        LOADGEN_BACKFILL_MINUTES="5")
        if single:
            self.env["STRATA_LAYOUT"] = "single"

    def run(self, *args: str, check_rc: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, check=check_rc, text=True,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.STDOUT if capture else None)

    def compose(self, *args: str, capture: bool = True) -> subprocess.CompletedProcess:
        script = f'source {COMPOSE}/lib.sh && compose "$@"'
        return self.run("bash", "-c", script, "compose", *args, capture=capture, check_rc=False)

    def container(self, service: str) -> str:
        out = self.compose("ps", "-q", service).stdout.strip().splitlines()
        if not out:
            raise RuntimeError(f"no container for service {service}")
        return out[-1]

    def up(self) -> float:
        start = time.monotonic()
        args = [os.path.join(COMPOSE, "up"), "--no-build"]
        proc = self.run(*args, capture=True, check_rc=False)
        took = time.monotonic() - start
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode != 0:
            print(proc.stdout)
            raise RuntimeError(f"deploy/compose/up failed ({proc.returncode})")
        check("up prints the frontend URL last", last == f"http://localhost:{self.port}", last)
        return took

    def down(self, volumes: bool) -> None:
        args = [os.path.join(COMPOSE, "down")] + (["-v"] if volumes else [])
        self.run(*args, capture=True, check_rc=False)


def http(env: Env, method: str, path: str, tenant: str | None, form: dict | list | None = None,
         timeout: float = 30) -> tuple[int, dict | str]:
    """A request the way Grafana's datasource proxy sends it."""
    headers = {"User-Agent": "Grafana/11.3.0", "Accept": "application/json"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    data = None
    url = env.base + path
    if form is not None:
        encoded = urllib.parse.urlencode(form)
        if method == "POST":
            data = encoded.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            url += "?" + encoded
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        body = error.read().decode()
        status = error.code
    try:
        return status, json.loads(body)
    except json.JSONDecodeError:
        return status, body


def wait_for(what: str, condition, timeout: float, interval: float = 1.0):
    """Polls `condition` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as error:  # noqa: BLE001 - report the last one
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout}s (last: {last!r})")


# --- the data ---------------------------------------------------------------

def dataset(start_ms: int, tenant: str) -> list[Series]:
    """Known series per tenant: the same metric name, different sensors and
    values, and one metric only this tenant has."""
    sensors = ["s1", "s2", "s3"] if tenant == "team-a" else ["b1", "b2"]
    offset = 100.0 if tenant == "team-a" else 500.0
    out = []
    for i, sensor in enumerate(sensors):
        samples = [(start_ms + k * STEP_MS, offset + i * 10 + k) for k in range(POINTS)]
        out.append(Series({"__name__": "e2e_temperature", "sensor": sensor, "site": tenant}, samples))
    only = "e2e_only_a" if tenant == "team-a" else "e2e_only_b"
    out.append(Series({"__name__": only, "job": "e2e"}, [(start_ms + k * STEP_MS, float(k)) for k in range(POINTS)]))
    return out


def expected_matrix(series: list[Series], name: str) -> dict:
    return {
        tuple(sorted(s.labels.items())): [(t / 1000, v) for t, v in s.samples]
        for s in series if s.labels["__name__"] == name
    }


def matrix(body) -> dict:
    out = {}
    for r in body["data"]["result"]:
        out[tuple(sorted(r["metric"].items()))] = [(float(t), float(v)) for t, v in r["values"]]
    return out


def query_range(env: Env, tenant: str, expr: str, start_ms: int, points: int = POINTS):
    form = {"query": expr, "start": f"{start_ms / 1000:.3f}", "end": f"{(start_ms + (points - 1) * STEP_MS) / 1000:.3f}",
            "step": str(STEP_MS // 1000)}
    status, body = http(env, "POST", "/api/v1/query_range", tenant, form)
    if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
        raise RuntimeError(f"query_range {expr} for {tenant}: {status} {str(body)[:300]}")
    return matrix(body)


def push_ok(env: Env, series: list[Series], tenant: str) -> tuple[int, str]:
    return push(env.base + "/api/v1/push", series, tenant)


# --- the steps --------------------------------------------------------------

def grafana_calls(env: Env, start_ms: int, data: dict[str, list[Series]], prefix: str = "") -> None:
    def check(name: str, ok: bool, detail: str = "") -> bool:
        return globals()["check"](prefix + name, ok, detail)

    for tenant in ("team-a", "team-b"):
        # Grafana's "Save & test": POST /api/v1/query with 1+1 at time=4.
        status, body = http(env, "POST", "/api/v1/query", tenant, {"query": "1+1", "time": "4"})
        ok = status == 200 and isinstance(body, dict) and body.get("data") == {"resultType": "scalar", "result": [4, "2"]}
        check(f"{tenant}: datasource health check 1+1 at time=4", ok, f"{status} {body}")

        status, body = http(env, "GET", "/api/v1/status/buildinfo", tenant)
        check(f"{tenant}: buildinfo", status == 200 and isinstance(body, dict) and "version" in body.get("data", {}),
              f"{status} {str(body)[:200]}")

        got = query_range(env, tenant, "e2e_temperature", start_ms)
        want = expected_matrix(data[tenant], "e2e_temperature")
        check(f"{tenant}: query_range by form POST returns its series exactly", got == want,
              f"got {len(got)} series, want {len(want)}")

        # Template variables: label values with a match[] and the dashboard's range.
        form = [("match[]", "e2e_temperature"), ("start", str(start_ms // 1000)),
                ("end", str((start_ms + POINTS * STEP_MS) // 1000))]
        status, body = http(env, "GET", "/api/v1/label/sensor/values", tenant, form)
        want_values = sorted(s.labels["sensor"] for s in data[tenant] if "sensor" in s.labels)
        check(f"{tenant}: label values for a template variable", status == 200 and isinstance(body, dict)
              and sorted(body.get("data", [])) == want_values, f"{status} {str(body)[:200]}")

        status, body = http(env, "POST", "/api/v1/labels", tenant, form)
        check(f"{tenant}: label names", status == 200 and isinstance(body, dict)
              and {"__name__", "sensor", "site"} <= set(body.get("data", [])), f"{status} {str(body)[:200]}")

        status, body = http(env, "POST", "/api/v1/series", tenant, form)
        check(f"{tenant}: series", status == 200 and isinstance(body, dict)
              and len(body.get("data", [])) == len(want_values), f"{status} {str(body)[:200]}")

        # An instant query as a stat panel sends it.
        end_s = (start_ms + (POINTS - 1) * STEP_MS) / 1000
        status, body = http(env, "POST", "/api/v1/query", tenant,
                            {"query": "count(e2e_temperature)", "time": f"{end_s:.3f}"})
        ok = (status == 200 and isinstance(body, dict) and body["data"]["result"]
              and body["data"]["result"][0]["value"][1] == str(len(want_values)))
        check(f"{tenant}: instant query", bool(ok), f"{status} {str(body)[:200]}")

    # Tenant isolation: neither tenant sees the other's series or labels.
    got = query_range(env, "team-b", "e2e_only_a", start_ms)
    check("team-b does not see team-a's series", got == {}, f"{got}")
    status, body = http(env, "GET", "/api/v1/label/__name__/values", "team-b")
    names = body.get("data", []) if isinstance(body, dict) else []
    check("team-b does not see team-a's metric names", "e2e_only_a" not in names and "e2e_only_b" in names,
          f"{status} {names}")
    got = query_range(env, "team-a", 'e2e_temperature{site="team-b"}', start_ms)
    check("team-a does not see team-b's series", got == {}, f"{got}")


def dashboards(env: Env) -> None:
    """Every query of every provisioned dashboard is valid PromQL for Strata,
    and the team dashboards show the load generator's data."""
    folder = os.path.join(COMPOSE, "grafana", "dashboards")
    tenants = {"system": "team-a", "application": "team-b", "strata": "strata-ops"}
    for name, tenant in tenants.items():
        with open(os.path.join(folder, f"{name}.json")) as f:
            board = json.load(f)
        bad, empty, total = [], [], 0
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = (target["expr"].replace("$__rate_interval", "1m")
                        .replace("$instance", ".*").replace("$route", ".*"))
                total += 1
                status, body = http(env, "POST", "/api/v1/query", tenant, {"query": expr})
                if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
                    bad.append(f"{panel['title']}: {status} {str(body)[:120]}")
                elif not body["data"]["result"]:
                    empty.append(panel["title"])
        check(f"dashboard {name}: all {total} queries accepted", not bad, "; ".join(bad))
        if name != "strata":
            check(f"dashboard {name}: every panel has data", not empty, ", ".join(empty))
        elif empty:
            log(f"dashboard strata: no data yet for {', '.join(sorted(set(empty)))}")


def complete(env: Env, start_ms: int, data: dict[str, list[Series]]) -> bool:
    for tenant in ("team-a", "team-b"):
        for name in ("e2e_temperature", "e2e_only_a" if tenant == "team-a" else "e2e_only_b"):
            if query_range(env, tenant, name, start_ms) != expected_matrix(data[tenant], name):
                return False
    return True


def store_stopped(env: Env, start_ms: int, data: dict[str, list[Series]]) -> None:
    store = env.container("store-2")
    env.run("docker", "stop", "-t", "30", store, capture=True)
    try:
        t0 = time.monotonic()
        ok = complete(env, start_ms, data)
        check("store-2 stopped: queries complete at once", ok)
        if not ok:
            wait_for("complete answers with store-2 stopped", lambda: complete(env, start_ms, data), 30)
            check(f"store-2 stopped: queries complete after {time.monotonic() - t0:.1f}s", True)
    finally:
        env.run("docker", "start", store, capture=True)


def store_partitioned(env: Env, start_ms: int, data: dict[str, list[Series]]) -> int:
    """Cuts store-3 off the network and writes 10 more rounds; returns how many rounds."""
    store = env.container("store-3")
    networks = json.loads(env.run("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", store,
                                  capture=True).stdout)
    network = next(iter(networks))
    env.run("docker", "network", "disconnect", network, store, capture=True)
    extra = 10
    try:
        t0 = time.monotonic()
        failures: list[str] = []
        slowest = 0.0
        for k in range(POINTS, POINTS + extra):
            for tenant in ("team-a", "team-b"):
                batch = [Series(s.labels, [(start_ms + k * STEP_MS, s.samples[0][1] + k)]) for s in data[tenant]]

                def attempt(batch=batch, tenant=tenant):
                    nonlocal slowest
                    began = time.monotonic()
                    try:
                        status, body = push_ok(env, batch, tenant)
                    except OSError as error:
                        status, body = 0, str(error)
                    took = time.monotonic() - began
                    slowest = max(slowest, took)
                    if status // 100 != 2:
                        failures.append(f"{tenant} round {k - POINTS}: {status} {body.strip()[:120]} after {took:.1f}s")
                    return status // 100 == 2

                if not attempt():
                    wait_for(f"a write for {tenant} with store-3 cut off", attempt, 60)
                for s, b in zip(data[tenant], batch):
                    s.samples.extend(b.samples)
        check(f"store-3 cut off: {2 * extra} writes succeed at the first try "
              f"(slowest {slowest:.1f}s, all in {time.monotonic() - t0:.1f}s)",
              not failures, f"{len(failures)} failed attempts, first: {'; '.join(failures[:3])}")
        ok = complete_wide(env, start_ms, data, POINTS + extra)
        check("store-3 cut off: the new samples are read back", ok)
    finally:
        env.run("docker", "network", "connect", "--alias", "store-3", network, store, capture=True)
    return extra


def complete_wide(env: Env, start_ms: int, data, points: int) -> bool:
    for tenant in ("team-a", "team-b"):
        if query_range(env, tenant, "e2e_temperature", start_ms, points) != expected_matrix(data[tenant], "e2e_temperature"):
            return False
    return True


def loadgen_writes(env: Env) -> None:
    # Caught up: it writes history first, then follows the clock.
    def has_data():
        for tenant in ("team-a", "team-b"):
            status, body = http(env, "POST", "/api/v1/query", tenant,
                                {"query": 'time() - max(timestamp(up{job="node"})) < 45'})
            if status != 200 or not body["data"]["result"]:
                return False
        return True
    try:
        wait_for("load generator data in team-a and team-b", has_data, 120, 2)
        check("loadgen writes both tenants", True)
    except TimeoutError as error:
        check("loadgen writes both tenants", False, str(error))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--single", action="store_true", help="one strata --target all instead of the cluster")
    parser.add_argument("--keep", action="store_true", help="leave the deployment running")
    parser.add_argument("--no-build", action="store_true", help="use the existing strata:latest images")
    args = parser.parse_args()

    timings = {}
    if not args.no_build:
        t0 = time.monotonic()
        flags = os.environ.get("STRATA_IMAGE_BUILD_FLAGS", "").split()
        subprocess.run([os.path.join(ROOT, "deploy", "image", "build"), *flags], check=True, stdout=subprocess.DEVNULL)
        timings["image build"] = time.monotonic() - t0

    env = Env(f"strata-e2e-{os.getpid()}", free_port(), args.single)
    log(f"project {env.project}, frontend on {env.base}, {'single node' if args.single else 'cluster'}")
    t_all = time.monotonic()
    try:
        timings["up"] = env.up()
        now = int(time.time() * 1000) // STEP_MS * STEP_MS
        # Room for the rounds written during the network cut, all in the
        # past as a sender's are (a sample ahead of the clock may need a
        # placement epoch nobody knows yet).
        start_ms = now - (POINTS + 12) * STEP_MS
        data = {tenant: dataset(start_ms, tenant) for tenant in ("team-a", "team-b")}
        for tenant, series in data.items():
            status, body = push_ok(env, series, tenant)
            check(f"{tenant}: remote write of {sum(len(s.samples) for s in series)} samples", status // 100 == 2,
                  f"{status} {body[:200]}")
        grafana_calls(env, start_ms, data)
        loadgen_writes(env)
        dashboards(env)

        if args.single:
            log("skipped: store stop and network cut (single node has no replicas)")
        else:
            store_stopped(env, start_ms, data)
            wait_for("store-2 healthy again", lambda: "healthy" in env.run(
                "docker", "inspect", "-f", "{{.State.Health.Status}}", env.container("store-2"), capture=True).stdout, 120)
            store_partitioned(env, start_ms, data)

        # Restart everything: down (volumes kept), up; the data must be there.
        points = len(data["team-a"][0].samples)
        env.down(volumes=False)
        timings["restart (down + up)"] = env.up()
        ok = False
        try:
            ok = wait_for("data after restart", lambda: complete_wide(env, start_ms, data, points), 60)
        except TimeoutError as error:
            log(str(error))
        check("after down and up: every sample is still there", bool(ok))
        grafana_calls(env, start_ms, {t: [Series(s.labels, s.samples[:POINTS]) for s in v] for t, v in data.items()},
                      prefix="after restart: ")
    except Exception as error:  # noqa: BLE001 - a failed step is a failed test
        check("e2e run", False, f"{type(error).__name__}: {error}")
        subprocess.run(["bash", "-c", f'source {COMPOSE}/lib.sh && compose logs --tail=30'], env=env.env)
    finally:
        if args.keep:
            log(f"kept: COMPOSE_PROJECT_NAME={env.project} deploy/compose/down -v")
        else:
            env.down(volumes=True)
    timings["whole run"] = time.monotonic() - t_all
    log("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    passed = sum(1 for _, ok, _ in results if ok)
    failed = len(results) - passed
    print(f"e2e: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
