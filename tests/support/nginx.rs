//! Test harness: a real nginx serving a directory over HTTP and HTTPS.
//!
//! Used by integration tests through `mod support;` (see `tests/support/mod.rs`).
//! std + libc only.
//!
//! ```ignore
//! let dir = support::nginx::tempdir();
//! std::fs::write(dir.join("data.bin"), support::nginx::test_data(1 << 20, 7)).unwrap();
//! let ngx = support::nginx::Nginx::start(&dir);
//! let url = ngx.url("data.bin");            // http://127.0.0.1:PORT/data.bin
//! let tls = ngx.tls_url("data.bin");        // https://127.0.0.1:TLSPORT/data.bin
//! let ca = ngx.ca_cert();                   // CA PEM for GTIO_Config::ca_bundle
//! ```
//!
//! Locations (the same on the HTTP and the HTTPS server):
//! - `/`            the root, with nginx's default range support (206, ETag, Last-Modified)
//! - `/auth/`       the same root, only with `Authorization: Bearer s3cret-token`; else 401
//! - `/echo-auth/`  200 with the received `Authorization` header value as the body
//! - `/noranges/`   the same root, ranges ignored (`max_ranges 0`: 200 + whole body)
//! - `/redir/X`     302 to `http://127.0.0.1:PORT/X` (same host)
//! - `/redir-other/X` 302 to `http://localhost:PORT/X` (other host name, same server)
//!
//! On the HTTPS server the redirects point to `https://…:TLSPORT/`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The bearer token that `/auth/` accepts.
pub const AUTH_TOKEN: &str = "s3cret-token";

/// A unique directory under `std::env::temp_dir()`, removed (recursively) on drop.
/// Derefs to `Path`, so `dir.join("x")` and `Nginx::start(&dir)` work.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Create a fresh, unique temporary directory (removed when the guard drops).
pub fn tempdir() -> TempDir {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    for _ in 0..1000 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = base.join(format!(
            "gtio-test-{}-{}-{:08x}",
            std::process::id(),
            n,
            nanos
        ));
        match std::fs::create_dir(&path) {
            Ok(()) => return TempDir { path },
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create temp dir {}: {e}", path.display()),
        }
    }
    panic!("cannot create a unique temp dir under {}", base.display());
}

/// Deterministic pseudo-random bytes (xorshift64*), the same for the same (len, seed).
pub fn test_data(len: usize, seed: u64) -> Vec<u8> {
    // splitmix the seed so that seed 0 and nearby seeds give unrelated streams
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    if x == 0 {
        x = 0x2545_F491_4F6C_DD1D;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A running nginx; killed and reaped on drop.
pub struct Nginx {
    pub port: u16,
    pub tls_port: u16,
    pub root: PathBuf,
    dir: TempDir,
    child: Child,
}

impl Nginx {
    /// Start nginx (binary from `$GTIO_NGINX` or `/usr/sbin/nginx`) on free 127.0.0.1
    /// ports serving `root`. Returns once both ports accept connections.
    pub fn start(root: &Path) -> Nginx {
        let root = root
            .canonicalize()
            .unwrap_or_else(|e| panic!("nginx root {}: {e}", root.display()));
        let bin = std::env::var_os("GTIO_NGINX")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
        if !bin.exists() {
            panic!(
                "nginx not found at {} (run scripts/install-deps.sh, or set GTIO_NGINX)",
                bin.display()
            );
        }
        let dir = tempdir();
        make_certs(&dir);
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let mut tls_port = free_port();
            while tls_port == port {
                tls_port = free_port();
            }
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config(&dir, &root, port, tls_port)).unwrap();
            let log = dir.join("error.log");
            let _ = std::fs::remove_file(&log);
            let mut cmd = Command::new(&bin);
            cmd.arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(&log)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = spawn_with_pdeathsig(cmd)
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            match wait_ready(&mut child, &[port, tls_port]) {
                Ok(()) => {
                    return Nginx {
                        port,
                        tls_port,
                        root,
                        dir,
                        child,
                    };
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    if last_log.contains("Address already in use") {
                        continue; // lost the race for the port: try other ports
                    }
                    panic!("nginx did not start ({why}); error log:\n{last_log}");
                }
            }
        }
        panic!("nginx did not start after 3 attempts (ports in use); error log:\n{last_log}");
    }

    /// `http://127.0.0.1:PORT/path` (a leading `/` in `path` is optional).
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// `https://127.0.0.1:TLSPORT/path`; trust `ca_cert()` to verify it.
    pub fn tls_url(&self, path: &str) -> String {
        format!(
            "https://127.0.0.1:{}/{}",
            self.tls_port,
            path.trim_start_matches('/')
        )
    }

    /// PEM of the test CA that signed the server's certificate (for `ca_bundle`).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// nginx's error log so far (for diagnostics).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn wait_ready(child: &mut Child, ports: &[u16]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pending: Vec<u16> = ports.to_vec();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("nginx exited: {status}"));
        }
        // Listening is not enough: another test's server may hold a port we
        // lost the race for while our nginx keeps retrying bind() for
        // seconds, and requests would then reach that server (a 404 from a
        // stranger). The port is ours when our process holds its socket.
        pending.retain(|&p| !listens_on(child.id(), p));
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("ports {pending:?} not accepting after 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`
/// (its inode in /proc/net/tcp among the process's open files).
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| f[9].to_string())
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|t| {
            let t = t.to_string_lossy();
            inodes.iter().any(|i| t == format!("socket:[{i}]"))
        })
    })
}

