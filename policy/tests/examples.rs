//! Every example file in `config/` parses and compiles.

use onecli_policy::config::compile_policy_file;

#[test]
fn every_example_config_compiles() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        // Stand-in values for value_env / token_env.
        let env = |var: &str| {
            Some(if var.ends_with("_TOKEN") && var.contains("AGENT") {
                format!("aoc_{:064x}", var.len())
            } else {
                format!("value-of-{var}")
            })
        };
        let name = path.display().to_string();
        if let Err(errors) = compile_policy_file(&name, &text, 1, &env) {
            panic!(
                "{}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        seen += 1;
    }
    assert!(seen >= 2, "expected the example configs, found {seen}");
}
