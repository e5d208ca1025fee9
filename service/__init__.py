"""wabahooks, the HTTP side: what the portal talks to.

Also home to what both sides share (settings, events, job format, logging).
``service`` never imports ``workers``.
"""
