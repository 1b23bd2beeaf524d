-- auto-server schema, version 9 (the same text on SQLite and PostgreSQL): a hypervisor's guests.
-- The virt collector's list `guests` has one part per virtual machine, its id the guest's SMBIOS
-- system UUID (report schema 2, docs/report-schema.md). "Which host runs the guest with UUID U" is
-- then a look-up by item among those parts only: a partial index, a few rows per hypervisor,
-- instead of an index over every component (installed packages are most of them).
CREATE INDEX components_guest_uuid ON components (item) WHERE kind = 'virt.guests';
