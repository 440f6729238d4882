//! The files each step read, wrote, created, renamed and deleted, recorded by the kernel
//! programs (root, real processes): every operation of a known script with the right path
//! (relative names against a changed working directory, a bind mount, a mount namespace),
//! checked in the Parquet data with the official DuckDB CLI and in the spans a real OTLP
//! collector received; a C build's outputs against the files on disk; a header edited between
//! two builds as `compare`'s changed input; a step that changes a tracked file of the checkout
//! next to one that writes only build/; the per-process bound; `--files off`.

use std::{collections::BTreeMap, path::Path};

use pipetrace_tests::{
    command, duckdb::duckdb_json, query_json, require_root, rotel::Rotel, script, stdout_of,
    trace_with,
};

/// `(operation, path, target)` of the rows of the `files` dataset under `dir` in `data`.
fn file_rows(data: &Path, dir: &Path) -> Vec<(String, String, String)> {
    let rows = duckdb_json(&format!(
        "SELECT operation, path, coalesce(target, '') AS target FROM read_parquet('{}/files/*.parquet') \
         WHERE starts_with(path, '{dir}/') OR starts_with(coalesce(target, ''), '{dir}/') ORDER BY time, operation, path;",
        data.display(),
        dir = dir.display()
    ));
    rows.iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has(rows: &[(String, String, String)], op: &str, path: &Path, target: Option<&Path>) -> bool {
    let target = target.map(|t| t.display().to_string()).unwrap_or_default();
    rows.iter()
        .any(|(o, p, t)| o == op && *p == path.display().to_string() && *t == target)
}

#[test]
fn every_operation_of_a_step_is_seen_with_its_path() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    // Symlinks resolved: the kernel reports the real path.
    let root = dir.path().canonicalize().unwrap();
    for d in ["work/sub", "real", "view", "ns"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("work/input.txt"), "twelve bytes").unwrap();
    let pipeline = script(
        &root,
        "files.sh",
        &format!(
            "set -e\n\
             cd {root}/work\n\
             cat input.txt > /dev/null\n\
             echo made > made.txt\n\
             cd sub\n\
             echo rel > rel.txt\n\
             mv rel.txt ../renamed.txt\n\
             ln -s ../renamed.txt link.txt\n\
             mkdir newdir\n\
             rmdir newdir\n\
             rm ../made.txt\n\
             cat missing.txt 2>/dev/null || true\n\
             mount --bind {root}/real {root}/view\n\
             echo via-bind > {root}/view/bound.txt\n\
             umount {root}/view\n\
             unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs {root}/ns && echo inside > {root}/ns/inside.txt && cat {root}/ns/inside.txt > /dev/null'\n",
            root = root.display()
        ),
    );
    let data = root.join("data");
    let rotel = Rotel::start();
    let t = trace_with(
        &[
            ("PIPETRACE_OTLP__ENDPOINT", rotel.grpc_endpoint().as_str()),
            ("PIPETRACE_OTLP__BATCH_DELAY", "50ms"),
        ],
        &["--parquet", data.to_str().unwrap(), "--files-probes"],
        &[pipeline.to_str().unwrap()],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);

    let rows = file_rows(&data, &root);
    let w = root.join("work");
    for (op, path, target) in [
        ("read", w.join("input.txt"), None),
        ("create", w.join("made.txt"), None),
        // Relative names, after `cd sub`.
        ("create", w.join("sub/rel.txt"), None),
        ("rename", w.join("sub/rel.txt"), Some(w.join("renamed.txt"))),
        ("mkdir", w.join("sub/newdir"), None),
        ("rmdir", w.join("sub/newdir"), None),
        ("delete", w.join("made.txt"), None),
        ("probe", w.join("sub/missing.txt"), None),
        // Through the bind mount: the path the process used.
        ("create", root.join("view/bound.txt"), None),
        // In a mount namespace of its own: the path as that process saw it.
        ("create", root.join("ns/inside.txt"), None),
        ("read", root.join("ns/inside.txt"), None),
    ] {
        assert!(
            has(&rows, op, &path, target.as_deref()),
            "{op} {} not in {rows:#?}",
            path.display()
        );
    }
    // A symlink keeps its target as written.
    assert!(
        rows.iter().any(|(o, p, t)| o == "symlink"
            && *p == w.join("sub/link.txt").display().to_string()
            && t == "../renamed.txt"),
        "{rows:#?}"
    );
    // A file's size when its writer ended: the renamed file is there ("rel\n"); the one
    // written through the bind mount is not at that path any more (unmounted): no size.
    let bytes = |op: &str, path: &Path| {
        duckdb_json(&format!(
            "SELECT bytes FROM read_parquet('{}/files/*.parquet') WHERE path = '{}' AND operation = '{op}';",
            data.display(),
            path.display()
        ))[0]["bytes"]
            .clone()
    };
    assert_eq!(bytes("rename", &w.join("sub/rel.txt")), 4);
    assert_eq!(bytes("read", &w.join("input.txt")), 12);
    assert!(bytes("create", &root.join("view/bound.txt")).is_null());

    // The same on the spans a real collector received: `mv`'s span has its rename.
    let mv = t
        .processes()
        .into_iter()
        .find(|p| p.argv().first().map(String::as_str) == Some("mv"))
        .expect("mv traced");
    let spans = rotel.wait_for(|spans| {
        spans
            .iter()
            .any(|s| s.attr("process.pid") == Some(&mv.pid.to_string()))
    });
    let span = spans
        .iter()
        .find(|s| s.attr("process.pid") == Some(&mv.pid.to_string()))
        .unwrap();
    let at = span
        .events
        .iter()
        .zip(&span.event_attributes)
        .position(|(name, a)| {
            name == "pipetrace.file"
                && a.get("pipetrace.file.operation").map(String::as_str) == Some("rename")
        })
        .unwrap_or_else(|| panic!("no rename event on {span:#?}"));
    let event = &span.event_attributes[at];
    assert_eq!(
        event.get("file.path"),
        Some(&w.join("sub/rel.txt").display().to_string())
    );
    assert_eq!(
        event.get("pipetrace.file.target"),
        Some(&w.join("renamed.txt").display().to_string())
    );
    assert_eq!(span.attr("pipetrace.files.renamed"), Some("1"));
}

