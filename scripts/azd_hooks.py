"""The azd hooks of azure.yaml: refuse what cannot work before anything is provisioned, and grant the
identity its Microsoft Graph app roles once it exists.

``python3 scripts/azd_hooks.py preprovision``
    Refuses ``GRANT_GRAPH_PERMISSIONS=true`` off the public cloud (the Microsoft Graph Bicep extension deploys
    to the global service only) and prints the steps an administrator runs by hand instead.

``python3 scripts/azd_hooks.py postprovision``
    Deploys ``infra/app/graph-permissions.bicep`` with the Azure CLI when ``GRAPH_GRANT_ENABLED`` is true.
    A managed identity created moments earlier is often not yet visible to Microsoft Graph ("Not a valid
    reference update", microsoftgraph/msgraph-bicep-types#193), so a failure of that kind is retried with a
    growing pause for up to about five minutes; any other failure, or one that outlasts the retries, stops
    with a message that says what to run next.

azd passes the environment's values (``azd env get-values``) to hooks as environment variables.
``SKIP_GRAPH_GRANT=true`` (set by the GitHub workflow) skips both the refusal and the grant. Only the
standard library is used: the hooks run before any venv exists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRAPH_TEMPLATE = ROOT / "infra" / "app" / "graph-permissions.bicep"

# GRAPH_CLOUD (the app's setting) -> the Graph host an administrator grants through, by hand.
GRAPH_HOSTS = {
    "global": "graph.microsoft.com",
    "usgov": "graph.microsoft.us",
    "usgovdod": "dod-graph.microsoft.us",
    "china": "microsoftgraph.chinacloudapi.cn",
}
# Messages Microsoft Graph gives while a new service principal has not replicated yet.
_REPLICATION = re.compile(
    r"Not a valid reference update|does not exist or one of its queried reference-property objects are not present"
    r"|Request_ResourceNotFound|PrincipalNotFound",
    re.IGNORECASE,
)
# Pauses between attempts: 10 s, 20 s, 30 s, then 30 s until about five minutes have passed.
RETRY_PAUSES = (10, 20, 30, 30, 30, 30, 30, 30, 30, 30, 30)


class HookError(Exception):
    """The hook stops: the message says why and what to do next."""


@dataclass(frozen=True)
class Result:
    """What a command answered."""

    returncode: int
    output: str


Runner = Callable[[Sequence[str]], Result]


def run(command: Sequence[str]) -> Result:
    """Run a command, its output captured (stdout and stderr together)."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 (our own az commands)
    return Result(done.returncode, done.stdout + done.stderr)


def _flag(env: Mapping[str, str], key: str, default: bool) -> bool:
    value = env.get(key, "").strip().lower()
    return default if value == "" else value == "true"


def graph_roles(template: Path = GRAPH_TEMPLATE) -> dict[str, str]:
    """Permission name -> app role id, from the ``var x = '<guid>' // Name: ...`` lines of the template."""
    pattern = re.compile(r"^var \w+ = '([0-9a-f-]{36})' // ([^:]+):", re.MULTILINE)
    return {name.strip(): guid for guid, name in pattern.findall(template.read_text())}


# What the guest lifecycle's rules may need (shared.policy.lifecycle_rules.required_permissions).
LIFECYCLE_PERMISSIONS = (
    "User.Read.All",
    "User.ReadWrite.All",
    "GroupMember.ReadWrite.All",
    "Directory.Read.All",
    "AuditLog.Read.All",
)


def lifecycle_permissions(env: Mapping[str, str]) -> list[str]:
    """``GUEST_LIFECYCLE_PERMISSIONS``: what ``signup-admin lifecycle --permissions`` printed (JSON), or none."""
    raw = (env.get("GUEST_LIFECYCLE_PERMISSIONS") or "").strip()
    if not raw:
        return []
    try:
        names = json.loads(raw)
    except ValueError:
        raise HookError(
            "GUEST_LIFECYCLE_PERMISSIONS is not JSON: set it to what `signup-admin lifecycle --permissions` prints."
        ) from None
    if not isinstance(names, list) or not all(n in LIFECYCLE_PERMISSIONS for n in names):
        raise HookError(f"GUEST_LIFECYCLE_PERMISSIONS may list only {', '.join(LIFECYCLE_PERMISSIONS)}.")
    return list(names)


def wanted_roles(env: Mapping[str, str]) -> list[str]:
    """The permissions this environment asks for: the three required ones, the optional ones turned on, and
    those the guest lifecycle's rules need (``GUEST_LIFECYCLE_PERMISSIONS``)."""
    names = ["User.Invite.All", "User.Read.All", "Domain.Read.All"]
    for key, name in (
        ("GRANT_USER_READWRITE", "User.ReadWrite.All"),
        ("GRANT_GROUP_MEMBER_READWRITE", "GroupMember.ReadWrite.All"),
        ("GRANT_MAIL_SEND", "Mail.Send"),
    ):
        if _flag(env, key, False) or _flag(env, key.replace("GRANT_", "GRAPH_GRANT_"), False):
            names.append(name)
    return names + [name for name in lifecycle_permissions(env) if name not in names]


