"""Interop harness: server targets (targets.py) and the slixmpp session wrapper (slix.py)."""
