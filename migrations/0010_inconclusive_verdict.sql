-- 0010_inconclusive_verdict.sql: a run's shortcut verdict may be 'inconclusive' (no method's maps are
-- trusted, or no confirmed region and at least one candidate region whose causal tests had too few
-- images to reach significance either way); its summary says why and what would make it conclusive.
--
-- The CHECK of shortcut_checks.verdict is widened in place (SQLite's documented procedure for
-- loosening a CHECK constraint: rewrite the table's stored definition; every existing row still
-- satisfies the wider constraint). Recreating the table instead would cascade-delete its child rows
-- (shortcut_methods, shortcut_regions, shortcut_flags, shortcut_tests). RESET makes this connection
-- read the new definition; the table created and dropped bumps the schema cookie for the others.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
SET sql = replace(sql, 'CHECK (verdict IN (''shortcut'', ''no_shortcut''))',
                       'CHECK (verdict IN (''shortcut'', ''no_shortcut'', ''inconclusive''))')
WHERE type = 'table' AND name = 'shortcut_checks';
PRAGMA writable_schema = RESET;
CREATE TABLE migration_0010_reload (x INTEGER);
DROP TABLE migration_0010_reload;
