//! Reading the audit databases the tests make: one value of a query.
use std::path::Path;

use rusqlite::Connection;

/// The one integer a query such as `SELECT count(*) ...` returns.
pub fn count(db: &Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The one value a query returns, from the database file `db`.
pub fn one<T: rusqlite::types::FromSql>(db: &Path, sql: &str) -> T {
    Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}
