//! A private PostgreSQL cluster under Confab's data directory, for zero-configuration runs and
//! for tests: `initdb` once, then `postgres` as a child process listening only on a Unix socket
//! inside the data directory (port 5432 usually belongs to a system cluster).
//!
//! `initdb` and `postgres` refuse to run as root, so as root the cluster belongs to the
//! unprivileged `postgres` user (Debian's), and every parent directory must be searchable by it.
//! The child gets a parent-death signal so it never outlives Confab, and a postmaster left
//! behind by a killed run is cleared before starting.

use anyhow::{anyhow, bail, Context};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Confab's data directory; the cluster lives in `<data_dir>/pg`.
    pub data_dir: PathBuf,
    /// Skip fsync (tests only: a crash may lose data).
    pub ephemeral: bool,
    /// Database to create and connect to.
    pub database: String,
}

/// A running private cluster. Stopping it (or dropping it) shuts PostgreSQL down.
pub struct EmbeddedPostgres {
    socket_dir: PathBuf,
    database: String,
    child: Arc<Mutex<Option<Child>>>,
}

const SUPERUSER: &str = "confab";

impl EmbeddedPostgres {
    /// Initialises (first time) and starts the cluster, and creates the database.
    pub async fn start(opts: EmbeddedOptions) -> anyhow::Result<Self> {
        let opts2 = opts.clone();
        let (socket_dir, child) = tokio::task::spawn_blocking(move || start_blocking(&opts2))
            .await
            .context("starting PostgreSQL")??;
        let pg = Self {
            socket_dir,
            database: opts.database.clone(),
            child: Arc::new(Mutex::new(Some(child))),
        };
        pg.wait_ready().await?;
        pg.create_database(&opts.database).await?;
        Ok(pg)
    }

    /// The URL of the default database.
    pub fn url(&self) -> String {
        self.url_for(&self.database)
    }

    /// The URL of another database on this cluster.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost/{database}?host={}",
            self.socket_dir.display()
        )
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match crate::postgres::connect(&self.url_for("postgres"), 1).await {
                Ok(pool) => {
                    pool.close().await;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context("PostgreSQL did not become ready within 60 s"))
                }
                Err(_) => {
                    if let Some(child) = self.child.lock().unwrap().as_mut() {
                        if let Ok(Some(status)) = child.try_wait() {
                            bail!("PostgreSQL exited during start-up ({status}); see its log in the data directory");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
            }
        }
    }

    /// Creates `name` if it does not exist.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<()> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("invalid database name {name:?}");
        }
        let pool = crate::postgres::connect(&self.url_for("postgres"), 1).await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(name)
                .fetch_optional(&pool)
                .await?;
        if exists.is_none() {
            // The name was checked above: ASCII letters, digits and `_` only.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&pool)
                .await?;
        }
        pool.close().await;
        Ok(())
    }

    /// The postmaster's process id, while it runs (tests freeze and kill it to stage outages).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// Fast shutdown: ends sessions, checkpoints, exits.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where PostgreSQL's programs are: `$CONFAB_PG_BIN` or the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("CONFAB_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let bin = e.path().join("bin");
            let version = e.file_name().to_string_lossy().parse::<u32>().unwrap_or(0);
            if bin.join("initdb").exists()
                && bin.join("postgres").exists()
                && best.as_ref().is_none_or(|(v, _)| version > *v)
            {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| {
        anyhow!("PostgreSQL server programs not found under /usr/lib/postgresql/*/bin; install Debian's `postgresql` package or set DATABASE_URL")
    })
}

/// The user the cluster runs as: ourselves, or `postgres` when we are root.
struct RunAs {
    uid: u32,
    gid: u32,
}

