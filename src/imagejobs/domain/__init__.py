"""Pure values and rules: ids, enums, records, validation and the one error tree (stdlib only)."""
