//! Reading the audit databases the tests make: one value or one row of a query.
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

/// The one row a query returns, as a tuple such as `(String, i64)`, from the open database `db`.
pub fn row<T>(db: &Connection, sql: &str) -> T
where
    T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
{
    db.query_row(sql, [], |r| T::try_from(r)).unwrap()
}
