//! `grantwire completions SHELL` and `grantwire man`: generated from the clap definition, so
//! they name exactly the commands and flags the binary has.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::write_stdout;

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "grantwire", &mut script);
    write_stdout(&String::from_utf8_lossy(&script))
}

/// The top page (which lists every command) on stdout, or every page into `--out DIR`.
pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    match &args.out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .context("cannot render the man page")?;
            write_stdout(&String::from_utf8_lossy(&page))
        }
        Some(dir) => write_pages(dir),
    }
}

fn write_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    eprintln!(
        "wrote grantwire.1 and a page per command into {}",
        dir.display()
    );
    Ok(())
}
