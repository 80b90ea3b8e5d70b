"""The template grants the Graph app roles the lifecycle rules need, and only those (``required_permissions``).

In the style of ``tests/test_infra.py``: the Bicep is parsed (pycep), never deployed. For each kind of
rules, the role assignments whose condition holds with ``lifecyclePermissions`` set to what
``required_permissions`` returns are exactly the unconditional ones plus those permissions.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared.policy.lifecycle_rules import LifecycleRules, RemovalAction, required_permissions
from tests.test_infra import GRAPH_APP_ROLES, INFRA, _config, _named_ids, _parse

LIFECYCLE_ROLES = {
    "AuditLog.Read.All": "b0afded3-3588-46d8-8b3d-9842eff778da",
    "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
}
PATH = INFRA / "app" / "graph-permissions.bicep"
ALWAYS = {"User.Invite.All", "User.Read.All", "Domain.Read.All"}


def _granted(lifecycle_permissions: frozenset[str]) -> set[str]:
    """The permissions the template assigns with the other grant flags off and these lifecycle permissions."""
    doc = _parse(PATH)
    names = {guid: name for name, guid in _named_ids(PATH).items()}
    text = PATH.read_text()
    flags = {"grantUserReadWrite": False, "grantGroupMemberReadWrite": False, "grantMailSend": False}
    for var in ("lifecycleUserReadWrite", "lifecycleGroupMembers"):
        wanted = re.search(rf"var {var} = contains\(lifecyclePermissions, '([^']+)'\)", text)
        assert wanted, var
        flags[var] = wanted.group(1) in lifecycle_permissions
    granted = set()
    for name, resource in doc["resources"].items():
        if resource["type"] != "Microsoft.Graph/appRoleAssignedTo":
            continue
        role = names[doc["variables"][_config(resource)["appRoleId"]]["value"]]
        header = re.search(rf"^resource {name} [^\n]*$", text, re.MULTILINE)
        assert header, name
        condition = re.search(r"= if \((.*)\) \{$", header.group(0))
        if condition is None or _holds(condition.group(1), flags, lifecycle_permissions):
            granted.add(role)
    return granted


def _holds(condition: str, flags: dict[str, Any], permissions: frozenset[str]) -> bool:
    """A condition of the forms the template uses: ``a || b``, a flag, or ``contains(lifecyclePermissions, 'X')``."""
    result = False
    for term in (t.strip() for t in condition.split("||")):
        contained = re.fullmatch(r"contains\(lifecyclePermissions, '([^']+)'\)", term)
        if contained:
            result |= contained.group(1) in permissions
        else:
            assert term in flags, term
            result |= bool(flags[term])
    return result


def test_the_lifecycle_role_ids_are_the_documented_ones() -> None:
    assert _named_ids(PATH) == GRAPH_APP_ROLES and LIFECYCLE_ROLES.items() <= GRAPH_APP_ROLES.items()


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param([], id="no-rules"),
        pytest.param(
            [LifecycleRules(review_every_days=90, on_no_answer=RemovalAction.NONE, on_remove=RemovalAction.NONE)],
            id="reviews-only",
        ),
        pytest.param([LifecycleRules(review_every_days=90, on_remove=RemovalAction.BLOCK_SIGN_IN)], id="block"),
        pytest.param(
            [LifecycleRules(unredeemed_expiry_days=30, on_remove=RemovalAction.REMOVE_GROUPS)], id="remove-groups"
        ),
        pytest.param(
            [LifecycleRules(inactive_days=90, on_no_answer=RemovalAction.NONE, on_remove=RemovalAction.NONE)],
            id="inactive",
        ),
        pytest.param(
            [
                LifecycleRules(
                    review_every_days=180,
                    on_no_answer=RemovalAction.BLOCK_SIGN_IN_AND_DELETE,
                    on_remove=RemovalAction.REMOVE_GROUPS,
                    delete_after_days=30,
                    inactive_days=90,
                ),
                None,
            ],
            id="everything",
        ),
    ],
)
def test_the_template_grants_what_the_rules_need_and_only_that(rules: list[LifecycleRules | None]) -> None:
    needed = required_permissions(rules)
    assert _granted(needed) == ALWAYS | needed
    # And nothing of the lifecycle's without rules that need it.
    assert not (_granted(frozenset()) - ALWAYS)


def test_the_azd_hook_passes_the_rules_permissions_to_the_template() -> None:
    """``GUEST_LIFECYCLE_PERMISSIONS`` (what ``signup-admin lifecycle --permissions`` prints) reaches the
    template as ``lifecyclePermissions`` and the grant's report; anything else is refused."""
    from tests.test_deploy import ENV, FakeCli, azd_hooks

    needed = sorted(required_permissions([LifecycleRules(review_every_days=90, inactive_days=90)]))
    cli = FakeCli(azd_hooks.Result(0, ""))
    env = {**ENV, "GUEST_LIFECYCLE_PERMISSIONS": json.dumps(needed)}
    message = azd_hooks.postprovision(env, cli, lambda _: None)
    assert f"lifecyclePermissions={json.dumps(needed)}" in cli.commands[0]
    assert "AuditLog.Read.All" in message and message.count("User.Read.All") == 1
    assert _granted(frozenset(needed)) == ALWAYS | set(needed)
    none = FakeCli(azd_hooks.Result(0, ""))
    azd_hooks.postprovision(ENV, none, lambda _: None)
    assert "lifecyclePermissions=[]" in none.commands[0]
    with pytest.raises(azd_hooks.HookError, match="may list only"):
        azd_hooks.postprovision({**ENV, "GUEST_LIFECYCLE_PERMISSIONS": '["Directory.ReadWrite.All"]'}, FakeCli())
