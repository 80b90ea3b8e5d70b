"""The HTTP edge: one path from a request to its answer, apart from ``azure.functions``.

* ``model``: the request (``Inbound``), the outcomes a handler returns (``Json``,
  ``Refused``, ``Show``, ``File``, ``Empty``) and the ``Reply``;
* ``handlers`` and ``admin``: one function per route, computing one outcome;
* ``pipeline``: the steps every route shares (method, CORS, the admin writes'
  JSON-only and same-site rules, errors to problems);
* ``present``: the one presenter, problem+json or a page by content negotiation;
* ``routes``: every route declared once.

The triggers (``triggers/``) only convert the host's request and response.
"""

from __future__ import annotations

from .model import Empty, File, Headers, Inbound, Json, Outcome, Refused, Reply, Show
from .pipeline import Route, respond

__all__ = ["Empty", "File", "Headers", "Inbound", "Json", "Outcome", "Refused", "Reply", "Route", "Show", "respond"]
