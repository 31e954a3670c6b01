//! The connection file Jupyter writes for each kernel it starts.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionInfo {
    pub ip: String,
    pub transport: String,
    pub key: String,
    #[serde(default = "default_signature_scheme")]
    pub signature_scheme: String,
    pub shell_port: u16,
    pub control_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub hb_port: u16,
}

fn default_signature_scheme() -> String {
    "hmac-sha256".to_owned()
}

impl ConnectionInfo {
    pub fn read(path: &Path) -> Result<ConnectionInfo> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading connection file {}", path.display()))?;
        let info: ConnectionInfo = serde_json::from_str(&text)
            .with_context(|| format!("parsing connection file {}", path.display()))?;
        if info.transport != "tcp" {
            bail!(
                "{}: transport {:?} is not supported, expected \"tcp\"",
                path.display(),
                info.transport
            );
        }
        if !info.key.is_empty() && info.signature_scheme != "hmac-sha256" {
            bail!(
                "{}: signature_scheme {:?} is not supported, expected \"hmac-sha256\"",
                path.display(),
                info.signature_scheme
            );
        }
        Ok(info)
    }

    pub fn endpoint(&self, port: u16) -> String {
        format!("{}://{}:{}", self.transport, self.ip, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jupyter_client_connection_file() {
        let dir = std::env::temp_dir().join(format!("tb-conn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kernel.json");
        std::fs::write(
            &path,
            r#"{"shell_port": 5001, "iopub_port": 5002, "stdin_port": 5003, "control_port": 5004,
                "hb_port": 5005, "ip": "127.0.0.1", "key": "abc", "transport": "tcp",
                "signature_scheme": "hmac-sha256", "kernel_name": "tunebook"}"#,
        )
        .unwrap();
        let info = ConnectionInfo::read(&path).unwrap();
        assert_eq!(info.endpoint(info.iopub_port), "tcp://127.0.0.1:5002");

        std::fs::write(
            &path,
            r#"{"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4,
                "hb_port": 5, "ip": "127.0.0.1", "key": "abc", "transport": "tcp",
                "signature_scheme": "hmac-md5"}"#,
        )
        .unwrap();
        let error = ConnectionInfo::read(&path).unwrap_err().to_string();
        assert!(error.contains("hmac-md5"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
