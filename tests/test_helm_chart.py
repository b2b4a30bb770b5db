"""The Helm chart without a cluster: helm lint, every rendered manifest validated against the
Kubernetes 1.37 schemas (kubernetes-validate, offline) for default and other values, the
values schema's refusals, and the isolation every pod spec promises."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.kube import cluster

CHART = Path(__file__).resolve().parent.parent / "helm" / "appliance"
KUBE_VERSION = "1.37.2"
OTHER_VALUES = [
    "web.replicas=3", "scheduler.replicas=2", "proxy.service.type=NodePort",
    "proxy.service.nodePort=30080", "ingress.enabled=true", "ingress.className=nginx",
    "mongodb.enabled=false", "mongodb.externalUri=mongodb://db.example.org:27017",
    "persistence.storageClass=-", "persistence.accessModes={ReadWriteMany}",
    "persistence.jobs.existingClaim=shared-jobs", "networkPolicies.enabled=false",
    "podDisruptionBudget.enabled=false", "runner.nodeSelector.pool=jobs",
    "operatorTokenSha256=" + "a" * 64, "runnersConfigMap=my-runners", "services.files.probe\\.service\\.yaml=name: x",
    "proxy.tls.secretName=appliance-tls", "proxy.service.httpsNodePort=30443",
    "tes.enabled=true", "tes.clientsSecret=my-tes-clients", "tes.images={alpine:,quay.io/biocontainers/}",
    "tes.s3.endpoint=https://s3.eu-west-1.amazonaws.com", "tes.s3.roots[0]=workflows/{client}",
    "tes.s3.existingSecret=my-s3-keys", "tes.s3.virtualHosts=true", "smtp.loginSecret=smtp",
    "settings.smtp_host=smtp.example.org", "settings.public_url=https://appliance.example.org",
]  # fmt: skip


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cluster()  # helm comes with the test cluster's binaries
    done = subprocess.run(["helm", *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def render(*values: str) -> list[dict[str, Any]]:
    sets = [item for value in values for item in ("--set", value)]
    out = helm("template", "rel", str(CHART), "--namespace", "apps", "--kube-version",
               KUBE_VERSION, *sets).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_helm_lint_passes_for_default_and_other_values() -> None:
    helm("lint", "--strict", str(CHART))
    sets = [item for value in OTHER_VALUES for item in ("--set", value)]
    helm("lint", "--strict", str(CHART), *sets)


@pytest.mark.parametrize("values", [[], OTHER_VALUES], ids=["default", "other"])
def test_every_manifest_is_valid_for_kubernetes_1_37(values: list[str]) -> None:
    docs = render(*values)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "ConfigMap", "Role", "RoleBinding", "ServiceAccount"} <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_the_validator_itself_refuses_a_wrong_field() -> None:
    doc = render()[0]
    doc.setdefault("spec", {})["noSuchField"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


@pytest.mark.parametrize(
    ("value", "named"),
    [("web.replicas=0", "/web/replicas"), ("proxy.service.type=Bogus", "/proxy/service/type"),
     ("runner.limits.user=root", "/runner/limits/user"), ("operatorTokenSha256=xyz", "operatorTokenSha256"),
     ("persistence.jobs.size=lots", "/persistence/jobs/size"), ("no.such=1", "'no'"),
     ("mongodb.enabled=false", "externalUri"), ("tes.clients.alice=not-a-hash", "/tes/clients/alice"),
     ("tes.s3.endpoint=http://s3.example.org/bucket", "/tes/s3/endpoint")],
)  # fmt: skip
def test_wrong_values_are_refused_with_their_name(value: str, named: str) -> None:
    done = helm("template", "rel", str(CHART), "--kube-version", KUBE_VERSION, "--set", value,
                check=False)  # fmt: skip
    assert done.returncode != 0
    assert named in done.stderr, done.stderr


def pods_of(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pods = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            pods[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            pods[doc["metadata"]["name"]] = doc["spec"]
    return pods


def test_every_pod_is_locked_down_and_only_the_scheduler_has_a_token() -> None:
    pods = pods_of(render())
    assert set(pods) == {"rel-appliance-web", "rel-appliance-scheduler", "rel-appliance-proxy",
                         "rel-appliance-mongodb", "rel-appliance-test-job"}  # fmt: skip
    for name, pod in pods.items():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] > 0, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is (name == "rel-appliance-scheduler"), name
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert "resources" in container, (name, container["name"])


def test_the_scheduler_may_touch_jobs_and_read_pods_in_its_namespace_only() -> None:
    docs = render()
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    (role,) = [d for d in docs if d["kind"] == "Role"]
    granted = {(group, resource): set(rule["verbs"]) for rule in role["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]}  # fmt: skip
    assert granted == {("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
                       ("", "pods"): {"get", "list", "watch"}, ("", "pods/log"): {"get"},
                       ("", "configmaps"): {"get"}}  # fmt: skip
    (configmaps,) = [r for r in role["rules"] if "configmaps" in r["resources"]]
    assert configmaps["resourceNames"] == ["rel-appliance-runners"]


def test_network_policies_isolate_jobs_and_the_database() -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in render() if d["kind"] == "NetworkPolicy"}
    jobs = policies["rel-appliance-jobs"]
    assert (
        jobs["policyTypes"] == ["Ingress", "Egress"]
        and "ingress" not in jobs
        and "egress" not in jobs
    )
    assert jobs["podSelector"]["matchLabels"]["appliance.network"] == "none"
    networked = policies["rel-appliance-jobs-network"]
    assert networked["podSelector"]["matchLabels"]["appliance.network"] == "allowed"
    assert "ingress" not in networked and networked["policyTypes"] == ["Ingress", "Egress"]
    (block,) = [rule["to"][0]["ipBlock"] for rule in networked["egress"] if "to" in rule]
    assert block["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10"} <= set(block["except"])
    sources = [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
               for p in policies["rel-appliance-mongodb"]["ingress"][0]["from"]]  # fmt: skip
    assert sources == ["web", "scheduler"]
    assert not [d for d in render("networkPolicies.enabled=false") if d["kind"] == "NetworkPolicy"]


def test_a_runners_config_map_of_ones_own_replaces_the_made_one() -> None:
    def runners_volume(docs: list[dict[str, Any]]) -> str:
        (scheduler,) = [d for d in docs if d["metadata"]["name"] == "rel-appliance-scheduler"
                        and d["kind"] == "Deployment"]  # fmt: skip
        volumes = {v["name"]: v for v in scheduler["spec"]["template"]["spec"]["volumes"]}
        return str(volumes["runners"]["configMap"]["name"])

    assert runners_volume(render()) == "rel-appliance-runners"
    assert runners_volume(render("runnersConfigMap=my-runners")) == "my-runners"


def test_claims_are_kept_by_uninstall() -> None:
    claims = [d for d in render() if d["kind"] == "PersistentVolumeClaim"]
    assert {c["metadata"]["name"] for c in claims} == {
        "rel-appliance-uploads",
        "rel-appliance-jobs",
    }
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in claims)


def test_https_at_the_proxy_with_the_sites_secret() -> None:
    assert not any("tls" in str(d) for d in render() if d["kind"] == "Service")  # off by default
    docs = render("proxy.tls.secretName=appliance-tls", "proxy.service.type=LoadBalancer")
    pod = pods_of(docs)["rel-appliance-proxy"]
    [config] = pod["initContainers"]
    assert "--tls-certificate=/etc/appliance-tls/tls.crt" in config["args"]
    assert "--tls-key=/etc/appliance-tls/tls.key" in config["args"] and "--hsts" in config["args"]
    assert {"name": "APPLIANCE_HTTPS_PORT", "value": "443"} in config["env"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"] == {"secretName": "appliance-tls", "defaultMode": 0o440}
    [nginx] = pod["containers"]
    assert {"name": "https", "containerPort": 8443} in nginx["ports"]
    assert {"name": "tls", "mountPath": "/etc/appliance-tls", "readOnly": True} in nginx[
        "volumeMounts"
    ]
    [service] = [
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "rel-appliance-proxy"
    ]
    assert {"name": "https", "port": 443, "targetPort": "https"} in service["spec"]["ports"]
    [policy] = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "rel-appliance-proxy"
    ]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 8080}, {"port": 8443}]
    at = render("proxy.tls.secretName=x", "settings.https_port=9443")
    [config] = pods_of(at)["rel-appliance-proxy"]["initContainers"]
    names = [e["name"] for e in config["env"]]
    assert names.count("APPLIANCE_HTTPS_PORT") == 1  # the site's own setting wins


def test_webhooks_are_on_with_a_secret_made_once_or_off() -> None:
    docs = render()
    [wake] = [
        d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "rel-appliance-wake"
    ]
    secret = base64.b64decode(wake["data"]["webhook.secret"])
    assert len(secret) == 64 and secret.isalnum()
    for name in ("rel-appliance-web", "rel-appliance-scheduler"):
        [container] = pods_of(docs)[name]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["APPLIANCE_WEBHOOK_SECRET_FILE"] == "/etc/appliance/wake/webhook.secret"
        assert env["APPLIANCE_WEBHOOK_PRIVATE"] == "false"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/etc/appliance/wake" in mounts  # where the secret is
    for pod in pods_of(render("webhooks.enabled=false")).values():
        assert "APPLIANCE_WEBHOOK_SECRET_FILE" not in str(pod)


HASH = "ab" * 32


def test_tes_on_with_its_clients_and_s3_keys_given_as_values() -> None:
    docs = render("tes.enabled=true", f"tes.clients.alice={HASH}", "tes.images={alpine:}",
                  "tes.s3.endpoint=http://s3.example.org:8333", "tes.s3.roots={workflows}",
                  "tes.s3.accessKeyId=AKID", "tes.s3.secretAccessKey=wJalrXUtnFEMI")  # fmt: skip
    [made] = [
        d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "rel-appliance-tes"
    ]
    assert f"alice {HASH}" in made["stringData"]["tes-clients"].splitlines()
    assert made["stringData"]["s3-keys"].split() == ["AKID", "wJalrXUtnFEMI"]
    pods = pods_of(docs)
    web, scheduler = pods["rel-appliance-web"], pods["rel-appliance-scheduler"]
    for pod in (web, scheduler):
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert (
            env["APPLIANCE_TES_ENABLED"] == "true" and env["APPLIANCE_TES_S3_ROOTS"] == "workflows"
        )
        assert env["APPLIANCE_TES_S3_CREDENTIALS_FILE"] == "/etc/appliance/tes-s3/s3-keys"
    # the clients file for the web process only, the S3 keys for the scheduler only
    assert "tes-clients" in str(web["volumes"]) and "tes-s3" not in str(web["volumes"])
    assert "tes-s3" in str(scheduler["volumes"]) and "tes-clients" not in str(scheduler["volumes"])
    assert "wJalrXUtnFEMI" not in str(pods)  # keys only in the Secret, never in a pod spec
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    done = helm("template", "rel", str(CHART), "--kube-version", KUBE_VERSION, "--set",
                "tes.enabled=true", "--set", "tes.s3.endpoint=http://s3.example.org", check=False)  # fmt: skip
    assert done.returncode != 0 and "tes.s3.endpoint needs its keys" in done.stderr


def test_tes_with_the_sites_own_secrets_makes_none() -> None:
    docs = render(*[v for v in OTHER_VALUES if v.startswith("tes.")])
    assert not [d for d in docs if d["metadata"]["name"] == "rel-appliance-tes"]
    pods = pods_of(docs)
    assert "my-tes-clients" in str(pods["rel-appliance-web"]["volumes"])
    assert "my-s3-keys" in str(pods["rel-appliance-scheduler"]["volumes"])
    assert "APPLIANCE_TES_ENABLED" not in str(pods_of(render()))  # off by default


def test_an_smtp_login_reaches_the_scheduler_only() -> None:
    pods = pods_of(render("settings.smtp_host=smtp.example.org", "smtp.loginSecret=smtp"))
    scheduler, web = pods["rel-appliance-scheduler"], pods["rel-appliance-web"]
    env = {e["name"]: e.get("value") for e in scheduler["containers"][0]["env"]}
    assert env["APPLIANCE_SMTP_HOST"] == "smtp.example.org"
    assert env["APPLIANCE_SMTP_CREDENTIALS_FILE"] == "/etc/appliance/smtp/smtp-login"
    assert "smtp-login" in str(scheduler["volumes"]) and "smtp-login" not in str(web["volumes"])
