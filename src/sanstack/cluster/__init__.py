"""The failover cluster: membership, quorum, disk arbitration with SCSI-3 persistent
reservations, and groups that fail over with their volumes (docs/cluster-design.md)."""
