//! Text helpers for the lines a stream carries.
//!
//! [`split`] gives exactly what [`str::split`] with a `char` gives, faster when the delimiter is
//! ASCII, which is the common case of streaming jobs: words of a tweet, fields of a log or CSV
//! line. It is the `flatMap(_.split(" "))` of Spark Streaming's examples:
//!
//! ```
//! use stream_core::text;
//!
//! let tags: Vec<&str> = text::split("rust #dstream is  #fast", ' ')
//!     .filter(|w| w.starts_with('#'))
//!     .collect();
//! assert_eq!(tags, ["#dstream", "#fast"]);
//! ```
//!
//! Why it exists: `str::split(' ')` searches for each delimiter and confirms every match with a
//! one-byte `memcmp` call. With words of a few bytes, that search and those calls were about 63%
//! of a tweet-counting job's time (BENCHMARKS.md, "Where the time goes"). [`split`] compares the
//! line eight bytes at a time in plain integer operations, gathers where the delimiters of 64
//! bytes are into one bit mask, then yields a piece per set bit, with no call per word.
//!
//! Empty pieces are kept as Rust's `split` keeps them: `"a  b "` gives `"a"`, `""`, `"b"`, `""`,
//! and an empty line gives one empty piece. Java's `String.split` (Spark's `_.split(" ")`) drops
//! the trailing empty pieces: it gives `"a"`, `""`, `"b"`.

use std::iter::FusedIterator;

/// Splits `s` at every `delim`, as `s.split(delim)` does, with the same pieces in the same order.
///
/// An ASCII `delim` takes the fast path described in the [module docs](self); any other `char`
/// is handed to [`str::split`]. A `&str` (or `&String`) gives `&str` pieces of it; an owned
/// `String` (a record of a `DStream<String>`, as in `flatMap(dstream::text::split(_, ' '))`)
/// gives owned `String` pieces:
///
/// ```
/// use stream_core::text;
///
/// let words: Vec<String> = text::split(String::from("to be or"), ' ').collect();
/// assert_eq!(words, ["to", "be", "or"]);
/// ```
pub fn split<'a, S: Splittable<'a>>(s: S, delim: char) -> S::Pieces {
    s.split_at(delim)
}

fn split_str(s: &str, delim: char) -> Split<'_> {
    let inner = if delim.is_ascii() {
        Inner::Ascii(AsciiSplit::new(s, delim as u8))
    } else {
        Inner::Other(s.split(delim))
    };
    Split { inner }
}

/// What [`split`] takes: text borrowed (pieces borrow it) or owned (pieces are owned).
pub trait Splittable<'a> {
    /// The iterator of pieces.
    type Pieces: Iterator;
    /// The pieces between the `delim`s.
    fn split_at(self, delim: char) -> Self::Pieces;
}

impl<'a> Splittable<'a> for &'a str {
    type Pieces = Split<'a>;
    fn split_at(self, delim: char) -> Split<'a> {
        split_str(self, delim)
    }
}

impl<'a, 'b> Splittable<'a> for &'a &'b str {
    type Pieces = Split<'b>;
    fn split_at(self, delim: char) -> Split<'b> {
        split_str(self, delim)
    }
}

impl<'a> Splittable<'a> for &'a String {
    type Pieces = Split<'a>;
    fn split_at(self, delim: char) -> Split<'a> {
        split_str(self, delim)
    }
}

impl Splittable<'_> for String {
    type Pieces = std::vec::IntoIter<String>;
    fn split_at(self, delim: char) -> std::vec::IntoIter<String> {
        split_str(&self, delim)
            .map(str::to_string)
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// The iterator of [`split`].
#[derive(Clone, Debug)]
pub struct Split<'a> {
    inner: Inner<'a>,
}

#[derive(Clone, Debug)]
enum Inner<'a> {
    Ascii(AsciiSplit<&'a str>),
    Other(std::str::Split<'a, char>),
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        match &mut self.inner {
            Inner::Ascii(a) => a.next(),
            Inner::Other(o) => o.next(),
        }
    }
}