def manual_steps(env: Mapping[str, str]) -> str:
    """The commands a Privileged Role Administrator runs once, in the environment's cloud."""
    host = GRAPH_HOSTS.get(env.get("GRAPH_CLOUD", "global") or "global", GRAPH_HOSTS["global"])
    roles = graph_roles()
    ids = " ".join(roles[name] for name in wanted_roles(env))
    principal = env.get("MANAGED_IDENTITY_PRINCIPAL_ID") or "<MANAGED_IDENTITY_PRINCIPAL_ID>"
    return (
        "An administrator (Privileged Role Administrator) runs once, after `az login` to the tenant:\n\n"
        f"  MI={principal}   # azd env get-value MANAGED_IDENTITY_PRINCIPAL_ID\n"
        "  GRAPH=$(az ad sp show --id 00000003-0000-0000-c000-000000000000 --query id -o tsv)\n"
        f"  for ROLE in {ids}; do\n"
        f'    az rest --method POST --uri "https://{host}/v1.0/servicePrincipals/$GRAPH/appRoleAssignedTo" \\\n'
        "            --headers Content-Type=application/json \\\n"
        '            --body "{\\"principalId\\": \\"$MI\\", \\"resourceId\\": \\"$GRAPH\\", '
        '\\"appRoleId\\": \\"$ROLE\\"}"\n'
        "  done\n\n"
        '(docs/deploy.md, "Graph permissions: the one-time admin step").'
    )


def azure_cloud(runner: Runner) -> str:
    """The Azure cloud the CLI is signed in to (``AzureCloud`` when the CLI cannot say)."""
    answer = runner(["az", "cloud", "show", "--query", "name", "-o", "tsv"])
    return answer.output.strip() if answer.returncode == 0 and answer.output.strip() else "AzureCloud"


def preprovision(env: Mapping[str, str], runner: Runner = run) -> None:
    """Refuse Graph grants off the public cloud before anything is deployed."""
    if not _flag(env, "GRANT_GRAPH_PERMISSIONS", True) or _flag(env, "SKIP_GRAPH_GRANT", False):
        return
    graph_cloud = env.get("GRAPH_CLOUD", "global") or "global"
    cloud = azure_cloud(runner)
    if graph_cloud != "global" or cloud != "AzureCloud":
        raise HookError(
            f"GRANT_GRAPH_PERMISSIONS=true cannot work here (GRAPH_CLOUD={graph_cloud}, Azure cloud {cloud}): the "
            "Microsoft Graph Bicep extension deploys to the global service only.\n"
            "Run `azd env set GRANT_GRAPH_PERMISSIONS false`, then `azd up` again, and have the app roles granted "
            "by hand.\n" + manual_steps(env)
        )


def postprovision(env: Mapping[str, str], runner: Runner = run, sleep: Callable[[float], None] = time.sleep) -> str:
    """Grant the Graph app roles (retrying while the identity replicates); returns what was done."""
    if _flag(env, "SKIP_GRAPH_GRANT", False):
        return "Graph app roles: skipped (SKIP_GRAPH_GRANT=true, e.g. in CI, whose identity may not grant them)."
    if not _flag(env, "GRAPH_GRANT_ENABLED", False):
        return "Graph app roles: not granted by this deployment (GRANT_GRAPH_PERMISSIONS=false).\n" + manual_steps(env)
    for key in ("AZURE_RESOURCE_GROUP", "MANAGED_IDENTITY_PRINCIPAL_ID"):
        if not env.get(key):
            raise HookError(f"{key} is not in the azd environment: run `azd provision` first.")
    command = [
        "az", "deployment", "group", "create", "--only-show-errors", "--output", "none",
        "--name", "graph-permissions",
        "--resource-group", env["AZURE_RESOURCE_GROUP"],
        "--template-file", str(GRAPH_TEMPLATE),
        "--parameters",
        f"identityPrincipalId={env['MANAGED_IDENTITY_PRINCIPAL_ID']}",
        f"grantGroupMemberReadWrite={str(_flag(env, 'GRAPH_GRANT_GROUP_MEMBER_READWRITE', False)).lower()}",
        f"grantUserReadWrite={str(_flag(env, 'GRAPH_GRANT_USER_READWRITE', False)).lower()}",
        f"grantMailSend={str(_flag(env, 'GRAPH_GRANT_MAIL_SEND', False)).lower()}",
        f"lifecyclePermissions={json.dumps(lifecycle_permissions(env))}",
    ]  # fmt: skip
    answer = runner(command)
    for attempt, pause in enumerate(RETRY_PAUSES, start=2):
        if answer.returncode == 0 or not _REPLICATION.search(answer.output):
            break
        print(f"Graph does not see the new identity yet; attempt {attempt} in {pause} s.", file=sys.stderr)
        sleep(pause)
        answer = runner(command)
    if answer.returncode == 0:
        return "Graph app roles granted: " + ", ".join(wanted_roles(env)) + "."
    if _REPLICATION.search(answer.output):
        raise HookError(
            "Microsoft Graph still does not see the new managed identity after about five minutes (directory "
            "replication). Nothing is wrong with the deployment: in a few minutes run\n\n"
            "  azd hooks run postprovision && azd deploy\n\n"
            f"Graph said: {answer.output.strip()[-600:]}"
        )
    raise HookError(
        "Granting the Graph app roles failed. If the signed-in account may not grant app roles (it needs "
        "Privileged Role Administrator), run `azd env set GRANT_GRAPH_PERMISSIONS false` and `azd up`, and hand "
        "these steps to an administrator.\n"
        + manual_steps(env)
        + f"\n\nThe Azure CLI said: {answer.output.strip()[-600:]}"
    )


def main(argv: Sequence[str]) -> int:
    """Entry point: ``preprovision`` or ``postprovision``."""
    if len(argv) != 1 or argv[0] not in ("preprovision", "postprovision"):
        print("usage: azd_hooks.py preprovision|postprovision", file=sys.stderr)
        return 2
    try:
        if argv[0] == "preprovision":
            preprovision(os.environ)
        else:
            print(postprovision(os.environ))
    except HookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
