"""deploy/ checked against the real binaries (Docker and a cluster cannot run here, so everything is static or local):

- every YAML under deploy/ parses; Kubernetes objects have well-formed apiVersion/kind/metadata.name;
- the kustomizations render (a small renderer for the features used here, compared with `kubectl kustomize` when
  kubectl is installed);
- every flag in the epp / epp-sim container args exists in the binary's --help;
- containerPorts, probe ports, Service targetPorts, the InferencePool's endpointPickerRef / targetPorts agree with
  the flag values;
- the picker starts with the manifests' own args, ConfigMap config and InferencePool (served by the fake Kubernetes
  API server with pods labelled like the sim fleet) and becomes ready;
- the Dockerfile builds both binaries on a Swift 6 image and installs a runtime package for every linked C library.

Flags that other work streams add (PENDING_FLAGS) are checked like any other: those checks fail until the flag lands.
"""
import copy
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest
import yaml

from fake_kube_apiserver import FakeKubeAPIServer
from harness import EPP_BIN, ROOT, Process, free_port, wait_port

DEPLOY = os.path.join(ROOT, "deploy")
KUBE = os.path.join(DEPLOY, "kubernetes")
EPP_SIM_BIN = os.environ.get("EPP_SIM_BIN", os.path.join(os.path.dirname(EPP_BIN), "epp-sim"))
VARIANTS = ["base", "overlays/demo", "overlays/demo-envoy-gateway"]
# Landed by other work streams in parallel with these manifests; checked all the same.
PENDING_FLAGS = {"--redis-url"}

KNOWN_API = {
    "Deployment": "apps/v1", "Service": "v1", "ServiceAccount": "v1", "ConfigMap": "v1", "Namespace": "v1",
    "Role": "rbac.authorization.k8s.io/v1", "RoleBinding": "rbac.authorization.k8s.io/v1",
    "InferencePool": "inference.networking.k8s.io/v1",
    "Gateway": "gateway.networking.k8s.io/v1", "HTTPRoute": "gateway.networking.k8s.io/v1",
    "EnvoyExtensionPolicy": "gateway.envoyproxy.io/v1alpha1", "EnvoyPatchPolicy": "gateway.envoyproxy.io/v1alpha1",
}
CLUSTER_SCOPED = {"Namespace"}
API_VERSION = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# ---------------------------------------------------------------------------------------------------------------
# loading and rendering

def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def yaml_files(root):
    return sorted(glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True) +
                  glob.glob(os.path.join(root, "**", "*.yml"), recursive=True))


def is_kustomization(doc):
    return doc.get("kind") in ("Kustomization", "Component") and str(doc.get("apiVersion", "")).startswith("kustomize.config.k8s.io/")


def json_pointer_apply(doc, op):
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    parent = doc
    for p in parts[:-1]:
        parent = parent[int(p)] if isinstance(parent, list) else parent[p]
    last = parts[-1]
    if op["op"] == "add":
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
        else:
            parent[last] = copy.deepcopy(op["value"])
    elif op["op"] == "replace":
        if isinstance(parent, list):
            parent[int(last)] = copy.deepcopy(op["value"])
        else:
            assert last in parent, f"replace of missing {op['path']}"
            parent[last] = copy.deepcopy(op["value"])
    else:
        raise AssertionError(f"unsupported JSON6902 op {op['op']}")


def deep_merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


def matches_target(doc, target):
    api = doc.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    return all([
        target.get("kind") in (None, doc.get("kind")),
        target.get("name") in (None, doc["metadata"].get("name")),
        target.get("group") in (None, group),
        target.get("version") in (None, version),
    ])


def apply_patches(docs, patches, base_dir):
    for patch in patches or []:
        if "path" in patch:
            for pdoc in load_all(os.path.join(base_dir, patch["path"])):   # strategic merge of maps
                hits = [d for d in docs if d["kind"] == pdoc["kind"] and d["metadata"]["name"] == pdoc["metadata"]["name"]]
                assert len(hits) == 1, f"patch {patch['path']} matches {len(hits)} objects"
                deep_merge(hits[0], {k: v for k, v in pdoc.items() if k not in ("apiVersion", "kind")})
        else:
            hits = [d for d in docs if matches_target(d, patch["target"])]
            assert hits, f"patch target {patch['target']} matches nothing"
            for d in hits:
                for op in yaml.safe_load(patch["patch"]):
                    json_pointer_apply(d, op)


