//! The store's metadata database (SQLite, WAL).
//!
//! One row per valid path, with its tree hash, archive size, registration time, deriver,
//! content address and signatures; references as an edge table indexed both ways, so that
//! closures, referrers and garbage collection walk the database and never the store's
//! directories. Paths are registered in batches, each batch one transaction: a crash
//! leaves the database as it was before the batch or after it.
//!
//! The schema is versioned: `MIGRATIONS[i]` takes the database from version `i` to
//! `i + 1`, and opening a database applies the missing ones in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::path::StorePath;

/// Schema changes, in order. Never edit an entry once released: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE valid_paths (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        tree_hash BLOB NOT NULL CHECK (length(tree_hash) = 32),
        archive_size INTEGER NOT NULL CHECK (archive_size >= 0),
        registered INTEGER NOT NULL,
        deriver TEXT,
        content_address TEXT
    );
    CREATE TABLE refs (
        referrer INTEGER NOT NULL REFERENCES valid_paths(id) ON DELETE CASCADE,
        reference INTEGER NOT NULL REFERENCES valid_paths(id) ON DELETE RESTRICT,
        PRIMARY KEY (referrer, reference)
    ) WITHOUT ROWID;
    CREATE INDEX refs_by_reference ON refs(reference, referrer);
    CREATE TABLE signatures (
        path INTEGER NOT NULL REFERENCES valid_paths(id) ON DELETE CASCADE,
        signature TEXT NOT NULL,
        PRIMARY KEY (path, signature)
    ) WITHOUT ROWID;",
];

/// What the database knows about one valid path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// The path.
    pub path: StorePath,
    /// Tree hash of its content (see `docs/archive.md`).
    pub tree_hash: [u8; 32],
    /// Size of its canonical archive in bytes.
    pub archive_size: u64,
    /// Registration time, seconds since the Unix epoch.
    pub registered: i64,
    /// The derivation that built it, if any.
    pub deriver: Option<StorePath>,
    /// How its content determines its path (`source:blake3:<hex>`), for content-addressed
    /// paths; none for build outputs.
    pub content_address: Option<String>,
    /// Store paths its content refers to (possibly itself).
    pub references: BTreeSet<StorePath>,
    /// Signatures, `KEY-NAME:BASE64`.
    pub signatures: BTreeSet<String>,
}

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite reported an error.
    #[error("store database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer nexis.
    #[error("store database {path} has schema version {found}; this nexis knows up to {known}")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: usize,
    },
    /// A registration names a reference that is neither valid nor in the same batch.
    #[error("cannot register {path}: its reference {reference} is not a valid path")]
    MissingReference {
        /// The path being registered.
        path: StorePath,
        /// The reference that is missing.
        reference: StorePath,
    },
    /// An operation on one path found it not valid.
    #[error("{path} is not valid in the store database {db}")]
    NotValid {
        /// The path.
        path: StorePath,
        /// The database file.
        db: PathBuf,
    },
    /// A stored row does not parse (the database was edited by hand or is damaged).
    #[error("store database {path}: corrupt row for {row}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The value that did not parse.
        row: String,
    },
}

/// The open metadata database.
#[derive(Debug)]
pub struct Db {
    conn: Connection,
    path: PathBuf,
}

/// The ids of the closure of the paths named in the JSON array `?1`, as the table `c`.
const CLOSURE: &str = "WITH RECURSIVE c(id) AS (
    SELECT id FROM valid_paths WHERE path IN (SELECT value FROM json_each(?1))
    UNION
    SELECT r.reference FROM refs r JOIN c ON r.referrer = c.id
)";

