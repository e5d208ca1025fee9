"""The portal simulator: the WABA Portal's contract served locally (``wabahooks portal-sim``).

``app`` builds the Starlette app (``create_sim_app``), ``state`` holds conversations, messages and
the 24-hour window, ``delivery`` posts signed webhooks with the portal's retries, ``templates`` the
template store, ``config`` the settings and chaos knobs, ``cli`` the command.
"""
