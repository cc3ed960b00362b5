//! `p2pvpn network tag` and `p2pvpn network acl` as an operator uses them (issue 14, access
//! rules): a real server on loopback, rules and tags written by the CLI and read back.

#![allow(clippy::disallowed_methods)] // tests drive real processes and clocks

use std::process::Output;

mod common;

use common::{stderr, Spawned};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "failed: {}\n{}", stderr(&o), stdout(&o));
    stdout(&o)
}

#[test]
fn rules_and_tags_are_set_listed_and_refused_with_a_fix() {
    let dir = common::temp_dir("acl", "cli");
    let state = dir.join("server");
    let _server = Spawned {
        child: common::start_server(&state).0,
        dir: dir.clone(),
    };
    let net = |args: &[&str]| common::network(&state, args);
    ok(net(&["create", "office", "--cidr", "10.77.0.0/24"]));
    let token = ok(net(&["invite", "office"])).trim().to_string();
    ok(common::join(&dir, &token, "alice"));

    let out = ok(net(&["acl", "office", "list"]));
    assert!(out.contains("office has no access rules: every member may reach every other"));
    let out = ok(net(&["tag", "office", "alice", "admin", "tag:ops"]));
    assert!(out.contains("alice is tagged admin, ops"), "{out}");
    let out = ok(net(&[
        "acl",
        "office",
        "add",
        "tcp 22 from tag:admin to tag:server",
    ]));
    assert!(out.contains("rule 1 of office: allow tcp 22 from tag:admin to tag:server"));
    assert!(
        out.contains("now allows only what its rules allow"),
        "{out}"
    );
    // Unquoted words read the same.
    ok(net(&[
        "acl", "office", "add", "icmp", "from", "*", "to", "alice",
    ]));
    let out = ok(net(&["acl", "office", "list"]));
    assert!(
        out.contains("1    tcp 22 from tag:admin to tag:server"),
        "{out}"
    );
    assert!(out.contains("2    icmp from * to alice"), "{out}");
    assert!(out.contains("tag  alice: admin, ops"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(net(&["acl", "office", "list", "--json"]))).unwrap();
    assert_eq!(json["enforced"], true);
    assert_eq!(json["rules"][0]["ports"][0], "22");
    assert_eq!(json["tags"][0]["member"], "alice");

    let out = net(&["acl", "office", "add", "smtp 25 from * to *"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("use tcp, udp, icmp or any"),
        "{}",
        stderr(&out)
    );
    let out = net(&["acl", "office", "remove", "7"]);
    assert!(
        stderr(&out).contains("no access rule number 7"),
        "{}",
        stderr(&out)
    );
    let out = net(&["tag", "office", "bob", "admin"]);
    assert!(
        stderr(&out).contains("no member \"bob\""),
        "{}",
        stderr(&out)
    );

    // A policy file replaces them all; an empty one allows all again.
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[[allow]]\nfrom = [\"*\"]\nto = [\"tag:web\"]\nproto = \"tcp\"\nports = [80, \"8000-8100\"]\n",
    )
    .unwrap();
    ok(net(&["acl", "office", "load", policy.to_str().unwrap()]));
    let out = ok(net(&["acl", "office", "list"]));
    assert!(
        out.contains("1    tcp 80,8000-8100 from * to tag:web"),
        "{out}"
    );
    assert!(!out.contains("icmp"), "{out}");
    std::fs::write(
        &policy,
        "[[allow]]\nfrom = [\"*\"]\nto = [\"*\"]\nport = [1]\n",
    )
    .unwrap();
    let out = net(&["acl", "office", "load", policy.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("is not a policy file"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&policy, "").unwrap();
    ok(net(&["acl", "office", "load", policy.to_str().unwrap()]));
    let out = ok(net(&["acl", "office", "list"]));
    assert!(out.contains("no access rules"), "{out}");
}
