"""Generated from proto/framefleet/v1 by scripts/generate_stubs.sh; do not edit."""