fn run_as() -> anyhow::Result<Option<RunAs>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")?.ok_or_else(|| {
        anyhow!("running as root needs the unprivileged `postgres` user to own the private cluster (install Debian's `postgresql` package)")
    })?;
    Ok(Some(RunAs {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

/// As root, the `postgres` user must be able to reach the data directory: every ancestor needs
/// the search bit for others. Root-owned ancestors get it added (search only, never read);
/// anything else is an error naming the directory.
fn ensure_searchable(dir: &Path) -> anyhow::Result<()> {
    for anc in dir.ancestors().skip(1) {
        if anc.as_os_str().is_empty() {
            continue;
        }
        let meta = fs::metadata(anc).with_context(|| format!("reading {}", anc.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            if meta.uid() == 0 {
                tracing::warn!(dir = %anc.display(), "adding search permission for others so the private PostgreSQL (user postgres) can reach its data directory");
                fs::set_permissions(anc, fs::Permissions::from_mode(mode | 0o001))
                    .with_context(|| format!("making {} searchable", anc.display()))?;
            } else {
                bail!(
                    "directory {} is not searchable by the postgres user; run `chmod o+x {}` or choose another --data-dir",
                    anc.display(),
                    anc.display()
                );
            }
        }
    }
    Ok(())
}

fn command(bin: &Path, program: &str, run_as: &Option<RunAs>) -> Command {
    let mut cmd = Command::new(bin.join(program));
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
    // Keep the child's locale predictable; initdb refuses unknown locales.
    cmd.env("LC_ALL", "C.UTF-8").env_remove("PGDATA");
    cmd
}

fn start_blocking(opts: &EmbeddedOptions) -> anyhow::Result<(PathBuf, Child)> {
    let bin = find_bin_dir()?;
    let run_as = run_as()?;
    fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating data directory {}", opts.data_dir.display()))?;
    let data_dir = fs::canonicalize(&opts.data_dir)?;
    let pg_dir = data_dir.join("pg");
    let cluster = pg_dir.join("cluster");
    let socket_dir = pg_dir.join("run");
    // Unix socket paths are limited to 107 bytes.
    if socket_dir.as_os_str().len() > 90 {
        bail!(
            "data directory path {} is too long for a Unix socket; choose a shorter --data-dir",
            data_dir.display()
        );
    }
    for d in [&pg_dir, &socket_dir] {
        fs::create_dir_all(d)?;
    }
    if let Some(u) = &run_as {
        ensure_searchable(&pg_dir)?;
        for d in [&pg_dir, &socket_dir] {
            nix::unistd::chown(d, Some(u.uid.into()), Some(u.gid.into()))?;
        }
        fs::set_permissions(&pg_dir, fs::Permissions::from_mode(0o700))?;
    }

    if !cluster.join("PG_VERSION").exists() {
        tracing::info!(dir = %cluster.display(), "initialising private PostgreSQL cluster");
        if cluster.exists() {
            // A half-made cluster from an interrupted initdb.
            fs::remove_dir_all(&cluster)?;
        }
        let mut cmd = command(&bin, "initdb", &run_as);
        cmd.arg("-D").arg(&cluster).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        if opts.ephemeral {
            cmd.arg("--no-sync");
        }
        let out = cmd.output().context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    clear_stale_postmaster(&cluster)?;

    let log_path = pg_dir.join("postgres.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    if let Some(u) = &run_as {
        nix::unistd::chown(&log_path, Some(u.uid.into()), Some(u.gid.into()))?;
    }
    let mut cmd = command(&bin, "postgres", &run_as);
    cmd.arg("-D")
        .arg(&cluster)
        .arg("-k")
        .arg(&socket_dir)
        .args(["-c", "listen_addresses=", "-c", "max_connections=200"]);
    if opts.ephemeral {
        cmd.args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec. The parent-death signal is
    // set after the uid change (which would clear it). SIGINT = fast shutdown.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Own process group: a Ctrl-C in the terminal reaches Confab, which shuts down in order.
            libc::setpgid(0, 0);
            Ok(())
        });
    }
    // The parent-death signal fires when the *thread* that forked exits, so fork from a thread
    // that lives as long as the process: a dedicated one that never returns.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("postgres-parent".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        })?;
    let child = rx
        .recv()
        .map_err(|_| anyhow!("postgres spawner thread died"))?
        .context("spawning postgres")?;
    Ok((socket_dir, child))
}

/// A postmaster from a killed run may still hold the cluster. Stop it if it is alive and really
/// a postgres process; PostgreSQL itself removes a pid file whose process is gone.
fn clear_stale_postmaster(cluster: &Path) -> anyhow::Result<()> {
    let pid_file = cluster.join("postmaster.pid");
    let mut text = String::new();
    match fs::File::open(&pid_file) {
        Ok(mut f) => {
            f.read_to_string(&mut text)?;
        }
        Err(_) => return Ok(()),
    }
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return Ok(());
    };
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !comm.trim().starts_with("postgres") {
        return Ok(());
    }
    tracing::warn!(pid, "stopping a PostgreSQL left running by an earlier run");
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGQUIT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
