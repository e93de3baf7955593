"""The framefleet coordinator: job table, leases, and the gRPC services for clients and agents."""
