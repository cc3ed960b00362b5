//! TLS to PostgreSQL (`store_pg::tls`): with `sslmode=require` in the store URL, the `network`
//! commands and a running server (its store client and its LISTEN connection) talk to a real
//! PostgreSQL over TLS, and PostgreSQL says so (`pg_stat_ssl`); the database's certificate is
//! verified against `PGSSLROOTCERT`, so a certificate from another CA is refused with an error
//! that names the variable; without `sslmode=require` nothing changes.

#![cfg(unix)] // the test PostgreSQL comes from the Debian package
#![allow(clippy::disallowed_methods)] // tests/common reads the clock to wait for processes

mod common;

use common::postgres::{Postgres, StoreServer};
use common::{free_port, run, stderr, temp_dir};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::path::Path;
use std::time::{Duration, Instant};

/// A CA and a certificate for 127.0.0.1 it signed: (CA PEM, server chain PEM, server key PEM).
fn pki() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// TLS-or-not of every connection to database `db` but the asking one.
fn ssl_of_connections(admin_url: &str, db: &str) -> Vec<bool> {
    let mut c = postgres::Client::connect(admin_url, postgres::NoTls).unwrap();
    c.query(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
        &[&db],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn the_store_link_is_tls_when_the_url_asks_and_the_certificate_is_checked() {
    let Some(mut pg) = Postgres::start("tls") else {
        return;
    };
    let (ca, chain, key) = pki();
    pg.enable_tls(&chain, &key);
    let url = pg.create_database("tls");
    let tls_url = format!("{url}?sslmode=require");
    let dir = temp_dir("pgtls", "a");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let state = dir.join("server");
    let env_ok: Vec<(&str, &Path)> = vec![("PGSSLROOTCERT", ca_file.as_path())];
    // `network create office` on the TLS store, with the given environment.
    let create = |env: &[(&str, &Path)]| {
        run(
            &[
                "network",
                "create",
                "office",
                "--cidr",
                "10.9.0.0/24",
                "--store",
                &tls_url,
                "--state-dir",
                state.to_str().unwrap(),
            ],
            env,
        )
    };

    // A CA that did not sign the database's certificate: refused, and the error says what to set.
    let (other_ca, _, _) = pki();
    let other_file = dir.join("other-ca.pem");
    std::fs::write(&other_file, &other_ca).unwrap();
    let out = create(&[("PGSSLROOTCERT", other_file.as_path())]);
    let err = stderr(&out);
    assert!(!out.status.success(), "a wrong CA was accepted");
    assert!(
        err.contains("certificate") && err.contains("PGSSLROOTCERT"),
        "{err}"
    );

    // The server on that store with the right CA: both of its connections are TLS.
    let listen = format!("127.0.0.1:{}", free_port());
    let server = {
        let mut cmd = std::process::Command::new(common::BIN);
        cmd.args(["server", "--listen", &listen, "--state-dir"])
            .arg(&state)
            .env("P2PVPN_STORE", &tls_url)
            .env("PGSSLROOTCERT", &ca_file)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap());
        StoreServer(cmd.spawn().unwrap())
    };
    let admin = pg.url("postgres");
    let deadline = Instant::now() + Duration::from_secs(15);
    let conns = loop {
        let conns = ssl_of_connections(&admin, "tls");
        if conns.len() >= 2 || Instant::now() > deadline {
            break conns;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        conns.len() >= 2 && conns.iter().all(|&tls| tls),
        "the server's store and LISTEN connections, TLS each: {conns:?}; log: {}",
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    );

    // The `network` commands with the right CA work, over TLS.
    let out = create(&env_ok);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(server);

    // Without sslmode=require the same database is used as before, in plain text.
    let out = run(
        &[
            "network",
            "list",
            "--store",
            &url,
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("office"));
    let _ = std::fs::remove_dir_all(&dir);
}