impl FusedIterator for Split<'_> {}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const ONES: u64 = 0x0101_0101_0101_0101;
/// Gathers bit 0 of each byte into the top byte: byte `j`'s bit lands on bit `56 + j`. The
/// partial products of the other bits fall below bit 56 on distinct bits, or above bit 63.
const GATHER: u64 = 0x0102_0408_1020_4080;

/// Bit `j` set where byte `j` (little-endian) of `word` equals the byte of `pattern` (the byte
/// repeated eight times). Exact: `(t & LOW7) + LOW7` cannot carry from one byte into the next,
/// so no byte is flagged because of its neighbour.
#[inline(always)]
fn equal_bytes(word: u64, pattern: u64) -> u64 {
    let t = word ^ pattern;
    let high = !(((t & LOW7) + LOW7) | t | LOW7);
    (high >> 7).wrapping_mul(GATHER) >> 56
}

/// Bit `i` set where byte `i` of `block` (64 bytes) equals the pattern's byte.
#[inline(always)]
fn equal_bits(block: &[u8; 64], pattern: u64) -> u64 {
    let mut bits = 0;
    for (j, eight) in block.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(eight.try_into().expect("eight bytes"));
        bits |= equal_bytes(word, pattern) << (8 * j);
    }
    bits
}

/// Splitting at an ASCII byte. A byte below 0x80 never occurs inside a multi-byte UTF-8
/// sequence, so every position where it is found is a `char` boundary of the line. It yields
/// the pieces' byte ranges, so that borrowed text gives `&str` pieces and a [`Text`] gives
/// `Text` pieces of its buffer.
#[derive(Clone, Debug)]
struct AsciiSplit<S> {
    s: S,
    /// The delimiter, repeated in each of the eight bytes.
    pattern: u64,
    /// Start of the piece being read.
    start: usize,
    /// Offset of the 64 bytes `found` was computed from.
    block: usize,
    /// The delimiters of that block not yet yielded, one bit per byte.
    found: u64,
    /// The piece after the last delimiter has been yielded.
    done: bool,
}

impl<S: AsRef<str>> AsciiSplit<S> {
    fn new(s: S, delim: u8) -> AsciiSplit<S> {
        let pattern = u64::from(delim) * ONES;
        let mut me = AsciiSplit {
            s,
            pattern,
            start: 0,
            block: 0,
            found: 0,
            done: false,
        };
        me.found = me.scan(0);
        me
    }

    /// The delimiters among the 64 bytes from `at` (fewer at the end of the line).
    #[inline(always)]
    fn scan(&self, at: usize) -> u64 {
        let bytes = self.s.as_ref().as_bytes();
        match bytes.get(at..at + 64) {
            Some(block) => equal_bits(block.try_into().expect("64 bytes"), self.pattern),
            None => {
                // The tail, padded with a byte that is not the delimiter.
                let mut padded = [self.pattern as u8 ^ 1; 64];
                let tail = bytes.get(at..).unwrap_or_default();
                padded[..tail.len()].copy_from_slice(tail);
                equal_bits(&padded, self.pattern)
            }
        }
    }

    /// The byte range of the next piece.
    #[inline]
    fn next_range(&mut self) -> Option<(usize, usize)> {
        loop {
            if self.found != 0 {
                let at = self.block + self.found.trailing_zeros() as usize;
                self.found &= self.found - 1;
                let piece = (self.start, at);
                self.start = at + 1;
                return Some(piece);
            }
            if self.done {
                return None;
            }
            self.block += 64;
            let len = self.s.as_ref().len();
            if self.block >= len {
                self.done = true;
                return Some((self.start, len));
            }
            self.found = self.scan(self.block);
        }
    }
}

impl<'a> AsciiSplit<&'a str> {
    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let (a, b) = self.next_range()?;
        let s: &'a str = self.s;
        Some(&s[a..b])
    }
}

