//! A checkpoint that does not fit the pipeline, or is damaged, is refused with an error that
//! names the difference or the file: never a panic, never a silent fresh start.

use std::path::{Path, PathBuf};

use dstream::prelude::*;
use dstream::{CheckpointError, StateSpec, StreamingContextBuilder};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dstream-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A file-fed pipeline counting words with update_state_by_key (and, with `sessions`, a
/// map_with_state too).
fn pipeline(input: &Path, sessions: bool) -> Result<StreamingContext, Error> {
    pipeline_with(input, sessions, false)
}

/// [`pipeline`], accepting a checkpoint that lost its last batches when `accept_loss`.
fn pipeline_with(
    input: &Path,
    sessions: bool,
    accept_loss: bool,
) -> Result<StreamingContext, Error> {
    let ssc = StreamingContext::builder(Milliseconds(100))
        .stop_gracefully_on_signal(false)
        .accept_checkpoint_loss(accept_loss)
        .build()?;
    let words = ssc.text_file_stream(input).map(|w| (w, 1i64));
    words
        .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| Some(s.unwrap_or(0) + vs.len() as i64))
        .print()?;
    if sessions {
        words
            .map_with_state(StateSpec::simple(
                |_: &String, _: Option<i64>, _: &mut dstream::State<i64>| 0,
            ))
            .print()?;
    }
    Ok(ssc)
}

/// Runs the pipeline over a few batches so that the checkpoint holds completed batches and
/// flushed files.
fn make_checkpoint(ckpt: &Path, input: &Path) {
    std::fs::create_dir_all(input).unwrap();
    let ssc = StreamingContext::get_or_create(ckpt, || pipeline(input, false)).unwrap();
    assert_eq!(ssc.recovered_batch(), None);
    ssc.start().unwrap();
    assert!(ssc.await_batches(3, Seconds(20)));
    ssc.stop();
    drop(ssc);
    let again = StreamingContext::get_or_create(ckpt, || pipeline(input, false)).unwrap();
    assert!(again.recovered_batch().is_some(), "a restart must recover");
}

