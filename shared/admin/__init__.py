"""Administration: what an operator does by hand after a fix (``signup-admin``), kept out of the request path.

``replay`` re-admits failed sign-ups; ``cli`` is the console script that the
project's set-up installs into ``.venv/bin/signup-admin``. Later admin work adds
subcommands to the same command.
"""