/// The size of the buffers [`Text::lines`] cuts text into (whole lines, so a little more).
const LINES_CHUNK: usize = 64 << 10;

/// Text that shares the buffer it was read into: a line of a file, a word of a line. Cloning
/// and slicing it copy nothing (a reference count goes up); it reads as a `&str` (`Deref`),
/// compares, hashes and orders as its text, prints and serializes as a string, and is a key of
/// shuffles and state like `String`. The text sources give it for the asking
/// ([`StreamingContext::text_files_of`](crate::StreamingContext::text_files_of)), and
/// [`split`] cuts it into `Text` words:
///
/// ```
/// use stream_core::text::{self, Text};
///
/// let line = Text::from("rust #dstream is #fast");
/// let tags: Vec<Text> = text::split(line.clone(), ' ').filter(|w| w.starts_with('#')).collect();
/// assert_eq!(tags, ["#dstream", "#fast"]);
/// assert!(tags[0].shares_buffer_with(&line));
/// ```
///
/// When to use it instead of `String`: when records are cut from larger text and most of them
/// are short-lived (words counted in a window, fields of a log line), it saves an allocation
/// and a copy per record. A `Text` keeps its whole buffer alive, though: one kept for long (a
/// key in state's memory cache, a value collected for later) pins the file or chunk it came
/// from. [`detached`](Text::detached) copies it into a buffer of its own; a `String` is right
/// for records that live long or are built rather than cut.
#[derive(Clone)]
pub struct Text {
    buf: std::sync::Arc<str>,
    start: usize,
    end: usize,
}

impl Text {
    /// All of `text`, in a buffer of its own.
    pub fn new(text: impl Into<std::sync::Arc<str>>) -> Text {
        let buf = text.into();
        let end = buf.len();
        Text { buf, start: 0, end }
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.buf[self.start..self.end]
    }

    /// `piece`, a part of this text (a `&str` cut from it: a match, a trimmed field), as a
    /// `Text` sharing this buffer; a `piece` from elsewhere is copied into a buffer of its own.
    ///
    /// ```
    /// use stream_core::text::Text;
    /// let line = Text::from("  padded  ");
    /// let trimmed = line.slice_ref(line.trim());
    /// assert_eq!(trimmed, "padded");
    /// assert!(trimmed.shares_buffer_with(&line));
    /// ```
    pub fn slice_ref(&self, piece: &str) -> Text {
        let base = self.buf.as_ptr() as usize;
        let at = piece.as_ptr() as usize;
        if at >= base + self.start && at + piece.len() <= base + self.end {
            let start = at - base;
            return Text {
                buf: self.buf.clone(),
                start,
                end: start + piece.len(),
            };
        }
        Text::from(piece)
    }

    /// The text in a buffer of its own, so that keeping it does not keep the rest of the
    /// buffer it was cut from.
    pub fn detached(&self) -> Text {
        Text::from(self.as_str())
    }

    /// Whether `self` and `other` are parts of one buffer.
    pub fn shares_buffer_with(&self, other: &Text) -> bool {
        std::sync::Arc::ptr_eq(&self.buf, &other.buf)
    }

