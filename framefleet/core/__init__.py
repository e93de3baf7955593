"""The shared core: what the SDK, the coordinator and the agent all rely on.

Error classes (errors), the retry backoff (backoff), job rules and validation (jobspec,
videojson, variants), telemetry and logs, gRPC options (channel) and the stream outbox.
Together with the generated stubs in ``framefleet.v1`` it is the bottom layer: it imports
nothing of the SDK's client or CLI and nothing of the servers.
"""
