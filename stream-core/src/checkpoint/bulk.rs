//! A restore onto an operator's empty column family (a task new to this instance, a standby's
//! first copy) as sorted table files ingested into RocksDB, instead of writes through the
//! memtable: a replica's changes come in log order, and inserting each into the memtable's skip
//! list (then flushing and compacting it) is most of what such a restore spends its CPU on.
//!
//! The changes are buffered, up to [`SPILL_BYTES`] at a time; each buffer becomes one table
//! file holding the last change of each key and the entries the operator derives from those
//! (its timers), ingested in log order so that a later file's keys win. A key deleted in the
//! log is left out of the first file, and written as a delete in later ones.

use std::path::PathBuf;

use rocksdb::{ColumnFamily, IngestExternalFileOptions, SstFileWriter};

use super::{Durable, Store};
use crate::error::Result;

/// Bytes of keys and values buffered before they are written as a table file.
pub(super) const SPILL_BYTES: usize = 64 << 20;

/// A value's length marking a delete.
const DELETED: u32 = u32::MAX;

/// One buffered change: its key and value, one after the other in the arena.
struct Entry {
    at: u32,
    key: u32,
    value: u32,
}

/// The buffered changes of one operator's restore onto its empty column family.
pub(super) struct Bulk {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// Bytes after which the buffer is written out.
    spill: usize,
    /// Table files ingested so far.
    files: usize,
}

impl Bulk {
    pub(super) fn new(spill: usize) -> Bulk {
        Bulk {
            arena: Vec::new(),
            entries: Vec::new(),
            spill,
            files: 0,
        }
    }

    /// Buffers a change; true when the buffer should be written out.
    pub(super) fn push(&mut self, key: &[u8], value: Option<&[u8]>) -> bool {
        let at = self.arena.len();
        self.arena.extend_from_slice(key);
        if let Some(v) = value {
            self.arena.extend_from_slice(v);
        }
        // The buffer is written out before it nears 4 GiB (the spill is far below), so the
        // offsets fit; a single change that large is not a state entry RocksDB would take.
        self.entries.push(Entry {
            at: at as u32,
            key: key.len() as u32,
            value: value.map_or(DELETED, |v| v.len() as u32),
        });
        self.arena.len() >= self.spill
    }

    fn key(&self, e: &Entry) -> &[u8] {
        let at = e.at as usize;
        &self.arena[at..at + e.key as usize]
    }

    fn value(&self, e: &Entry) -> Option<&[u8]> {
        (e.value != DELETED).then(|| {
            let at = (e.at + e.key) as usize;
            &self.arena[at..at + e.value as usize]
        })
    }

    /// Writes what is buffered into `cf` (operator `operator`'s) as one table file: the last
    /// change of each key, sorted, with the entries `op` derives from them.
    pub(super) fn write(
        &mut self,
        store: &Store,
        cf: &ColumnFamily,
        op: &dyn Durable,
        operator: usize,
    ) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let entries = &self.entries;
        // By key, and in log order among a key's changes.
        let order = order_by_key(entries.len(), |i| self.key(&entries[i]));
        // The last change of each key.
        let mut last: Vec<&Entry> = Vec::with_capacity(order.len());
        for (i, &(prefix, e)) in order.iter().enumerate() {
            let e = &entries[e as usize];
            let next_same = order.get(i + 1).is_some_and(|&(p, n)| {
                p == prefix && self.key(&entries[n as usize]) == self.key(e)
            });
            if !next_same {
                last.push(e);
            }
        }
        // The derived entries' keys, one after the other, and where each is.
        let mut derived_keys: Vec<u8> = Vec::new();
        let mut derived_at: Vec<(u32, u32)> = Vec::new();
        for e in &last {
            let at = derived_keys.len();
            if op.derived(self.key(e), self.value(e), &mut derived_keys) {
                derived_at.push((at as u32, (derived_keys.len() - at) as u32));
            }
        }
        let derived_key = |(at, len): (u32, u32)| &derived_keys[at as usize..(at + len) as usize];
        let mut derived: Vec<&[u8]> =
            order_by_key(derived_at.len(), |i| derived_key(derived_at[i]))
                .into_iter()
                .map(|(_, i)| derived_key(derived_at[i as usize]))
                .collect();
        derived.dedup();

