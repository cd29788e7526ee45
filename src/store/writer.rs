//! The single database writer: a thread owning its own connection that turns [`WriterMessage`]s into rows,
//! one transaction per batch.
//!
//! Every image is written with all its rows and its `run_images` row inside one transaction (and one
//! savepoint), so a killed run never leaves an image half-recorded: it is either 'done' with all its
//! rows or absent, and then recomputed by the resumed run. Writing an image again replaces its rows.
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, TransactionBehavior};

use super::{At, ErrorRecord, ImageResult, Result, Store, StoreError};

/// What the writer thread receives.
#[derive(Debug)]
pub enum WriterMessage {
    /// Everything computed for one image.
    Image(Box<ImageResult>),
    /// A file that failed as a whole, e.g. at decode (with or without an id). With an id, the image is
    /// recorded as 'failed' in `run_images` (a resumed run tries it again).
    Error(ErrorRecord),
    /// Commit what has been received so far.
    Flush,
    /// Test hook: write the image, then, with the transaction still open, say so on the first channel
    /// and wait on the second before going on.
    #[cfg(test)]
    Hold(Box<ImageResult>, SyncSender<()>, Receiver<()>),
}

/// What a writer did, returned by [`Writer::finish`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Images written with their results.
    pub images: usize,
    /// Rows written to `errors` (including the errors inside image results and failed writes).
    pub errors: usize,
    /// Transactions committed.
    pub transactions: usize,
    /// Images whose results could not be written (each recorded as a 'write' error and logged).
    pub failed_writes: usize,
}

/// The single writer thread and the sending side of its bounded channel.
pub struct Writer {
    sender: Option<SyncSender<WriterMessage>>,
    handle: Option<JoinHandle<Result<WriterStats>>>,
    path: PathBuf,
}

impl Writer {
    /// Opens (and migrates) the database in the calling thread, so that a bad path fails here, then starts
    /// the writer thread. It commits after every `batch` images, whenever the channel is momentarily
    /// empty, and on [`WriterMessage::Flush`]; `capacity` bounds the channel (senders block when full).
    pub fn spawn(path: &Path, batch: usize, capacity: usize) -> Result<Writer> {
        let Store { conn, path } = Store::open(path)?;
        let (sender, receiver) = sync_channel(capacity);
        let thread_path = path.clone();
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let r = writer_loop(conn, &thread_path, receiver, batch.max(1));
                // Said at once (the run stops at its next image and reports it again), so that the
                // cause is in the log even when the process is killed meanwhile.
                if let Err(e) = &r {
                    tracing::error!("the database writer stopped: {e}");
                }
                r
            })
            .expect("cannot start the database writer thread");
        Ok(Writer {
            sender: Some(sender),
            handle: Some(handle),
            path,
        })
    }

    /// A sender for the writer's channel. A send fails once the writer has stopped on an error;
    /// [`Writer::finish`] then returns that error.
    pub fn sender(&self) -> SyncSender<WriterMessage> {
        self.sender.clone().expect("the sender lives until finish")
    }

    /// Closes the channel, waits for the writer to commit what it has and returns its counts (or the error
    /// that stopped it). Every clone from [`Writer::sender`] must have been dropped, or this waits for them.
    pub fn finish(mut self) -> Result<WriterStats> {
        self.sender = None;
        let handle = self.handle.take().expect("joined only here and in drop");
        handle.join().map_err(|_| StoreError::WriterPanicked {
            path: self.path.clone(),
        })?
    }
}

