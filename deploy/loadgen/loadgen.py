"""Demo load generator for Strata: realistic metrics for several tenants.

Every --interval seconds (real time) it pushes, by remote write, one scrape
round per tenant of what a Prometheus would have scraped from
node_exporters (CPU, memory, filesystems, disks, network, load) and from an
instrumented HTTP service (requests by route and status, a latency
histogram, `up`). Values evolve like real ones: counters grow at a per-series
rate, gauges walk, a service occasionally fails. With --scrape it also
scrapes Strata's own /metrics endpoints and pushes them into --scrape-tenant,
so Strata's health dashboard has data without a Prometheus.

    python3 loadgen.py --url http://frontend:9090/api/v1/push \\
        --tenant team-a:4 --tenant team-b:2 \\
        --scrape frontend:9090,querier-1:9090 --scrape-tenant strata-ops

Standard library only (remote_write.py beside it encodes the requests).
"""

from __future__ import annotations

import argparse
import math
import random
import re
import signal
import sys
import time
import urllib.request

from remote_write import Series, push

CPU_MODES = {
    "idle": (0.70, 0.95),
    "user": (0.03, 0.20),
    "system": (0.01, 0.06),
    "iowait": (0.0, 0.02),
    "softirq": (0.001, 0.005),
    "steal": (0.0, 0.004),
}
ROUTES = ["/api/orders", "/api/users", "/api/search", "/healthz"]
METHODS = {"/api/orders": "POST", "/api/users": "GET", "/api/search": "GET", "/healthz": "GET"}
BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]

METADATA = [
    ("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode."),
    ("node_memory_MemTotal_bytes", "gauge", "Memory information field MemTotal_bytes."),
    ("node_memory_MemAvailable_bytes", "gauge", "Memory information field MemAvailable_bytes."),
    ("node_filesystem_size_bytes", "gauge", "Filesystem size in bytes."),
    ("node_filesystem_avail_bytes", "gauge", "Filesystem space available to non-root users in bytes."),
    ("node_disk_read_bytes_total", "counter", "The total number of bytes read successfully."),
    ("node_disk_written_bytes_total", "counter", "The total number of bytes written successfully."),
    ("node_network_receive_bytes_total", "counter", "Network device statistic receive_bytes."),
    ("node_network_transmit_bytes_total", "counter", "Network device statistic transmit_bytes."),
    ("node_load1", "gauge", "1m load average."),
    ("http_requests_total", "counter", "Requests handled, by route and status."),
    ("http_request_duration_seconds", "histogram", "Request latency in seconds."),
    ("up", "gauge", "1 if the target's last scrape succeeded."),
]


class Counter:
    def __init__(self, rng: random.Random, lo: float, hi: float, start: float):
        self.rate = rng.uniform(lo, hi)
        self.value = start

    def step(self, rng: random.Random, seconds: float) -> float:
        self.value += self.rate * seconds * rng.uniform(0.6, 1.4)
        return self.value


class Gauge:
    def __init__(self, rng: random.Random, lo: float, hi: float, step: float):
        self.lo, self.hi, self.size = lo, hi, step
        self.value = rng.uniform(lo, hi)

    def step(self, rng: random.Random, _seconds: float) -> float:
        self.value = min(self.hi, max(self.lo, self.value + rng.uniform(-self.size, self.size)))
        return self.value


