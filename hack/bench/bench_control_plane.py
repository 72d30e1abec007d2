#!/usr/bin/env python3
"""Control-plane benchmark: the operator and the proxy (release builds) on
the local cluster, one Gateway, phases that each print a row.

- scale: BENCH_ROUTES HTTPRoutes over BENCH_NAMESPACES namespaces, applied
  with server-side apply; the time from the last apply until every route
  answers 200, and the operator's and the proxy's RSS and CPU.
- propagate: BENCH_PROPAGATE new routes, one after the other, each timed
  from the API server's reply to its first 200 through the Gateway
  (gateway-api-bench's "route propagation"), while wrk loads a steady route.
- churn: BENCH_EDITS route edits (a header added by a filter, so every
  edited route keeps serving) and BENCH_FLIPS flips of the steady route's
  backend between two Services, under the same load (gateway-api-bench's
  "route change under traffic"); every non-2xx answer and socket error
  wrk sees is counted.
- endpoints: the steady route's backend scaled 1 -> 10 -> 1 under load.

What is not measured yet: certificate rotation under HTTPS load.

The operator runs as a process beside the cluster, the proxy as the Pod the
operator provisions (the node agent maps the image
ghcr.io/portcullis-io/portcullis-proxy-release to target/release). No other
operator may run meanwhile (`hack/demo.sh --down` stops the demo's).
Everything the run creates is deleted at the end; the operator it started
is stopped and gives its lease up.

Run it through `make bench-control-plane` (hack/bench-control-plane.sh),
which installs wrk, builds the release binaries and starts the cluster.
Standard library only.

Environment:
  BENCH_ROUTES      routes of the scale phase (5000)
  BENCH_NAMESPACES  namespaces they are spread over (10)
  BENCH_PROPAGATE   routes timed one by one (40)
  BENCH_EDITS       route edits under load (1000)
  BENCH_FLIPS       backend flips of the loaded route (30)
  BENCH_PHASES      comma list of scale,propagate,churn,endpoints (all)
  BENCH_OPERATOR_LOG  the operator's --log-level (info)

Writes the operator's log to .cache/bench/control-plane/operator.log and the
results to .cache/bench/control-plane/results.json.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import os
import re
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
RUN = CACHE / "bench" / "control-plane"
PKI = CACHE / "cluster" / "pki"
API_SERVER = ("198.18.0.1", 6443)
GATEWAY_NS = "bench-cp"
DOMAIN = "bench.example"
PROXY_IMAGE = "ghcr.io/portcullis-io/portcullis-proxy-release:bench"
FIELD_MANAGER = "portcullis-bench"
GROUP = "gateway.networking.k8s.io"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [bench-control-plane] {message}", file=sys.stderr, flush=True)


def die(message: str) -> None:
    log(message)
    sys.exit(1)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        die(f"{name}={value!r}: a positive number, please")
    return int(value)


# ---------------------------------------------------------------- API server


class Api:
    """Server-side apply, get and delete against the local API server, with
    the admin client certificate; one keep-alive connection per thread."""

    def __init__(self) -> None:
        self.context = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
        self.context.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = http.client.HTTPSConnection(*API_SERVER, context=self.context, timeout=60)
            self.local.connection = connection
        return connection

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                text = response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                self.local.connection = None
                if attempt:
                    raise
                continue
            try:
                return response.status, json.loads(text) if text else None
            except ValueError:
                return response.status, text.decode(errors="replace")
        raise RuntimeError("unreachable")

    def apply(self, obj: dict[str, Any]) -> None:
        status, answer = self.request(
            "PATCH",
            f"{object_path(obj)}?fieldManager={FIELD_MANAGER}&force=true",
            obj,
            "application/apply-patch+yaml",
        )
        if status >= 300:
            raise RuntimeError(f"apply {obj['kind']} {obj['metadata']['name']}: {status} {answer}")

    def get(self, path: str) -> Any:
        status, answer = self.request("GET", path)
        return answer if status == 200 else None

    def delete(self, path: str) -> None:
        self.request("DELETE", path)


def object_path(obj: dict[str, Any]) -> str:
    group_version = obj["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    plural = {
        "Namespace": "namespaces",
        "Deployment": "deployments",
        "Service": "services",
        "Gateway": "gateways",
        "GatewayClass": "gatewayclasses",
        "HTTPRoute": "httproutes",
    }[obj["kind"]]
    meta = obj["metadata"]
    if "namespace" in meta:
        return f"{base}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"
    return f"{base}/{plural}/{meta['name']}"


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"portcullis-bench": "control-plane"}}}


def echo(ns: str, name: str, replicas: int) -> list[dict[str, Any]]:
    labels = {"app": name}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "echo",
                                "image": "registry.k8s.io/gateway-api/echo-basic:v1.6.1",
                                "env": [
                                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                    {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                ],
                                "ports": [{"containerPort": 3000}],
                                "readinessProbe": {"httpGet": {"path": "/", "port": 3000}, "periodSeconds": 1},
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 8080, "targetPort": 3000}]},
        },
    ]


def route(ns: str, name: str, service: str, edit: int | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": [{"name": service, "port": 8080}]}
    if edit is not None:
        rule["filters"] = [
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {"set": [{"name": "x-bench-edit", "value": str(edit)}]},
            }
        ]
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "edge", "namespace": GATEWAY_NS}],
            "hostnames": [f"{name}.{ns}.{DOMAIN}"],
            "rules": [rule],
        },
    }


def host_of(obj: dict[str, Any]) -> str:
    return obj["spec"]["hostnames"][0]


# ------------------------------------------------------------------ processes


def proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        fields = proc_stat(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def pids_running(binary: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "exe") == str(binary):
                found.append(int(entry.name))
    return found


TICKS = os.sysconf("SC_CLK_TCK")


class Usage:
    """CPU seconds a set of processes spent between two moments."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = cpu_ticks(pids)

    def seconds(self) -> float:
        return (cpu_ticks(self.pids) - self.start) / TICKS


