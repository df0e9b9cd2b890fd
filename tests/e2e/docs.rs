//! The README agrees with the code: its configuration tables with the CLI, its supported models
//! with the architectures armorm implements.

use armorm_cli::args::Cli;
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

/// Every flag of every other subcommand (what its `--help` lists) is named in that command's README
/// section.
#[test]
fn readme_sections_name_every_flag_of_their_command() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    // The text from a heading to the next heading of its level or above.
    let section = |heading: &str| -> String {
        let start = readme.find(heading).unwrap_or_else(|| panic!("README has no {heading:?}"));
        let level = heading.chars().take_while(|&c| c == '#').count();
        let rest = &readme[start + heading.len()..];
        let end = rest
            .match_indices("\n#")
            .find(|(i, _)| rest[i + 1..].chars().take_while(|&c| c == '#').count() <= level)
            .map_or(rest.len(), |(i, _)| i);
        rest[..end].to_string()
    };
    let cli = Cli::command();
    let mut missing = Vec::new();
    for (command, heading) in [
        ("score", "## Scoring offline: `armorm score`"),
        ("train", "## Training an ArmoRM: `armorm train`"),
        ("eval", "## Evaluating a reward model: `armorm eval`"),
        ("healthcheck", "### Docker"),
    ] {
        let text = section(heading);
        for arg in cli.find_subcommand(command).unwrap().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if !text.contains(&format!("--{long}")) {
                missing.push(format!("{command} --{long}"));
            }
        }
    }
    assert!(missing.is_empty(), "flags the README's sections do not mention: {missing:?}");
}

/// Every flag of every subcommand is also an environment variable, named by the rule the README
/// states in each command's section: `ARMORM_` and the flag in capitals, with `TRAIN_`, `EVAL_` or
/// `HEALTHCHECK_` after it for those commands' own flags (the model and API-key flags are shared).
#[test]
fn every_flag_has_the_environment_variable_the_readme_names() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let longs = |command: clap::Command| -> Vec<String> {
        command.get_arguments().filter_map(|a| a.get_long().map(str::to_string)).collect()
    };
    let mut shared = longs(<armorm_model::cli::ModelArgs as clap::Args>::augment_args(clap::Command::new("model")));
    shared.extend(longs(<armorm_server::config::ApiKeyArgs as clap::Args>::augment_args(clap::Command::new("key"))));
    let mut checked = 0;
    for command in Cli::command().get_subcommands() {
        let prefix = match command.get_name() {
            "train" => "ARMORM_TRAIN_",
            "eval" => "ARMORM_EVAL_",
            "healthcheck" => "ARMORM_HEALTHCHECK_",
            _ => "ARMORM_",
        };
        if prefix != "ARMORM_" {
            assert!(readme.contains(&format!("`{prefix}")), "the README never states the {prefix}* rule");
        }
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let rule = if shared.iter().any(|s| s == long) { "ARMORM_" } else { prefix };
            let want = format!("{rule}{}", long.to_uppercase().replace('-', "_"));
            let got = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(got.as_deref(), Some(want.as_str()), "{} --{long}", command.get_name());
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} flags found");
}

/// openapi.yaml's error codes and the README's list (each after its HTTP status) are the server's
/// one list of them.
#[test]
fn openapi_and_readme_list_the_error_codes_the_server_answers_with() {
    use armorm_server::error::ErrorCode;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let codes: std::collections::BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
    let spec: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(format!("{root}/openapi.yaml")).unwrap()).unwrap();
    let documented: std::collections::BTreeSet<&str> = spec["components"]["schemas"]["Error"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(documented, codes, "openapi.yaml's error codes");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let start = readme.find("Errors are always").expect("the README's error list");
    let list = &readme[start..start + readme[start..].find("\n\n").unwrap()];
    let listed: std::collections::BTreeSet<&str> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert_eq!(listed, codes, "the README's error codes");
    for code in ErrorCode::ALL {
        // The status printed before the code (or before the first code of its group).
        let at = list.find(&format!("`{}`", code.name())).unwrap();
        let status = list[..at]
            .split(|c: char| !c.is_ascii_digit())
            .rfind(|n| n.len() == 3)
            .unwrap_or_else(|| panic!("no status before {}", code.name()));
        assert_eq!(status, code.status().to_string(), "the README's status for {}", code.name());
    }
}

/// Everything the README asks a user to run is in the repository: nothing points outside it (the
/// reference environment once came from a script no user had).
#[test]
fn readme_points_only_at_files_in_the_repository() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    assert!(!readme.contains("../shared"), "the README points outside the repository");
    let mut scripts: Vec<&str> = readme.match_indices("scripts/").map(|(i, _)| &readme[i..]).collect();
    scripts.iter_mut().for_each(|s| {
        *s = &s[..s.find(|c: char| !c.is_ascii_alphanumeric() && !"/-_.".contains(c)).unwrap_or(s.len())]
    });
    assert!(scripts.contains(&"scripts/reference-env.sh"), "the README names the reference environment's script");
    for script in scripts {
        let script = script.trim_end_matches('.');
        let meta =
            std::fs::metadata(format!("{root}/{script}")).unwrap_or_else(|e| panic!("README names {script}: {e}"));
        assert!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
            "{script} is not executable"
        );
    }
}

/// The families armorm implements are the README's supported-models rows and openapi.yaml's
/// `Info.family` values, no more and no fewer.
#[test]
fn readme_and_openapi_list_the_families_armorm_implements() {
    use armorm_model::arch::Family;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let start = readme.find("## Supported models").expect("a Supported models section");
    let section = &readme[start..][..readme[start..].find("\n## ").unwrap_or(readme.len() - start)];
    let rows: Vec<&str> = section.lines().filter_map(|l| l.strip_prefix("| `")?.split('`').next()).collect();
    let families: Vec<&str> = Family::ALL.iter().map(|f| f.model_type()).collect();
    assert_eq!(rows, families, "README's supported-models rows");
    assert_eq!(info_enum("family"), families, "openapi.yaml's Info.family");
    for class in armorm_model::arch::supported_classes() {
        assert!(section.contains(&format!("`{class}`")), "README's supported models do not name {class}");
    }
}

/// openapi.yaml's `Info.kernels` and `Info.layout` values are the kernel plans' and tensor
/// layouts' names, no more and no fewer.
#[test]
fn openapi_lists_the_kernel_plans_and_layouts() {
    use armorm_model::arch::layout::TensorLayout;
    use armorm_model::kernels::plan::KernelPlan;
    let kernels: Vec<&str> = KernelPlan::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(info_enum("kernels"), kernels, "openapi.yaml's Info.kernels");
    let layouts: Vec<&str> = TensorLayout::ALL.iter().map(|l| l.name()).collect();
    assert_eq!(info_enum("layout"), layouts, "openapi.yaml's Info.layout");
}

/// The values openapi.yaml allows for `Info.{field}`.
fn info_enum(field: &str) -> Vec<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let spec: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(format!("{root}/openapi.yaml")).unwrap()).unwrap();
    spec["components"]["schemas"]["Info"]["properties"][field]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("Info.{field} is an enum"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}
