//! Records the commit the binary is built from, for `confab --version` and `confab_build_info`:
//! `CONFAB_GIT_COMMIT` from the environment (a container build without `.git`), else
//! `git rev-parse --short HEAD`, else "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=CONFAB_GIT_COMMIT");
    let commit = match std::env::var("CONFAB_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => match git(&["rev-parse", "--short=12", "HEAD"]) {
            Some(c) => {
                // Rebuild when HEAD moves (a commit, checkout or reset in this work tree).
                for path in ["HEAD", "logs/HEAD"] {
                    // (A missing file would make cargo run this script at every build.)
                    if let Some(p) = git(&["rev-parse", "--git-path", path])
                        .filter(|p| std::path::Path::new(p).exists())
                    {
                        println!("cargo:rerun-if-changed={p}");
                    }
                }
                c
            }
            None => "unknown".to_string(),
        },
    };
    println!("cargo:rustc-env=CONFAB_GIT_COMMIT={commit}");
}
