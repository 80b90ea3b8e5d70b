"""The sign-up policy: which domains are refused, which are invited and how, and which wait for review.

This package owns the policy document (``SIGNUP_POLICY``: a JSON file or a Blob),
its validation (every problem named at once, by its path in the document) and
the matching of an address's domain to a decision. It knows nothing of storage
records or queues: intake asks it for a ``Decision`` and records the answer, and
the worker asks it for a profile's invitation options.
"""

from __future__ import annotations

from .document import Action, Decision, Policy, Profile, Question, parse_policy
from .loader import CachedPolicy, FixedPolicy, PolicySource, load_policy, read_policy_document

__all__ = [
    "Action",
    "CachedPolicy",
    "Decision",
    "FixedPolicy",
    "Policy",
    "PolicySource",
    "Profile",
    "Question",
    "load_policy",
    "parse_policy",
    "read_policy_document",
]
