"""The checks of deploy/check (run it, not this file): see there for what and why."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy/helm/taskflow"
BIN, TOOLS, TANSU = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), sys.argv[3]
VENV = TOOLS / "venv/bin"
PG_URL = os.environ.get("TASKFLOW_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
ROLES = {"api", "relay", "recurring", "reminders", "notifier", "audit", "sync"}
# checkov checks the chart does not follow, each for a reason (deploy/README.md, "Security").
CHECKOV_SKIPS = {
    # No CPU limits: CFS throttling adds latency to every request; requests reserve the CPU.
    "CKV_K8S_11",
    # Tags are immutable (the commit SHA); image.digest pins by digest where wanted.
    "CKV_K8S_15", "CKV_K8S_43",
    # Secrets reach the process as environment variables, the way it reads every setting.
    "CKV_K8S_35",
}

failures = []


def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        failures.append(what)
    return ok


def run(*args, ok=(0,), **kw):
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if p.returncode not in ok:
        raise SystemExit(f"{' '.join(map(str, args))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def helm_template(*args):
    return subprocess.run(["helm", "template", "taskflow", str(CHART), "--namespace", "taskflow", *args],
                          capture_output=True, text=True)


def checkov(file, framework, skips=()):
    """checkov on `file` alone (offline): its summary and the failed checks, named."""
    folder = Path(tempfile.mkdtemp(dir=work))
    shutil.copy(file, folder / Path(file).name)
    args = [VENV / "checkov", "-d", folder, "--framework", framework, "--skip-download", "--quiet", "-o", "json"]
    if skips:
        args += ["--skip-check", ",".join(sorted(skips))]
    p = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    report = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
    failed = [f"{r['check_id']} {r['resource']}" for r in report.get("results", {}).get("failed_checks", [])]
    return report.get("summary", {}), failed


def accepted_env(command):
    """The environment variables `taskflow COMMAND --help` names."""
    text = run(BIN, command, "--help").stdout
    return set(re.findall(r"\[env: ([A-Z0-9_]+)", text))


# ---------------------------------------------------------------------------------------------
print("\n== the chart: lint, schema, render")
run("helm", "lint", str(CHART), "-f", str(CHART / "values-minikube.yaml"))
check(True, "helm lint with values-minikube.yaml")
p = helm_template()
check(p.returncode != 0 and "needs a database" in p.stderr, "no database configured: install refused, naming it")
for bad in ("bsu=kafka", "bus=rabbitmq", "roles.api.roles=api\\,sink", "kafka.partitions=0",
            "tracing.otlpEndpoint=collector:4318"):
    p = helm_template("--set", "database.url=postgres://x@db/t", "--set", bad)
    check(p.returncode != 0 and "values don't meet the specifications" in p.stderr,
          f"values.schema.json refuses {bad}")

run_env = accepted_env("run")
migrate_env = accepted_env("migrate")
renders = {}
for values in ("values.yaml", "values-minikube.yaml", "values-cloud.yaml"):
    for dapr in (False, True):
        args = ["-f", str(CHART / values)]
        if values == "values.yaml":
            args += ["--set", "database.url=postgres://taskflow@db:5432/taskflow"]
        if dapr:
            args += ["--set", "dapr.enabled=true", "--set", "bus=dapr"]
        if values == "values-cloud.yaml":
            args += ["--set", "tracing.otlpEndpoint=http://otel-collector.observability:4318"]
        p = helm_template(*args)
        name = f"{values}, Dapr {'on' if dapr else 'off'}"
        if check(p.returncode == 0, f"renders: {name}"):
            renders[name] = (p.stdout, dapr)

work = Path(tempfile.mkdtemp(prefix="taskflow-deploy-"))
for name, (text, dapr) in renders.items():
    print(f"\n== {name}")
    docs = [d for d in yaml.safe_load_all(text) if d]
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    out = work / (re.sub(r"[^a-z0-9]+", "-", name.lower()) + ".yaml")
    out.write_text(text)
    p = subprocess.run([VENV / "kubernetes-validate", "--strict", "--quiet", "--no-warn", out],
                       capture_output=True, text=True)
    check(p.returncode == 0, "every built-in kind valid against the Kubernetes 1.37 schemas (strict)"
          + ("" if p.returncode == 0 else ":\n" + p.stdout + p.stderr))
    p = subprocess.run([VENV / "yamllint", "-d", "{extends: default, rules: {line-length: disable, document-start: disable, comments: disable, comments-indentation: disable, empty-lines: {max-end: 1}, indentation: {spaces: consistent, indent-sequences: whatever}, braces: {max-spaces-inside: 1}, brackets: {max-spaces-inside: 1}}}", out],
                       capture_output=True, text=True)
    check(p.returncode == 0, "yamllint" + ("" if p.returncode == 0 else ":\n" + p.stdout))

    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in kinds.get("Deployment", [])}
    covered = set()
    config = next(c for c in kinds["ConfigMap"] if c["metadata"]["name"].endswith("-config"))["data"]
    check(set(config) <= run_env, "every ConfigMap setting is one `taskflow run --help` accepts"
          + ("" if set(config) <= run_env else f": {sorted(set(config) - run_env)}"))
    if "values-cloud" in name:
        check(config.get("TASKFLOW_OTLP_ENDPOINT") == "http://otel-collector.observability:4318",
              "trace export set from tracing.otlpEndpoint")
    for component, d in sorted(deployments.items()):
        pod = d["spec"]["template"]
        c = pod["spec"]["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        roles = set(env["TASKFLOW_ROLES"]["value"].split(","))
        covered |= roles
        probes = all(c.get(k, {}).get("httpGet", {}).get("path", "").startswith("/healthz/")
                     for k in ("startupProbe", "livenessProbe", "readinessProbe"))
        sc, psc = c.get("securityContext", {}), pod["spec"].get("securityContext", {})
        secure = (sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                  and sc.get("capabilities", {}).get("drop") == ["ALL"] and psc.get("runAsNonRoot") is True
                  and psc.get("runAsUser", 0) >= 10000 and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault")
        res = c.get("resources", {})
        check(roles <= ROLES and probes and secure and res.get("requests") and res.get("limits", {}).get("memory")
              and set(env) <= run_env and pod["spec"].get("topologySpreadConstraints"),
              f"{component} ({','.join(sorted(roles))}): probes on /healthz/*, requests and a memory limit, "
              "non-root, read-only root, no capabilities, spread, settings the binary accepts")
        ann = pod["metadata"].get("annotations", {})
        if dapr:
            check(ann.get("dapr.io/enabled") == "true" and ann.get("dapr.io/app-id") == d["metadata"]["name"]
                  and ann.get("dapr.io/app-port") == str(c["ports"][0]["containerPort"]),
                  f"{component}: Dapr annotations (enabled, app-id {ann.get('dapr.io/app-id')}, app-port = the container's port)")
        else:
            check("dapr.io/enabled" not in ann, f"{component}: no Dapr sidecar")
    check(covered == ROLES and {"api", "relay", "recurring", "reminders", "notifier", "audit"} <= set(deployments),
          "one Deployment per role, every role run by one")
    pdbs = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for p in kinds.get("PodDisruptionBudget", [])}
    if "values-minikube" not in name:
        check(pdbs == set(deployments), "a PodDisruptionBudget per role")
        hpa = kinds["HorizontalPodAutoscaler"][0]["spec"]["scaleTargetRef"]["name"]
        check(hpa == deployments["api"]["metadata"]["name"], "the HPA scales the api Deployment")
    svc = next(s for s in kinds["Service"] if s["metadata"]["name"] == "taskflow")
    check(svc["spec"]["selector"].get("app.kubernetes.io/component") == "api", "the Service selects the api pods")
    job = kinds["Job"][0]
    hook = job["metadata"]["annotations"].get("helm.sh/hook", "")
    jenv = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    secret_ref = job["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"]
    secrets = {s["metadata"]["name"]: s for s in kinds.get("Secret", [])}
    early = secret_ref not in secrets or int(secrets[secret_ref]["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"])
    check(hook == "pre-install,pre-upgrade" and job["spec"]["template"]["spec"]["containers"][0]["args"][0] == "migrate"
          and jenv <= migrate_env and early,
          "the migration is a Job hooked before install and upgrade, its Secret made before it")
    components = {c["metadata"]["name"] for c in kinds.get("Component", [])}
    if dapr:
        check(components == {"taskflow-pubsub", "taskflow-live", "taskflow-housekeeping"} and config.get("TASKFLOW_BUS") == "dapr",
              "Dapr components installed (pub/sub, live, housekeeping) and the bus is dapr")
        relay_env = {e["name"] for e in deployments["relay"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        check("TASKFLOW_DAPR_CRON_BINDING" in relay_env, "the relay takes housekeeping from the cron binding")
    else:
        check(not components and config.get("TASKFLOW_BUS") == "kafka", "no Dapr components; the bus is kafka")
    summary, failed = checkov(out, "kubernetes", CHECKOV_SKIPS)
    check(summary.get("failed") == 0 and summary.get("passed", 0) > 0,
          f"checkov: {summary.get('passed')} passed, {summary.get('failed')} failed (skips: {', '.join(sorted(CHECKOV_SKIPS))})"
          + ("" if not failed else ": " + "; ".join(failed[:10])))

# ---------------------------------------------------------------------------------------------
print("\n== the Dockerfile")
dockerfile = (ROOT / "deploy/Dockerfile").read_text()
summary, failed = checkov(ROOT / "deploy/Dockerfile", "dockerfile")
check(summary.get("failed") == 0 and summary.get("passed", 0) > 0,
      f"checkov on the Dockerfile: {summary.get('passed')} passed, {summary.get('failed')} failed"
      + ("" if not failed else ": " + "; ".join(failed[:10])))
manifests = sorted(str(m.relative_to(ROOT)) for m in [*ROOT.glob("crates/*/Cargo.toml"), ROOT / "bench/Cargo.toml"])
missing = [m for m in manifests if f"COPY {m} " not in dockerfile]
check(not missing, "the dependency layer copies every crate's manifest" + (f": missing {missing}" if missing else ""))
# The dependency layer's stub workspace resolves offline against Cargo.lock (what its
# `cargo build --locked` needs before any source is there).
stub = work / "stub"
for m in ["Cargo.toml", "Cargo.lock", *manifests]:
    (stub / m).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / m, stub / m)
for m in manifests:
    src = (stub / m).parent / "src"
    src.mkdir()
    (src / ("main.rs" if m in ("crates/taskflow/Cargo.toml", "bench/Cargo.toml") else "lib.rs")).write_text("")
p = subprocess.run(["cargo", "metadata", "--locked", "--offline", "--format-version", "1", "--no-deps"],
                   cwd=stub, capture_output=True, text=True)
check(p.returncode == 0, "the stub workspace of the dependency layer resolves with --locked"
      + ("" if p.returncode == 0 else ":\n" + p.stderr[-800:]))

# ---------------------------------------------------------------------------------------------
print("\n== the image")
rootfs = work / "rootfs"
run(ROOT / "deploy/rootfs", BIN, rootfs)
files = sorted(str(f.relative_to(rootfs)) for f in rootfs.rglob("*") if f.is_file())
size = sum((rootfs / f).stat().st_size for f in files)
print(f"  the image's files ({size / 1e6:.1f} MB): {', '.join(files)}")
docker = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
if docker:
    run("docker", "build", "-f", "deploy/Dockerfile", "-t", "taskflow:check", ".", cwd=ROOT)
    p = run("docker", "run", "--rm", "--read-only", "taskflow:check", "--help")
    check("Usage: taskflow" in p.stdout, "docker: the image runs `taskflow --help` read-only")
else:
    print("  (no Docker engine answers here: the image's root filesystem is assembled by deploy/rootfs,\n"
          "   the same script the Dockerfile runs, and run from there below)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SUDO = [] if os.geteuid() == 0 else ["sudo", "--preserve-env"]


def isolation_works():
    """Whether a mount namespace with a read-only bind mount can be made here."""
    if os.environ.get("TASKFLOW_DEPLOY_NO_ISOLATION"):
        return False
    probe = Path(tempfile.mkdtemp())
    script = f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe} && ! touch {probe}/x 2>/dev/null"
    ok = subprocess.run([*SUDO, "unshare", "-m", "sh", "-c", script], capture_output=True).returncode == 0
    shutil.rmtree(probe, ignore_errors=True)
    return ok


ISOLATED = isolation_works()
if not ISOLATED:
    print("  (no mount namespace can be made here: the image's binary runs through the image's own\n"
          "   loader and libraries, as user 65532 where this runs as root, without a read-only root)")
    work.chmod(0o755)


def in_image(*args):
    """A command inside the image's root filesystem: mounted read-only, /tmp and /data as empty
    volumes (as the chart mounts them), /proc, user and group 65532. Where no mount namespace can
    be made, the image's binary through the image's loader and libraries only."""
    if not ISOLATED:
        user = ["setpriv", "--reuid", "65532", "--regid", "65532", "--clear-groups"] if os.geteuid() == 0 else []
        return [*user, rootfs / "lib64/ld-linux-x86-64.so.2", "--library-path", rootfs / "lib/x86_64-linux-gnu",
                f"{rootfs}{args[0]}", *map(str, args[1:])]
    mounts = (f"mount --bind {rootfs} {rootfs} && mount -o remount,bind,ro {rootfs} && "
              f"mount -t tmpfs -o mode=1777 tmpfs {rootfs}/tmp && mount -t tmpfs -o uid=65532,gid=65532 tmpfs {rootfs}/data && "
              f"mount -t proc proc {rootfs}/proc && exec chroot --userspec=65532:65532 {rootfs} \"$@\"")
    return [*SUDO, "unshare", "-m", "sh", "-c", mounts, "sh", *map(str, args)]


p = subprocess.run(in_image("/usr/local/bin/taskflow", "--version"), capture_output=True, text=True)
check(p.returncode == 0 and p.stdout.startswith("taskflow "),
      ("runs as user 65532 on a read-only root: " if ISOLATED else "runs with the image's libraries only: ")
      + p.stdout.strip())
if ISOLATED:
    p = subprocess.run(in_image("/usr/local/bin/taskflow", "migrate", "--database-url", "sqlite:/taskflow.db"),
                       capture_output=True, text=True)
    check(p.returncode != 0, "cannot write outside its volumes (a database file at / is refused)")

db = f"taskflow_test_deploy_{os.getpid()}"  # scripts/test drops leftovers of this prefix
run("psql", PG_URL, "-qc", f"drop database if exists {db} with (force)", "-c", f"create database {db}")
db_url = PG_URL.rsplit("/", 1)[0] + "/" + db
kafka_port, api_port = free_port(), free_port()
procs = [subprocess.Popen([TANSU, "broker", "--listener-url", f"tcp://127.0.0.1:{kafka_port}", "--advertised-listener-url",
                           f"tcp://127.0.0.1:{kafka_port}", "--storage-engine", "memory://tansu/"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
env = {**os.environ, "TASKFLOW_DATABASE_URL": db_url, "TASKFLOW_BUS": "kafka",
       "TASKFLOW_KAFKA_BROKERS": f"127.0.0.1:{kafka_port}", "TASKFLOW_LOG_FORMAT": "json", "TASKFLOW_LOG": "warn"}
if not ISOLATED:
    # A worker role starts itself again through /proc/self/exe, here the loader: decided ahead.
    env["MIMALLOC_ALLOW_THP"] = "0"
try:
    p = subprocess.run(in_image("/usr/local/bin/taskflow", "migrate"), capture_output=True, text=True, env=env)
    check(p.returncode == 0, "`taskflow migrate` from the image against PostgreSQL" + ("" if p.returncode == 0 else ": " + p.stderr))
    ports = {}
    for roles in ("api,sync", "relay", "recurring", "reminders", "notifier", "audit"):
        ports[roles] = api_port if roles == "api,sync" else free_port()
        # The api's model server answers nothing (a closed port): each chat message tries it,
        # counts the error and falls back to the rule-based agent.
        llm = ["--llm-base-url", f"http://127.0.0.1:{free_port()}/v1"] if roles == "api,sync" else []
        procs.append(subprocess.Popen(in_image("/usr/local/bin/taskflow", "run", "--roles", roles, "--bind",
                                               f"127.0.0.1:{ports[roles]}", *llm),
                                      env=env, stdout=subprocess.DEVNULL, stderr=open(work / f"{roles}.log", "w")))

    def get(port, path, token=None, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=None if body is None else json.dumps(body).encode(),
                                     headers={"content-type": "application/json",
                                              **({"authorization": f"Bearer {token}"} if token else {})})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode()

    ready = set()
    deadline = time.time() + 90
    while time.time() < deadline and len(ready) < len(ports):
        for roles, port in ports.items():
            try:
                get(port, "/healthz/ready")
                ready.add(roles)
            except OSError:
                pass
        time.sleep(0.5)
    check(len(ready) == len(ports), f"every role ready from the image, through the broker: {', '.join(sorted(ready))}")
    token = json.loads(get(api_port, "/api/auth/signup", body={"email": "ops@example.com", "password": "password123"}))["token"]
    # A live stream open (the sync role's gauge), a reminder that fires, a recurring task completed.
    stream = urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/events?token={token}", timeout=60)
    fire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    get(api_port, "/api/tasks", token, {"title": "check the dashboards", "reminders": [{"at": fire}]})
    task = json.loads(get(api_port, "/api/tasks", token, {"title": "water the plants", "recurrence": "FREQ=DAILY"}))
    get(api_port, f"/api/tasks/{task['id']}/complete", token, {})
    get(api_port, "/api/chat", token, {"message": "add renew the passport next monday"})
    deadline = time.time() + 60
    while time.time() < deadline and "check the dashboards" not in get(api_port, "/api/notifications", token):
        time.sleep(1)
    time.sleep(3)  # the consumers' lag and the relay's backlog are sampled periodically
    check("check the dashboards" in get(api_port, "/api/notifications", token),
          "the reminder fired and was notified, every role in the image's filesystem")
    exported = set()
    for port in ports.values():
        for line in get(port, "/metrics").splitlines():
            if line and not line.startswith("#"):
                exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    used = set()
    rules = yaml.safe_load((CHART / "files/alerts.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((CHART / "files/dashboard.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    promql = {"sum", "rate", "max", "by", "clamp_min", "histogram_quantile", "le", "and", "deriv", "route", "status",
              "consumer", "topic", "tool", "outcome", "kind", "m", "s", "h"}
    for e in exprs:
        e = re.sub(r'"[^"]*"|\{[^}]*\}|\[[^\]]*\]', " ", e)
        used |= {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e) if w not in promql}
    unknown = sorted(used - exported)
    stream.close()
    check(not unknown, f"every metric of the dashboard and the alerts is exported by the running roles ({len(used)} names)"
          + ("" if not unknown else f": not exported: {unknown}"))
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    subprocess.run(["psql", PG_URL, "-qc", f"drop database if exists {db} with (force)"], capture_output=True)

# ---------------------------------------------------------------------------------------------
print("\n== the workflows")
workflows = sorted((ROOT / ".github/workflows").glob("*.yml"))
check(len(workflows) >= 3, f"workflows: {', '.join(w.name for w in workflows)}")
for w in workflows:
    doc = yaml.safe_load(w.read_text())
    steps = [s for job in doc.get("jobs", {}).values() for s in job.get("steps", [])]
    unpinned = [s["uses"] for s in steps if "uses" in s and not re.search(r"@v?\d+(\.\d+)*$", s["uses"])]
    scripts = set()
    for s in steps:
        scripts |= set(re.findall(r"(?:^|\s)((?:scripts|deploy|bench|\.ci)/[\w./-]+)", s.get("run", "")))
    absent = sorted(x for x in scripts if not (ROOT / x).exists())
    check(doc.get("jobs") and (True in doc or "on" in doc) and not unpinned and not absent,
          f"{w.name}: valid, {len(steps)} steps, actions pinned by version, scripts it calls exist ({', '.join(sorted(scripts)) or 'none'})"
          + (f"; unpinned {unpinned}" if unpinned else "") + (f"; missing {absent}" if absent else ""))

shutil.rmtree(work, ignore_errors=True)
print(f"\n{'FAILED: ' + str(len(failures)) + ' check(s)' if failures else 'every deploy check passed'}")
sys.exit(1 if failures else 0)
