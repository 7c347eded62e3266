//! How records are written as text by `print()` and `save_as_text_files()`: Spark calls
//! `toString`, so a pair prints as `(a,1)`, not Rust's `("a", 1)`. [`Show`] gives the same text
//! for the standard types; implement it for your own record types (or map them to `String`).

use std::fmt::Write;

/// Spark's `toString` for records.
///
/// ```
/// use stream_core::Show;
/// assert_eq!(("a".to_string(), 1).show(), "(a,1)");
/// assert_eq!(Some(2.5).show(), "Some(2.5)");
/// assert_eq!(vec![1, 2].show(), "[1, 2]");
/// ```
pub trait Show {
    /// Appends the text of `self` to `out`.
    fn show_to(&self, out: &mut String);

    /// The text of `self`.
    fn show(&self) -> String {
        let mut s = String::new();
        self.show_to(&mut s);
        s
    }
}

macro_rules! show_display {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show_to(&self, out: &mut String) {
                let _ = write!(out, "{}", self);
            }
        }
    )*};
}

show_display!(
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    f32,
    f64,
    bool,
    char,
    String,
    str,
    crate::text::Text
);

impl<T: Show + ?Sized> Show for &T {
    fn show_to(&self, out: &mut String) {
        (**self).show_to(out)
    }
}

impl<T: Show + ?Sized> Show for Box<T> {
    fn show_to(&self, out: &mut String) {
        (**self).show_to(out)
    }
}

impl<T: Show + ?Sized> Show for std::sync::Arc<T> {
    fn show_to(&self, out: &mut String) {
        (**self).show_to(out)
    }
}

impl<T: Show> Show for Option<T> {
    fn show_to(&self, out: &mut String) {
        match self {
            Some(v) => {
                out.push_str("Some(");
                v.show_to(out);
                out.push(')');
            }
            None => out.push_str("None"),
        }
    }
}

impl<T: Show> Show for Vec<T> {
    fn show_to(&self, out: &mut String) {
        out.push('[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            v.show_to(out);
        }
        out.push(']');
    }
}

impl Show for () {
    fn show_to(&self, out: &mut String) {
        out.push_str("()");
    }
}

macro_rules! show_tuple {
    ($($n:tt $t:ident),+) => {
        impl<$($t: Show),+> Show for ($($t,)+) {
            fn show_to(&self, out: &mut String) {
                out.push('(');
                let mut _first = true;
                $(
                    if !_first { out.push(','); }
                    _first = false;
                    self.$n.show_to(out);
                )+
                out.push(')');
            }
        }
    };
}

show_tuple!(0 A);
show_tuple!(0 A, 1 B);
show_tuple!(0 A, 1 B, 2 C);
show_tuple!(0 A, 1 B, 2 C, 3 D);
show_tuple!(0 A, 1 B, 2 C, 3 D, 4 E);
show_tuple!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_values_print_like_spark() {
        let rec = ("k".to_string(), (1_i64, Some("x")));
        assert_eq!(rec.show(), "(k,(1,Some(x)))");
        let grouped: (&str, Vec<i32>) = ("a", vec![1, 1]);
        assert_eq!(grouped.show(), "(a,[1, 1])");
        assert_eq!(None::<i32>.show(), "None");
    }
}
