//! Spark's `textFileStream`: a directory watched for new text files, each read once, whole, in
//! the first batch after it appears; and finite text input (a file or a directory of existing
//! files) for batch jobs.
//!
//! Rules, as Spark's: write a file elsewhere and move it in atomically (a rename within one file
//! system), since a file is read as it is when first seen; names starting with `.` are ignored
//! (so `.part` files being written in place are safe). Unlike Spark, a file is recognised as new
//! by its name not being there before, not by its modification time, so moving in a file with an
//! old timestamp (`mv` keeps it) still gets it read.

use std::collections::{HashMap, HashSet};

/// Batches that try to read a file before it is given up (and reported).
const MAX_READ_ATTEMPTS: u32 = 3;
use std::path::{Path, PathBuf};

use super::{Source, SourceContext};
use crate::batch::Batch;
use crate::context::StreamingContext;
use crate::dstream::DStream;
use crate::error::{Result, SourceError};
use crate::time::Time;

/// Options of a text-file directory stream.
#[derive(Debug, Clone, Default)]
pub struct FileStreamOptions {
    /// Also read the files already in the directory when the context starts (Spark's
    /// `newFilesOnly = false`). Default: only files that appear later.
    pub include_existing: bool,
    /// Read at most this many new files per batch, oldest name first (Structured Streaming's
    /// `maxFilesPerTrigger`); the rest wait for the next batches. Default: no limit.
    pub max_files_per_batch: Option<usize>,
}

struct FileSource {
    dir: PathBuf,
    include_existing: bool,
    /// Files already read (or present at start and skipped). Names that disappear from the
    /// directory are forgotten, so this stays as small as the directory.
    seen: HashSet<PathBuf>,
    /// Files whose reading failed, with the number of batches that tried.
    failed_reads: HashMap<PathBuf, u32>,
    /// Finite mode: read what is there once, then finish.
    finite: bool,
    max_files: Option<usize>,
    done: bool,
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| SourceError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SourceError::io(dir, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && !hidden {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The lines of a text file: `\n` ends a line, a trailing `\r` is dropped, and the last line
/// counts even without a final newline.
pub(crate) fn read_lines(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| SourceError::io(path, e))?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            log::warn!(
                "{} is not UTF-8 text (first invalid byte at {}); invalid bytes replaced by U+FFFD",
                path.display(),
                e.utf8_error().valid_up_to()
            );
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    Ok(text.lines().map(str::to_string).collect())
}

impl Source<String> for FileSource {
    fn name(&self) -> String {
        format!("textFileStream({})", self.dir.display())
    }

    fn start(&mut self, _: &SourceContext) -> Result<()> {
        if !self.finite && !self.include_existing {
            self.seen = list(&self.dir)?.into_iter().collect();
        }
        Ok(())
    }

    fn capture(&mut self, _: Time, _: &SourceContext) -> Result<Option<Batch<String>>> {
        if self.done {
            return Ok(Some(Batch::empty()));
        }
        let present = match list(&self.dir) {
            Ok(p) => p,
            Err(e) => {
                // A finite input that cannot be listed fails its batch and ends the job.
                self.done = self.finite;
                return Err(e);
            }
        };
        let mut read = Vec::new();
        let mut given_up = None;
        let new: Vec<PathBuf> = present
            .iter()
            .filter(|p| !self.seen.contains(*p))
            .take(self.max_files.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        for path in &new {
            match read_lines(path) {
                Ok(lines) => read.push((path.clone(), lines)),
                Err(e) => {
                    let attempts = self.failed_reads.entry(path.clone()).or_insert(0);
                    *attempts += 1;
                    if *attempts >= MAX_READ_ATTEMPTS || self.finite {
                        // Given up: this file is reported once, and never blocks the others.
                        self.failed_reads.remove(path);
                        self.seen.insert(path.clone());
                        given_up.get_or_insert(e);
                    } else {
                        log::warn!("{e}; trying again in the next batch");
                    }
                }
            }
        }
        let present: HashSet<PathBuf> = present.into_iter().collect();
        self.seen.retain(|p| present.contains(p));
        self.failed_reads.retain(|p, _| present.contains(p));
        if let Some(e) = given_up {
            // The batch fails with the error; the files read with it stay unseen, so the next
            // batch delivers them: nothing readable is lost.
            return Err(e);
        }
        self.done =
            self.finite && new.len() == present.iter().filter(|p| !self.seen.contains(*p)).count();
        let mut parts = Vec::with_capacity(read.len());
        for (path, lines) in read {
            self.failed_reads.remove(&path);
            self.seen.insert(path);
            parts.push(lines);
        }
        Ok(Some(Batch::from_partitions(parts)))
    }

    fn is_finished(&self) -> bool {
        self.done
    }

    /// The files read so far (a sorted list of paths).
    fn position(&self) -> Option<Vec<u8>> {
        let mut seen: Vec<String> = self
            .seen
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        seen.sort();
        postcard::to_stdvec(&(self.done, seen)).ok()
    }

    fn restore(&mut self, position: &[u8]) -> Result<()> {
        let (done, seen) = self.decode(position)?;
        self.done = done;
        self.seen = seen.into_iter().collect();
        self.failed_reads.clear();
        Ok(())
    }

    /// Reads again the files the batch read: those in `to` and not in `from`.
    fn replay(
        &mut self,
        _: Time,
        from: &[u8],
        to: &[u8],
        _: &SourceContext,
    ) -> Result<Option<Batch<String>>> {
        let (_, before) = self.decode(from)?;
        let (_, after) = self.decode(to)?;
        let before: HashSet<PathBuf> = before.into_iter().collect();
        let mut parts = Vec::new();
        for path in after.into_iter().filter(|p| !before.contains(p)) {
            parts.push(read_lines(&path)?);
        }
        Ok(Some(Batch::from_partitions(parts)))
    }
}

impl FileSource {
    fn decode(&self, position: &[u8]) -> Result<(bool, Vec<PathBuf>)> {
        let (done, seen): (bool, Vec<String>) =
            postcard::from_bytes(position).map_err(|e| SourceError::Custom {
                name: self.name(),
                message: format!("its checkpointed position does not decode: {e}"),
            })?;
        Ok((done, seen.into_iter().map(PathBuf::from).collect()))
    }
}

impl StreamingContext {
    /// New text files in `dir`, as lines (Spark's `textFileStream`); files present when the
    /// context starts are skipped.
    pub fn text_file_stream(&self, dir: impl AsRef<Path>) -> DStream<String> {
        self.text_file_stream_with(dir, FileStreamOptions::default())
    }

    /// `text_file_stream` with options.
    pub fn text_file_stream_with(
        &self,
        dir: impl AsRef<Path>,
        options: FileStreamOptions,
    ) -> DStream<String> {
        self.input_stream(FileSource {
            dir: dir.as_ref().to_path_buf(),
            include_existing: options.include_existing,
            seen: HashSet::new(),
            failed_reads: HashMap::new(),
            finite: false,
            max_files: options.max_files_per_batch.map(|n| n.max(1)),
            done: false,
        })
    }

    /// The lines of a file, or of every file in a directory, in the first batch; then the
    /// stream is finished. With [`run_to_completion`](Self::run_to_completion) this runs a
    /// streaming pipeline as a batch job over existing data.
    pub fn text_files(&self, path: impl AsRef<Path>) -> DStream<String> {
        self.input_stream(FileSource {
            dir: path.as_ref().to_path_buf(),
            include_existing: true,
            seen: HashSet::new(),
            failed_reads: HashMap::new(),
            finite: true,
            max_files: None,
            done: false,
        })
    }
}