fn error_of(r: Result<StreamingContext, Error>) -> String {
    match r {
        Ok(_) => panic!("the checkpoint was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_pipeline_of_another_shape_is_refused_naming_the_difference() {
    let (ckpt, input) = (dir("shape"), dir("shape-in"));
    make_checkpoint(&ckpt, &input);
    let e = error_of(StreamingContext::get_or_create(&ckpt, || {
        pipeline(&input, true)
    }));
    assert!(
        e.contains("written by a different pipeline")
            && e.contains("stateful operator #1 (mapWithState")
            && e.contains("is new in the pipeline"),
        "{e}"
    );
    // A changed batch interval too.
    let e = error_of(StreamingContext::get_or_create(&ckpt, || {
        let ssc = StreamingContext::new(Milliseconds(200))?;
        ssc.text_file_stream(&input)
            .map(|w| (w, 1i64))
            .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| {
                Some(s.unwrap_or(0) + vs.len() as i64)
            })
            .print()?;
        Ok(ssc)
    }));
    assert!(
        e.contains("the batch interval was 100 ms, it is 200 ms now"),
        "{e}"
    );
    // A changed state type.
    let e = error_of(StreamingContext::get_or_create(&ckpt, || {
        let ssc = StreamingContext::new(Milliseconds(100))?;
        ssc.text_file_stream(&input)
            .map(|w| (w, 1i64))
            .update_state_by_key(|vs: Vec<i64>, s: Option<u8>| {
                Some(s.unwrap_or(0) + vs.len() as u8)
            })
            .print()?;
        Ok(ssc)
    }));
    assert!(e.contains("state u8") && e.contains("state i64"), "{e}");
    let _ = std::fs::remove_dir_all(&ckpt);
}

#[test]
fn stateful_operations_need_a_checkpoint_directory() {
    let ssc = StreamingContext::builder(Seconds(1))
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    let q = Queue::new();
    ssc.queue_stream(&q, true)
        .map(|w: String| (w, 1))
        .update_state_by_key(|vs: Vec<i32>, s: Option<i32>| Some(s.unwrap_or(0) + vs.len() as i32))
        .print()
        .unwrap();
    let e = ssc.start().unwrap_err();
    assert!(
        matches!(e, Error::Checkpoint(CheckpointError::NotSet)),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("The checkpoint directory has not been set")
    );
}

#[test]
fn missing_or_damaged_checkpoint_files_are_named() {
    let input = dir("files-in");
    // CURRENT removed: the database cannot be found.
    let ckpt = dir("current");
    make_checkpoint(&ckpt, &input);
    std::fs::remove_file(ckpt.join("db/CURRENT")).unwrap();
    let e = error_of(StreamingContext::get_or_create(&ckpt, || {
        pipeline(&input, false)
    }));
    assert!(e.contains("db/CURRENT") && e.contains("missing"), "{e}");

    // The marker file removed.
    let ckpt = dir("marker");
    make_checkpoint(&ckpt, &input);
    std::fs::remove_file(ckpt.join("dstream-checkpoint")).unwrap();
    let e = error_of(StreamingContext::get_or_create(&ckpt, || {
        pipeline(&input, false)
    }));
    assert!(
        e.contains("dstream-checkpoint") && e.contains("not a new checkpoint"),
        "{e}"
    );

    // The MANIFEST overwritten with garbage.
    let ckpt = dir("manifest");
    make_checkpoint(&ckpt, &input);
    let manifest = std::fs::read_dir(ckpt.join("db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("MANIFEST-")
        })
        .unwrap();
    std::fs::write(&manifest, b"this is not a manifest").unwrap();
    let e = error_of(StreamingContext::get_or_create(&ckpt, || {
        pipeline(&input, false)
    }));
    assert!(e.contains("MANIFEST-"), "{e}");

    // Every table file removed.
    let ckpt = dir("sst");
    make_checkpoint(&ckpt, &input);
    let mut removed = 0;
    for e in std::fs::read_dir(ckpt.join("db")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "sst") {
            std::fs::remove_file(&p).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "the checkpoint has no table files to remove");
    let e = error_of(StreamingContext::get_or_create(&ckpt, || {
        pipeline(&input, false)
    }));
    assert!(e.contains(".sst"), "{e}");
    for d in ["current", "marker", "manifest", "sst", "files-in"] {
        let _ = std::fs::remove_dir_all(dir(d));
    }
}

/// Runs `f` on a thread of its own: a deadlock fails the test after 30 s instead of hanging it.
fn within_30s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{what} did not return within 30 s (a deadlock?)"))
}

/// A context printing a queue's records, built with `configure`.
fn printing(
    configure: impl FnOnce(StreamingContextBuilder) -> StreamingContextBuilder,
) -> Result<StreamingContext, Error> {
    let builder = StreamingContext::builder(Seconds(1)).stop_gracefully_on_signal(false);
    let ssc = configure(builder).build()?;
    let q: Queue<String> = Queue::new();
    ssc.queue_stream(&q, true).print()?;
    Ok(ssc)
}

#[test]
fn get_or_create_refuses_a_context_checkpointing_elsewhere_without_hanging() {
    let (ckpt, other) = (dir("goc-here"), dir("goc-other"));
    let (c, o) = (ckpt.clone(), other.clone());
    let result = within_30s("get_or_create", move || {
        StreamingContext::get_or_create(&c, || printing(|b| b.checkpoint(&o))).map(|_| ())
    });
    let message = result.expect_err("refused").to_string();
    assert!(
        message.contains(&format!(
            "get_or_create({}) got a context checkpointing to {}",
            ckpt.display(),
            other.display()
        )),
        "{message}"
    );
}

#[test]
fn get_or_create_takes_a_context_with_a_temporary_checkpoint_to_its_directory() {
    let ckpt = dir("goc-temporary");
    let c = ckpt.clone();
    let got = within_30s("get_or_create", move || {
        StreamingContext::get_or_create(&c, || printing(|b| b.temporary_checkpoint()))
            .map(|ssc| ssc.checkpoint_dir())
    });
    assert_eq!(got.expect("accepted"), Some(ckpt.clone()));
    assert!(
        ckpt.exists(),
        "the checkpoint is opened in {}",
        ckpt.display()
    );
    let _ = std::fs::remove_dir_all(&ckpt);
}

