#!/usr/bin/python3
"""What can be checked of deploy/ without a cluster or an image registry
(ctest `deploy`):

- connleak.service: `systemd-analyze verify` (on a copy whose ExecStart is
  the built binary, as the unit's path exists only once installed), and it
  runs `--all --http 127.0.0.1:PORT -q`;
- daemonset.yaml: parses (python3-yaml); host PID namespace; every
  capability dropped but the ones connleak needs; /sys/kernel/btf and
  /sys/fs/bpf mounted; Prometheus scrape annotations on the port served;
- Dockerfile: Debian 12 both stages; its command is the same --all run.

    check_deploy.py REPO CONNLEAK_BINARY
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

NEEDED_CAPS = {"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN", "CHECKPOINT_RESTORE"}
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def all_args(args):
    i = args.index("--all") if "--all" in args else -1
    check(i >= 0, "runs --all: %s" % args)
    check("-q" in args, "runs -q: %s" % args)
    check("--http" in args, "serves --http: %s" % args)
    return args[args.index("--http") + 1] if "--http" in args else ""


def check_unit(repo, binary):
    src = os.path.join(repo, "deploy", "connleak.service")
    text = open(src).read()
    m = re.search(r"^ExecStart=(\S+) (.*)$", text, re.M)
    check(m and m.group(1) == "/usr/local/bin/connleak", "ExecStart is the installed connleak")
    addr = all_args(shlex.split(m.group(2))) if m else ""
    check(re.fullmatch(r"127\.0\.0\.1:\d+", addr), "the unit serves on 127.0.0.1:PORT, not %r" % addr)
    caps = set(re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M).group(1).split())
    check({c[4:] for c in caps} == NEEDED_CAPS, "unit capabilities %s" % caps)
    d = tempfile.mkdtemp()
    try:
        copy = os.path.join(d, "connleak.service")
        with open(copy, "w") as f:
            f.write(text.replace("/usr/local/bin/connleak", os.path.abspath(binary)))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", copy], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        # Only lines about our unit count (the host's own units may warn).
        ours = [line for line in r.stdout.splitlines() if "connleak.service" in line]
        check(r.returncode == 0 and not ours, "systemd-analyze verify: rc %d\n%s" % (r.returncode, r.stdout))
    finally:
        shutil.rmtree(d)
    return addr.split(":")[1] if ":" in addr else None


def check_daemonset(repo):
    docs = list(yaml.safe_load_all(open(os.path.join(repo, "deploy", "daemonset.yaml"))))
    ds = [d for d in docs if d and d.get("kind") == "DaemonSet"]
    check(len(ds) == 1, "one DaemonSet")
    if not ds:
        return
    pod = ds[0]["spec"]["template"]
    spec = pod["spec"]
    check(spec.get("hostPID") is True, "hostPID: true")
    check(ds[0]["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(),
          "the selector matches the pod's labels")
    c = spec["containers"][0]
    sc = c["securityContext"]
    check(sc.get("privileged") is False and sc.get("allowPrivilegeEscalation") is False, "not privileged")
    check(sc["capabilities"]["drop"] == ["ALL"], "drops ALL capabilities")
    check(set(sc["capabilities"]["add"]) == NEEDED_CAPS, "adds exactly %s" % sorted(NEEDED_CAPS))
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    for path in ("/sys/kernel/btf", "/sys/fs/bpf"):
        check(path in mounts, "mounts " + path)
        if path in mounts:
            check(vols[mounts[path]["name"]]["hostPath"]["path"] == path, path + " from the host")
    addr = all_args(c["args"])
    port = addr.rsplit(":", 1)[-1]
    ann = pod["metadata"]["annotations"]
    check(ann.get("prometheus.io/scrape") == "true", "prometheus.io/scrape")
    check(ann.get("prometheus.io/port") == port, "prometheus.io/port is the served port %s" % port)
    check(ann.get("prometheus.io/path") == "/metrics", "prometheus.io/path")
    check(str(c["ports"][0]["containerPort"]) == port, "containerPort is the served port")


def check_dockerfile(repo):
    text = open(os.path.join(repo, "deploy", "Dockerfile")).read()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    check(froms and all(f.startswith("debian:12") for f in froms), "Debian 12 stages: %s" % froms)
    cmd = re.search(r'^CMD (\[.*\])$', text, re.M)
    check(cmd is not None, "a CMD")
    if cmd:
        all_args(yaml.safe_load(cmd.group(1)))  # a JSON array is YAML too


def main():
    repo, binary = sys.argv[1], sys.argv[2]
    check_unit(repo, binary)
    check_daemonset(repo)
    check_dockerfile(repo)
    for f in failures:
        print("deploy: FAILED: " + f)
    print("deploy: %s" % ("ok" if not failures else "%d failed" % len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
