//! Network use per process, measured by the kernel programs, checked against independent
//! measurements: curl's own count of the bytes it downloaded from a traced HTTP server, the
//! size of the file that server sent, datagrams of a known size, and the ports a client was
//! told to connect to (root, real processes, loopback only).

use pipetrace_tests::{
    Proc, query_json, real_python, require_root, rotel::Rotel, script, trace_with,
};

/// A network counter of the process's exit record (the hooks are on: it must be there).
fn counter(p: &Proc, key: &str) -> u64 {
    let exit = p.exit.as_ref().expect("exit record");
    exit[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {exit}"))
}

fn within(measured: u64, expected: u64, share: f64, what: &str) {
    let (m, e) = (measured as f64, expected as f64);
    assert!(
        (m - e).abs() <= e * share,
        "{what}: {measured} vs {expected} (more than {} % apart)",
        share * 100.0
    );
}

/// The one traced process whose command line contains `needle`.
fn process_with(procs: &[Proc], needle: &str) -> Proc {
    let found: Vec<&Proc> = procs
        .iter()
        .filter(|p| p.argv().join(" ").contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "one process running {needle}: {found:#?}");
    found[0].clone()
}

#[test]
fn a_loopback_http_transfer_is_counted_on_both_sides() {
    require_root!();
    let python = real_python();
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let size: u64 = 24 << 20;
    std::fs::write(site.join("blob"), vec![7u8; size as usize]).unwrap();
    // The server picks a free port and says which; curl reports what it downloaded.
    let pipeline = script(
        dir.path(),
        "transfer.sh",
        &format!(
            "cd {site}\n\
             {python} -c 'import http.server, sys\n\
             s = http.server.HTTPServer((\"127.0.0.1\", 0), http.server.SimpleHTTPRequestHandler)\n\
             open(\"../port\", \"w\").write(str(s.server_address[1]))\n\
             s.serve_forever()' 2>/dev/null &\n\
             server=$!\n\
             while [ ! -s ../port ]; do sleep 0.05; done\n\
             curl -sS -o /dev/null -w '%{{size_download}}' http://127.0.0.1:$(cat ../port)/blob > ../downloaded\n\
             kill $server; wait $server\n\
             exit 0\n",
            site = site.display()
        ),
    );
    let data = dir.path().join("data");
    let rotel = Rotel::start();
    let t = trace_with(
        &[
            ("PIPETRACE_OTLP__ENDPOINT", rotel.grpc_endpoint().as_str()),
            ("PIPETRACE_OTLP__BATCH_DELAY", "50ms"),
        ],
        &["--parquet", data.to_str().unwrap()],
        &[pipeline.to_str().unwrap()],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);
    let port: u16 = std::fs::read_to_string(dir.path().join("port"))
        .unwrap()
        .parse()
        .unwrap();
    let downloaded: u64 = std::fs::read_to_string(dir.path().join("downloaded"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(downloaded, size, "curl downloaded the whole file");

    let procs = t.processes();
    let curl = process_with(&procs, "curl");
    let server = process_with(&procs, "serve_forever");
    // Each side within 5 % of the independent count (headers are the difference).
    within(
        counter(&curl, "network_received_bytes"),
        downloaded,
        0.05,
        "curl received",
    );
    within(
        counter(&server, "network_sent_bytes"),
        size,
        0.05,
        "server sent",
    );
    // What one side sent, the other received: the request, then the response.
    within(
        counter(&server, "network_received_bytes"),
        counter(&curl, "network_sent_bytes"),
        0.05,
        "request",
    );
    assert!(counter(&curl, "network_sent_bytes") < 4096);
    assert_eq!(counter(&curl, "network_connections"), 1);
    assert_eq!(counter(&server, "network_accepted"), 1);
    assert_eq!(counter(&server, "network_connections"), 0);

    // The client's connection, with the port it was given; the server's accepted one, from
    // the client's port to its own.
    assert_eq!(curl.connections.len(), 1, "{:#?}", curl.connections);
    let out = &curl.connections[0];
    assert_eq!(out["direction"], "outbound");
    assert_eq!(out["peer_address"], "127.0.0.1");
    assert_eq!(out["peer_port"], port);
    assert_eq!(out["network_transport"], "tcp");
    assert_eq!(out["network_type"], "ipv4");
    assert_eq!(out["outcome"], "established");
    assert_eq!(server.connections.len(), 1, "{:#?}", server.connections);
    let inbound = &server.connections[0];
    assert_eq!(inbound["direction"], "inbound");
    assert_eq!(inbound["local_port"], port);
    assert_eq!(inbound["peer_port"], out["local_port"]);

    // On the spans, as received by a real OTLP collector: the counts, and each connection as
    // an event with the semantic-convention attributes.
    let spans = rotel.wait_for(|spans| {
        spans
            .iter()
            .any(|s| s.attr("process.pid") == Some(&curl.pid.to_string()))
    });
    let span = spans
        .iter()
        .find(|s| s.attr("process.pid") == Some(&curl.pid.to_string()))
        .unwrap();
    assert_eq!(
        span.attr("pipetrace.process.network_received_bytes"),
        Some(
            counter(&curl, "network_received_bytes")
                .to_string()
                .as_str()
        )
    );
    let at = span
        .events
        .iter()
        .position(|e| e == "network.connection")
        .unwrap_or_else(|| panic!("{span:#?}"));
    let event = &span.event_attributes[at];
    assert_eq!(
        event.get("network.peer.address").map(String::as_str),
        Some("127.0.0.1")
    );
    assert_eq!(event.get("network.peer.port"), Some(&port.to_string()));
    assert_eq!(
        event.get("network.transport").map(String::as_str),
        Some("tcp")
    );
    assert_eq!(event.get("network.type").map(String::as_str), Some("ipv4"));

    // The same numbers from the Parquet data, with the peer named.
    let rows = query_json(&data, &["network"]);
    let row = rows
        .iter()
        .find(|r| r["command"].as_str().unwrap().starts_with("curl"))
        .unwrap_or_else(|| panic!("{rows:#?}"));
    assert_eq!(
        row["received_bytes"].as_u64(),
        Some(counter(&curl, "network_received_bytes"))
    );
    assert_eq!(row["peers"], format!("127.0.0.1:{port}"));
    let row = rows
        .iter()
        .find(|r| r["command"].as_str().unwrap().contains("serve_forever"))
        .unwrap();
    assert_eq!(row["accepted"].as_u64(), Some(1));
    assert_eq!(row["peers"], format!("from 127.0.0.1 to :{port}"));

    // The run's Markdown report names the heaviest network user.
    let out = pipetrace_tests::command()
        .args(["report", "--format", "markdown", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8(out.stdout).unwrap();
    let section = report
        .split("### Most network traffic")
        .nth(1)
        .unwrap_or_else(|| panic!("no network section in:\n{report}"));
    let first = section.lines().find(|l| l.starts_with("| sent")).unwrap();
    // One line per row, even for a command with newlines in it.
    assert!(first.contains("sent 24.0 MiB"), "{first}");
    assert!(first.contains(&format!("| {} |", server.pid)), "{first}");
}

/// A client that connects twice to each of three listening ports, once to a closed one, and
/// sends 40 datagrams of 1,000 bytes to itself.
fn three_ports_client(dir: &std::path::Path) -> std::path::PathBuf {
    let python = real_python();
    script(
        dir,
        "peers.sh",
        &format!(
            "{python} -c 'import socket\n\
             servers = [socket.create_server((\"127.0.0.1\", 0)) for _ in range(3)]\n\
             closed = socket.create_server((\"127.0.0.1\", 0))\n\
             closed_port = closed.getsockname()[1]\n\
             closed.close()\n\
             open(\"ports\", \"w\").write(\" \".join(str(s.getsockname()[1]) for s in servers))\n\
             import os\n\
             if os.fork() == 0:\n\
             \x20   os.execvp(\"sleep\", [\"sleep\", \"0\"])\n\
             os.wait()\n\
             kept = []\n\
             for round in range(2):\n\
             \x20   for s in servers:\n\
             \x20       kept.append(socket.create_connection(s.getsockname()))\n\
             try:\n\
             \x20   socket.create_connection((\"127.0.0.1\", closed_port))\n\
             except OSError:\n\
             \x20   pass\n\
             u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             u.bind((\"127.0.0.1\", 0))\n\
             for _ in range(40):\n\
             \x20   u.sendto(bytes(1000), u.getsockname())\n\
             \x20   u.recv(2000)\n'\n"
        ),
    )
}

#[test]
fn three_local_ports_are_three_peers_and_the_rest_is_counted() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let client = three_ports_client(dir.path());
    let run = |peers: &str| {
        let t = trace_with(
            &[("PIPETRACE_CAPTURE__NETWORK_PEERS", peers)],
            &[],
            &[
                "sh",
                "-c",
                &format!("cd {} && {}", dir.path().display(), client.display()),
            ],
        );
        assert_eq!(t.status, 0, "{}", t.stderr);
        t.processes()
    };
    let procs = run("64");
    let python = process_with(&procs, "create_server");
    let ports: Vec<u64> = std::fs::read_to_string(dir.path().join("ports"))
        .unwrap()
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    // Six connections to three ports, one refused: four peers, three of them established.
    assert_eq!(counter(&python, "network_connections"), 7);
    assert_eq!(counter(&python, "network_unlisted"), 0);
    let outbound: Vec<_> = python
        .connections
        .iter()
        .filter(|c| c["direction"] == "outbound")
        .collect();
    assert_eq!(outbound.len(), 4, "{outbound:#?}");
    let mut established: Vec<u64> = outbound
        .iter()
        .filter(|c| c["outcome"] == "established")
        .map(|c| c["peer_port"].as_u64().unwrap())
        .collect();
    established.sort();
    let mut expected = ports.clone();
    expected.sort();
    assert_eq!(established, expected);
    let failed: Vec<_> = outbound
        .iter()
        .filter(|c| c["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "the closed port: {failed:#?}");
    // UDP counts too: exactly the datagrams' bytes each way (the TCP connections sent nothing).
    assert_eq!(counter(&python, "network_sent_bytes"), 40_000);
    assert_eq!(counter(&python, "network_received_bytes"), 40_000);
    assert_eq!(counter(&python, "network_send_calls"), 40);
    // Its child (fork + exec of sleep) used no network: measured, so zero, not null.
    let sleep = process_with(&procs, "sleep 0");
    assert_eq!(counter(&sleep, "network_sent_bytes"), 0);
    assert_eq!(counter(&sleep, "network_connections"), 0);

    // At most two peers listed: the third and the closed port's connections are counted.
    let capped = process_with(&run("2"), "create_server");
    assert_eq!(counter(&capped, "network_connections"), 7);
    let listed = capped
        .connections
        .iter()
        .filter(|c| c["direction"] == "outbound")
        .count();
    assert_eq!(listed, 2, "{:#?}", capped.connections);
    // Of the 7 connections, 4 went to the two listed peers.
    assert_eq!(counter(&capped, "network_unlisted"), 3);
}

#[test]
fn network_hooks_turned_off_measure_nothing() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let client = three_ports_client(dir.path());
    let data = dir.path().join("data");
    let t = trace_with(
        &[
            ("PIPETRACE_CAPTURE__NETWORK_BYTES", "false"),
            ("PIPETRACE_CAPTURE__NETWORK_CONNECTIONS", "false"),
        ],
        &["--parquet", data.to_str().unwrap()],
        &[
            "sh",
            "-c",
            &format!("cd {} && {}", dir.path().display(), client.display()),
        ],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);
    let python = process_with(&t.processes(), "create_server");
    let exit = python.exit.as_ref().unwrap();
    // Not measured is null, never a made-up zero.
    for key in [
        "network_sent_bytes",
        "network_received_bytes",
        "network_connections",
        "network_accepted",
    ] {
        assert!(exit[key].is_null(), "{key} in {exit}");
    }
    assert!(python.connections.is_empty());
    // The other measures go on.
    assert!(exit["write_chars"].as_u64().unwrap() > 0);
    // `query network` has nothing to list, and says so with its columns.
    let out = pipetrace_tests::command()
        .args(["query", "network", "--format", "csv", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "command,processes,sent_bytes,received_bytes,connections,accepted,unlisted_connections,peers\n"
    );
}

/// Threads of one process sending and receiving at once, on both CPUs: the per-CPU counts of
/// every thread reach the process's total, to the byte.
#[test]
fn threads_on_every_cpu_add_up_to_the_byte() {
    require_root!();
    let python = real_python();
    let dir = tempfile::tempdir().unwrap();
    let program = script(
        dir.path(),
        "threads.sh",
        &format!(
            "{python} -c 'import socket, threading\n\
             l = socket.create_server((\"127.0.0.1\", 0), backlog=8)\n\
             def receive():\n\
             \x20   a = l.accept()[0]\n\
             \x20   while a.recv(65536): pass\n\
             def send(n):\n\
             \x20   c = socket.create_connection(l.getsockname())\n\
             \x20   for _ in range(n): c.sendall(bytes(4096))\n\
             \x20   c.close()\n\
             ts = [threading.Thread(target=receive) for _ in range(4)]\n\
             ts += [threading.Thread(target=send, args=(1024 * (i + 1),)) for i in range(4)]\n\
             [t.start() for t in ts]\n\
             [t.join() for t in ts]'\n"
        ),
    );
    let t = trace_with(&[], &[], &[program.to_str().unwrap()]);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let p = process_with(&t.processes(), "threading");
    // 4 KiB × (1 + 2 + 3 + 4) × 1024, sent by four threads and received by four others.
    let total = 4096 * 10 * 1024;
    assert_eq!(counter(&p, "network_sent_bytes"), total);
    assert_eq!(counter(&p, "network_received_bytes"), total);
    assert_eq!(counter(&p, "network_connections"), 4);
    assert_eq!(counter(&p, "network_accepted"), 4);
}