impl Drop for Writer {
    /// Without `finish` (e.g. on unwinding), still let the thread commit what it received.
    fn drop(&mut self) {
        self.sender = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    path: &Path,
    rx: Receiver<WriterMessage>,
    batch: usize,
) -> Result<WriterStats> {
    let mut stats = WriterStats::default();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut closed = false;
        let mut images = 0;
        let mut wrote = false;
        let mut tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => match rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                },
            };
            match msg {
                WriterMessage::Image(r) => {
                    write_image_or_record(&mut tx, path, &r, &mut stats)?;
                    images += 1;
                    wrote = true;
                }
                WriterMessage::Error(e) => {
                    stats.errors += write_failed_file(&tx, &e).at(path)?;
                    wrote = true;
                }
                WriterMessage::Flush => break,
                #[cfg(test)]
                WriterMessage::Hold(r, held, release) => {
                    write_image_or_record(&mut tx, path, &r, &mut stats)?;
                    images += 1;
                    wrote = true;
                    let _ = held.send(());
                    let _ = release.recv();
                }
            }
            if images >= batch {
                break;
            }
        }
        tx.commit().at(path)?;
        if wrote {
            stats.transactions += 1;
        }
        if closed {
            break;
        }
    }
    Ok(stats)
}

/// Writes one image inside a savepoint; if that fails (a constraint, say), rolls the image back and records
/// the failure as a 'write' error instead, so one bad result does not lose the batch. Only a failure to
/// record that error stops the writer.
fn write_image_or_record(
    tx: &mut rusqlite::Transaction<'_>,
    path: &Path,
    r: &ImageResult,
    stats: &mut WriterStats,
) -> Result<()> {
    let sp = tx.savepoint().at(path)?;
    match write_image(&sp, r) {
        Ok(errors) => {
            sp.commit().at(path)?;
            stats.images += 1;
            stats.errors += errors;
        }
        Err(e) => {
            drop(sp); // rolls back
            tracing::warn!(
                "{}: write failed: cannot store the results: {e}",
                r.image.path
            );
            stats.failed_writes += 1;
            let failure = ErrorRecord {
                run_id: r.run_id.clone(),
                image_id: Some(r.image.image_id.clone()),
                path: r.image.path.clone(),
                stage: "write".into(),
                message: format!("cannot store the results: {e}"),
            };
            stats.errors += write_failed_file(tx, &failure).at(path)?;
        }
    }
    Ok(())
}

/// NaN is not a value SQLite keeps; say NULL explicitly.
fn real(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

/// Removes what a run holds for an image, so that writing it again replaces rather than duplicates.
fn delete_image_rows(conn: &Connection, run_id: &str, image_id: &str) -> rusqlite::Result<()> {
    for table in [
        "predictions",
        "attribution_metrics",
        "agreement",
        "maps",
        "faithfulness",
        "localisation",
        "outlines",
        "errors",
    ] {
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE run_id = ?1 AND image_id = ?2"
        ))?
        .execute([run_id, image_id])?;
    }
    Ok(())
}

fn insert_error(
    conn: &Connection,
    run_id: &str,
    image_id: Option<&str>,
    e: &ErrorRecord,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO errors (run_id, image_id, path, stage, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![run_id, image_id, e.path, e.stage, e.message])?;
    Ok(())
}