/// Spawn from one long-lived thread with PR_SET_PDEATHSIG = SIGKILL, so nginx dies
/// with the test process even if a guard is leaked (e.g. kept in a static). The
/// death signal follows the *thread* that forked, hence the dedicated thread.
fn spawn_with_pdeathsig(cmd: Command) -> std::io::Result<Child> {
    type Req = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Req>>> = OnceLock::new();
    let tx = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Req>();
            std::thread::Builder::new()
                .name("nginx-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(spawn_now(&mut cmd));
                    }
                    // Keep this thread (the children's "parent") alive until exit.
                    loop {
                        std::thread::park();
                    }
                })
                .expect("spawn nginx-spawner thread");
            Mutex::new(tx)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (rtx, rrx) = mpsc::channel();
    tx.send((cmd, rtx)).expect("nginx-spawner thread gone");
    rrx.recv().expect("nginx-spawner thread gone")
}

fn spawn_now(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            // async-signal-safe calls only
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

fn run_openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (install it): {e}"));
    if !out.status.success() {
        panic!(
            "openssl {} failed: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A tiny CA (ca.pem, ca.key) and a leaf for 127.0.0.1/localhost signed by it
/// (leaf.pem, leaf.key). webpki rejects a CA certificate used as an end entity,
/// hence two certificates.
fn make_certs(dir: &Path) {
    const CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = gtio test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";
    std::fs::write(dir.join("openssl.cnf"), CNF).unwrap();
    let ec = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
    ];
    let mut a = ec.to_vec();
    a.push("ca.key");
    run_openssl(dir, &a);
    let mut a = ec.to_vec();
    a.push("leaf.key");
    run_openssl(dir, &a);
    run_openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-config",
            "openssl.cnf",
            "-days",
            "3",
            "-out",
            "ca.pem",
        ],
    );
    run_openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "leaf.key",
            "-config",
            "openssl.cnf",
            "-subj",
            "/CN=127.0.0.1",
            "-out",
            "leaf.csr",
        ],
    );
    let serial = format!(
        "{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    );
    run_openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "3",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            "leaf",
            "-out",
            "leaf.pem",
        ],
    );
}

fn config(dir: &Path, root: &Path, port: u16, tls_port: u16) -> String {
    let d = dir.display();
    let r = root.display();
    let locations = |scheme: &str, p: u16| {
        format!(
            r#"
        root "{r}";
        location / {{
        }}
        location /auth/ {{
            alias "{r}/";
            if ($http_authorization != "Bearer {AUTH_TOKEN}") {{
                return 401;
            }}
        }}
        location /echo-auth/ {{
            default_type text/plain;
            return 200 "$http_authorization";
        }}
        location /noranges/ {{
            alias "{r}/";
            max_ranges 0;
        }}
        location ~ ^/redir/(.*)$ {{
            return 302 {scheme}://127.0.0.1:{p}/$1$is_args$args;
        }}
        location ~ ^/redir-other/(.*)$ {{
            return 302 {scheme}://localhost:{p}/$1$is_args$args;
        }}
"#
        )
    };
    let plain = locations("http", port);
    let tls = locations("https", tls_port);
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid "{d}/nginx.pid";
error_log "{d}/error.log" warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path "{d}/body";
    proxy_temp_path "{d}/proxy";
    fastcgi_temp_path "{d}/fastcgi";
    uwsgi_temp_path "{d}/uwsgi";
    scgi_temp_path "{d}/scgi";
    sendfile on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
{plain}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        server_name _;
        ssl_certificate "{d}/leaf.pem";
        ssl_certificate_key "{d}/leaf.key";
{tls}
    }}
}}
"#
    )
}