class Host:
    """One node_exporter and one instance of the `api` service on it."""

    def __init__(self, rng: random.Random, tenant: str, index: int):
        self.instance = f"{tenant}-node-{index}:9100"
        self.app_instance = f"{tenant}-api-{index}:8080"
        cpus = rng.choice([2, 4, 8])
        mem = rng.choice([8, 16, 32]) * 2**30
        self.mem_total = float(mem)
        self.mem_avail = Gauge(rng, 0.2 * mem, 0.7 * mem, 0.02 * mem)
        self.load = Gauge(rng, 0.1, cpus * 0.8, 0.2)
        uptime = rng.uniform(86400, 30 * 86400)
        self.cpu = {
            (str(cpu), mode): Counter(rng, lo, hi, uptime * (lo + hi) / 2)
            for cpu in range(cpus)
            for mode, (lo, hi) in CPU_MODES.items()
        }
        self.fs = {
            "/": (float(rng.choice([50, 100]) * 2**30), Gauge(rng, 10 * 2**30, 40 * 2**30, 2**26)),
            "/var": (float(rng.choice([200, 500]) * 2**30), Gauge(rng, 50 * 2**30, 150 * 2**30, 2**27)),
        }
        self.disk = {
            ("vda", "read"): Counter(rng, 1e5, 2e6, uptime * 1e6),
            ("vda", "written"): Counter(rng, 5e5, 5e6, uptime * 2e6),
        }
        self.net = {
            ("eth0", "receive"): Counter(rng, 1e5, 5e6, uptime * 1e6),
            ("eth0", "transmit"): Counter(rng, 1e5, 3e6, uptime * 8e5),
        }
        self.traffic = rng.uniform(5, 50)  # requests per second
        self.requests: dict[tuple[str, str], float] = {}
        self.buckets = {route: [0.0] * (len(BUCKETS) + 1) for route in ROUTES}
        self.latency_sum = {route: 0.0 for route in ROUTES}
        self.mean_latency = {route: rng.uniform(0.01, 0.3) for route in ROUTES}
        self.down_rounds = 0

    def round(self, rng: random.Random, t: int, seconds: float) -> list[Series]:
        out: list[Series] = []

        def add(name: str, value: float, **labels: str) -> None:
            labels = {"__name__": name, **labels}
            out.append(Series(labels, [(t, value)]))

        node = {"job": "node", "instance": self.instance}
        for (cpu, mode), counter in self.cpu.items():
            add("node_cpu_seconds_total", round(counter.step(rng, seconds), 2), cpu=cpu, mode=mode, **node)
        add("node_memory_MemTotal_bytes", self.mem_total, **node)
        add("node_memory_MemAvailable_bytes", round(self.mem_avail.step(rng, seconds)), **node)
        add("node_load1", round(self.load.step(rng, seconds), 2), **node)
        for mount, (size, avail) in self.fs.items():
            fs = {"device": "/dev/vda1" if mount == "/" else "/dev/vdb1", "fstype": "ext4", "mountpoint": mount}
            add("node_filesystem_size_bytes", size, **fs, **node)
            add("node_filesystem_avail_bytes", round(avail.step(rng, seconds)), **fs, **node)
        for (device, direction), counter in self.disk.items():
            add(f"node_disk_{direction}_bytes_total", round(counter.step(rng, seconds)), device=device, **node)
        for (device, direction), counter in self.net.items():
            add(f"node_network_{direction}_bytes_total", round(counter.step(rng, seconds)), device=device, **node)
        add("up", 1.0, **node)

        # The service: now and then it is down for a few rounds.
        app = {"job": "api", "instance": self.app_instance}
        if self.down_rounds == 0 and rng.random() < 0.005:
            self.down_rounds = rng.randint(2, 6)
        if self.down_rounds > 0:
            self.down_rounds -= 1
            add("up", 0.0, **app)
            return out
        add("up", 1.0, **app)
        # Daily-ish traffic wave so that graphs have a shape.
        wave = 1.0 + 0.5 * math.sin(t / 1000 / 3600 * 2 * 3.14159 / 24 * 6)
        for route in ROUTES:
            share = 0.1 if route == "/healthz" else 0.3
            n = int(self.traffic * share * wave * seconds * rng.uniform(0.7, 1.3))
            errors = int(n * (0.002 if rng.random() > 0.05 else rng.uniform(0.02, 0.15)))
            for status, count in (("200", n - errors), ("500", errors)):
                key = (route, status)
                self.requests[key] = self.requests.get(key, 0.0) + count
            for _ in range(min(n, 2000)):
                latency = rng.expovariate(1 / self.mean_latency[route])
                self.latency_sum[route] += latency * max(1, n / 2000)
                first = next((i for i, b in enumerate(BUCKETS) if latency <= b), len(BUCKETS))
                for i in range(first, len(BUCKETS) + 1):
                    self.buckets[route][i] += max(1, n / 2000)
        for (route, status), value in self.requests.items():
            add("http_requests_total", value, method=METHODS[route], route=route, status=status, **app)
        for route in ROUTES:
            cumulative = self.buckets[route]
            for bound, count in zip(BUCKETS + [float("inf")], cumulative):
                le = "+Inf" if bound == float("inf") else repr(bound)
                add("http_request_duration_seconds_bucket", round(count), le=le, route=route, **app)
            add("http_request_duration_seconds_sum", round(self.latency_sum[route], 3), route=route, **app)
            add("http_request_duration_seconds_count", round(cumulative[-1]), route=route, **app)
        return out


