"""The farm's server-side commands: the all-in-one ``render``, ``coordinator``, ``agent`` and
``preview``. They sit on top of everything (coordinator, agent, outputs, the SDK) and plug into
the SDK's ``framefleet`` command through the ``framefleet.commands`` entry point."""
