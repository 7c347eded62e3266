//! Parsing: the token stream inside `stream! { ... }` into statements and method chains.
//! Lambdas stay token trees here (see `lambda`); this level only needs the shape of the program.
//!
//! ```text
//! program   := (statement ";"?)*
//! statement := "using" ident ("," ident)*            Rust values used as roots (a context, streams)
//!            | "val" ident "=" expr
//!            | expr
//! expr      := "new"? "StreamingContext" "(" args ")"  a context declared in the macro
//!            | ident ("." name ("(" args ")" | "{" lambda "}" )?)*
//! args      := arg ("," arg)*                        each arg: any tokens up to a top-level comma
//! ```
//!
//! A chain ends where the next token is not a `.`, so statements need no separators (Scala's
//! newlines are not visible to a macro); `;` is accepted anywhere between statements.

use proc_macro2::{Delimiter, Ident, Span, TokenStream, TokenTree};

/// A parsed program.
#[derive(Debug)]
pub struct Program {
    /// Its statements, in order.
    pub stmts: Vec<Stmt>,
}

/// A statement.
#[derive(Debug)]
pub enum Stmt {
    /// `using a, b`: values built in Rust, usable as roots of chains.
    Using(Vec<Ident>),
    /// `val name = expr`.
    Val {
        /// The name bound.
        name: Ident,
        /// Its value.
        value: Expr,
    },
    /// An expression statement (an output operation, `ssc.start()`, ...).
    Expr(Expr),
}

/// An expression of the DSL.
#[derive(Debug)]
pub enum Expr {
    /// `StreamingContext(args)`: the context, declared in the macro.
    NewContext {
        /// `StreamingContext`, as written (for errors).
        name: Ident,
        /// Its arguments (the batch interval, or a Spark master and app name before it).
        args: Vec<Arg>,
    },
    /// `root.op(args).op(args)...`
    Chain(Chain),
    /// A function literal with a block body, bound to a name as Scala users do
    /// (`val updateFunc = (values: Vec<i32>, state: Option<i32>) => { ... }`).
    Function(TokenStream),
}

/// A method chain.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The value the chain starts from (a `val`, the context, or a `using` name).
    pub root: Ident,
    /// The calls, in order.
    pub calls: Vec<Call>,
}

/// One `.name(args)` of a chain.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation's name, as written.
    pub name: Ident,
    /// Its arguments.
    pub args: Vec<Arg>,
    /// The span of the argument list (its parentheses or braces), or of the name without one.
    pub args_span: Span,
    /// Called as `.name { ... }` (Scala's block argument).
    pub block: bool,
}

/// One argument: its tokens, untouched.
#[derive(Debug, Clone)]
pub struct Arg {
    /// Its tokens.
    pub tokens: TokenStream,
    /// Where it is, for errors.
    pub span: Span,
}

impl Arg {
    fn new(tokens: Vec<TokenTree>) -> Arg {
        let span = span_of(&tokens);
        Arg {
            tokens: tokens.into_iter().collect(),
            span,
        }
    }
}

/// The span covering `tokens` (their first token's where spans cannot be joined).
pub fn span_of(tokens: &[TokenTree]) -> Span {
    match (tokens.first(), tokens.last()) {
        (Some(a), Some(b)) => a.span().join(b.span()).unwrap_or_else(|| a.span()),
        _ => Span::call_site(),
    }
}

/// Parses a program; on a syntax error, returns what parsed before it and the error (parsing
/// resumes at the next statement keyword, so several errors can be reported).
pub fn parse(input: TokenStream) -> (Program, Vec<syn::Error>) {
    let tokens: Vec<TokenTree> = input.into_iter().collect();
    let mut p = Parser {
        tokens,
        pos: 0,
        errors: Vec::new(),
    };
    let mut stmts = Vec::new();
    while !p.at_end() {
        if p.eat_punct(';') {
            continue;
        }
        let start = p.pos;
        match p.statement() {
            Ok(s) => stmts.push(s),
            Err(e) => {
                p.errors.push(e);
                p.recover(start);
            }
        }
    }
    (Program { stmts }, p.errors)
}

struct Parser {
    tokens: Vec<TokenTree>,
    pos: usize,
    errors: Vec<syn::Error>,
}

fn is_ident(t: Option<&TokenTree>, name: &str) -> bool {
    matches!(t, Some(TokenTree::Ident(i)) if i == name)
}