# Prometheus text exposition format: name{labels} value [timestamp]
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_exposition(text: str, t: int, extra: dict[str, str]) -> list[Series]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        labels = {"__name__": match.group(1)}
        for name, value in _LABEL.findall(match.group(3) or ""):
            labels[name] = value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        labels.update(extra)
        try:
            value = float(match.group(4))
        except ValueError:
            continue
        out.append(Series(labels, [(t, value)]))
    return out


def scrape(target: str, t: int, timeout: float) -> list[Series]:
    instance = target
    extra = {"job": "strata", "instance": instance}
    try:
        with urllib.request.urlopen(f"http://{target}/metrics", timeout=timeout) as response:
            body = response.read().decode("utf-8", "replace")
    except OSError:
        return [Series({"__name__": "up", **extra}, [(t, 0.0)])]
    series = parse_exposition(body, t, extra)
    series.append(Series({"__name__": "up", **extra}, [(t, 1.0)]))
    return series


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="remote-write URL, e.g. http://frontend:9090/api/v1/push")
    parser.add_argument("--tenant", action="append", default=[], help="TENANT[:HOSTS], repeatable (default team-a:3, team-b:2)")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between rounds (default 15)")
    parser.add_argument("--backfill", type=float, default=0.0, help="minutes of history to push first (default 0)")
    parser.add_argument("--scrape", default="", help="comma-separated host:port of Strata processes to scrape /metrics from")
    parser.add_argument("--scrape-tenant", default="strata-ops", help="tenant of the scraped Strata metrics")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (default: run until SIGTERM)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    tenants = {}
    for spec in args.tenant or ["team-a:3", "team-b:2"]:
        name, _, hosts = spec.partition(":")
        tenants[name] = [Host(rng, name, i + 1) for i in range(int(hosts or 3))]
    targets = [t for t in args.scrape.split(",") if t]

    stop = False

    def on_signal(_signo, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def send(tenant: str, series: list[Series], first: bool) -> bool:
        ok = True
        for start in range(0, len(series), 2000):
            meta = METADATA if first and start == 0 and tenant in tenants else []
            try:
                status, body = push(args.url, series[start : start + 2000], tenant, meta)
            except OSError as error:
                status, body = 0, str(error)
            if status // 100 != 2:
                print(f"loadgen: push tenant={tenant} status={status} {body.strip()[:200]}", file=sys.stderr)
                ok = False
        return ok

    interval_ms = int(args.interval * 1000)
    now = int(time.time() * 1000) // interval_ms * interval_ms
    t = now - int(args.backfill * 60_000) // interval_ms * interval_ms
    rounds = 0
    print(f"loadgen: pushing to {args.url} every {args.interval}s for {', '.join(f'{k} ({len(v)} hosts)' for k, v in tenants.items())}"
          + (f", scraping {len(targets)} Strata processes into {args.scrape_tenant}" if targets else ""), flush=True)
    while not stop:
        for tenant, hosts in tenants.items():
            series = [s for host in hosts for s in host.round(rng, t, args.interval)]
            send(tenant, series, rounds == 0)
        if targets and t >= now:
            scraped = [s for target in targets for s in scrape(target, t, timeout=args.interval / 2)]
            send(args.scrape_tenant, scraped, False)
        rounds += 1
        if args.rounds and rounds >= args.rounds:
            break
        t += interval_ms
        # Catch up on backfill as fast as possible, then follow the clock.
        while not stop and time.time() * 1000 < t:
            time.sleep(min(0.5, max(0.0, t / 1000 - time.time())))
    print(f"loadgen: stopped after {rounds} rounds", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
