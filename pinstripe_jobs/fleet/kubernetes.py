"""``pinstripe kubernetes-manifest``: an Indexed Job (or a CronJob wrapping one) whose pod with completion
index K runs ``--shard K/N``, so N pods cover every tenant exactly once.

Our exit codes decide what Kubernetes does with a failed pod (``podFailurePolicy``): 2 and 3 (usage or
configuration error) fail the whole Job, since every index would fail the same way; 4 (skipped: the job was
already running for a tenant) fails that index without a retry; 143 (SIGTERM: the node drained, the pod
preempted) and disruptions are not counted; anything else (1 a tenant failed, 124 timed out, 130) retries
that index, up to ``backoffLimitPerIndex``. ``podReplacementPolicy: Failed`` means a replacement pod starts
only once the old one has fully terminated: never two pods for one index.

Each pod's run has an idempotency key, ``k8s-<the Job's uid>-<completion index>``: a replaced pod (preempted,
its node lost) resumes the invocation of its index instead of running its shard again from the start, and a
pod started again after its index's invocation finished runs nothing and exits with that invocation's code.
"""
from __future__ import annotations

import json
import re
from typing import Any

# The Job's uid, through the downward API: the Job controller labels each of its pods with it (Kubernetes 1.27+).
JOB_UID = {"name": "PINSTRIPE_JOB_UID",
           "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}}}
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def manifest(*, job: str, shards: int, image: str, cron: str | None = None, timezone: str | None = None,
             namespace: str | None = None, config: str | None = None, env_from_secret: str | None = None,
             cpu: str = "500m", memory: str = "512Mi", retries_per_index: int = 2, grace: int = 30) -> dict[str, Any]:
    resource = f"pinstripe-{job}"[:52].rstrip("-")  # a CronJob name leaves room for its Jobs' suffix
    labels = {"app.kubernetes.io/name": "pinstripe-jobs", "app.kubernetes.io/component": "background-job",
              "pinstripe.dev/job": job}
    env = [{"name": "PINSTRIPE_SHARD_COUNT", "value": str(shards)}]
    if config:
        env.append({"name": "PINSTRIPE_CONFIG", "value": config})
    container = {
        "name": "pinstripe",
        "image": image,
        "command": ["/bin/sh", "-c"],
        # the shell reads the completion index Kubernetes sets on each pod
        # and the key of its invocation: the Job's uid and the index, so a replaced pod resumes its shard
        "args": ["exec pinstripe run-background-job --name \"$PINSTRIPE_JOB\" "
                 "--shard \"$JOB_COMPLETION_INDEX/$PINSTRIPE_SHARD_COUNT\" --grace " + str(grace) + " "
                 "${PINSTRIPE_JOB_UID:+--key \"k8s-$PINSTRIPE_JOB_UID-$JOB_COMPLETION_INDEX\"}"],
        "env": [{"name": "PINSTRIPE_JOB", "value": job}, *env, JOB_UID],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if env_from_secret:
        container["envFrom"] = [{"secretRef": {"name": env_from_secret}}]
    pod = {"metadata": {"labels": labels},
           "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": grace + 15,
                    "containers": [container]}}
    job_spec = {
        "completionMode": "Indexed",
        "completions": shards,
        "parallelism": shards,
        "backoffLimitPerIndex": retries_per_index,
        "maxFailedIndexes": shards,
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "pinstripe", "operator": "In", "values": [2, 3]}},
            {"action": "FailIndex", "onExitCodes": {"containerName": "pinstripe", "operator": "In", "values": [4]}},
            {"action": "Ignore", "onExitCodes": {"containerName": "pinstripe", "operator": "In", "values": [143]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "ttlSecondsAfterFinished": 86400,
        "template": pod,
    }
    metadata: dict[str, Any] = {"name": resource, "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    if not cron:
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
    cron_spec: dict[str, Any] = {"schedule": cron, "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 300,
                                 "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                                 "jobTemplate": {"metadata": {"labels": labels}, "spec": job_spec}}
    if timezone:
        cron_spec["timeZone"] = timezone
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata, "spec": cron_spec}


def to_yaml(value: Any, indent: int = 0) -> str:
    """A small YAML emitter for what ``manifest`` builds (maps, lists, strings, numbers, booleans): strings
    are JSON-quoted (valid YAML), so nothing a user passes can change the structure."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 1)
                lines.append(f"{pad}- {body.lstrip()}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return "\n".join(lines)
    return pad + _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value))