/// A C build of `n` sources under `dir` (two headers, one included by half of them) with a
/// Makefile that writes its objects and program into build/.
fn c_project(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("build")).unwrap();
    std::fs::write(dir.join("common.h"), "#define BASE 1\n").unwrap();
    std::fs::write(dir.join("half.h"), "#define HALF 2\n").unwrap();
    let mut objects = Vec::new();
    let mut main = String::from("#include \"common.h\"\n");
    let mut calls = String::new();
    for i in 0..n {
        let include = if i % 2 == 0 {
            "#include \"half.h\"\n"
        } else {
            "#define HALF 3\n"
        };
        std::fs::write(
            dir.join(format!("f{i}.c")),
            format!(
                "#include \"common.h\"\n{include}int f{i}(void) {{ return BASE + HALF + {i}; }}\n"
            ),
        )
        .unwrap();
        objects.push(format!("build/f{i}.o"));
        main.push_str(&format!("int f{i}(void);\n"));
        calls.push_str(&format!(" + f{i}()"));
    }
    main.push_str(&format!("int main(void) {{ return (0{calls}) & 1; }}\n"));
    std::fs::write(dir.join("main.c"), main).unwrap();
    objects.push("build/main.o".into());
    std::fs::write(
        dir.join("Makefile"),
        format!(
            "OBJ = {objs}\n\
             build/app: $(OBJ)\n\tcc -o $@ $(OBJ)\n\
             build/%.o: %.c common.h half.h\n\tcc -c -o $@ $<\n",
            objs = objects.join(" ")
        ),
    )
    .unwrap();
}

/// Regular files under `dir`, relative, with their sizes.
fn files_on_disk(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_file() {
            out.insert(entry.path().display().to_string(), meta.len());
        }
    }
    out
}

