//! Loading: layers, flags, messages.

use std::{io::Write, time::Duration};

use super::{load::check_writers, *};

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_are_valid() {
    let c = Config::load(None, Overrides::default()).unwrap();
    assert_eq!(c.capture.argv_max_bytes, 4096);
    assert_eq!(c.run.grace_period, Duration::from_secs(5));
}

#[test]
fn file_then_flags_override() {
    let f = file("[capture]\nargv_max_bytes = 1000\n[run]\ngrace_period = \"2s\"\n");
    let c = Config::load(Some(f.path()), Overrides::default()).unwrap();
    assert_eq!(c.capture.argv_max_bytes, 1000);
    assert_eq!(c.run.grace_period, Duration::from_secs(2));
    let o = Overrides::from_flags([
        ("--argv-max", vec!["2000".to_owned()]),
        ("--grace", vec!["250ms".to_owned()]),
    ]);
    let c = Config::load(Some(f.path()), o).unwrap();
    assert_eq!(c.capture.argv_max_bytes, 2000);
    assert_eq!(c.run.grace_period, Duration::from_millis(250));
}

#[test]
fn bad_inputs_name_the_key() {
    let cases = [
        ("[capture]\nargv_max = 1\n", "argv_max"),
        (
            "[capture]\nargv_max_bytes = \"big\"\n",
            "capture.argv_max_bytes",
        ),
        ("[capture]\nargv_max_bytes = 0\n", "capture.argv_max_bytes"),
        (
            "[capture]\nring_buffer_bytes = 5000\n",
            "capture.ring_buffer_bytes",
        ),
        (
            "[scope]\nhide = [\"a-very-long-executable-name\"]\n",
            "scope.hide",
        ),
        ("[scope]\nmode = \"cgroup\"\n", "scope.cgroup"),
        ("[scope]\nmode = \"everything\"\n", "scope.mode"),
        ("[run]\ngrace_period = \"soon\"\n", "run.grace_period"),
        ("[nonsense]\n", "nonsense"),
        ("[otlp]\nendpoint = \"localhost:4317\"\n", "otlp.endpoint"),
        ("[otlp]\nprotocol = \"http/json\"\n", "otlp.protocol"),
        ("[otlp]\ntimeout = \"0s\"\n", "otlp.timeout"),
        ("[otlp]\nmax_queue_spans = 0\n", "otlp.max_queue_spans"),
        ("[otlp.headers]\n\"bad header\" = \"x\"\n", "otlp.headers"),
        (
            "[otlp.tls]\nca_file = \"/nonexistent/ca.pem\"\n",
            "otlp.tls.ca_file",
        ),
        ("[otlp.tls]\nbogus = 1\n", "bogus"),
        (
            "[tracker]\nretain_ended = \"forever\"\n",
            "tracker.retain_ended",
        ),
        ("[output]\nflush_bytes = 1000\n", "output.flush_bytes"),
        (
            "[output.object_store]\nurl = \"https://bucket/x\"\n",
            "output.object_store.url",
        ),
        (
            "[output.object_store]\nurl = \"s3://B_ad/x\"\n",
            "output.object_store.url",
        ),
        (
            "[output.object_store]\nurl = \"s3://bucket/../x\"\n",
            "output.object_store.url",
        ),
        (
            "[output.object_store]\nurl = \"s3://bucket\"\nendpoint = \"127.0.0.1:8333\"\n",
            "output.object_store.endpoint",
        ),
        (
            "[output.object_store]\nurl = \"s3://bucket\"\nmultipart_bytes = 1000\n",
            "output.object_store.multipart_bytes",
        ),
        (
            "[output.object_store]\nurl = \"s3://bucket\"\nroll_interval = \"0s\"\n",
            "output.object_store.roll_interval",
        ),
        (
            "[output.object_store]\nurl = \"s3://bucket\"\nregoin = \"x\"\n",
            "regoin",
        ),
        ("this is = = not toml", ""),
    ];
    for (text, key) in cases {
        let f = file(text);
        let err = Config::load(Some(f.path()), Overrides::default())
            .expect_err(text)
            .to_string();
        assert!(err.contains(key), "{text:?} gave {err:?}");
        assert!(!err.contains('\n'), "multi-line error {err:?}");
    }
    let missing = Config::load(
        Some(std::path::Path::new("/nonexistent.toml")),
        Overrides::default(),
    );
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .contains("/nonexistent.toml")
    );
}

/// config/pipetrace.toml documents every key with its default: it must load and equal them.
#[test]
fn example_config_shows_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/pipetrace.toml");
    let loaded = Config::load_with_env(Some(&path), Overrides::default(), |_| None).unwrap();
    assert_eq!(loaded, Config::default());
    // Every key (optional ones commented out) is documented there.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut all = Config::default();
    all.scope.cgroup = Some("/x".into());
    all.output.jsonl = Some("x".into());
    all.otlp.tls.ca_file = Some("x".into());
    all.otlp.tls.cert_file = Some("x".into());
    all.otlp.tls.key_file = Some("x".into());
    for line in all.to_toml().lines() {
        if let Some(section) = line.strip_prefix('[') {
            assert!(
                text.contains(&format!("[{section}")),
                "section [{section} undocumented"
            );
        } else if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                text.contains(&format!("{key} = ")),
                "key {key} undocumented"
            );
        }
    }
}