/// Runs the pipeline for at least 5 batches on a new checkpoint and stops: the batches are in
/// the state database's write-ahead log (a clean close does not flush it). Returns the log and
/// the last batch committed.
fn checkpoint_in_its_log(ckpt: &Path, input: &Path) -> (PathBuf, Time) {
    std::fs::create_dir_all(input).unwrap();
    let ssc = StreamingContext::get_or_create(ckpt, || pipeline(input, false)).unwrap();
    ssc.start().unwrap();
    std::fs::write(input.join("words.txt"), "a b a\n").unwrap();
    assert!(ssc.await_batches(5, Seconds(20)));
    ssc.stop();
    drop(ssc);
    let committed: i64 = std::fs::read_to_string(ckpt.join("committed"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let log = std::fs::read_dir(ckpt.join("db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a write-ahead log");
    (log, Time::from_millis(committed))
}

/// Issue 24, point 1: a damaged write-ahead log opened at an older batch without a word. Each
/// damage is now refused, naming the log and what was lost; `accept_checkpoint_loss(true)`
/// resumes from the older batch.
#[test]
fn a_damaged_write_ahead_log_is_refused_naming_the_log_and_what_was_lost() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("deleted", |log| std::fs::remove_file(log).unwrap()),
        ("cut to half", |log| {
            let len = std::fs::metadata(log).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(log).unwrap();
            f.set_len(len / 2).unwrap();
        }),
        ("overwritten in the middle", |log| {
            let mut bytes = std::fs::read(log).unwrap();
            let mid = bytes.len() / 2;
            for b in &mut bytes[mid..mid + 16] {
                *b ^= 0x5a;
            }
            std::fs::write(log, bytes).unwrap();
        }),
    ];
    for (name, damage) in damages {
        let tag = name.replace(' ', "-");
        let (ckpt, input) = (dir(&format!("wal-{tag}")), dir(&format!("wal-{tag}-in")));
        let (log, committed) = checkpoint_in_its_log(&ckpt, &input);
        damage(&log);
        let message = error_of(StreamingContext::get_or_create(&ckpt, || {
            pipeline(&input, false)
        }));
        assert!(
            message.contains(&log.display().to_string()) || name == "deleted",
            "{name}: the error names the log {}: {message}",
            log.display()
        );
        assert!(
            message.contains(&format!("the batch at {committed} was committed"))
                && message.contains("lost")
                && message.contains("accept_checkpoint_loss(true)"),
            "{name}: the error says what was lost and how to go on: {message}"
        );
        // Refused again, unchanged, until the user accepts the loss.
        assert!(StreamingContext::get_or_create(&ckpt, || pipeline(&input, false)).is_err());
        let ssc =
            StreamingContext::get_or_create(&ckpt, || pipeline_with(&input, false, true)).unwrap();
        assert!(
            ssc.recovered_batch().is_none_or(|t| t < committed),
            "{name}: resumes from an older batch ({:?}, committed {committed})",
            ssc.recovered_batch()
        );
        drop(ssc);
        let _ = std::fs::remove_dir_all(&ckpt);
        let _ = std::fs::remove_dir_all(&input);
    }
}

/// A clean stop and restart is not mistaken for a loss.
#[test]
fn a_clean_restart_opens_at_the_last_batch_committed() {
    let (ckpt, input) = (dir("wal-clean"), dir("wal-clean-in"));
    let (_, committed) = checkpoint_in_its_log(&ckpt, &input);
    let ssc = StreamingContext::get_or_create(&ckpt, || pipeline(&input, false)).unwrap();
    assert_eq!(ssc.recovered_batch(), Some(committed));
    drop(ssc);
    let _ = std::fs::remove_dir_all(&ckpt);
    let _ = std::fs::remove_dir_all(&input);
}