#[test]
fn a_c_builds_outputs_are_the_files_on_disk_and_an_edited_header_is_a_changed_input() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().canonicalize().unwrap().join("src");
    c_project(&src, 6);
    let data = dir.path().join("data");
    let build = |what: &str| {
        let t = trace_with(
            &[],
            &["--parquet", data.to_str().unwrap()],
            &["make", "-j2", "-C", src.to_str().unwrap()],
        );
        assert_eq!(t.status, 0, "{what}: {}", t.stderr);
    };
    build("first build");

    // `query outputs`: exactly the files in build/, each with its size, made by cc.
    let outputs = query_json(
        &data,
        &["outputs", "--under", src.join("build").to_str().unwrap()],
    );
    let got: BTreeMap<String, u64> = outputs
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_owned(),
                r["size_bytes"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("size of {r}")),
            )
        })
        .collect();
    assert_eq!(got, files_on_disk(&src.join("build")));
    assert!(
        outputs
            .iter()
            .all(|r| r["command"].as_str().unwrap().starts_with("cc")
                || r["command"].as_str().unwrap().contains("/ld")
                || r["command"].as_str().unwrap().contains("collect2")
                || r["command"].as_str().unwrap().starts_with("as ")),
        "{outputs:#?}"
    );
    // The compiler's scratch files are not outputs: it deleted them.
    assert!(outputs.iter().all(|r| {
        r["path"]
            .as_str()
            .unwrap()
            .starts_with(&src.display().to_string())
    }));

    // The same rows from the DuckDB CLI running the query's own SQL (`--print-sql`).
    let under = src.join("build");
    let sql = pipetrace_tests::query_stdout(
        &data,
        &["outputs", "--under", under.to_str().unwrap(), "--print-sql"],
    );
    pipetrace_tests::duckdb::assert_same_rows("outputs", &outputs, &duckdb_json(&sql));
    // `query files --writes --under`: the same files, and every header read by the compiler.
    let reads = query_json(&data, &["files", "--path", "half.h"]);
    assert!(
        reads.iter().any(|r| r["operation"] == "read"),
        "half.h read: {reads:#?}"
    );
    // The Markdown report lists the outputs.
    let report = pipetrace_tests::report_stdout(&data, "markdown");
    assert!(report.contains("### Outputs ("), "{report}");
    assert!(report.contains("build/app"), "{report}");

    // The header half of the sources include, edited: make rebuilds those, and `compare`
    // names the header as the input that changed.
    std::fs::write(src.join("half.h"), "#define HALF 2 /* edited: longer */\n").unwrap();
    build("second build");
    let mut cmd = command();
    cmd.args([
        "compare",
        "--baseline",
        "latest~1",
        "--format",
        "markdown",
        "--data",
    ])
    .arg(&data);
    let markdown = stdout_of(cmd, "compare");
    let half = src.join("half.h").display().to_string();
    let line = markdown
        .lines()
        .find(|l| l.contains(&format!("`{half}`")))
        .unwrap_or_else(|| panic!("half.h not in the files that differ:\n{markdown}"));
    assert!(
        line.contains("changed input (15 B → 36 B)") || line.contains("newly read"),
        "{line}"
    );
    // common.h did not change: not listed.
    assert!(
        !markdown.contains(&format!("`{}`", src.join("common.h").display())),
        "{markdown}"
    );
}

/// A git checkout with two tracked files and a .gitignore.
fn checkout(dir: &Path) {
    std::fs::create_dir_all(dir.join("build")).unwrap();
    std::fs::write(dir.join("main.c"), "int main(void) { return 0; }\n").unwrap();
    std::fs::write(dir.join("version.h"), "#define V 1\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "*.log\n").unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.email=t@t", "-c", "user.name=t", "-C"])
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "main.c", "version.h", ".gitignore"]);
    git(&["commit", "-qm", "init"]);
}

