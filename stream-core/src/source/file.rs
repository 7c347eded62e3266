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
use crate::batch::{Batch, Data};
use crate::context::StreamingContext;
use crate::dstream::DStream;
use crate::error::{Result, SourceError};
use crate::text::Text;
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

struct FileSource<L> {
    dir: PathBuf,
    include_existing: bool,
    /// Files already read (or present at start and skipped). Names that disappear from the
    /// directory are forgotten, so this stays as small as the directory.
    seen: HashSet<PathBuf>,
    /// Files whose reading failed, with the number of batches that tried.
    failed_reads: HashMap<PathBuf, u32>,
    /// The size of each file read by this run when it was read: a file that grows after is
    /// not read again, and that is said once per file.
    sizes: HashMap<PathBuf, u64>,
    /// Files that grew after they were read (said once each), and how many in all.
    grown: HashSet<PathBuf>,
    grown_total: u64,
    /// Entries skipped as not regular files (said once each).
    refused: HashSet<PathBuf>,
    /// Finite mode: read what is there once, then finish.
    finite: bool,
    max_files: Option<usize>,
    done: bool,
    /// The record type made of the lines.
    records: std::marker::PhantomData<fn() -> L>,
}

/// A file of the directory, with its size when listed.
struct Listed {
    path: PathBuf,
    len: u64,
}

/// The regular files of `dir` (or `dir` itself when it is a file), sorted by name, with their
/// sizes. A symbolic link to a regular file is followed (its target is read, under the link's
/// name); any other entry that is not a directory (a FIFO, a socket, a device, a link to
/// nothing) is skipped, and said once per name in `refused`.
fn list(dir: &Path, refused: &mut HashSet<PathBuf>) -> Result<Vec<Listed>> {
    if dir.is_file() {
        let len = std::fs::metadata(dir).map(|m| m.len()).unwrap_or(0);
        return Ok(vec![Listed {
            path: dir.to_path_buf(),
            len,
        }]);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| SourceError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SourceError::io(dir, e))?;
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let meta = if kind.is_symlink() {
            std::fs::metadata(&path)
        } else {
            entry.metadata()
        };
        match meta {
            Ok(m) if m.is_file() => files.push(Listed { path, len: m.len() }),
            Ok(m) if m.is_dir() => {}
            other => {
                if refused.insert(path.clone()) {
                    let what = match other {
                        Err(e) => format!("a link to nothing readable ({e})"),
                        Ok(_) => "not a regular file (a FIFO, a socket or a device)".into(),
                    };
                    tracing::warn!("{}: {what}; skipped", path.display());
                }
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// A path as bytes, whatever they are (a position keeps names that are not UTF-8 as they are).
fn path_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_encoded_bytes().to_vec()
}

/// [`path_bytes`] back to a path.
fn bytes_path(b: Vec<u8>) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        PathBuf::from(std::ffi::OsString::from_vec(b))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(&b).into_owned())
    }
}

/// The record types of the text sources: `String` (each line in an allocation of its own) or
/// [`Text`] (lines share buffers of about 64 KiB: no allocation or copy per line).
pub trait TextRecord: Data + sealed::Sealed {
    /// The lines of `text`, as `str::lines` cuts them.
    #[doc(hidden)]
    fn lines_of(text: String) -> Vec<Self>;

    /// The record's text.
    #[doc(hidden)]
    fn text(&self) -> &str;

    /// The lines a socket receiver gathers from one read, to hand on together.
    #[doc(hidden)]
    type Gathered: Default + Send;

    /// Takes a line read from a socket: the record to hand on now, or `None` when it is
    /// gathered until [`drain`](Self::drain).
    #[doc(hidden)]
    fn gather(gathered: &mut Self::Gathered, line: std::borrow::Cow<'_, str>) -> Option<Self>;

    /// The lines gathered, emptied.
    #[doc(hidden)]
    fn drain(gathered: &mut Self::Gathered) -> Vec<Self>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for String {}
    impl Sealed for crate::text::Text {}
}

impl TextRecord for String {
    fn lines_of(text: String) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    fn text(&self) -> &str {
        self
    }

    type Gathered = ();

    fn gather(_: &mut (), line: std::borrow::Cow<'_, str>) -> Option<String> {
        Some(line.into_owned())
    }

    fn drain(_: &mut ()) -> Vec<String> {
        Vec::new()
    }
}

impl TextRecord for Text {
    fn lines_of(text: String) -> Vec<Text> {
        Text::lines(&text)
    }

    fn text(&self) -> &str {
        self
    }

    /// The lines of one read, one after another in one string, and where each ends.
    type Gathered = (String, Vec<usize>);

    fn gather(
        (text, ends): &mut (String, Vec<usize>),
        line: std::borrow::Cow<'_, str>,
    ) -> Option<Text> {
        text.push_str(&line);
        ends.push(text.len());
        None
    }

