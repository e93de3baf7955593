"""The framefleet agent: renders leased jobs in headless Chromium and encodes them to MP4."""
