"""Per-profile guest-lifecycle rules in the policy document: parsing, defaults, every problem by its path."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ConfigurationError
from shared.policy import parse_policy
from shared.policy.lifecycle_rules import LifecycleRules, RemovalAction, required_permissions

GROUP = "3f7c2d1e-9a4b-4c8d-b1e2-5a6f7c8d9e01"


def _policy(*lifecycles: Any) -> dict[str, Any]:
    return {
        "profiles": [
            {"name": f"p{i}", "domains": [f"d{i}.example"], "action": "approve", "groups": [GROUP], "lifecycle": rules}
            for i, rules in enumerate(lifecycles)
        ]
    }


def _problems(*lifecycles: Any) -> dict[str, str]:
    with pytest.raises(ConfigurationError) as failed:
        parse_policy(_policy(*lifecycles))
    return failed.value.problems


def test_full_rules_parse() -> None:
    policy = parse_policy(
        _policy(
            {
                "reviewEveryDays": 180,
                "reviewGraceDays": 10,
                "onNoAnswer": "blockSignIn",
                "onRemove": "blockSignInAndDelete",
                "deleteAfterDays": 45,
                "unredeemedReminderDays": [7, 14],
                "unredeemedExpiryDays": 30,
                "inactiveDays": 90,
            }
        )
    )
    profile = policy.profile("p0")
    assert profile is not None
    assert profile.lifecycle == LifecycleRules(
        review_every_days=180,
        review_grace_days=10,
        on_no_answer=RemovalAction.BLOCK_SIGN_IN,
        on_remove=RemovalAction.BLOCK_SIGN_IN_AND_DELETE,
        delete_after_days=45,
        unredeemed_reminder_days=(7, 14),
        unredeemed_expiry_days=30,
        inactive_days=90,
    )


def test_defaults_are_the_safe_ones_and_a_profile_without_rules_has_none() -> None:
    policy = parse_policy(
        _policy({"reviewEveryDays": 90}, {"unredeemedExpiryDays": 30, "onRemove": "blockSignInAndDelete"})
    )
    first, second = policy.profile("p0"), policy.profile("p1")
    assert first is not None and first.lifecycle is not None
    assert (first.lifecycle.review_grace_days, first.lifecycle.on_no_answer) == (14, RemovalAction.NONE)
    assert first.lifecycle.on_remove == RemovalAction.BLOCK_SIGN_IN and first.lifecycle.delete_after_days is None
    assert second is not None and second.lifecycle is not None and second.lifecycle.delete_after_days == 30
    plain = parse_policy({"profiles": [{"name": "x", "domains": ["x.example"], "action": "review", "groups": []}]})
    assert plain.profile("x") is not None and plain.profile("x").lifecycle is None  # type: ignore[union-attr]


def test_every_problem_is_named_at_once_by_its_path() -> None:
    problems = _problems(
        {
            "reviewEveryDays": 0,
            "onNoAnswer": "delete",
            "onRemove": "blockSignIn",
            "deleteAfterDays": 30,
            "unredeemedReminderDays": [14, 7, "x"],
            "unredeemedExpiryDays": 10,
            "inactiveDays": 7,
            "reviewEvery": 1,
        },
        {"reviewEveryDays": 30, "reviewGraceDays": 30},
        {"reviewGraceDays": 5, "unredeemedReminderDays": [3]},
        {},
        "monthly",
    )
    assert problems == {
        "profiles[0].lifecycle.reviewEvery": "is not a known key",
        "profiles[0].lifecycle.reviewEveryDays": "must be a whole number of days from 1 to 3650",
        "profiles[0].lifecycle.inactiveDays": "must be a whole number of days from 30 to 3650",
        "profiles[0].lifecycle.onNoAnswer": "must be one of none, removeGroups, blockSignIn, blockSignInAndDelete",
        "profiles[0].lifecycle.deleteAfterDays": "applies only when onRemove or onNoAnswer is blockSignInAndDelete",
        "profiles[0].lifecycle.unredeemedReminderDays[1]": "must be later than the reminder before it",
        "profiles[0].lifecycle.unredeemedReminderDays[2]": "must be a whole number of days from 1 to 3650",
        "profiles[0].lifecycle.unredeemedReminderDays": "every reminder must come before unredeemedExpiryDays",
        "profiles[1].lifecycle.reviewGraceDays": "must be shorter than reviewEveryDays",
        "profiles[2].lifecycle.reviewGraceDays": "needs reviewEveryDays or inactiveDays",
        "profiles[2].lifecycle.unredeemedReminderDays": "needs unredeemedExpiryDays (reminders lead to a clean-up)",
        "profiles[2].lifecycle": "must name at least reviewEveryDays, inactiveDays or unredeemedExpiryDays",
        "profiles[3].lifecycle": "must name at least reviewEveryDays, inactiveDays or unredeemedExpiryDays",
        "profiles[4].lifecycle": "must be an object",
    }


@pytest.mark.parametrize(
    ("rules", "wanted"),
    [
        ({"reviewEveryDays": 90, "onRemove": "none"}, {"User.Read.All"}),
        (
            {"reviewEveryDays": 90, "onRemove": "removeGroups"},
            {"User.Read.All", "GroupMember.ReadWrite.All", "Directory.Read.All"},
        ),
        ({"reviewEveryDays": 90}, {"User.Read.All", "User.ReadWrite.All"}),
        ({"inactiveDays": 90, "onRemove": "none"}, {"User.Read.All", "AuditLog.Read.All"}),
    ],
)
def test_the_rules_name_the_graph_permissions_they_need_and_only_those(rules: dict[str, Any], wanted: set[str]) -> None:
    policy = parse_policy(_policy(rules))
    assert required_permissions(p.lifecycle for p in policy.profiles) == wanted
    assert required_permissions([]) == frozenset()