    fn drain((text, ends): &mut (String, Vec<usize>)) -> Vec<Text> {
        if ends.is_empty() {
            return Vec::new();
        }
        let whole = Text::new(std::mem::take(text));
        let mut start = 0;
        ends.drain(..)
            .map(|end| {
                let line = whole.slice_ref(&whole[start..end]);
                start = end;
                line
            })
            .collect()
    }
}

/// The lines of a text file: `\n` ends a line, a trailing `\r` is dropped, and the last line
/// counts even without a final newline.
pub(crate) fn read_lines<L: TextRecord>(path: &Path) -> Result<Vec<L>> {
    let bytes = std::fs::read(path).map_err(|e| SourceError::io(path, e))?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(
                "{} is not UTF-8 text (first invalid byte at {}); invalid bytes replaced by U+FFFD",
                path.display(),
                e.utf8_error().valid_up_to()
            );
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    Ok(L::lines_of(text))
}

impl<L: TextRecord> Source<L> for FileSource<L> {
    fn name(&self) -> String {
        format!("textFileStream({})", self.dir.display())
    }

    fn start(&mut self, _: &SourceContext) -> Result<()> {
        if !self.finite && !self.include_existing {
            self.seen = list(&self.dir, &mut self.refused)?
                .into_iter()
                .map(|l| l.path)
                .collect();
        }
        Ok(())
    }

