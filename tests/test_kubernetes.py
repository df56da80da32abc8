"""``pinstripe kubernetes-manifest``: the output validates strictly against current Kubernetes versions,
maps our exit codes, and its pod command really runs the right shard."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import SCRIPT, clean_env

pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

VERSIONS = ("1.35.0", "1.37.0")


def manifest(project, *args) -> str:
    result = subprocess.run([str(SCRIPT), "kubernetes-manifest", *args], cwd=project.root, env=clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def validate(path: Path, version: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "-k", version,
                           str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", ["job", "cronjob"])
def test_the_manifest_validates_strictly(tenant_project, tmp_path, kind, version):
    tenant_project.job("nightly", 'schedule = "30 2 * * *"\ntimezone = "Europe/Paris"\n\ndef run(ctx):\n    pass\n')
    args = ["--name", "nightly", "--shards", "6", "--image", "registry.example/app:1.4", "--namespace", "jobs",
            "--env-from-secret", "pinstripe-env", "--config-path", "/app/pinstripe.toml"]
    text = manifest(tenant_project, *args, *(["--cron"] if kind == "cronjob" else []))
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    result = validate(path, version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout
    import yaml  # kubernetes-validate brings PyYAML

    doc = yaml.safe_load(text)
    spec = doc["spec"]["jobTemplate"]["spec"] if kind == "cronjob" else doc["spec"]
    if kind == "cronjob":
        assert doc["kind"] == "CronJob" and doc["spec"]["schedule"] == "30 2 * * *"
        assert doc["spec"]["timeZone"] == "Europe/Paris" and doc["spec"]["concurrencyPolicy"] == "Forbid"
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 6
    assert spec["podReplacementPolicy"] == "Failed" and spec["backoffLimitPerIndex"] == 2
    rules = {rule["action"]: rule for rule in spec["podFailurePolicy"]["rules"] if "onExitCodes" in rule}
    assert rules["FailJob"]["onExitCodes"]["values"] == [2, 3]
    assert rules["Ignore"]["onExitCodes"]["values"] == [143]
    assert 1 not in sum((rule["onExitCodes"]["values"] for rule in rules.values()), [])  # 1: counted, retried
    container = spec["template"]["spec"]["containers"][0]
    assert {"name": "PINSTRIPE_CONFIG", "value": "/app/pinstripe.toml"} in container["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "pinstripe-env"}}]
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}


def test_each_pod_command_runs_its_own_shard_and_together_they_cover_every_tenant(tenant_project):
    import yaml

    doc = yaml.safe_load(manifest(tenant_project, "--name", "record", "--shards", "3", "--image", "app"))
    container = doc["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}  # not the downward API's
    ran = []
    for index in range(3):  # what each pod runs: its completion index in JOB_COMPLETION_INDEX
        before = len(tenant_project.log())
        pod_env = clean_env({**env, "JOB_COMPLETION_INDEX": str(index),
                             "PATH": f"{SCRIPT.parent}:{os.environ['PATH']}"})
        result = subprocess.run([*container["command"], *container["args"]], cwd=tenant_project.root, env=pod_env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        ran.append([line.split()[1] for line in tenant_project.log()[before:]])
    assert sorted(t for shard in ran for t in shard) == ["1", "2", "3", "4"]  # each tenant once, in one pod


def test_bad_input_is_a_clear_error(tenant_project):
    def fails(*args):
        return subprocess.run([str(SCRIPT), "kubernetes-manifest", *args], cwd=tenant_project.root, env=clean_env(),
                              capture_output=True, text=True, timeout=60)

    result = fails("--name", "record", "--shards", "2", "--image", "app", "--cron")
    assert result.returncode == 3 and "a CronJob needs one" in result.stderr and "--schedule" in result.stderr
    result = fails("--name", "record", "--shards", "2", "--image", "app", "--cron", "--schedule", "every day")
    assert result.returncode == 2 and "not a cron expression" in result.stderr
    result = fails("--name", "record", "--shards", "2", "--image", "app", "--schedule", "0 3 * * *")
    assert result.returncode == 2 and "--schedule only applies with --cron" in result.stderr
    result = fails("--name", "nope", "--shards", "2", "--image", "app")
    assert result.returncode == 2 and "nope" in result.stderr
    result = fails("--name", "record", "--shards", "0", "--image", "app")
    assert result.returncode == 2
    result = fails("--name", "record", "--shards", "2", "--image", "app", "--memory", "lots")
    assert result.returncode == 2 and "Kubernetes quantity" in result.stderr
    assert all("Traceback" not in r.stderr for r in [result])
