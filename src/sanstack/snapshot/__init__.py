"""Snapshot volumes: persistent copy-on-write snapshots kept on the volume itself."""
