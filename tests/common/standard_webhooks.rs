//! Webhook signatures checked by an implementation this project did not write: the
//! `standardwebhooks` package from PyPI (the spec's own Python library), run by
//! `tests/standard_webhooks_verify.py` exactly as a receiver would call it.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;

/// One request as a receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names and values (names in any case).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// For each request, whether `standardwebhooks.Webhook(secret).verify(body, headers)` accepts it
/// (`Err` holds the library's reason). Panics when Python or the package is missing.
pub fn verify(secret: &str, requests: &[Received]) -> Vec<Result<(), String>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/standard_webhooks_verify.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/install-ci-deps.sh installs it with standardwebhooks)");
    let mut input = String::new();
    for r in requests {
        let headers: serde_json::Map<String, serde_json::Value> = r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let line = serde_json::json!({
            "secret": secret,
            "headers": headers,
            "body": base64::engine::general_purpose::STANDARD.encode(&r.body),
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Result<(), String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["ok"] == true {
                Ok(())
            } else {
                Err(v["error"].as_str().unwrap_or_default().to_string())
            }
        })
        .collect();
    assert_eq!(results.len(), requests.len(), "one verdict per request");
    results
}

/// A fresh Standard Webhooks secret (`whsec_` + base64 of 32 bytes) made from `seed`.
pub fn secret(seed: u8) -> String {
    let bytes: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed))
        .collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}
