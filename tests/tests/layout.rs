//! The agent's folders are the stages of its data flow, and dependencies only point to earlier
//! stages (docs/architecture.md); the kernel programs' modules are layered the same way. Read
//! from the sources themselves, so a change that makes a stage reach back (the tracker calling a
//! sink, the configuration calling a transport, a map needing a program's helper) fails here,
//! not in review.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// The shared crate's modules (`core/src`), lowest first: configuration, what the kernel
/// reports and the process model, answers computed from it, the datasets' columns, how things
/// read for people, and the command line.
const CORE_STAGES: &[&[&str]] = &[
    &["config", "event", "clock", "files", "health"],
    &["file_log"],
    &["model"],
    &["analysis"],
    &["datasets"],
    &["present"],
    &["cli"],
];

/// The agent's folders (`exporter/src`) in data-flow order. The shared crate's modules, which
/// the agent re-exports under the same names, come before all of them.
const AGENT_STAGES: &[&[&str]] = &[
    CORE_MODULES,
    &["capture"],
    &["process"],
    &["diagnosis"],
    &["sinks"],
    &["upload"],
    &["agent"],
    &["run_history", "compact"],
    &["run", "daemon"],
];

/// The query side's folders (`query/src`), after the shared crate's modules.
const QUERY_STAGES: &[&[&str]] = &[CORE_MODULES, &["query"], &["report"], &["answer"]];

/// Every module of the shared crate, as the other crates see them (re-exported).
const CORE_MODULES: &[&str] = &[
    "config", "event", "clock", "files", "health", "file_log", "model", "analysis", "datasets",
    "present", "cli",
];

/// The kernel programs' modules (`exporter-ebpf/src`), lowest first: what the agent sets at load,
/// then reading kernel memory, the maps, what every record shares, and the programs. Modules of
/// one layer do not use each other either.
const KERNEL_LAYERS: &[&[&str]] = &[
    &["globals"],
    &["atomic"],
    &["kernel"],
    &["maps"],
    &["path", "record", "scope"],
    &["exits"],
    &["memory", "network", "files"],
    &["sample"],
    &["lifecycle"],
];

fn stage_of(stages: &[&[&str]], top: &str) -> Option<usize> {
    stages.iter().position(|s| s.contains(&top))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the sources are readable") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate's top-level modules a source names: `crate::X` anywhere, and the first segment
/// of every entry of a `use crate::{…}` tree. Unit tests (the trailing `mod tests`) are left out.
fn used_tops(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut tops = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(tree) = rest.strip_prefix('{') {
            // Entries at depth 1: the identifier after `{` or a `,`.
            let mut depth = 1;
            let mut expect_name = true;
            let mut name = String::new();
            for c in tree.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => expect_name = true,
                    c if depth == 1 && expect_name && (c.is_alphanumeric() || c == '_') => {
                        name.push(c);
                        continue;
                    }
                    _ => {}
                }
                if !name.is_empty() {
                    tops.insert(std::mem::take(&mut name));
                    expect_name = false;
                }
                if depth == 0 {
                    break;
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            tops.insert(name);
        }
    }
    tops
}

/// Every use of `crate::X` in the sources under `dir` that does not point to an earlier stage;
/// also how many uses were checked. `roots` are the crate roots (no stage of their own).
fn uses_against_the_order(dir: &str, stages: &[&[&str]], roots: &[&str]) -> (usize, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap();
        let first = relative.components().next().unwrap();
        let top = first.as_os_str().to_string_lossy();
        let top = top.trim_end_matches(".rs");
        if roots.contains(&top) {
            continue;
        }
        let stage = stage_of(stages, top).unwrap_or_else(|| {
            panic!(
                "{dir}/{top}: a folder or module not in the list of stages (add it where it sits)"
            )
        });
        let text = std::fs::read_to_string(file).unwrap();
        for used in used_tops(&text) {
            let Some(used_stage) = stage_of(stages, &used) else {
                panic!(
                    "{dir}/{}: uses crate::{used}, which is not a stage",
                    relative.display()
                );
            };
            checked += 1;
            if used != top && used_stage >= stage {
                wrong.push(format!("{} uses crate::{used}", relative.display()));
            }
        }
    }
    (checked, wrong)
}

#[test]
fn stages_only_use_earlier_stages() {
    for (dir, stages, least) in [
        ("core/src", CORE_STAGES, 10),
        ("exporter/src", AGENT_STAGES, 40),
        ("query/src", QUERY_STAGES, 10),
    ] {
        // The crate roots and the binaries' roots.
        let (checked, wrong) = uses_against_the_order(dir, stages, &["lib", "main"]);
        assert!(
            checked >= least,
            "{dir}: only {checked} uses found: is the parser still reading the sources?"
        );
        assert!(
            wrong.is_empty(),
            "{dir}: uses against the data flow:\n{}",
            wrong.join("\n")
        );
    }
}

/// The agent and the shared crate link no DuckDB and the shared crate no kernel loader, by
/// their manifests: only the query side depends on them.
#[test]
fn only_the_query_side_links_duckdb_and_only_the_agent_loads_programs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dependencies = |crate_dir: &str| {
        let text = std::fs::read_to_string(root.join(crate_dir).join("Cargo.toml")).unwrap();
        let section = text.split("[dependencies]").nth(1).unwrap_or_default();
        let section = section.split("\n[").next().unwrap_or_default().to_owned();
        section
            .lines()
            .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim().to_owned()))
            .filter(|name| !name.starts_with('#'))
            .collect::<Vec<_>>()
    };
    let (core, agent, query) = (
        dependencies("core"),
        dependencies("exporter"),
        dependencies("query"),
    );
    assert!(query.contains(&"duckdb".to_owned()), "{query:?}");
    assert!(
        !agent.contains(&"duckdb".to_owned()),
        "the agent depends on DuckDB: {agent:?}"
    );
    assert!(
        !core.contains(&"duckdb".to_owned()),
        "the shared crate depends on DuckDB: {core:?}"
    );
    assert!(
        !core.contains(&"aya".to_owned()),
        "the shared crate depends on aya: {core:?}"
    );
    assert!(
        !query.contains(&"aya".to_owned()),
        "the query side depends on aya: {query:?}"
    );
    assert!(
        !query.contains(&"pipetrace".to_owned()),
        "the query side depends on the agent: {query:?}"
    );
}

#[test]
fn kernel_modules_only_use_lower_layers() {
    let (checked, wrong) = uses_against_the_order("exporter-ebpf/src", KERNEL_LAYERS, &["main"]);
    assert!(
        checked >= 25,
        "only {checked} uses found: is the parser still reading the sources?"
    );
    assert!(
        wrong.is_empty(),
        "kernel modules using a module of their own layer or above:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_parser_finds_uses_in_trees_and_paths() {
    let text = "use crate::{\n    capture::{clock::Clock, decode::Event},\n    process::tracker::Tracker,\n};\nfn f() { crate::sinks::x(); }\n#[cfg(test)]\nmod tests {\n    use crate::agent::Agent;\n}\n";
    let tops: Vec<String> = used_tops(text).into_iter().collect();
    assert_eq!(tops, ["capture", "process", "sinks"]);
}

#[test]
fn the_architecture_guide_names_every_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let entries = ["core/src", "exporter/src", "query/src"]
        .into_iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).unwrap());
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = format!("`{}/`", path.file_name().unwrap().to_string_lossy());
            assert!(
                guide.contains(&name),
                "docs/architecture.md does not describe {name}"
            );
            assert!(
                readme.contains(&name),
                "README's layout does not name {name}"
            );
        }
    }
}