def render(directory):
    """The kustomize features used under deploy/kubernetes: resources (files, directories), components, patches
    (strategic-merge files, inline JSON6902 with targets), namespace. Labels are not needed by the checks."""
    kfile = os.path.join(directory, "kustomization.yaml")
    (k,) = load_all(kfile)
    assert is_kustomization(k), kfile
    docs = []
    for res in k.get("resources", []):
        path = os.path.normpath(os.path.join(directory, res))
        assert os.path.exists(path), f"{kfile}: resource {res} does not exist"
        docs += render(path) if os.path.isdir(path) else load_all(path)
    for comp in k.get("components", []):
        cdir = os.path.normpath(os.path.join(directory, comp))
        (c,) = load_all(os.path.join(cdir, "kustomization.yaml"))
        assert c["kind"] == "Component", cdir
        for res in c.get("resources", []):
            docs += load_all(os.path.join(cdir, res))
        apply_patches(docs, c.get("patches"), cdir)
    apply_patches(docs, k.get("patches"), directory)
    if "namespace" in k:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
            if d["kind"] == "RoleBinding":
                for s in d.get("subjects", []):
                    if s.get("kind") == "ServiceAccount":
                        s["namespace"] = k["namespace"]
    return docs


def find(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def containers_running(docs, binary):
    out = []
    for dep in find(docs, "Deployment"):
        for c in dep["spec"]["template"]["spec"]["containers"]:
            if c.get("command", [""])[0].endswith("/" + binary):
                out.append((dep, c))
    return out


def flag_values(args):
    flags = {}
    for a in args:
        assert a.startswith("--"), f"argument {a!r} is not a --flag"
        name, eq, value = a.partition("=")
        assert eq, f"{a}: use --flag=value (one list item per flag)"
        flags[name] = value
    return flags


def help_flags(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30).stdout
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out))


@pytest.fixture(scope="module", params=VARIANTS)
def rendered(request):
    return request.param, render(os.path.join(KUBE, request.param))


# ---------------------------------------------------------------------------------------------------------------
# static checks

def test_every_yaml_under_deploy_parses_and_kubernetes_objects_are_well_formed():
    files = yaml_files(DEPLOY)
    assert any(f.endswith("envoy-inference-gateway.yaml") for f in files)
    kube_objects = 0
    for path in files:
        docs = load_all(path)
        assert docs, f"{path} is empty"
        if not path.startswith(KUBE + os.sep):
            continue
        for d in docs:
            assert isinstance(d, dict), path
            api, kind = d.get("apiVersion"), d.get("kind")
            assert isinstance(api, str) and API_VERSION.match(api), f"{path}: bad apiVersion {api!r}"
            assert isinstance(kind, str) and re.match(r"^[A-Z][A-Za-z0-9]*$", kind), f"{path}: bad kind {kind!r}"
            if is_kustomization(d):
                continue
            assert kind in KNOWN_API, f"{path}: unexpected kind {kind}"
            assert api == KNOWN_API[kind], f"{path}: {kind} should be {KNOWN_API[kind]}, not {api}"
            name = d.get("metadata", {}).get("name", "")
            assert DNS1123.match(name) and len(name) <= 253, f"{path}: bad metadata.name {name!r}"
            kube_objects += 1
    assert kube_objects >= 12


def test_every_manifest_file_is_used_by_a_kustomization():
    referenced = set()
    for kfile in glob.glob(os.path.join(KUBE, "**", "kustomization.yaml"), recursive=True):
        (k,) = load_all(kfile)
        d = os.path.dirname(kfile)
        for key in ("resources", "components"):
            for r in k.get(key, []):
                referenced.add(os.path.normpath(os.path.join(d, r)))
        for p in k.get("patches", []):
            if "path" in p:
                referenced.add(os.path.normpath(os.path.join(d, p["path"])))
    for path in yaml_files(KUBE):
        if os.path.basename(path) != "kustomization.yaml":
            assert path in referenced, f"{path} is not listed in any kustomization"


