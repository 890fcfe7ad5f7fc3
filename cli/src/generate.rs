//! `gtio generate DIR` (hidden): the man pages and shell completions, made
//! from the same clap definitions that parse the command line, so they can
//! never describe options the tool does not have.
//!
//! It is a subcommand of the installed binary rather than a build script
//! because the pages need the finished `clap::Command` (with `env` and
//! defaults resolved), and so that `make install` can regenerate them from
//! exactly the binary it installs. Layout of DIR:
//!
//! ```text
//! man1/gtio.1, man1/gtio-ls.1, ...     one page per visible subcommand
//! completions/gtio.bash                bash-completion (completions/gtio)
//! completions/_gtio                    zsh (site-functions/_gtio)
//! completions/gtio.fish                fish (vendor_completions.d/gtio.fish)
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Write every file under `dir` (created if missing); return their paths.
pub fn generate(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let man = dir.join("man1");
    let completions = dir.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;
    let mut written = Vec::new();

    // The page date stays empty: a date would make two builds of the same
    // source differ for no reason (reproducible installs).
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&man)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    written.extend(pages);

    let mut cmd = without_hidden(&cmd);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(clap_complete::generate_to(
            shell,
            &mut cmd,
            "gtio",
            &completions,
        )?);
    }
    Ok(written)
}

/// `cmd` without its hidden subcommands (this one): clap_mangen skips them,
/// but clap_complete would offer `generate` at the shell's Tab.
fn without_hidden(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new("gtio")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out
}