# -------------------------------------------------------------------- traffic


class Probe:
    """Requests through the Gateway on one keep-alive connection."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.connection: http.client.HTTPConnection | None = None

    def get(self, host: str) -> tuple[int, bytes] | None:
        for _ in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.address, 80, timeout=5)
            try:
                self.connection.request("GET", "/", headers={"Host": host})
                response = self.connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = None
        return None

    def wait_200(self, host: str, timeout: float, pause: float = 0.001) -> float | None:
        """Seconds until `host` answers 200, or None."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            answer = self.get(host)
            if answer and answer[0] == 200:
                return time.monotonic() - start
            time.sleep(pause)
        return None


# Counts the answers that are not 2xx by status, for the summary.
STATUS_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body)
  if status >= 300 then statuses[status] = (statuses[status] or 0) + 1 end
end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses")) do
      io.write(string.format("status %d: %d\\n", code, count))
    end
  end
end
"""


class Load:
    """wrk against one host for as long as it runs; SIGINT ends it with its
    summary, from which the errors are read."""

    def __init__(self, address: str, host: str) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        script = RUN / "statuses.lua"
        script.write_text(STATUS_SCRIPT)
        self.process = subprocess.Popen(
            ["wrk", "-t1", "-c8", "-d3600s", "--latency", "-s", str(script), "-H", f"Host: {host}", f"http://{address}/"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(1)

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=30)
        (RUN / "wrk.out").write_text(out)
        requests = re.search(r"(\d+) requests in", out)
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
        by_status = {code: int(count) for code, count in re.findall(r"^status (\d+): (\d+)$", out, re.M)}
        return {
            "requests": int(requests.group(1)) if requests else 0,
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "non_2xx_by_status": by_status,
            "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0,
            "p99_ms": to_ms(p99.group(1), p99.group(2)) if p99 else None,
            "output": out,
        }


def describe_load(traffic: dict[str, Any]) -> str:
    """wrk's tally: requests, non-2xx by status, socket errors, p99."""
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(traffic["non_2xx_by_status"].items()))
    return (
        f"{traffic['requests']} requests, {traffic['non_2xx']} non-2xx{f' ({statuses})' if statuses else ''}, "
        f"{traffic['socket_errors']} socket errors, p99 {traffic['p99_ms']} ms"
    )


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


# ----------------------------------------------------------------- the bench


