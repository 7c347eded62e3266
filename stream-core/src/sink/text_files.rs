//! Atomic, idempotent per-batch text output.
//!
//! A batch is written into a hidden temporary directory next to the target, every file is
//! synced, then the directory is renamed into place and its parent synced. A crash at any
//! instant leaves either no directory or the whole one (plus, at worst, a hidden temporary
//! directory that the next write of the same batch replaces).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::batch::{Batch, Data};
use crate::error::{OutputError, Result};
use crate::show::Show;
use crate::time::Time;

/// Spark's `rddToFileName`: `prefix-<ms>` and `.suffix` when there is one.
pub(crate) fn batch_dir(prefix: &str, suffix: &str, t: Time) -> PathBuf {
    let mut name = format!("{prefix}-{}", t.millis());
    if !suffix.is_empty() {
        name.push('.');
        name.push_str(suffix);
    }
    PathBuf::from(name)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> crate::error::Error + '_ {
    move |e| OutputError::io(path, e).into()
}

pub(crate) fn save_batch<T: Data + Show>(batch: &Batch<T>, target: &Path) -> Result<()> {
    if target.exists() {
        tracing::info!(
            "{} exists: batch already saved, not written again",
            target.display()
        );
        return Ok(());
    }
    write_dir(batch, target)
}

impl<T: Data + Show> Batch<T> {
    /// Spark's `RDD.saveAsTextFile(path)`, for `transform` and `foreach_batch` bodies: a
    /// directory `dir` with a file `part-NNNNN` per partition (a record per line, as `print`
    /// shows it) and `_SUCCESS`, written aside and renamed into place, so `dir` holds all of
    /// it or does not exist. A `dir` that exists already is an error, as in Spark.
    ///
    /// ```
    /// use stream_core::Batch;
    /// let dir = std::env::temp_dir().join(format!("dstream-doc-save-{}", std::process::id()));
    /// Batch::from_vec(vec![("a", 1), ("b", 2)], 2).save_as_text_file(&dir).unwrap();
    /// assert_eq!(std::fs::read_to_string(dir.join("part-00000")).unwrap(), "(a,1)\n");
    /// assert!(Batch::from_vec(vec![1], 1).save_as_text_file(&dir).is_err());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn save_as_text_file(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        if dir.exists() {
            return Err(OutputError::Custom {
                name: "saveAsTextFile".into(),
                message: format!("Output directory {} already exists", dir.display()),
            }
            .into());
        }
        write_dir(self, dir)
    }
}

/// Writes `batch` into the directory `target` (see the module).
fn write_dir<T: Data + Show>(batch: &Batch<T>, target: &Path) -> Result<()> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io(&parent))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir(&tmp).map_err(io(&tmp))?;
    for (i, part) in batch.partitions().iter().enumerate() {
        let path = tmp.join(format!("part-{i:05}"));
        let mut text = String::new();
        for r in part {
            r.show_to(&mut text);
            text.push('\n');
        }
        let mut f = fs::File::create(&path).map_err(io(&path))?;
        f.write_all(text.as_bytes()).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
    }
    let success = tmp.join("_SUCCESS");
    fs::File::create(&success)
        .and_then(|f| f.sync_all())
        .map_err(io(&success))?;
    fs::rename(&tmp, target).map_err(io(target))?;
    fs::File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(io(&parent))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_spark() {
        let t = Time::from_millis(2000);
        assert_eq!(
            batch_dir("out/counts", "", t),
            PathBuf::from("out/counts-2000")
        );
        assert_eq!(
            batch_dir("out/counts", "txt", t),
            PathBuf::from("out/counts-2000.txt")
        );
    }

    #[test]
    fn writes_atomically_and_once() {
        let dir = std::env::temp_dir().join(format!("dstream-save-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let target = dir.join("c-1000");
        save_batch(&Batch::from_vec(vec![("a", 1), ("b", 2)], 2), &target).unwrap();
        assert_eq!(
            fs::read_to_string(target.join("part-00000")).unwrap(),
            "(a,1)\n"
        );
        assert_eq!(
            fs::read_to_string(target.join("part-00001")).unwrap(),
            "(b,2)\n"
        );
        assert!(target.join("_SUCCESS").exists());
        // A replay of the same batch keeps what is there.
        save_batch(&Batch::from_vec(vec![("x", 9)], 1), &target).unwrap();
        assert_eq!(
            fs::read_to_string(target.join("part-00000")).unwrap(),
            "(a,1)\n"
        );
        assert!(!dir.join(".c-1000.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