fn is_punct(t: Option<&TokenTree>, c: char) -> bool {
    matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    fn peek(&self) -> Option<&TokenTree> {
        self.tokens.get(self.pos)
    }

    fn span_here(&self) -> Span {
        self.peek()
            .map(TokenTree::span)
            .or_else(|| self.tokens.last().map(TokenTree::span))
            .unwrap_or_else(Span::call_site)
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if is_punct(self.peek(), c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips to the next token that can start a statement, past at least one token.
    fn recover(&mut self, start: usize) {
        self.pos = self.pos.max(start + 1);
        while let Some(t) = self.peek() {
            if is_punct(Some(t), ';') || is_ident(Some(t), "val") || is_ident(Some(t), "using") {
                break;
            }
            self.pos += 1;
        }
    }

    fn ident(&mut self, what: &str) -> syn::Result<Ident> {
        match self.peek() {
            Some(TokenTree::Ident(i)) => {
                let i = i.clone();
                self.pos += 1;
                Ok(i)
            }
            _ => Err(syn::Error::new(
                self.span_here(),
                format!("expected {what}"),
            )),
        }
    }

    fn statement(&mut self) -> syn::Result<Stmt> {
        if is_ident(self.peek(), "using") {
            self.pos += 1;
            let mut names = vec![self.ident("the name of a Rust value after `using`")?];
            while self.eat_punct(',') {
                names.push(self.ident("the name of a Rust value")?);
            }
            return Ok(Stmt::Using(names));
        }
        if is_ident(self.peek(), "val") || is_ident(self.peek(), "var") {
            if is_ident(self.peek(), "var") {
                return Err(syn::Error::new(
                    self.span_here(),
                    "a stream is bound once: use `val`, not `var`",
                ));
            }
            self.pos += 1;
            let name = self.ident("a name after `val`")?;
            if is_punct(self.peek(), ':') {
                return Err(syn::Error::new(
                    self.span_here(),
                    "`val` takes no type annotation here: the types of streams are inferred",
                ));
            }
            if !self.eat_punct('=') {
                return Err(syn::Error::new(
                    self.span_here(),
                    format!("expected `=` after `val {name}`"),
                ));
            }
            // `x => { ... }` or `(a, b) => { ... }`: a function, not a chain.
            if matches!(
                self.tokens.get(self.pos),
                Some(TokenTree::Ident(_)) | Some(TokenTree::Group(_))
            ) && is_punct(self.tokens.get(self.pos + 1), '=')
                && is_punct(self.tokens.get(self.pos + 2), '>')
                && matches!(self.tokens.get(self.pos + 3), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace)
            {
                let f: TokenStream = self.tokens[self.pos..self.pos + 4]
                    .iter()
                    .cloned()
                    .collect();
                self.pos += 4;
                return Ok(Stmt::Val {
                    name,
                    value: Expr::Function(f),
                });
            }
            if matches!(
                self.tokens.get(self.pos),
                Some(TokenTree::Ident(_)) | Some(TokenTree::Group(_))
            ) && is_punct(self.tokens.get(self.pos + 1), '=')
                && is_punct(self.tokens.get(self.pos + 2), '>')
            {
                return Err(syn::Error::new(
                    self.tokens[self.pos + 1].span(),
                    format!(
                        "a function `val` needs its body in braces (a macro does not see where a line ends): `val {name} = x => {{ ... }}`"
                    ),
                ));
            }
            let value = self.expr()?;
            return Ok(Stmt::Val { name, value });
        }
        Ok(Stmt::Expr(self.expr()?))
    }

    fn expr(&mut self) -> syn::Result<Expr> {
        let with_new = is_ident(self.peek(), "new");
        if with_new {
            self.pos += 1;
        }
        let root = self.ident("a stream, a `val` or the context")?;
        if root == "StreamingContext" {
            let (args, _) = match self.peek() {
                Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => {
                    let g = g.clone();
                    self.pos += 1;
                    (split_args(g.stream()), g.span())
                }
                _ => {
                    return Err(syn::Error::new(
                        self.span_here(),
                        "expected `(batchDuration)` after `StreamingContext`",
                    ));
                }
            };
            return Ok(Expr::NewContext { name: root, args });
        }
        if with_new {
            return Err(syn::Error::new(
                root.span(),
                "`new` is for the context only: `new StreamingContext(Seconds(1))`",
            ));
        }
        let mut calls = Vec::new();
        while is_punct(self.peek(), '.') {
            self.pos += 1;
            let name = match self.peek() {
                Some(TokenTree::Ident(i)) => i.clone(),
                Some(t) => {
                    return Err(syn::Error::new(
                        t.span(),
                        "expected the name of an operation after `.`",
                    ));
                }
                None => {
                    return Err(syn::Error::new(
                        self.span_here(),
                        "expected the name of an operation after `.`",
                    ));
                }
            };
            self.pos += 1;
            let call = match self.peek() {
                Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => {
                    let g = g.clone();
                    self.pos += 1;
                    Call {
                        name,
                        args: split_args(g.stream()),
                        args_span: g.span(),
                        block: false,
                    }
                }
                Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                    let g = g.clone();
                    self.pos += 1;
                    Call {
                        name,
                        args: vec![Arg {
                            tokens: TokenTree::Group(g.clone()).into(),
                            span: g.span(),
                        }],
                        args_span: g.span(),
                        block: true,
                    }
                }
                _ => Call {
                    args_span: name.span(),
                    name,
                    args: Vec::new(),
                    block: false,
                },
            };
            calls.push(call);
        }
        Ok(Expr::Chain(Chain { root, calls }))
    }
}

/// Splits an argument list at its top-level commas. Commas inside groups are inside their
/// token trees already; those of a turbofish (`::<A, B>`) are skipped by tracking its angle
/// brackets, and those of a Rust closure's parameters (`|a, b|`) by tracking its bars.
pub fn split_args(tokens: TokenStream) -> Vec<Arg> {
    let mut args = Vec::new();
    let mut cur: Vec<TokenTree> = Vec::new();
    let mut angle = 0usize;
    let mut in_bars = false;
    let mut prev_colons = false;
    let mut prev: Option<TokenTree> = None;
    for t in tokens {
        let mut colons_now = false;
        if let TokenTree::Punct(p) = &t {
            match p.as_char() {
                '<' if prev_colons || angle > 0 => angle += 1,
                '>' if angle > 0
                    && !is_punct(prev.as_ref(), '-')
                    && !is_punct(prev.as_ref(), '=') =>
                {
                    angle -= 1
                }
                '|' if angle == 0 => {
                    // `|` opens a closure's parameters where an operand is expected: at the
                    // start of an argument, or after `=>`, `(`-less operators and `move`.
                    if in_bars {
                        in_bars = false;
                    } else if cur.is_empty()
                        || is_ident(prev.as_ref(), "move")
                        || (is_punct(prev.as_ref(), '>') && cur.len() >= 2)
                    {
                        in_bars = true;
                    }
                }
                ',' if angle == 0 && !in_bars => {
                    args.push(Arg::new(std::mem::take(&mut cur)));
                    prev = Some(t);
                    prev_colons = false;
                    continue;
                }
                ':' => {
                    colons_now = is_punct(prev.as_ref(), ':');
                }
                _ => {}
            }
        }
        prev_colons = colons_now;
        prev = Some(t.clone());
        cur.push(t);
    }
    if !cur.is_empty() {
        args.push(Arg::new(cur));
    } else if !args.is_empty() {
        // A trailing comma: nothing to add.
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn names(c: &Chain) -> Vec<String> {
        c.calls.iter().map(|c| c.name.to_string()).collect()
    }

    #[test]
    fn statements_need_no_separators() {
        let (p, errors) = parse(quote! {
            val ssc = new StreamingContext(Seconds(1))
            val lines = ssc.socketTextStream("localhost", 9999)
            val counts = lines.flatMap(_.split(" ")).map(w => (w, 1)).reduceByKey(_ + _)
            counts.print();
            ssc.start()
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(p.stmts.len(), 5);
        match &p.stmts[2] {
            Stmt::Val {
                name,
                value: Expr::Chain(c),
            } => {
                assert_eq!(name, "counts");
                assert_eq!(names(c), ["flatMap", "map", "reduceByKey"]);
                assert_eq!(c.calls[1].args.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn block_arguments_and_calls_without_parentheses() {
        let (p, errors) = parse(quote! {
            events.map { case (visitor, url) => url }.countByValue.print()
        });
        assert!(errors.is_empty());
        let Stmt::Expr(Expr::Chain(c)) = &p.stmts[0] else {
            panic!()
        };
        assert!(c.calls[0].block);
        assert_eq!(names(c), ["map", "countByValue", "print"]);
        assert!(c.calls[1].args.is_empty());
    }

    #[test]
    fn arguments_split_at_top_level_commas_only() {
        let args =
            split_args(quote! { (a, b) => a + b, |x, y| x - y, f::<A, B>(1, 2), Seconds(5) });
        assert_eq!(args.len(), 4, "{args:?}");
        assert_eq!(args[1].tokens.to_string(), "| x , y | x - y");
        let args = split_args(quote! { x => x < 3, y });
        assert_eq!(args.len(), 2);
        assert!(split_args(quote! {}).is_empty());
    }

    #[test]
    fn syntax_errors_are_reported_and_parsing_goes_on() {
        let (p, errors) = parse(quote! {
            val = lines.map(f)
            val ok = lines.count()
            var x = 1
            val y: Int = z
        });
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(p.stmts.len(), 1);
    }
}