def test_render_matches_kubectl_kustomize(rendered):
    variant, docs = rendered
    ids = sorted((d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")) for d in docs)
    assert len(ids) == len(set(ids)), "duplicate objects"
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed: the built-in renderer was checked by the other tests only")
    out = subprocess.run([kubectl, "kustomize", os.path.join(KUBE, variant)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    theirs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert sorted((d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")) for d in theirs) == ids
    for (kind, name, _), mine in zip(ids, sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")))):
        other = next(d for d in theirs if d["kind"] == kind and d["metadata"]["name"] == name)
        strip = lambda d: {k: v for k, v in d.items() if k != "metadata"}   # kubectl adds labels in metadata
        if kind == "Deployment":   # labels also land in the pod template; compare what the checks use
            for c_mine, c_other in zip(mine["spec"]["template"]["spec"]["containers"], other["spec"]["template"]["spec"]["containers"]):
                assert c_mine == c_other
        else:
            assert strip(mine) == strip(other), (kind, name)


def test_epp_flags_exist_in_the_binary(rendered):
    _, docs = rendered
    known = help_flags(EPP_BIN)
    assert "--grpc-port" in known and "--config-file" in known, "could not read epp --help"
    eps = containers_running(docs, "epp")
    assert len(eps) == 1
    used = set(flag_values(eps[0][1]["args"]))
    missing = used - known
    pending = missing & PENDING_FLAGS
    assert not missing - PENDING_FLAGS, f"epp has no flag(s) {sorted(missing - PENDING_FLAGS)}"
    assert not pending, f"flag(s) {sorted(pending)} used by the manifests have not landed in epp yet (PENDING_FLAGS)"


def test_epp_sim_flags_exist_in_the_binary(rendered):
    variant, docs = rendered
    sims = containers_running(docs, "epp-sim")
    if variant == "base":
        assert sims == []
        return
    assert os.path.exists(EPP_SIM_BIN), f"build epp-sim first ({EPP_SIM_BIN}) or set EPP_SIM_BIN"
    known = help_flags(EPP_SIM_BIN)
    assert "--role" in known and "--port" in known
    roles = set()
    for dep, c in sims:
        flags = flag_values(c["args"])
        assert set(flags) <= known, f"{dep['metadata']['name']}: epp-sim has no flag(s) {sorted(set(flags) - known)}"
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert labels["llm-d.ai/role"] == flags["--role"]
        assert flags["--host"] == "0.0.0.0", "a pod's server must listen beyond loopback"
        assert flags.get("--count", "1") == "1"
        assert [p["containerPort"] for p in c["ports"]] == [int(flags["--port"])]
        assert c["readinessProbe"]["httpGet"]["port"] == int(flags["--port"])
        assert set(dep["spec"]["selector"]["matchLabels"].items()) <= set(labels.items())
        roles.add(flags["--role"])
    assert roles == {"prefill", "decode"}


def test_ports_probes_services_and_pool_agree_with_flags(rendered):
    variant, docs = rendered
    ((dep, c),) = containers_running(docs, "epp")
    flags = flag_values(c["args"])
    grpc, health, metrics = (int(flags.get(f, d)) for f, d in
                             (("--grpc-port", 9002), ("--grpc-health-port", 9003), ("--metrics-port", 9090)))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert sorted(ports.values()) == sorted([grpc, health, metrics])
    # kubelet probes: gRPC health on the health port, the reference's service names
    assert c["livenessProbe"]["grpc"] == {"port": health, "service": "liveness"}
    assert c["readinessProbe"]["grpc"] == {"port": health, "service": "readiness"}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > float(flags.get("--drain-timeout", 30))
    # the config file flag points into the mounted ConfigMap
    mount = next(m for m in c["volumeMounts"] if flags["--config-file"].startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    cm = find(docs, "ConfigMap", volume["configMap"]["name"])
    assert len(cm) == 1 and os.path.basename(flags["--config-file"]) in cm[0]["data"]
    # the Service targets exactly the picker's ports, and selects the picker's pods
    (svc,) = [s for s in find(docs, "Service") if s["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()]
    targets = {p["targetPort"] if isinstance(p["targetPort"], int) else ports[p["targetPort"]] for p in svc["spec"]["ports"]}
    assert targets == {grpc, health, metrics}
    svc_port_for = {(p["targetPort"] if isinstance(p["targetPort"], int) else ports[p["targetPort"]]): p["port"] for p in svc["spec"]["ports"]}
    # the InferencePool sends the gateway to the picker's ext_proc port
    (pool,) = find(docs, "InferencePool")
    ref = pool["spec"]["endpointPickerRef"]
    assert ref["name"] == svc["metadata"]["name"] and ref.get("kind", "Service") == "Service"
    assert ref["port"]["number"] == svc_port_for[grpc]
    assert ref.get("failureMode", "FailClose") == "FailClose"
    assert flags["--pool-name"] == pool["metadata"]["name"]
    assert flags["--pool-namespace"] in ("$(POD_NAMESPACE)", pool["metadata"].get("namespace", "default"))
    # the route targets the pool (or, with the Envoy Gateway component, a Service of the same pods)
    (route,) = find(docs, "HTTPRoute")
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    pool_selector = pool["spec"]["selector"]["matchLabels"]
    if backend["kind"] == "InferencePool":
        assert backend["name"] == pool["metadata"]["name"] and backend["group"] == "inference.networking.k8s.io"
    else:
        (target,) = find(docs, "Service", backend["name"])
        assert target["spec"]["selector"] == pool_selector
        assert backend["port"] in [p["port"] for p in target["spec"]["ports"]]
        (eep,) = find(docs, "EnvoyExtensionPolicy")
        (ext_ref,) = eep["spec"]["extProc"][0]["backendRefs"]
        assert (ext_ref["name"], ext_ref["port"]) == (svc["metadata"]["name"], svc_port_for[grpc])
        assert eep["spec"]["extProc"][0]["failOpen"] is False
        ns = pool["metadata"]["namespace"]
        (epp_patch,) = find(docs, "EnvoyPatchPolicy")
        names = {p["name"] for p in epp_patch["spec"]["jsonPatches"]}
        assert f"envoyextensionpolicy/{ns}/{eep['metadata']['name']}/extproc/0" in names
        assert f"{ns}/{route['spec']['parentRefs'][0]['name']}/http" in names
    # RBAC: read pods and inferencepools, nothing else, bound to the pod's service account
    (role,) = find(docs, "Role")
    rules = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert rules == {("", "pods"): {"get", "list", "watch"}, ("inference.networking.k8s.io", "inferencepools"): {"get", "list", "watch"}}
    (binding,) = find(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    assert find(docs, "ServiceAccount", pod["serviceAccountName"])
    # model-server pods (demo): selected by the pool, on its target port
    for sim_dep, sim in containers_running(docs, "epp-sim"):
        labels = sim_dep["spec"]["template"]["metadata"]["labels"]
        assert pool_selector.items() <= labels.items()
        assert [p["number"] for p in pool["spec"]["targetPorts"]] == [p["containerPort"] for p in sim["ports"]]
    # Redis (demo): --redis-url points at the Redis Service
    if "--redis-url" in flags:
        m = re.match(r"^redis://([a-z0-9-]+):(\d+)(/\d+)?$", flags["--redis-url"])
        assert m, flags["--redis-url"]
        (rsvc,) = find(docs, "Service", m.group(1))
        rport = next(p for p in rsvc["spec"]["ports"] if p["port"] == int(m.group(2)))
        ((rdep, rc),) = [(d, cc) for d in find(docs, "Deployment") for cc in d["spec"]["template"]["spec"]["containers"]
                         if rsvc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert rport["targetPort"] in [p["containerPort"] for p in rc["ports"]]
    elif variant != "base":
        pytest.fail("the demo overlays use Redis (--redis-url)")


def test_dockerfile_and_dockerignore():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read()
    lines = [l for l in text.replace("\\\n", " ").splitlines() if l.strip() and not l.strip().startswith("#")]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", "\n".join(lines), re.M))
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], l.split()[1]) for l in lines if l.startswith("FROM ")]
    assert len(froms) == 2, froms
    assert re.match(r"^swift:6\.\d+-bookworm$", froms[0]), froms[0]
    assert froms[1] == "debian:bookworm-slim"
    stages = re.split(r"^FROM .*$", "\n".join(lines), flags=re.M)[1:]
    build, runtime = stages
    for product in ("epp", "epp-sim"):
        assert re.search(rf"swift build -c release [^\n&]*--product {product}(\s|$)", build), product
    # the C libraries the module maps link, and their Debian packages (build: -dev, runtime: the shared library)
    links = set()
    for mm in glob.glob(os.path.join(ROOT, "Sources", "*", "module.modulemap")):
        links |= set(re.findall(r'link "([^"]+)"', open(mm).read()))
    runtime_pkg = {"nghttp2": "libnghttp2-14", "ssl": "libssl3", "crypto": "libssl3", "hiredis": "libhiredis0.14", "curl": "libcurl4"}
    dev_pkg = {"nghttp2": "libnghttp2-dev", "ssl": "libssl-dev", "crypto": "libssl-dev", "hiredis": "libhiredis-dev", "curl": "libcurl4-openssl-dev"}
    assert links and links <= set(runtime_pkg), f"unknown linked library: {links - set(runtime_pkg)}"
    for lib in links:
        assert re.search(rf"apt-get install[^\n]*\b{re.escape(runtime_pkg[lib])}\b", runtime), runtime_pkg[lib]
        assert re.search(rf"apt-get install[^\n]*\b{re.escape(dev_pkg[lib])}\b", build), dev_pkg[lib]
    # binaries land where the manifests' commands expect them; non-root user; ports exposed
    assert re.search(r"COPY --from=\S+ \S*/epp \S*/epp-sim /usr/local/bin/", runtime)
    user = re.search(r"^USER (\S+)", runtime, re.M)
    assert user and user.group(1).split(":")[0] not in ("root", "0")
    assert set(re.search(r"^EXPOSE (.*)$", runtime, re.M).group(1).split()) == {"9002", "9003", "9090"}
    for variant in VARIANTS:
        for dep in find(render(os.path.join(KUBE, variant)), "Deployment"):
            for c in dep["spec"]["template"]["spec"]["containers"]:
                if c["image"].startswith("endpoint-picker:"):
                    assert c["command"][0] in ("/usr/local/bin/epp", "/usr/local/bin/epp-sim")
                    uid = dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
                    assert str(uid) == user.group(1).split(":")[0]
    ignore = open(os.path.join(ROOT, ".dockerignore")).read().split()
    for pattern in (".git", ".build", "benchmarks"):
        assert pattern in ignore, pattern
    for needed in ("Sources", "Tests", "Package.swift"):
        assert needed not in ignore


# ---------------------------------------------------------------------------------------------------------------
# the picker started with the manifests' own args, config and pool

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


@pytest.mark.parametrize("variant", VARIANTS)
def test_picker_starts_with_manifest_args_config_and_pool(variant, tmp_path):
    docs = render(os.path.join(KUBE, variant))
    ((dep, c),) = containers_running(docs, "epp")
    (pool,) = find(docs, "InferencePool")
    namespace = pool["metadata"].get("namespace", "default")
    flags = flag_values(c["args"])
    # The ConfigMap's file, written where a temp dir stands in for the mount.
    cm_name = next(v["configMap"]["name"] for v in dep["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    (cm,) = find(docs, "ConfigMap", cm_name)
    config_path = tmp_path / os.path.basename(flags["--config-file"])
    config_path.write_text(cm["data"][config_path.name])

    api = FakeKubeAPIServer()
    redis = None
    try:
        api.put_pool(pool["metadata"]["name"], None, None, namespace=namespace, raw_spec=pool["spec"])
        # pods labelled like the sim fleet (or, in base, like the pool's selector), plus one the pool must not select
        pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d, _ in containers_running(docs, "epp-sim")] \
            or [dict(pool["spec"]["selector"]["matchLabels"])]
        for i, labels in enumerate(pod_labels):
            api.put_pod(f"model-{i}", ip=f"127.0.0.{10 + i}", labels=labels, namespace=namespace)
        api.put_pod("not-in-pool", ip="127.0.0.99", labels={"app": "other"}, namespace=namespace)
        kubeconfig = tmp_path / "kubeconfig.yaml"
        kubeconfig.write_text(f"""apiVersion: v1
kind: Config
current-context: t
contexts: [{{name: t, context: {{cluster: c, user: u, namespace: {namespace}}}}}]
clusters: [{{name: c, cluster: {{server: "{api.url}"}}}}]
users: [{{name: u, user: {{}}}}]
""")
        grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
        overrides = {"--grpc-port": grpc_port, "--grpc-health-port": health_port, "--metrics-port": metrics_port,
                     "--config-file": str(config_path), "--pool-namespace": namespace}
        if "--redis-url" in flags:   # a local redis-server in place of the Service
            redis_port = free_port()
            redis = Process(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"], "redis")
            wait_port(redis_port)
            overrides["--redis-url"] = f"redis://127.0.0.1:{redis_port}/0"
        args = [f"{k}={overrides.get(k, v)}" for k, v in flags.items()]
        p = Process([EPP_BIN, *args, f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1"], "epp-manifest")
        try:
            deadline = time.time() + 20
            while time.time() < deadline and get(f"http://127.0.0.1:{metrics_port}/readyz")[0] != 200:
                assert p.proc.poll() is None, f"epp exited {p.proc.returncode} with the manifest args {args}:\n{p.output()}"
                time.sleep(0.1)
            assert get(f"http://127.0.0.1:{metrics_port}/readyz")[0] == 200, p.output()
            _, text = get(f"http://127.0.0.1:{metrics_port}/metrics")
            ready_pods = [l for l in text.splitlines() if l.startswith("inference_pool_ready_pods")]
            assert ready_pods and float(ready_pods[0].rsplit(" ", 1)[1]) == len(pod_labels), ready_pods
        finally:
            assert p.stop() == 0, p.output()
        # --log-format=json in the manifests: every line is a JSON record
        if flags.get("--log-format") == "json":
            import json
            for line in p.output().splitlines():
                json.loads(line)
    finally:
        api.stop()
        if redis:
            redis.stop()
