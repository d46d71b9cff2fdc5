"""Everything that touches a file format; nothing here trains."""
