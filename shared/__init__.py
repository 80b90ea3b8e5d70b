"""Domain package of the Entra B2B self-service sign-up portal.

Nothing in this package imports ``azure.functions``: the trigger layer
(``function_app.py`` and ``triggers/``) parses requests, calls in here and
maps results to responses.
"""