impl Db {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let err = |source| DbError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_mins(1)).map_err(err)?;
        // Switching a new database to WAL needs a lock that SQLite does not wait for
        // (no busy handler): when several processes open a fresh root at once, all but
        // one get SQLITE_BUSY. Try again, for as long as the busy timeout.
        let pragmas = "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;";
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match conn.execute_batch(pragmas) {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < Duration::from_mins(1) =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(err(e)),
            }
        }
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        let known = MIGRATIONS.len();
        let start = usize::try_from(version).unwrap_or(usize::MAX);
        if start > known {
            return Err(DbError::TooNew {
                path: path.to_owned(),
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(i + 1).expect("few migrations"),
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(Db {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, DbError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(self.err())
    }

    /// Whether `path` is valid.
    pub fn is_valid(&self, path: &StorePath) -> Result<bool, DbError> {
        self.id(path).map(|id| id.is_some())
    }

    fn id(&self, path: &StorePath) -> Result<Option<i64>, DbError> {
        self.conn
            .prepare_cached("SELECT id FROM valid_paths WHERE path = ?1")
            .and_then(|mut s| s.query_row([path.base_name()], |r| r.get(0)).optional())
            .map_err(self.err())
    }

    /// Register a batch of paths in one transaction. Every reference must be valid
    /// already or be in the batch. Paths already valid are left as they are (their
    /// signatures are merged).
    pub fn register(&mut self, infos: &[PathInfo]) -> Result<(), DbError> {
        let path = self.path.clone();
        let err = |source| DbError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut ids: BTreeMap<&StorePath, i64> = BTreeMap::new();
        {
            let mut find = tx
                .prepare_cached("SELECT id FROM valid_paths WHERE path = ?1")
                .map_err(err)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO valid_paths (path, tree_hash, archive_size, registered, deriver, content_address)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            let mut sig = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO signatures (path, signature) VALUES (?1, ?2)",
                )
                .map_err(err)?;
            let mut fresh = BTreeSet::new();
            for info in infos {
                let existing: Option<i64> = find
                    .query_row([info.path.base_name()], |r| r.get(0))
                    .optional()
                    .map_err(err)?;
                let id = if let Some(id) = existing {
                    id
                } else {
                    insert
                        .execute(params![
                            info.path.base_name(),
                            &info.tree_hash[..],
                            i64::try_from(info.archive_size).unwrap_or(i64::MAX),
                            info.registered,
                            info.deriver.as_ref().map(StorePath::base_name),
                            info.content_address,
                        ])
                        .map_err(err)?;
                    fresh.insert(&info.path);
                    tx.last_insert_rowid()
                };
                for s in &info.signatures {
                    sig.execute(params![id, s]).map_err(err)?;
                }
                ids.insert(&info.path, id);
            }
            let mut edge = tx
                .prepare_cached("INSERT OR IGNORE INTO refs (referrer, reference) VALUES (?1, ?2)")
                .map_err(err)?;
            for info in infos.iter().filter(|i| fresh.contains(&i.path)) {
                for r in &info.references {
                    let target = match ids.get(r) {
                        Some(&id) => id,
                        None => find
                            .query_row([r.base_name()], |row| row.get(0))
                            .optional()
                            .map_err(err)?
                            .ok_or_else(|| DbError::MissingReference {
                                path: info.path.clone(),
                                reference: r.clone(),
                            })?,
                    };
                    edge.execute(params![ids[&info.path], target])
                        .map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)
    }

    /// Add signatures (`KEY-NAME:BASE64`) to a valid path, in one transaction; returns
    /// how many were new.
    pub fn add_signatures(
        &mut self,
        path: &StorePath,
        signatures: &[String],
    ) -> Result<usize, DbError> {
        let db = self.path.clone();
        let err = |source| DbError::Sqlite {
            path: db.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let id: i64 = tx
            .prepare_cached("SELECT id FROM valid_paths WHERE path = ?1")
            .and_then(|mut s| s.query_row([path.base_name()], |r| r.get(0)).optional())
            .map_err(err)?
            .ok_or_else(|| DbError::NotValid {
                path: path.clone(),
                db: db.clone(),
            })?;
        let mut added = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO signatures (path, signature) VALUES (?1, ?2)",
                )
                .map_err(err)?;
            for s in signatures {
                added += insert.execute(params![id, s]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(added)
    }

    /// Everything known about one path, if it is valid.
    pub fn query(&self, path: &StorePath) -> Result<Option<PathInfo>, DbError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, tree_hash, archive_size, registered, deriver, content_address
                 FROM valid_paths WHERE path = ?1",
            )
            .and_then(|mut s| {
                s.query_row([path.base_name()], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                })
                .optional()
            })
            .map_err(self.err())?;
        let Some((id, hash, size, registered, deriver, content_address)) = row else {
            return Ok(None);
        };
        let corrupt = |row: &str| DbError::Corrupt {
            path: self.path.clone(),
            row: row.to_owned(),
        };
        let tree_hash: [u8; 32] = hash.try_into().map_err(|_| corrupt(&path.base_name()))?;
        let deriver = match deriver {
            Some(d) => Some(StorePath::from_base_name(&d).map_err(|_| corrupt(&d))?),
            None => None,
        };
        Ok(Some(PathInfo {
            path: path.clone(),
            tree_hash,
            archive_size: u64::try_from(size).map_err(|_| corrupt(&path.base_name()))?,
            registered,
            deriver,
            content_address,
            references: self.edges("SELECT p.path FROM refs r JOIN valid_paths p ON p.id = r.reference WHERE r.referrer = ?1", id)?,
            signatures: self
                .conn
                .prepare_cached("SELECT signature FROM signatures WHERE path = ?1")
                .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
                .map_err(self.err())?,
        }))
    }

    /// Store paths from `valid_paths.path` values (a value that does not parse means the
    /// database was damaged or edited by hand).
    fn to_paths<C: FromIterator<StorePath>>(&self, names: Vec<String>) -> Result<C, DbError> {
        names
            .into_iter()
            .map(|n| {
                StorePath::from_base_name(&n).map_err(|_| DbError::Corrupt {
                    path: self.path.clone(),
                    row: n,
                })
            })
            .collect()
    }

    fn edges(&self, sql: &str, id: i64) -> Result<BTreeSet<StorePath>, DbError> {
        let names: Vec<String> = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
            .map_err(self.err())?;
        self.to_paths(names)
    }

    /// The valid paths that refer to `path`.
    pub fn referrers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>, DbError> {
        match self.id(path)? {
            Some(id) => self.edges(
                "SELECT p.path FROM refs r JOIN valid_paths p ON p.id = r.referrer WHERE r.reference = ?1",
                id,
            ),
            None => Ok(BTreeSet::new()),
        }
    }

    /// The valid paths `path` refers to.
    pub fn references(&self, path: &StorePath) -> Result<BTreeSet<StorePath>, DbError> {
        match self.id(path)? {
            Some(id) => self.edges(
                "SELECT p.path FROM refs r JOIN valid_paths p ON p.id = r.reference WHERE r.referrer = ?1",
                id,
            ),
            None => Ok(BTreeSet::new()),
        }
    }

    /// The shortest chain of references from `from` to `to` (both included), if `from`
    /// depends on `to` at all. Breadth first over the reference table.
    pub fn why_depends(
        &self,
        from: &StorePath,
        to: &StorePath,
    ) -> Result<Option<Vec<StorePath>>, DbError> {
        let mut parent: BTreeMap<StorePath, Option<StorePath>> = BTreeMap::new();
        parent.insert(from.clone(), None);
        let mut frontier = vec![from.clone()];
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for p in frontier {
                if &p == to {
                    let mut chain = vec![p.clone()];
                    let mut at = &p;
                    while let Some(Some(up)) = parent.get(at) {
                        chain.push(up.clone());
                        at = up;
                    }
                    chain.reverse();
                    return Ok(Some(chain));
                }
                for r in self.references(&p)? {
                    if !parent.contains_key(&r) {
                        parent.insert(r.clone(), Some(p.clone()));
                        next.push(r);
                    }
                }
            }
            frontier = next;
        }
        Ok(None)
    }

    /// The closure of `paths`: them and everything they refer to, transitively (one
    /// recursive query).
    pub fn closure(&self, paths: &[StorePath]) -> Result<BTreeSet<StorePath>, DbError> {
        let roots: Vec<String> = paths.iter().map(StorePath::base_name).collect();
        let json = serde_json_array(&roots);
        let names: Vec<String> = self
            .conn
            .prepare_cached(&format!(
                "{CLOSURE} SELECT p.path FROM c JOIN valid_paths p ON p.id = c.id"
            ))
            .and_then(|mut s| s.query_map([json], |r| r.get(0))?.collect())
            .map_err(self.err())?;
        self.to_paths(names)
    }

    /// The total archive size of the closure of `paths`, in bytes: one query.
    pub fn closure_size(&self, paths: &[StorePath]) -> Result<u64, DbError> {
        let roots: Vec<String> = paths.iter().map(StorePath::base_name).collect();
        let size: i64 = self
            .conn
            .prepare_cached(
                &format!("{CLOSURE} SELECT COALESCE(SUM(p.archive_size), 0) FROM c JOIN valid_paths p ON p.id = c.id"),
            )
            .and_then(|mut s| s.query_row([serde_json_array(&roots)], |r| r.get(0)))
            .map_err(self.err())?;
        Ok(u64::try_from(size).unwrap_or(0))
    }

    /// Mark and find garbage: the number of paths reachable from `roots`, and every
    /// other valid path with its archive size. One recursive query for the live set, one
    /// pass over the table for the rest.
    pub fn dead_paths(
        &self,
        roots: &[StorePath],
    ) -> Result<(usize, Vec<(StorePath, u64)>), DbError> {
        let json = serde_json_array(&roots.iter().map(StorePath::base_name).collect::<Vec<_>>());
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS live(id INTEGER PRIMARY KEY); DELETE FROM temp.live;",
        )
        .map_err(self.err())?;
        let live = tx
            .execute(
                &format!("{CLOSURE} INSERT INTO temp.live SELECT id FROM c"),
                [json],
            )
            .map_err(self.err())?;
        let rows: Vec<(String, i64)> = tx
            .prepare(
                "SELECT path, archive_size FROM valid_paths
                 WHERE id NOT IN (SELECT id FROM temp.live) ORDER BY path",
            )
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(self.err())?;
        tx.execute_batch("DELETE FROM temp.live;")
            .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        let dead = rows
            .into_iter()
            .map(|(n, size)| {
                let p = StorePath::from_base_name(&n).map_err(|_| DbError::Corrupt {
                    path: self.path.clone(),
                    row: n,
                })?;
                Ok((p, u64::try_from(size).unwrap_or(0)))
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        Ok((live, dead))
    }

    /// Every valid path.
    pub fn all_valid(&self) -> Result<Vec<StorePath>, DbError> {
        let names: Vec<String> = self
            .conn
            .prepare_cached("SELECT path FROM valid_paths ORDER BY path")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(self.err())?;
        self.to_paths(names)
    }

    /// Forget paths (garbage collection, after their files are gone or moved to the
    /// trash), in one transaction. A path still referred to by a valid path outside the
    /// batch is refused by the database (`ON DELETE RESTRICT`).
    pub fn invalidate(&mut self, paths: &[StorePath]) -> Result<(), DbError> {
        let path = self.path.clone();
        let err = |source| DbError::Sqlite {
            path: path.clone(),
            source,
        };
        let json = serde_json_array(&paths.iter().map(StorePath::base_name).collect::<Vec<_>>());
        // Immediate: this transaction reads the table before it writes, and a deferred
        // one would fail at once (no busy wait) if another writer committed between.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        // A handful of statements whatever the number of paths: the batch's ids, then
        // their edges (those among the batch must go first, so that the batch can be
        // deleted at all), then the rows.
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS doomed(id INTEGER PRIMARY KEY);
             DELETE FROM temp.doomed;",
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO temp.doomed SELECT id FROM valid_paths
             WHERE path IN (SELECT value FROM json_each(?1))",
            [json],
        )
        .map_err(err)?;
        tx.execute_batch(
            "DELETE FROM refs WHERE referrer IN (SELECT id FROM temp.doomed);
             DELETE FROM valid_paths WHERE id IN (SELECT id FROM temp.doomed);
             DELETE FROM temp.doomed;",
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// The references among `paths`: each (referrer, reference) pair with both in
    /// `paths`, self-references left out. One query, whatever the number of paths.
    pub fn references_among(
        &self,
        paths: &[StorePath],
    ) -> Result<Vec<(StorePath, StorePath)>, DbError> {
        let json = serde_json_array(&paths.iter().map(StorePath::base_name).collect::<Vec<_>>());
        let rows: Vec<(String, String)> = self
            .conn
            .prepare_cached(
                "WITH s(id) AS (
                    SELECT id FROM valid_paths WHERE path IN (SELECT value FROM json_each(?1))
                 )
                 SELECT a.path, b.path FROM refs r
                 JOIN s ON s.id = r.referrer
                 JOIN s t ON t.id = r.reference
                 JOIN valid_paths a ON a.id = r.referrer
                 JOIN valid_paths b ON b.id = r.reference
                 WHERE r.referrer != r.reference",
            )
            .and_then(|mut s| {
                s.query_map([json], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(self.err())?;
        let parse = |n: String| {
            StorePath::from_base_name(&n).map_err(|_| DbError::Corrupt {
                path: self.path.clone(),
                row: n,
            })
        };
        rows.into_iter()
            .map(|(a, b)| Ok((parse(a)?, parse(b)?)))
            .collect()
    }

    /// Every valid path with its tree hash and archive size, in one query (for `verify`).
    pub fn valid_hashes(&self) -> Result<Vec<(StorePath, [u8; 32], u64)>, DbError> {
        let rows: Vec<(String, Vec<u8>, i64)> = self
            .conn
            .prepare_cached("SELECT path, tree_hash, archive_size FROM valid_paths ORDER BY path")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(name, hash, size)| {
                let corrupt = || DbError::Corrupt {
                    path: self.path.clone(),
                    row: name.clone(),
                };
                let path = StorePath::from_base_name(&name).map_err(|_| corrupt())?;
                let hash: [u8; 32] = hash.try_into().map_err(|_| corrupt())?;
                let size = u64::try_from(size).map_err(|_| corrupt())?;
                Ok((path, hash, size))
            })
            .collect()
    }

    /// Rows of the reference table whose referrer or reference is not a valid path. The
    /// schema's foreign keys keep this empty; a damaged or hand-edited database may not.
    pub fn dangling_references(&self) -> Result<Vec<DanglingRef>, DbError> {
        let rows: Vec<(i64, Option<String>, i64)> = self
            .conn
            .prepare_cached(
                "SELECT r.referrer, p.path, r.reference FROM refs r
                 LEFT JOIN valid_paths p ON p.id = r.referrer
                 WHERE p.id IS NULL
                    OR NOT EXISTS (SELECT 1 FROM valid_paths q WHERE q.id = r.reference)
                 ORDER BY r.referrer, r.reference",
            )
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(referrer_id, name, reference_id)| {
                let referrer = match name {
                    Some(n) => {
                        Some(StorePath::from_base_name(&n).map_err(|_| DbError::Corrupt {
                            path: self.path.clone(),
                            row: n,
                        })?)
                    }
                    None => None,
                };
                Ok(DanglingRef {
                    referrer,
                    referrer_id,
                    reference_id,
                })
            })
            .collect()
    }
}

/// A row of the reference table naming a path the database does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DanglingRef {
    /// The referring path, if it is valid.
    pub referrer: Option<StorePath>,
    /// The referrer's row id.
    pub referrer_id: i64,
    /// The reference's row id.
    pub reference_id: i64,
}

impl std::fmt::Display for DanglingRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.referrer {
            Some(p) => write!(
                f,
                "{p} refers to row {}, which is not a valid path",
                self.reference_id
            ),
            None => write!(
                f,
                "the reference table names row {}, which is not a valid path, as referring to row {}",
                self.referrer_id, self.reference_id
            ),
        }
    }
}

/// A JSON array of strings, for `json_each` (store base names need no escaping beyond
/// what this does).
fn serde_json_array(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::ContentKind;

    fn sp(name: &str) -> StorePath {
        StorePath::new(
            &ContentKind::Source { references: &[] },
            blake3::hash(name.as_bytes()).as_bytes(),
            name,
        )
        .unwrap()
    }

    fn info(path: &StorePath, refs: &[&StorePath]) -> PathInfo {
        PathInfo {
            path: path.clone(),
            tree_hash: *blake3::hash(path.name().as_bytes()).as_bytes(),
            archive_size: 100,
            registered: 1,
            deriver: None,
            content_address: Some("source".into()),
            references: refs.iter().map(|r| (*r).clone()).collect(),
            signatures: BTreeSet::new(),
        }
    }

    #[test]
    fn register_query_closure_referrers() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("db.sqlite")).unwrap();
        assert_eq!(db.schema_version().unwrap(), 1);
        let (a, b, c, d) = (sp("a"), sp("b"), sp("c"), sp("d"));
        db.register(&[info(&c, &[]), info(&b, &[&c, &b]), info(&a, &[&b])])
            .unwrap();
        db.register(&[info(&d, &[&c])]).unwrap();
        assert_eq!(
            db.why_depends(&a, &c).unwrap(),
            Some(vec![a.clone(), b.clone(), c.clone()])
        );
        assert_eq!(db.why_depends(&a, &a).unwrap(), Some(vec![a.clone()]));
        assert_eq!(db.why_depends(&c, &a).unwrap(), None);
        assert!(db.is_valid(&a).unwrap());
        let q = db.query(&b).unwrap().unwrap();
        assert_eq!(q.references, [b.clone(), c.clone()].into());
        assert_eq!(
            db.closure(std::slice::from_ref(&a)).unwrap(),
            [a.clone(), b.clone(), c.clone()].into()
        );
        // Each path's archive size is 100 (`info`): a, b and c, each once.
        assert_eq!(db.closure_size(std::slice::from_ref(&a)).unwrap(), 300);
        assert_eq!(db.closure_size(&[a.clone(), d.clone()]).unwrap(), 400);
        assert_eq!(db.closure_size(&[]).unwrap(), 0);
        assert_eq!(db.referrers(&c).unwrap(), [b.clone(), d.clone()].into());
        assert_eq!(db.all_valid().unwrap().len(), 4);
        // A referenced path cannot go alone; with its referrers it can.
        assert!(db.invalidate(std::slice::from_ref(&c)).is_err());
        assert!(db.is_valid(&c).unwrap(), "a failed batch changes nothing");
        db.invalidate(&[a.clone(), b.clone(), d.clone(), c.clone()])
            .unwrap();
        assert!(db.all_valid().unwrap().is_empty());
    }

    #[test]
    fn signatures_are_added_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("db.sqlite")).unwrap();
        let a = sp("a");
        let sigs = ["k:AAAA".to_owned(), "j:BBBB".to_owned()];
        let e = db.add_signatures(&a, &sigs).unwrap_err();
        assert!(matches!(e, DbError::NotValid { .. }), "{e}");
        db.register(&[info(&a, &[])]).unwrap();
        assert_eq!(db.add_signatures(&a, &sigs).unwrap(), 2);
        assert_eq!(db.add_signatures(&a, &sigs[..1]).unwrap(), 0);
        assert_eq!(db.query(&a).unwrap().unwrap().signatures.len(), 2);
    }

    #[test]
    fn missing_reference_rolls_back_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("db.sqlite")).unwrap();
        let (a, b, ghost) = (sp("a"), sp("b"), sp("ghost"));
        let e = db
            .register(&[info(&b, &[]), info(&a, &[&ghost])])
            .unwrap_err();
        assert!(matches!(e, DbError::MissingReference { .. }), "{e}");
        assert!(!db.is_valid(&b).unwrap());
    }

    #[test]
    fn reopening_keeps_data_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.sqlite");
        let a = sp("a");
        Db::open(&file).unwrap().register(&[info(&a, &[])]).unwrap();
        let db = Db::open(&file).unwrap();
        assert!(db.is_valid(&a).unwrap());
        db.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(db);
        assert!(matches!(
            Db::open(&file),
            Err(DbError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn opening_a_new_database_from_many_threads_at_once_succeeds() {
        // Switching a new database to WAL takes a lock SQLite does not wait for: the
        // first opens of a fresh root race for it.
        for _ in 0..40 {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("db.sqlite");
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..6).map(|_| s.spawn(|| Db::open(&file))).collect();
                for h in handles {
                    h.join().unwrap().unwrap();
                }
            });
        }
    }

    #[test]
    fn invalidate_waits_for_a_concurrent_writer_instead_of_failing() {
        // A collector's invalidate reads the table, then writes. If another connection
        // commits in between, a deferred transaction fails at once with "database is
        // locked" (its snapshot is stale; SQLite does not wait). It must wait instead.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.sqlite");
        let mut writer = Db::open(&file).unwrap();
        let (a, b) = (sp("a"), sp("b"));
        writer.register(&[info(&a, &[])]).unwrap();
        let mut collector = Db::open(&file).unwrap();
        let tx = writer
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        tx.execute(
            "INSERT INTO valid_paths(path, tree_hash, archive_size, registered)
             VALUES (?1, zeroblob(32), 1, 0)",
            [b.base_name()],
        )
        .unwrap();
        let collector = std::thread::spawn(move || collector.invalidate(&[a]));
        std::thread::sleep(Duration::from_millis(200));
        tx.commit().unwrap();
        collector.join().unwrap().unwrap();
        assert!(writer.is_valid(&b).unwrap());
    }

    #[test]
    fn dangling_references_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("db.sqlite")).unwrap();
        let (a, b) = (sp("a"), sp("b"));
        db.register(&[info(&b, &[]), info(&a, &[&b])]).unwrap();
        assert!(db.dangling_references().unwrap().is_empty());
        let (hashes, sizes): (Vec<_>, Vec<_>) = db
            .valid_hashes()
            .unwrap()
            .into_iter()
            .map(|(_, h, s)| (h, s))
            .unzip();
        assert_eq!(hashes.len(), 2);
        assert_eq!(sizes, [100, 100]);
        // Only a database edited behind the schema's back can hold one.
        db.conn.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
        db.conn
            .execute("DELETE FROM valid_paths WHERE path = ?1", [b.base_name()])
            .unwrap();
        let dangling = db.dangling_references().unwrap();
        assert_eq!(dangling.len(), 1);
        assert_eq!(dangling[0].referrer.as_ref(), Some(&a));
        assert!(dangling[0].to_string().contains(&a.to_string()));
    }
}
