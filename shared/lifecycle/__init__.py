"""The sign-up lifecycle: from a validated request to a final, visible state.

``validation`` parses and normalises the request, ``intake`` records and queues
it (one invitation per address per window), ``worker`` is the queue consumer's
state machine, ``sweeper`` finds work whose message was lost or whose timer
passed, and ``store``/``queue`` keep the records and messages behind small
``Protocol``s. ``models`` draws the states.
"""