    /// The lines of `text` as `str::lines` cuts them (`\n` or `\r\n` ends a line, the last
    /// line counts without one), sharing buffers of about 64 KiB of whole lines.
    ///
    /// ```
    /// use stream_core::text::Text;
    /// let lines = Text::lines("a b\r\nc\n");
    /// assert_eq!(lines, ["a b", "c"]);
    /// assert!(lines[0].shares_buffer_with(&lines[1]));
    /// ```
    ///
    /// Why not one buffer for all: every clone and drop of a `Text` counts on its buffer, and
    /// the workers of a batch take lines of the same file at once; one count shared by all of
    /// them made a hashtag count 10% slower than with `String` lines, where chunks of 64 KiB
    /// (a thousand lines, which one worker takes together) made it faster (BENCHMARKS.md).
    pub fn lines(text: &str) -> Vec<Text> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            // A chunk of whole lines: up to the first line end after 64 KiB (searched in bytes:
            // byte 64 Ki may fall inside a character, a `\n` never does).
            let cut = match rest
                .as_bytes()
                .get(LINES_CHUNK..)
                .and_then(|tail| tail.iter().position(|b| *b == b'\n'))
            {
                Some(at) => LINES_CHUNK + at + 1,
                None => rest.len(),
            };
            let (chunk, tail) = rest.split_at(cut);
            let whole = Text::from(chunk);
            out.extend(whole.as_str().lines().map(|l| whole.slice_ref(l)));
            rest = tail;
        }
        out
    }

    /// The piece of this text between byte offsets `a` and `b`, which the splitter found on
    /// `char` boundaries.
    fn piece(&self, (a, b): (usize, usize)) -> Text {
        Text {
            buf: self.buf.clone(),
            start: self.start + a,
            end: self.start + b,
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::from("")
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    #[inline]
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Text {
    /// As `str` hashes, so that a map keyed by `Text` is looked up by `&str` too.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.as_str(), f)
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::new(s)
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.as_str().to_string()
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        String::deserialize(deserializer).map(Text::from)
    }
}

impl<'a> Splittable<'a> for &'a Text {
    type Pieces = Split<'a>;
    fn split_at(self, delim: char) -> Split<'a> {
        split_str(self.as_str(), delim)
    }
}

impl Splittable<'_> for Text {
    type Pieces = TextSplit;
    /// `Text` pieces of the same buffer: no copy.
    fn split_at(self, delim: char) -> TextSplit {
        let inner = if delim.is_ascii() {
            TextInner::Ascii(AsciiSplit::new(self, delim as u8))
        } else {
            let pieces: Vec<Text> = self
                .as_str()
                .split(delim)
                .map(|p| self.slice_ref(p))
                .collect();
            TextInner::Other(pieces.into_iter())
        };
        TextSplit { inner }
    }
}

/// The iterator of [`split`] over a [`Text`]: `Text` pieces of its buffer.
#[derive(Clone, Debug)]
pub struct TextSplit {
    inner: TextInner,
}

#[derive(Clone, Debug)]
enum TextInner {
    Ascii(AsciiSplit<Text>),
    Other(std::vec::IntoIter<Text>),
}

impl Iterator for TextSplit {
    type Item = Text;

    #[inline]
    fn next(&mut self) -> Option<Text> {
        match &mut self.inner {
            TextInner::Ascii(a) => {
                let range = a.next_range()?;
                Some(a.s.piece(range))
            }
            TextInner::Other(o) => o.next(),
        }
    }
}

impl FusedIterator for TextSplit {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A line with every kind of ASCII delimiter, control bytes and multi-byte characters.
    const MIXED: &str = "a,b;c d\te|f\0g\x7fh,,;#x\u{7f}y é,€;end";

    fn both(s: &str, delim: char) -> (Vec<&str>, Vec<&str>) {
        (split(s, delim).collect(), s.split(delim).collect())
    }

    #[test]
    fn every_short_line_over_a_small_alphabet_splits_as_std_does() {
        // Every string of up to 9 symbols over an alphabet with the delimiter, a tag mark, ASCII
        // and a two-byte and a three-byte character: up to 27 bytes, past the eight bytes of one
        // word of a block. (Lines across the 64-byte blocks are below.)
        let alphabet = [" ", "a", "#", "é", "€"];
        let mut lines = vec![String::new()];
        let mut checked = 0;
        for _ in 0..9 {
            let mut longer = Vec::new();
            for line in &lines {
                for sym in alphabet {
                    let l = format!("{line}{sym}");
                    let (ours, std) = both(&l, ' ');
                    assert_eq!(ours, std, "line {l:?}");
                    checked += 1;
                    longer.push(l);
                }
            }
            lines = longer;
        }
        assert_eq!(checked, (1..=9).map(|n| 5usize.pow(n)).sum::<usize>());
    }

