"""A throwaway PostgreSQL 15 server for connleak's integration tests.

    server = PgServer()
    server.start()                      # initdb + pg_ctl start, as user postgres
    ci = server.conninfo("t_mytest")    # libpq conninfo with a unique application_name
    mark = server.log_mark()
    ... run clients ...
    n = server.count_authorized("t_mytest", since=mark)
    server.stop()                       # pg_ctl stop -m fast, rm -rf

Every server started is also stopped at interpreter exit (atexit), and SIGTERM
(ctest's timeout) is turned into a normal exit so that cleanup runs too.

The server logs every connection ("connection authorized: user=...
database=... application_name=...", log_connections=on) to a file readable by
root: counting those lines for one application_name gives the server's own
count of successful connections, independent of the tracer.

Run as a script, `pgserver.py` starts a server, prints `port=P dir=D`, and
stops it at EOF on stdin or SIGTERM/SIGINT (handy by hand).
"""

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
PG_USER = "postgres"

_AUTHORIZED = re.compile(
    r"connection authorized: user=(\S+) database=(\S+) application_name=(\S+)")

_servers = []


def _cleanup_all():
    for s in list(_servers):
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            print("pgserver: cleanup failed: %s" % e, file=sys.stderr)


atexit.register(_cleanup_all)


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)


if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _sigterm)


