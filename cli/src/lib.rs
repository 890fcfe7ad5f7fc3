//! gtio-cli: the `gtio` command-line tool over the gtio library.
//!
//! The library crate (`gtio`, the repository root) is what programs link;
//! this crate holds what only the tool needs: the commands' logic
//! ([`tools`]), the embedded HTTP origin of `gtio serve` ([`serve`]), and,
//! in the binary (`src/main.rs`), argument parsing, `gtio mount` and the man
//! page and completions generator. The tests reuse [`serve`]'s request
//! parsing for their fault-injecting origins.

pub mod serve;
pub mod tools;
