"""iSCSI protocol core (RFC 7143), sans-IO: PDU codec, digests and session state machines."""
