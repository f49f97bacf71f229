//! Training and evaluation data: the ProsQA-style generator ([`prosqa`]), dataset statistics
//! ([`stats`]), the word-level tokenizer ([`tokenizer`]) and the `data` command ([`cli`]).

pub mod cli;
pub mod facts;
pub mod prosqa;
pub mod rng;
pub mod stats;
pub mod tokenizer;

use std::io::{self, Write};

/// A `serde_json` formatter writing like Python's `json.dump` defaults: one line, `", "`
/// between items and `": "` after keys.
pub struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}