def free_port():
    """A TCP port of 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServerError(RuntimeError):
    pass


class PgServer:
    def __init__(self, extra_conf=None):
        self.extra_conf = dict(extra_conf or {})
        self.dir = None
        self.port = None
        self.host = "127.0.0.1"
        self.user = PG_USER
        self.dbname = "postgres"
        self.running = False

    # ---- paths ----
    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def socket_dir(self):
        return os.path.join(self.dir, "sock")

    @property
    def logfile(self):
        return os.path.join(self.dir, "server.log")

    # ---- running things as postgres ----
    def _as_pg(self, args, timeout=120, check=True):
        cmd = ["runuser", "-u", PG_USER, "--"] + list(args)
        p = subprocess.run(cmd, cwd=self.dir, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise PgServerError("%s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode, p.stdout))
        return p

    def start(self):
        if self.running:
            return self
        pw = pwd.getpwnam(PG_USER)
        self.dir = tempfile.mkdtemp(prefix="connleak-pg-")
        os.chmod(self.dir, 0o755)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        _servers.append(self)
        try:
            os.mkdir(self.socket_dir)
            os.chown(self.socket_dir, pw.pw_uid, pw.pw_gid)
            self._as_pg([os.path.join(PG_BIN, "initdb"), "-D", self.data, "--auth=trust",
                         "-U", PG_USER, "--no-sync", "-E", "UTF8", "--locale=C"])
            last = None
            for _ in range(5):  # another process may take the free port first
                self.port = free_port()
                self._write_conf()
                p = self._as_pg([os.path.join(PG_BIN, "pg_ctl"), "start", "-D", self.data,
                                 "-l", self.logfile, "-w", "-t", "60", "-s"], check=False)
                if p.returncode == 0:
                    break
                last = "pg_ctl start failed (exit %d):\n%s\n%s" % (p.returncode, p.stdout, self.log_text())
            else:
                raise PgServerError(last)
            self.running = True
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _write_conf(self):
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'%s'" % self.socket_dir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_connections": "on",
            "log_disconnections": "on",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] app=%a '",
            "max_connections": "200",
            "shared_buffers": "16MB",
        }
        conf.update(self.extra_conf)
        path = os.path.join(self.data, "postgresql.auto.conf")
        with open(path, "w") as f:
            f.write("# written by connleak's pgserver.py\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))
        pw = pwd.getpwnam(PG_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)

    def _wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            p = subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-q", "-h", self.host,
                                "-p", str(self.port), "-U", PG_USER, "-d", self.dbname, "-t", "5"],
                               stdin=subprocess.DEVNULL, timeout=30)
            if p.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise PgServerError("server on port %d not ready after %ds:\n%s"
                                    % (self.port, timeout, self.log_text()))
            time.sleep(0.1)

    def stop(self):
        if self.dir is None:
            return
        try:
            if self.running:
                self.running = False
                self._as_pg([os.path.join(PG_BIN, "pg_ctl"), "stop", "-D", self.data,
                             "-m", "fast", "-w", "-t", "60", "-s"], check=False)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            if self in _servers:
                _servers.remove(self)

    def restart(self):
        """pg_ctl restart -m fast: same port, every backend gone."""
        self._as_pg([os.path.join(PG_BIN, "pg_ctl"), "restart", "-D", self.data, "-l", self.logfile,
                     "-m", "fast", "-w", "-t", "60", "-s"])
        self._wait_ready()

    def add_password_role(self, name, password, read_all_stats=False):
        """A login role that must give its password over TCP (scram-sha-256),
        with pg_read_all_stats or not (then it cannot see other users'
        sessions in pg_stat_activity)."""
        self.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (name, password.replace("'", "''")))
        if read_all_stats:
            self.psql("GRANT pg_read_all_stats TO %s" % name)
        hba = os.path.join(self.data, "pg_hba.conf")
        with open(hba) as f:
            rules = f.read()
        with open(hba, "w") as f:  # first match wins: before initdb's trust lines
            f.write("host all %s 127.0.0.1/32 scram-sha-256\n" % name + rules)
        self.psql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        env = dict(os.environ)
        env.pop("PGPASSWORD", None)
        env["PGPASSFILE"] = os.devnull
        while time.monotonic() < deadline:  # the postmaster reloads asynchronously: until it asks
            p = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-w", "-A", "-t",
                                self.conninfo("pgserver_probe", user=name), "-c", "SELECT 1"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=60, env=env)
            if p.returncode != 0 and "password" in p.stderr:
                return
            time.sleep(0.1)
        raise PgServerError("pg_hba.conf reload for %s not in effect" % name)

    # ---- connecting ----
    def conninfo(self, app, **extra):
        """libpq conninfo for this server (TCP), with application_name=app."""
        kv = {"host": self.host, "port": self.port, "user": self.user,
              "dbname": self.dbname, "application_name": app, "connect_timeout": 10}
        kv.update(extra)
        return " ".join("%s=%s" % (k, v) for k, v in kv.items())

    def env(self, app=None):
        """os.environ plus PGHOST/PGPORT/PGUSER/PGDATABASE (and PGAPPNAME)."""
        e = dict(os.environ)
        e.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user, PGDATABASE=self.dbname)
        if app is not None:
            e["PGAPPNAME"] = app
        else:
            e.pop("PGAPPNAME", None)
        return e

    def psql(self, sql, app="pgserver_psql"):
        p = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            self.conninfo(app), "-c", sql],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        if p.returncode != 0:
            raise PgServerError("psql -c %r failed: %s" % (sql, p.stderr))
        return p.stdout.strip()

    # ---- the server's log ----
    def log_mark(self):
        """Current end of the log: pass as since= to count what follows."""
        try:
            return os.path.getsize(self.logfile)
        except OSError:
            return 0

    def log_text(self, since=0):
        try:
            with open(self.logfile, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def authorized(self, since=0):
        """(user, database, application_name) of each authorized connection."""
        return [m.groups() for m in _AUTHORIZED.finditer(self.log_text(since))]

    def count_authorized(self, app, since=0):
        """Connections the server authorized with application_name == app."""
        return sum(1 for _, _, a in self.authorized(since) if a == app)


if __name__ == "__main__":
    s = PgServer().start()
    print("port=%d dir=%s" % (s.port, s.dir), flush=True)
    signal.signal(signal.SIGINT, _sigterm)
    try:
        sys.stdin.read()
    finally:
        s.stop()
