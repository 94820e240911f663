"""``sanstack validate``: WSFC's storage validation tests, any iSCSI target (docs/validate.md)."""
