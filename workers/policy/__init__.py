"""The conversation policy: opt-out, human handover, agents answering through WhatsApp,
and the 24-hour window ahead of time. On when the configuration has a ``[policy]`` table.

=======================  ===============================================================
``config``               ``[policy]`` and its sub-tables, validated
``state``                the Redis records (keys: ``service.policystore``); ``MessagingWindow``
``scope``                the policy for one event: the reply gate, the send check
``router``               the built-in router every inbound message passes through first
``optout``               STOP / START
``handover``             keyword and idle; ``on_handover_started`` (the hook)
``agents``               an agent's answer relayed to the customer; ``#done``
``nudge``                the agent's nudge before their own window closes
=======================  ===============================================================

Nothing is imported here: ``workers.context`` imports ``workers.policy.state``, which
must not pull in the dispatch machinery.
"""
