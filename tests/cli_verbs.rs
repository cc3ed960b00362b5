//! The verbs and conventions of the CLI as a user meets them (issue 12, "Verbs and
//! conventions"): network names optional or positional, did-you-mean on typos, `leave`,
//! `rename-member`, `--json` on read commands, `version`, man pages and completions. A real
//! server on loopback; no TUN device is created (a running node is stood in for by
//! `common::fake_node`, which answers `status` and `ping` like one on the real control channel).
//! Bash completion is tested on Unix only (it drives bash).

#![allow(clippy::disallowed_methods)] // tests drive real processes and clocks

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use common::fake_node::FakeNode;
use common::{run, stderr, Spawned};
use p2pvpn::io::control_socket::Request;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The command failed and its error says each of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    assert!(!out.status.success(), "expected a refusal: {}", stdout(out));
    let err = stderr(out);
    for needle in needles {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        stderr(out),
        stdout(out)
    );
}

fn json(out: &Output) -> serde_json::Value {
    assert_ok(out);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// A server on loopback with network `office`, and node `alice` joined to it.
struct Lab {
    server: Option<Spawned>,
    dir: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let dir = common::temp_dir("verbs", tag);
        let (child, _) = common::start_server(&dir.join("server"));
        let lab = Lab {
            server: Some(Spawned {
                child,
                dir: dir.clone(),
            }),
            dir,
        };
        assert_ok(&lab.net(&["create", "office", "--cidr", "10.77.0.0/24"]));
        let token = lab.invite(&[]);
        assert_ok(&common::join(&lab.dir, &token, "alice"));
        lab
    }

    /// `p2pvpn network ARGS --state-dir SERVER_DIR`.
    fn net(&self, args: &[&str]) -> Output {
        common::network(&self.dir.join("server"), args)
    }

    fn invite(&self, extra: &[&str]) -> String {
        let mut args = vec!["invite", "office"];
        args.extend_from_slice(extra);
        let out = self.net(&args);
        assert_ok(&out);
        stdout(&out).trim().to_string()
    }

    fn etc(&self, node: &str) -> PathBuf {
        self.dir.join(node).join("etc")
    }

    fn state(&self, node: &str) -> PathBuf {
        self.dir.join(node).join("state")
    }

    /// `p2pvpn ARGS` as node `node` (its config and state directories).
    fn node(&self, node: &str, args: &[&str]) -> Output {
        let (etc, state) = (self.etc(node), self.state(node));
        run(
            args,
            &[("P2PVPN_CONFIG_DIR", &etc), ("P2PVPN_STATE_DIR", &state)],
        )
    }

    fn stop_server(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
            // Keep the directory: Spawned's drop would delete it.
            s.dir = PathBuf::from("/nonexistent-p2pvpn-test-dir");
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const STATUS: &str = r#"{"network":"office","name":"alice","virtual_ip":"10.77.0.1","cidr":"10.77.0.0/24","public_key":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","listen_port":51820,"interface":"p2p-office","server":{"address":"127.0.0.1:7400","connected":true},"peers":[],"drops":{}}"#;

/// Stands in for a running node: answers `status` with [`STATUS`] and `ping bob N` with a reply
/// over a direct path, on the network's real control channel (a Unix socket, or the named pipe
/// on Windows), until dropped (at most 30 s).
fn fake_node(state: &Path, network: &str) -> FakeNode {
    FakeNode::start(state, network, |request| match request {
        Request::Status => STATUS.to_string(),
        Request::Ping { peer, seq } if peer == "bob" => format!(
            r#"{{"name":"bob","virtual_ip":"10.77.0.2","seq":{seq},"rtt_us":410,"path":"direct (predicted, +1)"}}"#
        ),
        _ => "error: unknown request".to_string(),
    })
}

const TYPO: &str = "no network named 'offcie'; joined: office; did you mean 'office'?";

#[test]
fn a_typo_in_a_network_name_gets_a_did_you_mean_on_every_node_command() {
    let lab = Lab::new("typo-node");
    for args in [
        &["up", "offcie"][..],
        &["up", "--network", "offcie"],
        &["down", "offcie"],
        &["status", "--network", "offcie"],
        &["status", "offcie"],
        &["doctor", "--network", "offcie"],
        &["ping", "bob", "--network", "offcie"],
        &["leave", "offcie"],
        &["netcheck", "--network", "offcie"],
    ] {
        let out = lab.node("alice", args);
        assert_refused(&out, &[TYPO]);
    }
    // Both forms at once is a usage error, not a guess.
    let out = lab.node("alice", &["down", "office", "--network", "office"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn the_network_may_be_left_out_when_one_is_joined_and_must_be_named_when_several_are() {
    let lab = Lab::new("optional");
    // Resolved to office: the error is about office not running, not a missing --network.
    let out = lab.node("alice", &["down"]);
    assert_refused(&out, &["p2pvpn is not running for network \"office\""]);
    let out = lab.node("alice", &["down", "office"]);
    assert_refused(&out, &["p2pvpn is not running for network \"office\""]);
    let out = lab.node("alice", &["doctor", "--json"]);
    let report = json(&out);
    assert_eq!(report["network"], "office", "{report}");
    // A second joined network: now the name is needed, and the message says how to give it.
    std::fs::copy(
        lab.etc("alice").join("office.toml"),
        lab.etc("alice").join("home.toml"),
    )
    .unwrap();
    let out = lab.node("alice", &["down"]);
    assert_refused(
        &out,
        &[
            "several networks are joined (home, office)",
            "`p2pvpn down home`",
        ],
    );
}

// Unix only: on Windows the service runs several networks, and `up` with several asks which.
#[cfg(unix)]
#[test]
fn up_without_a_network_brings_up_every_joined_one_and_a_failing_one_fails_the_process() {
    let lab = Lab::new("up-all");
    let etc = lab.etc("alice");
    let office = std::fs::read_to_string(etc.join("office.toml")).unwrap();
    // --metrics is one address: with several networks it must be refused before anything runs.
    std::fs::copy(etc.join("office.toml"), etc.join("home.toml")).unwrap();
    let out = lab.node("alice", &["up", "--metrics", "127.0.0.1:9101"]);
    assert_refused(
        &out,
        &[
            "--metrics serves one network",
            "several joined (home, office)",
        ],
    );
    // Both configs name another network, so each node fails as it loads its config, before
    // any socket or TUN device exists (safe to run as root on the host).
    std::fs::write(
        etc.join("office.toml"),
        office.replace("network = \"office\"", "network = \"elsewhere\""),
    )
    .unwrap();
    let out = common::run_bounded(
        &["up"],
        &[
            ("P2PVPN_CONFIG_DIR", &etc),
            ("P2PVPN_STATE_DIR", &lab.state("alice")),
        ],
        std::time::Duration::from_secs(20),
    )
    .expect("`up` with two broken configs should end at once");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // Before: "several networks are joined (home, office); say which". Now each network was
    // started, and the failure names the network and its cause.
    assert!(!err.contains("say which"), "{err}");
    assert!(
        err.contains("bringing up 2 networks in one process: home, office"),
        "{err}"
    );
    assert!(
        err.contains("network home: ") && err.contains("home.toml is for network \"office\""),
        "{err}"
    );
    assert!(
        err.contains("office.toml is for network \"elsewhere\""),
        "{err}"
    );
}

#[test]
fn server_side_commands_refuse_an_unknown_network_with_a_did_you_mean() {
    let lab = Lab::new("typo-server");
    let msg = "no network named 'offcie'; networks on this server: office; did you mean 'office'?";
    for args in [
        &["members", "offcie"][..],
        &["invites", "offcie"],
        &["invite", "offcie"],
        &["remove-member", "offcie", "alice"],
        &["rename-member", "offcie", "alice", "bob"],
        &["revoke", "offcie", "abc"],
        &["delete", "offcie"],
    ] {
        let out = lab.net(args);
        assert_refused(&out, &[msg]);
        assert!(stdout(&out).is_empty(), "{args:?} printed {}", stdout(&out));
    }
}

#[test]
fn read_commands_print_json_in_one_documented_shape() {
    let lab = Lab::new("json");
    let list = json(&lab.net(&["list", "--json"]));
    assert_eq!(list["networks"][0]["name"], "office", "{list}");
    assert_eq!(list["networks"][0]["cidr"], "10.77.0.0/24", "{list}");
    assert_eq!(list["networks"][0]["members"], 1, "{list}");
    let members = json(&lab.net(&["members", "office", "--json"]));
    assert_eq!(members["network"], "office", "{members}");
    assert_eq!(members["members"][0]["name"], "alice", "{members}");
    assert_eq!(
        members["members"][0]["virtual_ip"], "10.77.0.1",
        "{members}"
    );
    assert!(members["members"][0]["public_key"].is_string(), "{members}");
    let invites = json(&lab.net(&["invites", "office", "--json"]));
    assert_eq!(invites["tokens"][0]["state"], "used up", "{invites}");
    assert_eq!(invites["tokens"][0]["max_uses"], 1, "{invites}");
    assert!(invites["tokens"][0]["expires_unix"].is_u64(), "{invites}");

    // status: {"networks": [...]} with and without a network named, old fields inside.
    let _node = fake_node(&lab.state("alice"), "office");
    for args in [
        &["status", "--json"][..],
        &["status", "--json", "--network", "office"],
        &["status", "office", "--json"],
    ] {
        let status = json(&lab.node("alice", args));
        let nets = status["networks"].as_array().expect("networks array");
        assert_eq!(nets.len(), 1, "{status}");
        assert_eq!(nets[0]["network"], "office", "{status}");
        assert_eq!(nets[0]["virtual_ip"], "10.77.0.1", "{status}");
        assert!(nets[0]["peers"].is_array(), "{status}");
    }
    let ping = json(&lab.node("alice", &["ping", "bob", "-c", "2", "-i", "0.01", "--json"]));
    assert_eq!(ping["network"], "office", "{ping}");
    assert_eq!(ping["sent"], 2, "{ping}");
    assert_eq!(ping["received"], 2, "{ping}");
    assert_eq!(ping["loss_percent"], 0.0, "{ping}");
    assert_eq!(ping["rtt_avg_ms"], 0.41, "{ping}");
    assert_eq!(ping["replies"][1]["seq"], 2, "{ping}");
    assert_eq!(
        ping["replies"][0]["path"], "direct (predicted, +1)",
        "{ping}"
    );
}

#[test]
fn leave_refuses_while_up_then_deregisters_and_deletes_key_and_config() {
    let lab = Lab::new("leave");
    let config = lab.etc("alice").join("office.toml");
    let key = lab.state("alice").join("office").join("private.key");
    assert!(config.exists() && key.exists());
    {
        let _node = fake_node(&lab.state("alice"), "office");
        let out = lab.node("alice", &["leave", "office"]);
        assert_refused(
            &out,
            &["network office is up; bring it down first with `sudo p2pvpn down office`"],
        );
        assert!(config.exists() && key.exists(), "deleted while up");
    }
    let out = lab.node("alice", &["leave", "office"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("left network office: deregistered alice from the server"),
        "{}",
        stdout(&out)
    );
    assert!(!config.exists(), "config left behind");
    assert!(!key.exists(), "key left behind");
    let members = json(&lab.net(&["members", "office", "--json"]));
    assert_eq!(members["members"], serde_json::json!([]), "{members}");
    // The name is free again: a new node can take it.
    let token = lab.invite(&[]);
    assert_ok(&common::join(&lab.dir, &token, "alice"));
    // Removed on the server already: leave still cleans up, and says so.
    assert_ok(&lab.net(&["remove-member", "office", "alice"]));
    let out = lab.node("alice", &["leave", "office"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("the server no longer listed alice"),
        "{}",
        stdout(&out)
    );
    assert!(!config.exists() && !key.exists());
}

#[test]
fn leave_without_the_server_still_cleans_up_and_says_what_is_left_to_do() {
    let mut lab = Lab::new("leave-offline");
    lab.stop_server();
    let out = lab.node("alice", &["leave", "office"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("not deregistered"), "{text}");
    assert!(
        text.contains("`p2pvpn network remove-member office alice`"),
        "{text}"
    );
    assert!(!lab.etc("alice").join("office.toml").exists());
    assert!(!lab.state("alice").join("office").exists());
}

#[test]
fn rename_member_checks_the_name_rule_and_the_member() {
    let lab = Lab::new("rename");
    let out = lab.net(&["rename-member", "office", "alice", "alice-laptop"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("renamed alice (10.77.0.1) in office to alice-laptop"),
        "{}",
        stdout(&out)
    );
    let members = json(&lab.net(&["members", "office", "--json"]));
    assert_eq!(members["members"][0]["name"], "alice-laptop", "{members}");
    let out = lab.net(&["rename-member", "office", "alice-laptop", "bad name"]);
    assert_refused(&out, &["node name \"bad name\" is not allowed"]);
    let out = lab.net(&["rename-member", "office", "alice-laptpo", "x"]);
    assert_refused(
        &out,
        &["no member named \"alice-laptpo\"; did you mean 'alice-laptop'?"],
    );
}

#[test]
fn invite_says_expires_in_1_day_and_refuses_0s() {
    let lab = Lab::new("expires");
    let out = lab.net(&["invite", "office"]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("expires in 1 day;"),
        "{}",
        stderr(&out)
    );
    let out = lab.net(&["invite", "office", "--expires", "0s"]);
    assert_refused(&out, &["--expires must be at least 1s"]);
}

#[test]
fn version_names_the_commit() {
    let out = run(&["version"], &[]);
    assert_ok(&out);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let expected = format!("p2pvpn {} (commit {commit})", env!("CARGO_PKG_VERSION"));
    assert_eq!(stdout(&out).trim(), expected);
    let out = run(&["--version"], &[]);
    assert_eq!(stdout(&out).trim(), expected);
}

#[test]
fn help_lists_man_and_completions_and_man_pages_have_the_extra_sections() {
    let out = run(&["--help"], &[]);
    assert_ok(&out);
    let help = stdout(&out);
    for cmd in ["  completions ", "  man ", "  version ", "  leave "] {
        assert!(help.contains(cmd), "{cmd:?} missing from --help:\n{help}");
    }
    let out = run(&["man"], &[]);
    assert_ok(&out);
    let page = stdout(&out);
    for section in [
        ".SH \"FILES\"",
        ".SH \"ENVIRONMENT\"",
        ".SH \"EXIT STATUS\"",
        ".SH \"EXAMPLES\"",
    ] {
        assert!(page.contains(section), "{section} missing");
    }
    assert!(page.contains("P2PVPN_CONFIG_DIR"), "{page}");
    let out = run(&["man", "network", "invite"], &[]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains(".TH p2pvpn-network-invite 1"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("\\-\\-expires"), "{}", stdout(&out));
    let out = run(&["man", "network", "invitee"], &[]);
    assert_refused(&out, &["no subcommand \"network invitee\"", "invite"]);
    let dir = common::temp_dir("verbs", "man");
    let out = run(&["man", "--out-dir", dir.to_str().unwrap()], &[]);
    assert_ok(&out);
    for page in ["p2pvpn.1", "p2pvpn-up.1", "p2pvpn-network-invite.1"] {
        assert!(dir.join(page).exists(), "{page} not written");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs bash completion for `words` (the last one being completed) with the generated script.
#[cfg(unix)]
fn bash_complete(lab: &Lab, words: &[&str]) -> String {
    let script = stdout(&run(&["completions", "bash"], &[]));
    let file = lab.dir.join("p2pvpn.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _p2pvpn_with_networks p2pvpn '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let bin_dir = Path::new(common::BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &program])
        .env("PATH", path)
        .env("P2PVPN_CONFIG_DIR", lab.etc("alice"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[cfg(unix)]
#[test]
fn bash_completes_joined_network_names() {
    let lab = Lab::new("complete");
    assert_eq!(bash_complete(&lab, &["p2pvpn", "up", ""]).trim(), "office");
    assert_eq!(
        bash_complete(&lab, &["p2pvpn", "status", "--network", "o"]).trim(),
        "office"
    );
    assert_eq!(bash_complete(&lab, &["p2pvpn", "leave", "x"]).trim(), "");
    // Everything else is still the generated completion.
    let subcommands = bash_complete(&lab, &["p2pvpn", "le"]);
    assert_eq!(subcommands.trim(), "leave", "{subcommands}");
    let names = run(
        &["network-names"],
        &[("P2PVPN_CONFIG_DIR", &lab.etc("alice"))],
    );
    assert_eq!(stdout(&names), "office\n");
}
