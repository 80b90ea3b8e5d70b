"""Composition root of the Azure Functions app (Python v2 programming model).

Logging, the ``FunctionApp`` and one ``register_functions`` per area. The
triggers live in ``triggers/``; the domain in ``shared/``.
"""

import logging

import azure.functions as func

from triggers import guests, manage, meta, pages, signups

logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
logging.getLogger("httpx").setLevel(logging.WARNING)

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(signups.bp)
app.register_functions(manage.bp)
app.register_functions(meta.bp)
app.register_functions(pages.bp)
app.register_functions(guests.bp)