        let path: PathBuf = store
            .dir()
            .join(format!("restore-op{operator}-{}.sst", self.files));
        let opts = store.options();
        let mut w = SstFileWriter::create(opts);
        w.open(&path).map_err(|e| store.error(e))?;
        let mut wrote = 0usize;
        let mut d = derived.iter().peekable();
        for e in &last {
            let k = self.key(e);
            while let Some(x) = d.next_if(|x| **x < k) {
                w.put(x, []).map_err(|e| store.error(e))?;
                wrote += 1;
            }
            // A derived entry never has a state entry's key (they are tagged apart); were it
            // so, the state entry is the one kept.
            d.next_if(|x| **x == k);
            match self.value(e) {
                Some(v) => w.put(k, v).map_err(|e| store.error(e))?,
                // Nothing of the key is in the column family before the first file.
                None if self.files == 0 => continue,
                None => w.delete(k).map_err(|e| store.error(e))?,
            }
            wrote += 1;
        }
        for x in d {
            w.put(x, []).map_err(|e| store.error(e))?;
            wrote += 1;
        }
        if wrote > 0 {
            w.finish().map_err(|e| store.error(e))?;
            let mut ingest = IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            store
                .db()
                .ingest_external_file_cf_opts(cf, &ingest, vec![&path])
                .map_err(|e| store.error(e))?;
            self.files += 1;
        }
        drop(w);
        // Moved into the database when ingested; an empty one was never finished.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::debug!("removing {}: {e}", path.display());
            }
            _ => {}
        }
        self.arena.clear();
        self.entries.clear();
        Ok(())
    }
}

/// The indexes `0..n`, each with a prefix of its key, in the order of their keys (`key(i)`) and
/// in index order among equal keys. Keys are compared by the sixteen bytes after those all of
/// them share, held beside each index, and in full only where those are equal: a restore's
/// keys share their first bytes (the operator's tag, a timer's time), and comparing them in
/// the arena each time was most of the sort's time.
fn order_by_key<'a>(n: usize, key: impl Fn(usize) -> &'a [u8]) -> Vec<(u128, u32)> {
    let Some(first) = (n > 0).then(|| key(0)) else {
        return Vec::new();
    };
    let mut shared = first.len();
    for i in 1..n {
        let k = key(i);
        shared = shared.min(first.iter().zip(k).take_while(|(a, b)| a == b).count());
        if shared == 0 {
            break;
        }
    }
    // Zeros after a short key: a prefix that compares less is of a key that does (the full
    // comparison settles equal ones).
    let prefix = |k: &[u8]| {
        let rest = &k[shared..];
        let mut b = [0u8; 16];
        let m = rest.len().min(16);
        b[..m].copy_from_slice(&rest[..m]);
        u128::from_be_bytes(b)
    };
    let mut order: Vec<(u128, u32)> = (0..n).map(|i| (prefix(key(i)), i as u32)).collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| key(a.1 as usize)[shared..].cmp(&key(b.1 as usize)[shared..]))
            .then(a.1.cmp(&b.1))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::order_by_key;

    #[test]
    fn keys_are_ordered_as_byte_strings_and_equal_ones_in_index_order() {
        let keys: Vec<&[u8]> = vec![
            b"s\x00\x01visitor-10",
            b"s\x00\x01visitor-1",
            b"s\x00\x01visitor-1\x00",
            b"s\x00\x01visitor-100000000",
            b"s\x00\x01visitor-1",
            b"s\x00\x01visitor-09",
            b"s\x00\x01visitor-10000000",
            b"s\x00\x01visitor-10000000\x01",
            b"s\x00\x01",
            b"s\x00\x01visitor-10",
        ];
        let got: Vec<u32> = order_by_key(keys.len(), |i| keys[i])
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        let mut want: Vec<u32> = (0..keys.len() as u32).collect();
        want.sort_by(|&a, &b| keys[a as usize].cmp(keys[b as usize]).then(a.cmp(&b)));
        assert_eq!(got, want);
        assert_eq!(got[0], 8, "the key that is all shared bytes comes first");
        assert!(order_by_key(0, |i| keys[i]).is_empty());
    }

    /// Times the sort against comparing keys in the arena, on 1.6M keys shaped as a restore's
    /// (a 64 MB buffer's worth): by hand, in release,
    /// `cargo test --release -p stream-core --lib order_by_key_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing, run by hand"]
    fn order_by_key_timing() {
        let n = 1_600_000u64;
        let (mut arena, mut spans) = (Vec::new(), Vec::new());
        for i in 0..n {
            let v = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) % 10_000_000;
            let name = format!("v{v}");
            let at = arena.len();
            arena.push(b's');
            arena.extend_from_slice(&((v % 2) as u16).to_be_bytes());
            arena.push(name.len() as u8);
            arena.extend_from_slice(name.as_bytes());
            spans.push((at, arena.len()));
        }
        let key = |i: usize| &arena[spans[i].0..spans[i].1];
        for round in 0..3 {
            let t = std::time::Instant::now();
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_unstable_by(|&a, &b| key(a as usize).cmp(key(b as usize)).then(a.cmp(&b)));
            let in_arena = t.elapsed();
            let t = std::time::Instant::now();
            let by_prefix = order_by_key(n as usize, key);
            let prefixed = t.elapsed();
            assert!(by_prefix.iter().map(|x| x.1).eq(order.iter().copied()));
            eprintln!(
                "round {round}: keys compared in the arena {in_arena:?}, by prefix {prefixed:?}"
            );
        }
    }
}
