"""Microsoft Graph: what the app asks of the directory, and how it asks.

``directory`` is the ``Protocol`` and its value types; ``client`` implements it
with msgraph-sdk and azure-identity and classifies every failure once
(permanent, transient, or ambiguous: Graph may have acted); ``pacing`` keeps
writes inside Graph's write budget.
"""