#[test]
fn a_step_that_changes_a_tracked_file_is_a_finding_and_build_outputs_are_not() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().canonicalize().unwrap().join("repo");
    checkout(&repo);
    let data = dir.path().join("data");
    let run = |body: &str, extra: &[&str]| {
        let step = script(
            &repo,
            "step.sh",
            &format!("cd {}\n{body}\n", repo.display()),
        );
        trace_with(
            &[],
            &[
                &[
                    "--parquet",
                    data.to_str().unwrap(),
                    "--source",
                    repo.to_str().unwrap(),
                ],
                extra,
            ]
            .concat(),
            &[step.to_str().unwrap()],
        )
    };
    // Writes to build/ (allowed), to an ignored file, and rewrites a tracked file with the same
    // content: nothing changed in the source.
    let clean = run(
        "cc -c -o build/main.o main.c\necho log > build.log\ncp version.h /tmp/v.h && cat /tmp/v.h > version.h",
        &["--fail-on-source-change"],
    );
    assert_eq!(clean.status, 0, "{}", clean.stderr);
    assert!(!clean.stderr.contains("source changed"), "{}", clean.stderr);

    // A step that rewrites version.h: the finding, and status 65 with --fail-on-source-change;
    // on the run span a real collector received too.
    let rotel = Rotel::start();
    let endpoint = rotel.grpc_endpoint();
    let step = script(
        &repo,
        "step.sh",
        &format!("cd {}\necho '#define V 2' > version.h\n", repo.display()),
    );
    let dirty = trace_with(
        &[
            ("PIPETRACE_OTLP__ENDPOINT", endpoint.as_str()),
            ("PIPETRACE_OTLP__BATCH_DELAY", "50ms"),
        ],
        &[
            "--parquet",
            data.to_str().unwrap(),
            "--source",
            repo.to_str().unwrap(),
            "--fail-on-source-change",
        ],
        &[step.to_str().unwrap()],
    );
    assert_eq!(dirty.status, 65, "{}", dirty.stderr);
    assert!(
        dirty
            .stderr
            .contains("changed 1 file git tracks in the checkout: version.h"),
        "{}",
        dirty.stderr
    );
    let spans = rotel.wait_for(|spans| {
        spans.iter().any(|s| {
            s.events.iter().zip(&s.event_attributes).any(|(name, a)| {
                name == "pipetrace.finding"
                    && a.get("pipetrace.finding.kind").map(String::as_str) == Some("source_changed")
            })
        })
    });
    assert!(
        spans.iter().any(|s| s.event_attributes.iter().any(|a| a
            .get("pipetrace.finding.summary")
            .is_some_and(|v| v.contains("version.h")))),
        "{spans:#?}"
    );
    let findings = duckdb_json(&format!(
        "SELECT kind, summary, evidence FROM read_parquet('{}/findings/*.parquet') WHERE kind = 'source_changed';",
        data.display()
    ));
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        findings[0]["evidence"]
            .as_str()
            .unwrap()
            .contains("\"path\":\"version.h\""),
        "{findings:#?}"
    );
    // Without --fail-on-source-change the command's own status stands; a deletion counts too.
    let deleted = run("rm main.c", &[]);
    assert_eq!(deleted.status, 0, "{}", deleted.stderr);
    assert!(
        deleted.stderr.contains("main.c (delete)"),
        "{}",
        deleted.stderr
    );
    // A checkout that is not one: one line naming --source, status 2.
    let out = command()
        .args(["run", "--source"])
        .arg(dir.path().join("nowhere"))
        .args(["--", "true"])
        .output()
        .unwrap();
    pipetrace_tests::assert_one_line_error(&out, "--source");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_step_opening_many_files_stays_within_the_bound_and_files_off_records_none() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let python = pipetrace_tests::real_python();
    let data = dir.path().join("data");
    // 20,000 failed opens of distinct names and 3 real files: 500 records at most.
    let t = trace_with(
        &[("PIPETRACE_CAPTURE__FILES_MAX", "500")],
        &["--parquet", data.to_str().unwrap(), "--files-probes"],
        &[
            &python,
            "-c",
            &format!(
                "import os\nfor i in range(20000):\n    try: os.open('{d}/missing-%d' % i, os.O_RDONLY)\n    except OSError: pass\n",
                d = dir.path().display()
            ),
        ],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);
    let rows = duckdb_json(&format!(
        "SELECT count(*) AS rows, (SELECT max(file_probes) FROM read_parquet('{d}/processes/*.parquet')) AS probes, \
         (SELECT max(files_unrecorded) FROM read_parquet('{d}/processes/*.parquet')) AS unrecorded \
         FROM read_parquet('{d}/files/*.parquet');",
        d = data.display()
    ));
    let (listed, probes, unrecorded) = (
        rows[0]["rows"].as_u64().unwrap(),
        rows[0]["probes"].as_u64().unwrap(),
        rows[0]["unrecorded"].as_u64().unwrap(),
    );
    assert!(listed <= 500, "{rows:?}");
    // Everything is accounted for: what was recorded and what was only counted.
    assert!(probes + unrecorded >= 20_000, "{rows:?}");
    assert!(unrecorded >= 19_000, "{rows:?}");

    // --files off: no file rows, null counts, no file events on the spans a collector got.
    let off = dir.path().join("off");
    let rotel = Rotel::start();
    let endpoint = rotel.grpc_endpoint();
    let t = trace_with(
        &[
            ("PIPETRACE_OTLP__ENDPOINT", endpoint.as_str()),
            ("PIPETRACE_OTLP__BATCH_DELAY", "50ms"),
        ],
        &["--parquet", off.to_str().unwrap(), "--files", "off"],
        &[
            "sh",
            "-c",
            &format!(
                "echo x > {}/x.txt; cat {}/x.txt",
                dir.path().display(),
                dir.path().display()
            ),
        ],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);
    assert!(!off.join("files").exists() || files_on_disk(&off.join("files")).is_empty());
    let probes = duckdb_json(&format!(
        "SELECT count(*) AS n, count(file_probes) AS measured FROM read_parquet('{}/processes/*.parquet');",
        off.display()
    ));
    assert_eq!(probes[0]["measured"], 0, "{probes:?}");
    assert!(probes[0]["n"].as_u64().unwrap() >= 2);
    let spans = rotel.wait_for(|spans| spans.len() >= 3);
    assert!(
        spans
            .iter()
            .all(|s| !s.events.iter().any(|e| e == "pipetrace.file")
                && s.attr("pipetrace.files.read").is_none()),
        "{spans:#?}"
    );
}
