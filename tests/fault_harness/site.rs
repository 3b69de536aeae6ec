//! A fault suite's site (its broker or cluster) is claimed by one test process at a time: a
//! watchdog holds the site's lock (`flock`) while the process lives, then kills the processes it
//! started and runs the site's clean-up (stop the brokers, remove a packet filter), however the
//! process exits.

use std::path::Path;
use std::process::{Command, Stdio};

/// Claims the site of `lock` for this test process: waits (at most 30 minutes) while another
/// run of a suite holds it, then leaves a watchdog holding it. When this process exits, the
/// watchdog kills the `aepiot-stream` processes listed in `children` (see
/// [`super::register_child`]) and runs `cleanup` (a bash snippet) with `env`. Another run on the
/// machine (another engineer's `cargo test`) waits: two at once would overload a small machine
/// and make both flaky.
pub fn claim(what: &str, lock: &str, children: &Path, cleanup: &str, env: &[(&str, String)]) {
    use std::os::unix::process::CommandExt;
    let watch = r#"
        echo locked
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        if [ -f "$2" ]; then
          while read -r pid; do
            if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q aepiot-stream; then
              kill -KILL "$pid" 2>/dev/null
            fi
          done <"$2"
          rm -f "$2"
        fi
        bash -c "$3"
    "#;
    let watchdog = |flock_args: &[&str]| {
        let mut c = Command::new("flock");
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(flock_args)
            .arg(lock)
            .args(["bash", "-c", watch, "faults-watchdog"])
            .arg(std::process::id().to_string())
            .arg(children)
            .arg(cleanup)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C of the test run must not kill it.
            .process_group(0);
        let mut child = c
            .spawn()
            .expect("spawn flock (util-linux) for the site's watchdog");
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        );
        if line.trim() == "locked" {
            // The watchdog outlives this process on purpose: never waited for.
            std::mem::forget(child);
            true
        } else {
            let _ = child.wait();
            false
        }
    };
    if !watchdog(&["-n"]) {
        eprintln!(
            "faults: another run of a fault suite holds {what} ({lock}); waiting for it to finish \
             (at most 30 minutes)"
        );
        assert!(watchdog(&["-w", "1800"]), "{what} stayed busy ({lock})");
    }
    let _ = std::fs::remove_file(children);
    super::set_children_file(children.to_path_buf());
}
