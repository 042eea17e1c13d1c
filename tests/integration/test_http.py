"""connleak --http: the four endpoints against a real client and a real
PostgreSQL, checked against the JSON snapshot and the server's own count
(log_connections); promtool on /metrics; a real Prometheus scraping it;
headless Chromium showing the dashboard's rows (leak red, healthy green);
bad requests and slow clients, with tracing going on meanwhile.

The screenshot is kept as a test artifact: BUILD_DIR/test-artifacts/http_dashboard.png.
Needs Debian's prometheus and chromium (`make deps`).
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit import web  # noqa: E402
from connleak_testkit.paths import BUILD_DIR, PQCLIENT  # noqa: E402
from connleak_testkit.snapshot import find_process  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Tracer, run_connleak  # noqa: E402

PIDLINE = re.compile(r"ready pid=(\d+)")


class HttpTest(ConnleakTestCase):

    def start(self, app, extra=()):
        """connleak --http 127.0.0.1:0 -- sh: a pqclient that connects twice
        and finishes both (exits: a healthy site), then, exec'ed in the shell's
        place, an interactive pqclient the test drives. Returns (tracer, port,
        interactive pid)."""
        ci = self.server.conninfo(app)
        script = "%s connectdb '%s' 2 0 >/dev/null && exec %s interactive '%s'" % (PQCLIENT, ci, PQCLIENT, ci)
        t = Tracer.launch(["/bin/sh", "-c", script], leak_after=0, interval=0.3, json_path=self.json_path(),
                          extra=["-q", "--http", "127.0.0.1:0"] + list(extra))
        self.addCleanup(t.cleanup)
        port = web.serving_port(t)
        pid = int(t.wait_line(PIDLINE).group(1))
        return t, port, pid

    def drive(self, t, line):
        t.send(line)
        return t.wait_line(r"^ok ").group(0)

    def same_snapshot(self, port):
        """/snapshot.json and the --json file of one interval: (text, file)."""
        for _ in range(200):
            with open(self.json_path()) as f:
                before = f.read()
            _, body = web.get_ok(port, "/snapshot.json")
            with open(self.json_path()) as f:
                after = f.read()
            if before == after and json.loads(body)["time"] == json.loads(after)["time"]:
                return body.decode(), after
            time.sleep(0.05)
        self.fail("never read /snapshot.json and the --json file of one interval")

    def settled(self, t, pid, acquired, released, timeout=60):
        snap = t.wait_snapshot(lambda s: (find_process(s, pid) or {}).get("acquired") == acquired
                               and (find_process(s, pid) or {}).get("released") == released
                               and s["tracking_stats"]["total_acquired"] == acquired + 2, timeout=timeout)
        p = find_process(snap, pid)
        self.assertIsNotNone(p, t.describe())
        self.assertEqual((p["acquired"], p["released"]), (acquired, released), t.describe())
        return snap

    def test_endpoints_agree_with_snapshot_and_server(self):
        app = self.app()
        mark = self.server.log_mark()
        t, port, pid = self.start(app)
        self.drive(t, "open 3")
        self.drive(t, "finish-old 1")
        self.settled(t, pid, 3, 1)
        text, file_text = self.same_snapshot(port)
        # /snapshot.json: the very bytes --json writes.
        self.assertEqual(text, file_text)
        snap = json.loads(text)
        self.check_snapshot(snap, t.describe())
        st = snap["tracking_stats"]
        # The server's count: 2 (connectdb) + 3 (interactive) connections.
        self.assertEqual(self.server.count_authorized(app, since=mark), 5)
        self.assertEqual((st["total_acquired"], st["total_released"], st["total_active"], st["total_leaks"]),
                         (5, 3, 2, 2), t.describe())
        me = find_process(snap, pid)
        self.assertEqual(len(me["top_connection_users"]), 1, t.describe())
        site = me["top_connection_users"][0]["site"]
        self.assertIn("pqclient", site)
        exited = [p for p in snap["processes"] if p["exited"] and p["acquired"]]
        self.assertEqual([(p["acquired"], p["released"], p["leaked_at_exit"]) for p in exited], [(2, 2, 0)])
        child_site = exited[0]["top_connection_users"][0]["site"]

        # Every endpoint from the same interval: wait until the file stays put
        # across the requests (the counts no longer move: they are the same).
        headers, body = web.get_ok(port, "/health/detailed")
        self.assertEqual(headers["content-type"], "application/json")
        h = json.loads(body)
        self.assertEqual(h["status"], "degraded")
        db = h["checks"]["database_pool"]
        self.assertEqual(list(db), ["checked_out", "tracking_stats", "tracking_discrepancy", "top_connection_users"])
        self.assertEqual(db["tracking_stats"], {"total_acquired": 5, "total_released": 3, "total_active": 2,
                                                "total_leaks": 2, "leak_ratio": 40.0})
        self.assertEqual(db["checked_out"], st["total_db_sockets"])
        self.assertEqual(db["tracking_discrepancy"], st["tracking_discrepancy"])
        self.assertEqual(db["checked_out"], 2, t.describe())  # the two live handles' sockets
        self.assertEqual(db["tracking_discrepancy"], 0)
        rows = {u["route"]: u for u in db["top_connection_users"]}
        self.assertEqual({k: rows[site][k] for k in ("acquired", "released", "active", "leaks")},
                         {"acquired": 3, "released": 1, "active": 2, "leaks": 2})
        self.assertEqual({k: rows[child_site][k] for k in ("acquired", "released", "active", "leaks")},
                         {"acquired": 2, "released": 2, "active": 0, "leaks": 0})
        self.assertEqual(list(rows[site]), ["route", "acquired", "released", "active", "leaks", "avg_ms"])

        headers, body = web.get_ok(port, "/metrics")
        self.assertEqual(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        metrics = body.decode()
        m = web.parse_metrics(metrics)
        comm = me["comm"]
        self.assertEqual(m[("connleak_connections_acquired_total", (("pid", str(pid)), ("comm", comm), ("site", site)))],
                         3)
        self.assertEqual(web.metric_sum(m, "connleak_connections_acquired_total"), 5)
        self.assertEqual(web.metric_sum(m, "connleak_connections_released_total"), 3)
        self.assertEqual(web.metric_sum(m, "connleak_connections_active", pid=pid), 2)
        self.assertEqual(web.metric_sum(m, "connleak_connections_leaked", pid=pid), 2)
        self.assertEqual(web.metric_sum(m, "connleak_connections_acquired_total", pid="exited", site=child_site), 2)
        self.assertEqual(web.metric_sum(m, "connleak_db_sockets", pid=pid), me["db_sockets"])
        self.assertEqual(web.metric_sum(m, "db_client_connection_count", pid=pid, db_client_connection_state="used"),
                         2)
        # promtool: the exposition format (exit 1 on a parse error) and
        # Prometheus's naming rules (exit 3 on lint findings). Its only
        # finding is OpenTelemetry's own name, db_client_connection_count
        # (what OTel's Prometheus exporter emits), for its "_count" suffix.
        web.need(web.PROMTOOL, "prometheus")
        p = subprocess.run([web.PROMTOOL, "check", "metrics"], input=metrics, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout),
                         (3, 'db_client_connection_count non-histogram and non-summary metrics should not have '
                             '"_count" suffix\n'), metrics)
        without_otel = "".join(line + "\n" for line in metrics.splitlines() if "db_client_connection_count" not in line)
        p = subprocess.run([web.PROMTOOL, "check", "metrics"], input=without_otel, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout), (0, ""), without_otel)

        headers, body = web.get_ok(port, "/")
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertIn("default-src 'none'", headers["content-security-policy"])
        page = body.decode()
        self.assertIn('id="dbTrackingActive">2<', page)
        self.assertIn('<td class="site">%s</td>' % site.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
                      page)
        # HEAD: the headers of GET, no body.
        status, headers, body = web.get(port, "/metrics", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.drive(t, "finish-all")
        t.send("exit")
        self.finish_tracer(t)

    def test_prometheus_scrapes_exact_counts(self):
        app = self.app()
        mark = self.server.log_mark()
        t, port, pid = self.start(app)
        self.drive(t, "open 4")
        self.drive(t, "finish-new 1")
        self.settled(t, pid, 4, 1)
        prom = web.Prometheus([port]).start()
        self.addCleanup(prom.stop)
        want = {"sum(connleak_connections_acquired_total)": 6.0,
                "sum(connleak_connections_released_total)": 3.0,
                'sum(connleak_connections_active{pid="%d"})' % pid: 3.0,
                'sum(connleak_connections_leaked{pid="%d"})' % pid: 3.0}
        got = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = {q: sum(v for _, v in prom.query(q)) if prom.query(q) else None for q in want}
            if got == want:
                break
            time.sleep(0.5)
        self.assertEqual(got, want, "Prometheus's view\n%s\n%s" % (prom.log_text(), t.describe()))
        self.assertEqual(prom.targets_health(), ["up"])
        self.assertEqual(self.server.count_authorized(app, since=mark), 6)
        prom.stop()
        t.send("exit")
        self.finish_tracer(t)

    def test_dashboard_in_chromium(self):
        app = self.app()
        t, port, pid = self.start(app)
        self.drive(t, "open 2")
        self.settled(t, pid, 2, 0)
        url = "http://127.0.0.1:%d/" % port
        web.get_ok(port, "/")
        p = web.chromium(["--dump-dom", url])
        self.assertEqual(p.returncode, 0, p.stderr)
        dom = p.stdout
        snap = t.wait_snapshot()
        me = find_process(snap, pid)
        site = me["top_connection_users"][0]["site"]
        leak_rows = re.findall(r'<tr class="leak"><td>[^<]*\(%d\)</td><td class="site">([^<]*)</td>' % pid, dom)
        healthy_rows = re.findall(r'<tr class="healthy"><td>[^<]*exited\)</td><td class="site">([^<]*)</td>', dom)
        self.assertEqual(len(leak_rows), 1, dom)
        self.assertIn("pqclient", leak_rows[0])
        self.assertEqual(len(healthy_rows), 1, dom)
        self.assertEqual(len(re.findall(r'<tr class="leak"><td>[^<]*\(%d\)</td><td>0x' % pid, dom)), 2, dom)
        self.assertIn(site.split(" ")[0], dom)
        artifacts = os.path.join(BUILD_DIR, "test-artifacts")
        os.makedirs(artifacts, exist_ok=True)
        shot = os.path.join(artifacts, "http_dashboard.png")
        if os.path.exists(shot):
            os.unlink(shot)
        p = web.chromium(["--screenshot=" + shot, "--window-size=1000,700", "--hide-scrollbars", url])
        self.assertTrue(os.path.exists(shot), p.stderr)
        # What a person sees: rows in the leak red and the healthy green.
        width, height, rows = web.png_pixels(shot)
        colors = {}
        for row in rows:
            for px in row:
                colors[px] = colors.get(px, 0) + 1
        red, green = (0xff, 0xcd, 0xd2), (0xc8, 0xe6, 0xc9)
        self.assertGreater(colors.get(red, 0), 1000, "no leak-red rows in %s" % shot)
        self.assertGreater(colors.get(green, 0), 1000, "no healthy-green rows in %s" % shot)
        t.send("exit")
        self.finish_tracer(t)

    def test_bad_requests_and_slow_clients(self):
        app = self.app()
        mark = self.server.log_mark()
        t, port, pid = self.start(app)
        web.get_ok(port, "/metrics")
        status, _, body = web.get(port, "/nope")
        self.assertEqual(status, 404)
        self.assertIn(b"/metrics", body)
        self.assertEqual(web.get(port, "/snapshotXjson")[0], 404)  # the path, not a pattern
        self.assertEqual(web.get(port, "/metrics/")[0], 404)
        self.assertEqual(web.get(port, "/metrics", method="POST", body=b"x")[0], 405)
        self.assertEqual(web.get(port, "/metrics", method="DELETE")[0], 405)
        # Oversized: a request line, a header line, a body.
        self.assertTrue(web.raw_exchange(port, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                        .startswith(b"HTTP/1.1 414"))
        self.assertTrue(web.raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10000 + b"\r\n\r\n")
                        .startswith(b"HTTP/1.1 400"))
        self.assertEqual(web.get(port, "/metrics", method="POST", body=b"z" * 100000)[0], 413)
        self.assertEqual(web.raw_exchange(port, b"\x16\x03\x01garbage\r\n\r\n")[:12], b"HTTP/1.1 400")

        # Slow clients, more than the server has workers, each holding its
        # connection by sending a byte a second: tracing goes on, exactly.
        slow = []
        for _ in range(24):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            slow.append(s)
        self.addCleanup(lambda: [s.close() for s in slow])
        before = t.wait_snapshot()["time"]
        for i in range(8):
            self.drive(t, "open 1")
            for s in slow:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            time.sleep(1)
        self.drive(t, "finish-old 3")
        snap = self.settled(t, pid, 8, 3)
        self.assertNotEqual(snap["time"], before, "the snapshot stopped")
        self.assertEqual(self.server.count_authorized(app, since=mark), 10)
        for s in slow:
            s.close()
        # Once they are gone, the server answers again.
        _, body = web.get_ok(port, "/metrics", timeout=60)
        self.assertEqual(web.metric_sum(web.parse_metrics(body.decode()), "connleak_connections_acquired_total",
                                        pid=pid), 8)
        t.send("exit")
        self.finish_tracer(t)

    def test_usage_errors_and_port_in_use(self):
        for bad in ("abc", "70000", "1.2.3:80", "::1:80", "host.example:80", ""):
            r = run_connleak(["--http", bad, "--", "/bin/true"])
            self.assertEqual(r.returncode, 2, r.describe())
            self.assertEqual(len(r.stderr.splitlines()), 1, r.describe())
            self.assertTrue(r.stderr.startswith("connleak: --http"), r.describe())
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            r = run_connleak(["--http", "127.0.0.1:%d" % port, "--", "/bin/true"])
        self.assertEqual(r.returncode, 1, r.describe())
        self.assertEqual(r.stderr, "connleak: --http: cannot serve on http://127.0.0.1:%d: the port is in use "
                         "(choose another with --http)\n" % port, r.describe())

    def test_non_loopback_is_stated(self):
        r = run_connleak(["--http", "0.0.0.0:0", "-q", "-d", "1", "--", "/bin/sleep", "30"])
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertRegex(r.stderr, r"connleak: serving http://0\.0\.0\.0:\d+/ .*non-loopback address: anyone who "
                         r"can reach it can read the report\n")
        r = run_connleak(["--http", "0", "-q", "-d", "1", "--", "/bin/sleep", "30"])
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertRegex(r.stderr, r"^connleak: serving http://127\.0\.0\.1:\d+/ \(/health/detailed, "
                         r"/snapshot.json, /metrics\)\n$")


if __name__ == "__main__":
    unittest.main(verbosity=2)
