"""The host: shared iSCSI sessions with stable ISIDs, and the multipath maps over them."""
