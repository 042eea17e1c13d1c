"""connleak --http from the outside: requests, the exposition format, a
throwaway Prometheus server, headless Chromium, and PNG pixels.

    port = serving_port(tracer)                  # from connleak's start-up line
    status, headers, body = get(port, "/metrics")
    series = parse_metrics(body.decode())        # {(name, (("pid","42"),...)): value}
    prom = Prometheus([port]).start(); prom.query("sum(x)"); prom.stop()
    png = chromium_screenshot(url, path); pixels = png_pixels(path)

Every external program is Debian's (`make deps` installs it); a missing one
raises an AssertionError that says so, never a skip.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import zlib

from .pgserver import free_port

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
CHROMIUM = "/usr/bin/chromium"

_SERVING = re.compile(r"connleak: serving http://(\S+?):(\d+)/")


def need(path, package):
    if not os.access(path, os.X_OK):
        raise AssertionError("%s not found: Debian package %s is missing; run `make deps`" % (path, package))


def serving_port(tracer, timeout=60):
    """The port connleak --http says it serves on (its stderr start-up line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _SERVING.search(tracer.stderr)
        if m:
            return int(m.group(2))
        if not tracer.alive():
            break
        time.sleep(0.05)
    raise AssertionError("no 'connleak: serving http://...' line\n" + tracer.describe())


def get(port, path, method="GET", host="127.0.0.1", timeout=30, headers=None, body=None):
    """(status, {header: value} lower-cased, body bytes)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def get_ok(port, path, timeout=30):
    """The body of a 200 answer (waits out the 503 before the first snapshot)."""
    deadline = time.monotonic() + timeout
    while True:
        status, headers, body = get(port, path)
        if status == 200:
            return headers, body
        if status != 503 or time.monotonic() > deadline:
            raise AssertionError("GET %s: %d %r" % (path, status, body[:500]))
        time.sleep(0.1)


def raw_exchange(port, data, timeout=30):
    """Sends raw bytes, returns what the server answered until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and len(out) > 12:
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        return out


_SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def unescape_label(v):
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "\\": "\\", '"': '"'}.get(m.group(1), m.group(0)), v)


def parse_metrics(text):
    """{(name, ((label, value), ...)): float} of an exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SERIES.match(line)
        if not m:
            raise AssertionError("not a series line: %r" % line)
        labels = tuple((k, unescape_label(v)) for k, v in _LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric_sum(series, name, **labels):
    return sum(v for (n, ls), v in series.items()
               if n == name and all(dict(ls).get(k) == str(want) for k, want in labels.items()))


class Prometheus:
    """A real Prometheus server on a free port, scraping targets every second;
    its data directory and config are throwaway."""

    def __init__(self, targets, scrape_interval="1s"):
        need(PROMETHEUS, "prometheus")
        self.targets = targets
        self.interval = scrape_interval
        self.dir = tempfile.mkdtemp(prefix="connleak-prom-")
        self.port = None
        self.popen = None
        self.log = os.path.join(self.dir, "prometheus.log")

    def start(self, timeout=120):
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: %s\n  scrape_timeout: 1s\nscrape_configs:\n"
                    "  - job_name: connleak\n    static_configs:\n      - targets: [%s]\n"
                    % (self.interval, ", ".join("'127.0.0.1:%d'" % p for p in self.targets)))
        for _ in range(5):  # another process may take the free port first
            self.port = free_port()
            with open(self.log, "w") as log:
                self.popen = subprocess.Popen(
                    [PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                     "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.popen.poll() is None:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=5) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    pass
                time.sleep(0.2)
            self.stop(keep_dir=True)
        raise AssertionError("prometheus did not start:\n" + self.log_text())

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()[-4000:]
        except OSError:
            return "(no log)"

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (self.port, path, urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())

    def query(self, expr):
        """An instant query's vector: [(labels dict, float), ...]."""
        res = self.api("query", query=expr)
        if res.get("status") != "success":
            raise AssertionError("query %r: %s" % (expr, res))
        return [(r["metric"], float(r["value"][1])) for r in res["data"]["result"]]

    def targets_health(self):
        return [t.get("health") for t in self.api("targets")["data"]["activeTargets"]]

    def stop(self, keep_dir=False):
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def chromium(args, timeout=180):
    """Headless Chromium (as root: no sandbox), its own throwaway profile."""
    need(CHROMIUM, "chromium")
    profile = tempfile.mkdtemp(prefix="connleak-chromium-")
    try:
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--disable-dev-shm-usage", "--user-data-dir=" + profile] + list(args),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def png_pixels(path):
    """(width, height, rows): rows of (r, g, b) tuples of an 8-bit RGB or RGBA,
    non-interlaced PNG (what Chromium writes)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("%s is not a PNG" % path)
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise AssertionError("unsupported PNG: depth %d color type %d interlace %d" % (depth, ctype, interlace))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    rows = []
    i = 0
    for _ in range(height):
        ftype = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        if ftype == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xff
        elif ftype == 2:
            for x in range(stride):
                line[x] = (line[x] + prev[x]) & 0xff
        elif ftype == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 0xff
        elif ftype == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xff
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return width, height, rows
