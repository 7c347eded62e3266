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
    Ascii(AsciiSplit<'a>),
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
/// sequence, so every position where it is found is a `char` boundary of the line.
#[derive(Clone, Debug)]
struct AsciiSplit<'a> {
    s: &'a str,
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

impl<'a> AsciiSplit<'a> {
    fn new(s: &'a str, delim: u8) -> AsciiSplit<'a> {
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
        let bytes = self.s.as_bytes();
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

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.found != 0 {
                let at = self.block + self.found.trailing_zeros() as usize;
                self.found &= self.found - 1;
                let piece = &self.s[self.start..at];
                self.start = at + 1;
                return Some(piece);
            }
            if self.done {
                return None;
            }
            self.block += 64;
            if self.block >= self.s.len() {
                self.done = true;
                return Some(&self.s[self.start..]);
            }
            self.found = self.scan(self.block);
        }
    }
}

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

    proptest! {
        #[test]
        fn any_line_splits_as_std_does(line in "[ a#,é€😀]{0,150}", d in "[ ,#é]") {
            let d = d.chars().next().expect("one char");
            let (ours, std) = both(&line, d);
            prop_assert_eq!(ours, std);
        }
    }
}