    #[test]
    fn pieces_across_block_edges_are_whole() {
        // Delimiters on the last and first bytes of 64-byte blocks, and a piece spanning one.
        for len in [63, 64, 65, 127, 128, 129, 200] {
            for at in [0, 1, 7, 8, 62, 63, 64, 65, 127, 128] {
                let mut line = "x".repeat(len);
                if at < len {
                    line.replace_range(at..at + 1, " ");
                }
                let (ours, std) = both(&line, ' ');
                assert_eq!(ours, std, "length {len}, delimiter at {at}");
            }
        }
        let line = format!("{} #tag_at_the_end", "w ".repeat(40));
        let (ours, std) = both(&line, ' ');
        assert_eq!(ours, std);
        assert_eq!(ours.last(), Some(&"#tag_at_the_end"));
        assert_eq!(split("", ' ').collect::<Vec<_>>(), [""]);
        assert_eq!(split("        ", ' ').count(), 9);
        assert_eq!(split("abcdefgh", ' ').collect::<Vec<_>>(), ["abcdefgh"]);
    }

    #[test]
    fn every_ascii_delimiter_and_a_non_ascii_one_split_as_std_does() {
        for d in (0u8..0x80).map(char::from).chain(['é', '€', '😀']) {
            let (ours, std) = both(MIXED, d);
            assert_eq!(ours, std, "delimiter {d:?}");
        }
    }