    fn capture(&mut self, _: Time, _: &SourceContext) -> Result<Option<Batch<L>>> {
        if self.done {
            return Ok(Some(Batch::empty()));
        }
        let listed = match list(&self.dir, &mut self.refused) {
            Ok(p) => p,
            Err(e) => {
                // A finite input that cannot be listed fails its batch and ends the job.
                self.done = self.finite;
                return Err(e);
            }
        };
        for l in &listed {
            if let Some(read_len) = self.sizes.get(&l.path)
                && l.len > *read_len
                && self.grown.insert(l.path.clone())
            {
                self.grown_total += 1;
                tracing::warn!(
                    "{} grew from {read_len} to {} bytes after it was read; a file is read once, whole, so the appended part is not read (write files elsewhere and move them in). {} file(s) grew so far",
                    l.path.display(),
                    l.len,
                    self.grown_total
                );
            }
        }
        let sizes: HashMap<PathBuf, u64> = listed.iter().map(|l| (l.path.clone(), l.len)).collect();
        let present: Vec<PathBuf> = listed.into_iter().map(|l| l.path).collect();
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
                        tracing::warn!("{e}; trying again in the next batch");
                    }
                }
            }
        }
        let present: HashSet<PathBuf> = present.into_iter().collect();
        self.seen.retain(|p| present.contains(p));
        self.failed_reads.retain(|p, _| present.contains(p));
        self.sizes.retain(|p, _| present.contains(p));
        self.grown.retain(|p| present.contains(p));
        self.refused
            .retain(|p| present.contains(p) || p.symlink_metadata().is_ok());
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
            if let Some(len) = sizes.get(&path) {
                self.sizes.insert(path.clone(), *len);
            }
            self.seen.insert(path);
            parts.push(lines);
        }
        Ok(Some(Batch::from_partitions(parts)))
    }

    fn is_finished(&self) -> bool {
        self.done
    }

    /// The files read so far (a sorted list of paths, as bytes: a name that is not UTF-8 is
    /// kept as it is, so it is not read again after a restart). Postcard encodes a byte string
    /// as it encoded the `String`s of earlier positions, which therefore still decode.
    fn position(&self) -> Option<Vec<u8>> {
        let mut seen: Vec<Vec<u8>> = self.seen.iter().map(|p| path_bytes(p)).collect();
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
    ) -> Result<Option<Batch<L>>> {
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

impl<L: TextRecord> FileSource<L> {
    fn decode(&self, position: &[u8]) -> Result<(bool, Vec<PathBuf>)> {
        let (done, seen): (bool, Vec<Vec<u8>>) =
            postcard::from_bytes(position).map_err(|e| SourceError::Custom {
                name: self.name(),
                message: format!("its checkpointed position does not decode: {e}"),
            })?;
        Ok((done, seen.into_iter().map(bytes_path).collect()))
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
        self.text_file_stream_of(dir, options)
    }

    /// `text_file_stream_with` whose lines are `L`: `String`, or [`Text`] (a file's lines share
    /// the buffer it was read into; see [`Text`] for when that is the better choice).
    ///
    /// ```
    /// use stream_core::{FileStreamOptions, Seconds, StreamingContext};
    /// use stream_core::text::Text;
    /// let ssc = StreamingContext::new(Seconds(1)).unwrap();
    /// let lines = ssc.text_file_stream_of::<Text>("/var/log/app", FileStreamOptions::default());
    /// ```
    pub fn text_file_stream_of<L: TextRecord>(
        &self,
        dir: impl AsRef<Path>,
        options: FileStreamOptions,
    ) -> DStream<L> {
        self.input_stream(FileSource {
            dir: dir.as_ref().to_path_buf(),
            include_existing: options.include_existing,
            seen: HashSet::new(),
            failed_reads: HashMap::new(),
            sizes: HashMap::new(),
            grown: HashSet::new(),
            grown_total: 0,
            refused: HashSet::new(),
            finite: false,
            max_files: options.max_files_per_batch.map(|n| n.max(1)),
            done: false,
            records: std::marker::PhantomData,
        })
    }

    /// The lines of a file, or of every file in a directory, in the first batch; then the
    /// stream is finished. With [`run_to_completion`](Self::run_to_completion) this runs a
    /// streaming pipeline as a batch job over existing data.
    pub fn text_files(&self, path: impl AsRef<Path>) -> DStream<String> {
        self.text_files_of(path)
    }

    /// `text_files` whose lines are `L`: `String`, or [`Text`] (see
    /// [`text_file_stream_of`](Self::text_file_stream_of)).
    pub fn text_files_of<L: TextRecord>(&self, path: impl AsRef<Path>) -> DStream<L> {
        self.input_stream(FileSource {
            dir: path.as_ref().to_path_buf(),
            include_existing: true,
            seen: HashSet::new(),
            failed_reads: HashMap::new(),
            sizes: HashMap::new(),
            grown: HashSet::new(),
            grown_total: 0,
            refused: HashSet::new(),
            finite: true,
            max_files: None,
            done: false,
            records: std::marker::PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    fn source(dir: &Path) -> FileSource<String> {
        FileSource {
            dir: dir.to_path_buf(),
            include_existing: false,
            seen: HashSet::new(),
            failed_reads: HashMap::new(),
            sizes: HashMap::new(),
            grown: HashSet::new(),
            grown_total: 0,
            refused: HashSet::new(),
            finite: false,
            max_files: None,
            done: false,
            records: std::marker::PhantomData,
        }
    }

    fn ctx() -> SourceContext {
        SourceContext {
            parallelism: 2,
            batch_duration: Duration::from_millis(1000),
            zero_time: Time::from_millis(0),
        }
    }

    fn lines(s: &mut FileSource<String>) -> Vec<String> {
        s.capture(Time::from_millis(1000), &ctx())
            .unwrap()
            .unwrap()
            .collect()
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dstream-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Issue 24, point 4: the position kept names that are not UTF-8 lossily, so such a file
    /// was read again after every restart.
    #[cfg(unix)]
    #[test]
    fn a_name_that_is_not_utf8_survives_a_restart() {
        use std::os::unix::ffi::OsStrExt;
        let dir = temp("latin1");
        let mut s = source(&dir);
        s.start(&ctx()).unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        std::fs::write(dir.join(name), "bonjour\n").unwrap();
        assert_eq!(lines(&mut s), vec!["bonjour"]);
        let position = s.position().unwrap();
        let mut again = source(&dir);
        again.start(&ctx()).unwrap();
        again.restore(&position).unwrap();
        assert!(lines(&mut again).is_empty(), "read again after a restart");
        // An earlier position (names as strings) still decodes.
        let old = postcard::to_stdvec(&(false, vec!["a.txt".to_string()])).unwrap();
        assert_eq!(
            again.decode(&old).unwrap(),
            (false, vec![PathBuf::from("a.txt")])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file that grows after it was read is said once and counted; its appended part is not
    /// read (a file is read once, whole).
    #[test]
    fn a_file_that_grows_after_it_was_read_is_counted_once() {
        let dir = temp("grows");
        let mut s = source(&dir);
        s.start(&ctx()).unwrap();
        std::fs::write(dir.join("a.txt"), "one\n").unwrap();
        assert_eq!(lines(&mut s), vec!["one"]);
        std::fs::write(dir.join("a.txt"), "one\ntwo\n").unwrap();
        assert!(lines(&mut s).is_empty());
        std::fs::write(dir.join("a.txt"), "one\ntwo\nthree\n").unwrap();
        assert!(lines(&mut s).is_empty());
        assert_eq!(s.grown_total, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A link to a regular file is followed; a FIFO and a dangling link are skipped, said once.
    #[cfg(unix)]
    #[test]
    fn links_are_followed_and_fifos_refused_visibly() {
        let dir = temp("links");
        let outside = temp("links-target");
        let mut s = source(&dir);
        s.start(&ctx()).unwrap();
        std::fs::write(outside.join("t.txt"), "through a link\n").unwrap();
        std::os::unix::fs::symlink(outside.join("t.txt"), dir.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(outside.join("gone.txt"), dir.join("dangling.txt")).unwrap();
        let fifo = dir.join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert_eq!(lines(&mut s), vec!["through a link"]);
        if made.is_ok_and(|m| m.success()) {
            assert!(s.refused.contains(&fifo), "{:?}", s.refused);
        }
        assert!(s.refused.contains(&dir.join("dangling.txt")));
        assert!(lines(&mut s).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&outside);
    }
}