/// Writes all rows of one image result; returns the number of error rows.
fn write_image(conn: &Connection, r: &ImageResult) -> rusqlite::Result<usize> {
    let run = r.run_id.as_str();
    let img = &r.image;
    let id = img.image_id.as_str();
    conn.prepare_cached(
        "INSERT INTO images (image_id, path, label, width, height, brain_area_fraction, mask_fallback) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (image_id) DO UPDATE SET path = excluded.path, label = excluded.label, width = excluded.width, \
         height = excluded.height, brain_area_fraction = excluded.brain_area_fraction, \
         mask_fallback = excluded.mask_fallback",
    )?
    .execute(params![
        id,
        img.path,
        img.label,
        img.width,
        img.height,
        real(img.brain_area_fraction),
        img.mask_fallback
    ])?;
    delete_image_rows(conn, run, id)?;
    if let Some(p) = &r.prediction {
        conn.prepare_cached(
            "INSERT INTO predictions (run_id, image_id, predicted, confidence, probabilities, target, correct) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![run, id, p.predicted, real(p.confidence), p.probabilities, p.target, p.correct])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO attribution_metrics (run_id, image_id, method, mass_inside, mass_background, mass_border, \
         concentration_inside, concentration_border, top1_inside, top5_inside, gini, empty, completeness_error, \
         segments, seconds, reproducibility) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?;
    for m in &r.metrics {
        stmt.execute(params![
            run,
            id,
            m.method,
            real(m.mass_inside),
            real(m.mass_background),
            real(m.mass_border),
            real(m.concentration_inside),
            real(m.concentration_border),
            real(m.top1_inside),
            real(m.top5_inside),
            real(m.gini),
            m.empty,
            m.completeness_error.and_then(real),
            m.segments,
            real(m.seconds),
            m.reproducibility.and_then(real)
        ])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO agreement (run_id, image_id, method_a, method_b, spearman, iou_top10) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for a in &r.agreement {
        stmt.execute(params![
            run,
            id,
            a.method_a,
            a.method_b,
            real(a.spearman),
            real(a.iou_top10)
        ])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO maps (run_id, image_id, method, width, height, encoding, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for m in &r.maps {
        stmt.execute(params![
            run, id, m.method, m.width, m.height, m.encoding, m.data
        ])?;
    }
    super::trust::insert_faithfulness(conn, run, id, &r.faithfulness)?;
    if let Some(o) = &r.outline {
        conn.prepare_cached(
            "INSERT INTO outlines (run_id, image_id, mask_path, grid, area_fraction, tolerance_px, \
             outline_size, outline) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            run,
            id,
            o.mask_path,
            o.grid,
            o.area_fraction,
            o.tolerance_px,
            o.outline_size,
            o.outline
        ])?;
        let mut stmt = conn.prepare_cached(
            "INSERT INTO localisation (run_id, image_id, method, mass_on_tumor, pointing_hit, \
             energy_pointing, iou_top_area) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for l in &r.localisation {
            stmt.execute(params![
                run,
                id,
                l.method,
                real(l.mass_on_tumor),
                l.pointing_hit,
                real(l.energy_pointing),
                real(l.iou_top_area)
            ])?;
        }
    }
    // The errors of an image belong to it, whatever run/image the records carry.
    for e in &r.errors {
        insert_error(conn, run, Some(id), e)?;
    }
    let status = if r.prediction.is_some() {
        "done"
    } else {
        "failed"
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO run_images (run_id, image_id, status, seconds) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![run, id, status, real(r.seconds)])?;
    Ok(r.errors.len())
}

/// Records a file that failed as a whole. With an id: the image's earlier rows in this run are replaced by
/// this error and a 'failed' `run_images` row (the `images` row is created with the path only if missing).
/// Without: an earlier error of the same run, path and stage is replaced. Returns the rows written (1).
fn write_failed_file(conn: &Connection, e: &ErrorRecord) -> rusqlite::Result<usize> {
    match e.image_id.as_deref() {
        Some(id) => {
            conn.prepare_cached(
                "INSERT INTO images (image_id, path) VALUES (?1, ?2) ON CONFLICT (image_id) DO NOTHING",
            )?
            .execute([id, e.path.as_str()])?;
            delete_image_rows(conn, &e.run_id, id)?;
            insert_error(conn, &e.run_id, Some(id), e)?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO run_images (run_id, image_id, status, seconds) VALUES (?1, ?2, 'failed', NULL)",
            )?
            .execute([e.run_id.as_str(), id])?;
        }
        None => {
            conn.prepare_cached(
                "DELETE FROM errors WHERE run_id = ?1 AND image_id IS NULL AND path = ?2 AND stage = ?3",
            )?
            .execute([e.run_id.as_str(), e.path.as_str(), e.stage.as_str()])?;
            insert_error(conn, &e.run_id, None, e)?;
        }
    }
    Ok(1)
}