class Bench:
    def __init__(self) -> None:
        self.api = Api()
        self.routes = env_int("BENCH_ROUTES", 5000)
        self.namespaces = [f"{GATEWAY_NS}-{i}" for i in range(env_int("BENCH_NAMESPACES", 10))]
        self.propagate_count = env_int("BENCH_PROPAGATE", 40)
        self.edits = env_int("BENCH_EDITS", 1000)
        self.flips = env_int("BENCH_FLIPS", 30)
        known = ["scale", "propagate", "churn", "endpoints"]
        self.phases = [p for p in os.environ.get("BENCH_PHASES", ",".join(known)).split(",") if p]
        unknown = set(self.phases) - set(known)
        if unknown:
            die(f"BENCH_PHASES: unknown {sorted(unknown)}; known: {known}")
        self.operator_binary = ROOT / "target/release/portcullis-operator"
        self.proxy_binary = ROOT / "target/release/portcullis-proxy"
        self.operator: subprocess.Popen[bytes] | None = None
        self.results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.rows: list[tuple[str, str]] = []

    # -- setting up and tearing down

    def preflight(self) -> None:
        for binary in (self.operator_binary, self.proxy_binary):
            if not binary.exists():
                die(f"{binary} is missing: cargo build --release -p operator -p proxy")
        images = ROOT / "e2e/images.yaml"
        if "portcullis-proxy-release" not in images.read_text():
            die("e2e/images.yaml maps no ghcr.io/portcullis-io/portcullis-proxy-release image")
        # The node agent reads the image map when it starts.
        with contextlib.suppress(OSError, ValueError):
            agent = int((CACHE / "cluster/node-agent.pid").read_text().strip())
            if images.stat().st_mtime > os.stat(f"/proc/{agent}").st_ctime:
                die("the node agent started before e2e/images.yaml changed: make cluster-down cluster-up")
        others = [p for p in Path("/proc").iterdir() if p.name.isdigit() and self._is_operator(p)]
        if others:
            die(f"another operator runs (pids {[p.name for p in others]}); stop it first (hack/demo.sh --down)")
        if self.api.get("/version") is None:
            die("the local cluster does not answer (make cluster-up)")

    @staticmethod
    def _is_operator(proc: Path) -> bool:
        try:
            return os.path.basename(os.readlink(proc / "exe")) == "portcullis-operator"
        except OSError:
            return False

    def start_operator(self) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            KUBECONFIG=str(CACHE / "kubeconfig"),
            POD_NAMESPACE="portcullis-system",
            PORTCULLIS_PROXY_IMAGE=PROXY_IMAGE,
        )
        self.api.apply(namespace("portcullis-system"))
        with open(RUN / "operator.log", "wb") as out:
            self.operator = subprocess.Popen(
                [
                    str(self.operator_binary),
                    "--admin",
                    "127.0.0.1:0",
                    "--log-level",
                    os.environ.get("BENCH_OPERATOR_LOG", "info"),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop_operator(self) -> None:
        if self.operator and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.operator.wait(timeout=20)
            if self.operator.poll() is None:
                self.operator.kill()

    def clean(self) -> None:
        """Deletes every namespace an earlier or this run made, and waits."""
        for ns in [GATEWAY_NS, *self.namespaces]:
            self.api.delete(f"/api/v1/namespaces/{ns}")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if all(self.api.get(f"/api/v1/namespaces/{ns}") is None for ns in [GATEWAY_NS, *self.namespaces]):
                return
            time.sleep(1)
        log("the benchmark's namespaces are still terminating after 180 s")

    def setup(self) -> str:
        """The Gateway, the echo backends; returns the Gateway's address."""
        self.api.apply(
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "GatewayClass",
                "metadata": {"name": "portcullis"},
                "spec": {"controllerName": "portcullis.io/gateway-controller"},
            }
        )
        for ns in [GATEWAY_NS, *self.namespaces]:
            self.api.apply(namespace(ns))
        for obj in echo(GATEWAY_NS, "steady-a", 1) + echo(GATEWAY_NS, "steady-b", 1):
            self.api.apply(obj)
        for ns in self.namespaces:
            for obj in echo(ns, "echo", 1):
                self.api.apply(obj)
        self.api.apply(
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "Gateway",
                "metadata": {"name": "edge", "namespace": GATEWAY_NS},
                "spec": {
                    "gatewayClassName": "portcullis",
                    "listeners": [
                        {
                            "name": "http",
                            "protocol": "HTTP",
                            "port": 80,
                            "allowedRoutes": {"namespaces": {"from": "All"}},
                        }
                    ],
                },
            }
        )
        self.api.apply(route(GATEWAY_NS, "steady", "steady-a"))
        address = self.wait(lambda: self.gateway_address(), 180, "the Gateway's address")
        probe = Probe(address)
        steady = host_of(route(GATEWAY_NS, "steady", "steady-a"))
        if probe.wait_200(steady, 180, 0.1) is None:
            die(f"the steady route does not serve; see {RUN / 'operator.log'}")
        for ns in self.namespaces:
            self.wait(lambda ns=ns: self.deployment_ready(ns, "echo", 1), 180, f"echo in {ns}")
        self.wait(lambda: self.deployment_ready(GATEWAY_NS, "steady-b", 1), 180, "steady-b")
        return address

    def gateway_address(self) -> str | None:
        gateway = self.api.get(f"/apis/{GROUP}/v1/namespaces/{GATEWAY_NS}/gateways/edge")
        addresses = ((gateway or {}).get("status") or {}).get("addresses") or []
        return addresses[0]["value"] if addresses else None

    def deployment_ready(self, ns: str, name: str, replicas: int) -> bool:
        deployment = self.api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}") or {}
        status = deployment.get("status") or {}
        return status.get("readyReplicas", 0) == replicas and status.get("replicas", 0) == replicas

    @staticmethod
    def wait(check: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.25)
        die(f"timed out waiting for {what}")
        return None

    def proxy_pids(self) -> list[int]:
        return pids_running(self.proxy_binary)

    def row(self, phase: str, text: str) -> None:
        self.rows.append((phase, text))
        log(f"{phase}: {text}")

    # -- phases

    def scale(self, address: str) -> None:
        routes = [route(self.namespaces[i % len(self.namespaces)], f"r{i}", "echo") for i in range(self.routes)]
        operator = Usage([self.operator.pid] if self.operator else [])
        proxy = Usage(self.proxy_pids())
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(self.api.apply, routes))
        applied = time.monotonic()
        log(f"{len(routes)} routes applied in {applied - started:.1f} s; waiting until every one serves")
        pending = [host_of(r) for r in routes]
        probe = Probe(address)
        deadline = applied + 600
        while pending and time.monotonic() < deadline:
            still = []
            for host in pending:
                answer = probe.get(host)
                if not answer or answer[0] != 200:
                    still.append(host)
            pending = still
            if pending:
                time.sleep(0.1)
        served = time.monotonic()
        time.sleep(5)
        operator_rss = rss_mib([self.operator.pid] if self.operator else [])
        proxy_rss = rss_mib(self.proxy_pids())
        result = {
            "routes": len(routes),
            "apply_s": round(applied - started, 2),
            "all_serving_after_last_apply_s": None if pending else round(served - applied, 2),
            "not_serving": len(pending),
            "operator_rss_mib": round(operator_rss, 1),
            "proxy_rss_mib": round(proxy_rss, 1),
            "operator_cpu_s": round(operator.seconds(), 2),
            "proxy_cpu_s": round(proxy.seconds(), 2),
        }
        self.results["scale"] = result
        serving = "NOT ALL" if pending else f"{result['all_serving_after_last_apply_s']} s"
        self.row(
            "scale",
            f"{len(routes)} routes applied in {result['apply_s']} s; every one serves {serving} after the last apply; "
            f"operator RSS {result['operator_rss_mib']} MiB, CPU {result['operator_cpu_s']} s; "
            f"proxy RSS {result['proxy_rss_mib']} MiB, CPU {result['proxy_cpu_s']} s",
        )

    def propagate(self, address: str) -> None:
        load = Load(address, host_of(route(GATEWAY_NS, "steady", "steady-a")))
        probe = Probe(address)
        latencies: list[float] = []
        missing = 0
        try:
            for j in range(self.propagate_count):
                new = route(self.namespaces[j % len(self.namespaces)], f"p{j}-{int(time.time())}", "echo")
                self.api.apply(new)
                seconds = probe.wait_200(host_of(new), 60)
                if seconds is None:
                    missing += 1
                else:
                    latencies.append(seconds * 1000)
        finally:
            traffic = load.stop()
        result = {
            "routes": self.propagate_count,
            "never_served": missing,
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
            "max_ms": round(max(latencies), 1) if latencies else None,
            "load": {k: v for k, v in traffic.items() if k != "output"},
        }
        self.results["propagate"] = result
        self.row(
            "propagate",
            f"new route -> first 200 with {self.routes_present()} routes present, under load: "
            f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms "
            f"({self.propagate_count} routes, {missing} never served); load: {describe_load(traffic)}",
        )

    def routes_present(self) -> int:
        return (self.routes if "scale" in self.phases else 0) + 1

    def churn(self, address: str) -> None:
        load = Load(address, host_of(route(GATEWAY_NS, "steady", "steady-a")))
        flip_every = max(1, self.edits // max(1, self.flips))
        flips = 0
        edited = max(1, self.routes if "scale" in self.phases else 0)
        started = time.monotonic()
        try:
            for n in range(self.edits):
                i = n % edited
                if "scale" in self.phases:
                    self.api.apply(route(self.namespaces[i % len(self.namespaces)], f"r{i}", "echo", edit=n))
                else:
                    self.api.apply(route(GATEWAY_NS, "edited", "steady-a", edit=n))
                if n % flip_every == flip_every - 1 and flips < self.flips:
                    flips += 1
                    backend = "steady-b" if flips % 2 else "steady-a"
                    self.api.apply(route(GATEWAY_NS, "steady", backend))
            elapsed = time.monotonic() - started
            # The last flip serves before the load stops.
            last = "steady-b" if flips % 2 else "steady-a"
            probe = Probe(address)
            host = host_of(route(GATEWAY_NS, "steady", last))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                answer = probe.get(host)
                if answer and answer[0] == 200 and f'"pod": "{last}-'.encode() in answer[1]:
                    break
                time.sleep(0.05)
        finally:
            traffic = load.stop()
        result = {
            "edits": self.edits,
            "flips": flips,
            "seconds": round(elapsed, 1),
            "load": {k: v for k, v in traffic.items() if k != "output"},
        }
        self.results["churn"] = result
        self.row(
            "churn",
            f"{self.edits} route edits and {flips} backend flips in {result['seconds']} s under load: "
            f"{describe_load(traffic)}",
        )

    def endpoints(self, address: str) -> None:
        load = Load(address, host_of(route(GATEWAY_NS, "steady", "steady-a")))
        # The steady route points at steady-a again, then steady-a scales.
        self.api.apply(route(GATEWAY_NS, "steady", "steady-a"))
        steps = []
        try:
            for replicas in (10, 1):
                started = time.monotonic()
                for obj in echo(GATEWAY_NS, "steady-a", replicas)[:1]:
                    self.api.apply(obj)
                self.wait(lambda r=replicas: self.deployment_ready(GATEWAY_NS, "steady-a", r), 180, f"steady-a at {replicas}")
                time.sleep(3)
                steps.append((replicas, round(time.monotonic() - started, 1)))
        finally:
            traffic = load.stop()
        result = {"steps": steps, "load": {k: v for k, v in traffic.items() if k != "output"}}
        self.results["endpoints"] = result
        self.row(
            "endpoints",
            f"backend scaled 1 -> 10 -> 1 under load: {describe_load(traffic)}",
        )

    def run(self) -> None:
        self.preflight()
        self.clean()
        self.start_operator()
        try:
            address = self.setup()
            log(f"Gateway serves at {address}")
            for phase in self.phases:
                getattr(self, phase)(address)
        finally:
            self.stop_operator()
            self.clean()
            RUN.mkdir(parents=True, exist_ok=True)
            (RUN / "results.json").write_text(json.dumps(self.results, indent=2) + "\n")
        print("| phase | result |")
        print("|---|---|")
        for phase, text in self.rows:
            print(f"| {phase} | {text} |")


if __name__ == "__main__":
    Bench().run()