    #[test]
    fn after_the_last_piece_it_stays_empty() {
        let mut it = split("a b", ' ');
        assert_eq!(it.next(), Some("a"));
        assert_eq!(it.next(), Some("b"));
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);
        let long = "x".repeat(64);
        for (line, d) in [(long.as_str(), ' '), ("aéb", 'é')] {
            let mut it = split(line, d);
            it.by_ref().for_each(drop);
            assert_eq!((it.next(), it.next()), (None, None));
        }
    }

    #[test]
    fn equal_bytes_flags_exactly_the_delimiters() {
        for d in 0u8..0x80 {
            let pattern = u64::from(d) * ONES;
            for b in 0u8..=255 {
                for j in 0..8 {
                    for fill in [d, d ^ 1] {
                        let mut word = [fill; 8];
                        word[j] = b;
                        let want = (0..8).filter(|&i| word[i] == d).fold(0, |m, i| m | 1 << i);
                        let got = equal_bytes(u64::from_le_bytes(word), pattern);
                        assert_eq!(got, want, "delimiter {d}, byte {b} at {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn long_lines_split_as_std_does_for_every_ascii_delimiter() {
        for n in [2, 4, 7] {
            let line = MIXED.repeat(n);
            for d in (0u8..0x80).map(char::from) {
                let (ours, std) = both(&line, d);
                assert_eq!(ours, std, "{n} copies, delimiter {d:?}");
            }
        }
        for n in [63, 64, 65, 128] {
            assert_eq!(split(&" ".repeat(n), ' ').count(), n + 1);
        }
    }

    #[test]
    fn text_splits_into_text_pieces_of_its_buffer_as_str_splits() {
        for d in (0u8..0x80).map(char::from).chain(['é', '€']) {
            let line = Text::from(MIXED.repeat(3));
            let pieces: Vec<Text> = split(line.clone(), d).collect();
            let want: Vec<&str> = line.split(d).collect();
            assert_eq!(pieces, want, "delimiter {d:?}");
            assert!(pieces.iter().all(|p| p.shares_buffer_with(&line)));
            // A piece split again stays in the buffer, with offsets relative to the piece.
            if let Some(p) = pieces.iter().find(|p| p.len() > 3) {
                let again: Vec<Text> = split(p.clone(), 'a').collect();
                assert_eq!(again, p.split('a').collect::<Vec<_>>());
                assert!(again.iter().all(|q| q.shares_buffer_with(&line)));
            }
        }
        assert_eq!(split(Text::from(""), ' ').collect::<Vec<_>>(), [""]);
        let owner = Text::from("a b");
        let borrowed: Vec<&str> = split(&owner, ' ').collect();
        assert_eq!(borrowed, ["a", "b"]);
    }

    #[test]
    fn text_is_its_str_to_maps_orders_serde_and_printing() {
        use std::collections::HashMap;
        let line = Text::lines("b a\r\nzz\n\nlast");
        assert_eq!(line, ["b a", "zz", "", "last"]);
        assert!(line.iter().all(|l| l.shares_buffer_with(&line[0])));
        let words: Vec<Text> = split(line[0].clone(), ' ').collect();
        let mut counts: HashMap<Text, i32> = HashMap::new();
        for w in words.iter().chain(words.iter()) {
            *counts.entry(w.clone()).or_default() += 1;
        }
        assert_eq!(counts.get("a"), Some(&2));
        let mut sorted = words.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b"]);
        let json = serde_json::to_string(&words).unwrap();
        assert_eq!(json, r#"["b","a"]"#);
        let back: Vec<Text> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, words);
        assert_eq!(format!("{} {:?}", words[0], words[1]), "b \"a\"");
        use crate::{JvmHash, Show};
        assert_eq!((words[0].clone(), 1).show(), "(b,1)");
        assert_eq!(words[0].jvm_hash_code(), "b".jvm_hash_code());
        // A piece from elsewhere is copied; a detached one owns its buffer.
        let other = line[1].slice_ref("zz");
        assert_eq!(other, "zz");
        assert!(!other.shares_buffer_with(&line[1]));
        let trimmed = line[0].slice_ref(&line[0][2..]);
        assert!(trimmed.shares_buffer_with(&line[0]));
        assert_eq!(trimmed, "a");
        assert!(!trimmed.detached().shares_buffer_with(&line[0]));
        assert_eq!(String::from(trimmed), "a");
    }

    #[test]
    fn lines_come_in_buffers_of_whole_lines_as_str_lines_cuts_them() {
        let text: String = (0..20_000)
            .map(|i| format!("line {i}\r\n"))
            .collect::<String>()
            + "end";
        let lines = Text::lines(&text);
        assert_eq!(lines, text.lines().collect::<Vec<_>>());
        let buffers = 1 + lines
            .windows(2)
            .filter(|w| !w[0].shares_buffer_with(&w[1]))
            .count();
        // About 230 KB of lines: 3 buffers of 64 KiB and a line, and the rest.
        assert!(text.len() > 3 * LINES_CHUNK && text.len() < 4 * LINES_CHUNK);
        assert_eq!(buffers, 4);
        // Two-byte characters, so that byte 64 Ki falls inside one: still cut into buffers.
        let wide: String = "é\n".repeat(50_000);
        let lines = Text::lines(&wide);
        assert_eq!(lines, wide.lines().collect::<Vec<_>>());
        assert!(!lines[0].shares_buffer_with(lines.last().expect("lines")));
        assert!(Text::lines("").is_empty());
        assert_eq!(Text::lines("\n\n"), ["", ""]);
    }

    proptest! {
        #[test]
        fn any_text_splits_as_its_str_does(line in "[ a#,é€😀]{0,150}", d in "[ ,#é]") {
            let d = d.chars().next().expect("one char");
            let text = Text::from(format!("<{line}>"));
            let inner = text.slice_ref(&text[1..text.len() - 1]);
            let pieces: Vec<Text> = split(inner.clone(), d).collect();
            let want: Vec<&str> = line.split(d).collect();
            prop_assert_eq!(pieces, want);
        }

        #[test]
        fn any_line_splits_as_std_does(line in "[ a#,é€😀]{0,150}", d in "[ ,#é]") {
            let d = d.chars().next().expect("one char");
            let (ours, std) = both(&line, d);
            prop_assert_eq!(ours, std);
        }
    }
}