#[test]
fn printed_config_loads_back() {
    let c = Config::load(
        None,
        Overrides::from_flags([("--hide", vec!["sh".to_owned()])]),
    )
    .unwrap();
    let f = file(&c.to_toml());
    let again = Config::load(Some(f.path()), Overrides::default()).unwrap();
    assert_eq!(c, again);
}

#[test]
fn as_root_a_config_others_can_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "").unwrap();
    let chmod =
        |mode: u32| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    chmod(0o644);
    // Not root: nothing to protect.
    assert!(check_writers(&file, 1000, None).is_ok());
    // The rest changes owners: root only.
    if pipetrace_tests::privileged() {
        assert!(check_writers(&file, 0, None).is_ok());
        chmod(0o664);
        let e = check_writers(&file, 0, None).unwrap_err().to_string();
        assert!(
            e.contains("writable by its group") && e.contains("0664"),
            "{e}"
        );
        chmod(0o666);
        let e = check_writers(&file, 0, None).unwrap_err().to_string();
        assert!(
            e.contains("writable by everyone") && !e.contains('\n'),
            "{e}"
        );
        chmod(0o644);
        std::os::unix::fs::chown(&file, Some(1234), None).unwrap();
        let e = check_writers(&file, 0, None).unwrap_err().to_string();
        assert!(e.contains("owned by uid 1234"), "{e}");
        // The user who ran sudo may own it.
        assert!(check_writers(&file, 0, Some(1234)).is_ok());
        std::os::unix::fs::chown(&file, Some(0), None).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_writers(&file, 0, None).unwrap_err().to_string();
        assert!(e.contains("without the sticky bit"), "{e}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_writers(&file, 0, None).is_ok());
    }
}

#[test]
fn urls_per_signal() {
    let mut c = OtlpSection {
        endpoint: "http://collector:4318/".into(),
        protocol: OtlpProtocol::HttpProtobuf,
        ..Default::default()
    };
    assert_eq!(
        c.signal_url(Signal::Traces),
        "http://collector:4318/v1/traces"
    );
    assert_eq!(
        c.signal_url(Signal::Metrics),
        "http://collector:4318/v1/metrics"
    );
    c.endpoint = "http://collector:4318/otlp/v1/traces".into();
    assert_eq!(
        c.signal_url(Signal::Metrics),
        "http://collector:4318/otlp/v1/metrics"
    );
    c.protocol = OtlpProtocol::Grpc;
    c.endpoint = "http://collector:4317".into();
    assert_eq!(c.signal_url(Signal::Metrics), "http://collector:4317");
}

#[test]
fn a_flag_sets_its_key_repeats_add_up_and_a_bad_value_names_the_flag() {
    let c = Config::load(
        None,
        Overrides::from_flags([
            ("--hide", vec!["sh".to_owned()]),
            ("--parquet", vec!["/tmp/a".to_owned()]),
            ("--hide", vec!["make".to_owned(), "env".to_owned()]),
            ("--parquet", vec!["/tmp/b".to_owned()]),
            ("--fail-on-loss", vec![]),
        ]),
    )
    .unwrap();
    assert_eq!(c.scope.hide, ["sh", "make", "env"]);
    assert_eq!(c.output.parquet_dir, std::path::Path::new("/tmp/b"));
    assert!(c.output.parquet && c.run.fail_on_loss);
    let f = file("[output]\nparquet = false\n");
    let c = Config::load(
        Some(f.path()),
        Overrides::from_flags([("--parquet", vec!["/tmp/c".to_owned()])]),
    )
    .unwrap();
    assert!(c.output.parquet, "--parquet DIR turns Parquet on");
    for (flag, value, key) in [
        ("--grace", "soon", "run.grace_period"),
        ("--argv-max", "0", "capture.argv_max_bytes"),
        ("--otlp-protocol", "carrier-pigeon", "otlp.protocol"),
    ] {
        let err = Config::load(
            None,
            Overrides::from_flags([(flag, vec![value.to_owned()])]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(&format!("flag {flag}: key `{key}`")),
            "{err}"
        );
    }
}

#[test]
fn every_flag_names_a_key_that_exists() {
    let mut all = Config::default();
    all.output.jsonl = Some("x".into());
    let keys = all.to_toml();
    for flag in FLAGS {
        let (section, key) = flag.key.split_once('.').unwrap();
        let section_text = keys
            .split(&format!("[{section}]"))
            .nth(1)
            .unwrap_or_else(|| panic!("{}: no section [{section}]", flag.flag));
        assert!(
            section_text.contains(&format!("\n{key} = ")),
            "{}: no key {}",
            flag.flag,
            flag.key
        );
    }
}
