"""Local Functions host for development and tests (not deployed; see ``devhost.host``)."""
