"""The web console on the coordinator's HTTP address: queue and recent jobs, batches and agents,
updated live over server-sent events, with cancel and retry buttons. Plain files in static/:
nothing to build, nothing fetched from elsewhere."""

from framefleet.coordinator.console.routes import add_console

__all__ = ["add_console"]
