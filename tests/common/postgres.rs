//! A real, throwaway PostgreSQL for the tests (never a mock): `initdb` into a temp directory,
//! `pg_ctl start` listening on 127.0.0.1 at a free port with its unix socket in that directory,
//! trust authentication, fsync off. Dropping it stops the server (immediate shutdown) and
//! removes the directory, also when the test failed.
//!
//! The binaries come from the Debian package `postgresql` (/usr/lib/postgresql/*/bin;
//! `scripts/setup-deps.sh` installs it). PostgreSQL refuses to run as root, so as root the
//! cluster runs as the package's `postgres` user (`runuser`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// The server options `pg_ctl start -o` gets.
    options: String,
}

/// The newest installed server's bin directory.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether a test may skip when PostgreSQL is missing (as tests/netns.rs: only when asked).
fn skip_allowed() -> bool {
    std::env::var("P2PVPN_ALLOW_SKIP").is_ok_and(|v| v == "1")
}

impl Postgres {
    /// Starts a cluster, or returns `None` (after printing SKIP) when PostgreSQL is not
    /// installed and P2PVPN_ALLOW_SKIP=1; without that a missing PostgreSQL fails the test.
    pub fn start(tag: &str) -> Option<Postgres> {
        let Some(bin) = find_bin() else {
            let why = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); \
                       run scripts/setup-deps.sh as root, or apt-get install postgresql";
            if skip_allowed() {
                println!("SKIP: {why}");
                return None;
            }
            panic!("{why} (or set P2PVPN_ALLOW_SKIP=1 to skip)");
        };
        let dir = std::env::temp_dir().join(format!("p2pvpn-pg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let options = format!(
            "-h 127.0.0.1 -p {port} -k {} -F -c max_connections=40",
            dir.display()
        );
        let pg = Postgres {
            dir,
            bin,
            port,
            options,
        };
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&pg.dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown postgres {} failed", pg.dir.display());
        }
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "--no-locale".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        );
        pg.pg_ctl_start();
        Some(pg)
    }

    fn pg_ctl_start(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                self.dir.join("log").as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                self.options.as_ref(),
                "start".as_ref(),
            ],
        );
    }

    /// Stops the server at once (as a crash would: `-m immediate`), then starts it again on
    /// the same port with the same data.
    pub fn restart(&self) {
        self.stop();
        self.pg_ctl_start();
    }

    /// Restarts the server with TLS on (`ssl=on`) using this certificate chain and key (PEM);
    /// connections may still choose plain text, as with any PostgreSQL.
    #[allow(dead_code)] // only tests/pgtls.rs
    pub fn enable_tls(&mut self, cert_pem: &str, key_pem: &str) {
        let (cert, key) = (self.dir.join("server.crt"), self.dir.join("server.key"));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cert)
                .arg(&key)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown postgres of the TLS files failed");
        }
        self.options.push_str(&format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert.display(),
            key.display()
        ));
        self.restart();
    }

    /// Starts it again after [`Postgres::stop`].
    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    /// Stops the server at once, as a crash would (`-m immediate`); the data stays.
    pub fn stop(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
    }

    /// Runs one of the server's programs (as `postgres` when we are root); panics with its
    /// output and the server log on failure.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let path = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        // Run from the cluster's directory: as `postgres`, the caller's may be unreadable.
        let out = cmd.args(args).current_dir(&self.dir).output().unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}\n{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// A connection URL for database `db` over loopback TCP.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, db: &str) -> String {
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .unwrap();
        self.url(db)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A port free on 127.0.0.1 a moment ago (the kernel's pick).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let path = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let _ = cmd
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .current_dir(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `p2pvpn server` on a PostgreSQL store, killed on drop (also when the test failed).
pub struct StoreServer(pub Child);

impl Drop for StoreServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a test hands the store URL to the server: `--store URL`, or the environment
/// (`P2PVPN_STORE`, where an operator puts a URL with a password).
#[derive(Clone, Copy)]
pub enum StoreVia {
    Flag,
    Env,
}

/// Starts `p2pvpn server --listen LISTEN --state-dir STATE EXTRA...` on the store `url` and
/// waits (at most 15 s) until it accepts TCP; its stderr goes to STATE.log, shown if it does not.
pub fn spawn_store_server(
    listen: &str,
    state: &Path,
    url: &str,
    via: StoreVia,
    extra: &[&str],
) -> StoreServer {
    std::fs::create_dir_all(state).unwrap();
    let log = state.with_extension("log");
    let mut cmd = Command::new(super::BIN);
    cmd.args(["server", "--listen", listen, "--state-dir"])
        .arg(state)
        .args(extra);
    match via {
        StoreVia::Flag => cmd.args(["--store", url]),
        StoreVia::Env => cmd.env("P2PVPN_STORE", url),
    };
    let child = cmd
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let server = StoreServer(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "server on {listen} did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}
