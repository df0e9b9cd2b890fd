//! The README's configuration table agrees with the CLI.

use armorm_server::cli::Cli;
use clap::CommandFactory;

#[test]
fn readme_documents_every_serve_flag_with_its_env_var() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").unwrap();
    let mut checked = 0;
    for arg in serve.get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else { continue };
        let row = format!("| `--{long}` | `{}` |", env.to_string_lossy());
        assert!(readme.contains(&row), "README lacks the row for --{long}: {row}");
        checked += 1;
    }
    assert!(checked >= 19, "only {checked} flags found");
}
