"""Outbound HTTP: every request Meshgate makes to a URL a user typed goes through `egress`."""
