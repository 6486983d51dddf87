//! Cluster mode (`storage = "nats"`): what the gateway checks about the NATS servers it is
//! given before it uses them.

use std::{process::Command, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// A stand-in for a NATS server that claims `version`: it speaks just enough of the
/// protocol (INFO, then PONG to every PING) for a client to connect and read the version.
async fn fake_nats_server(version: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let info = format!(
                    "INFO {{\"server_id\":\"FAKE\",\"server_name\":\"fake\",\"version\":\"{version}\",\
                     \"proto\":1,\"go\":\"go1.22\",\"host\":\"127.0.0.1\",\"port\":{port},\
                     \"headers\":true,\"max_payload\":1048576,\"jetstream\":true}}\r\n"
                );
                if write.write_all(info.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("PING") && write.write_all(b"PONG\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Runs `hookgate serve` with `env` and returns its exit status and output, expecting it
/// to exit on its own.
async fn serve_until_exit(env: &[(&str, String)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .arg("serve")
        .env("HOOKGATE_LISTEN", "127.0.0.1:0")
        .env("HOOKGATE_DATA_DIR", dir.path())
        .env("HOOKGATE_ADMIN_TOKEN", crate::harness::ADMIN_TOKEN);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || command.output().unwrap()),
    )
    .await
    .expect("hookgate exits on its own")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

#[tokio::test]
async fn a_nats_server_older_than_2_12_is_refused_at_startup() {
    let port = fake_nats_server("2.10.4").await;
    let (status, output) = serve_until_exit(&[
        ("HOOKGATE_STORAGE", "nats".into()),
        ("HOOKGATE_NATS_SERVERS", format!("nats://127.0.0.1:{port}")),
    ])
    .await;
    assert!(!status.success(), "output: {output}");
    assert!(
        output.contains("nats-server 2.10.4") && output.contains("too old"),
        "the refusal names the version: {output}"
    );
    assert!(output.contains("2.12 or newer"), "{output}");
}

#[tokio::test]
async fn nats_settings_without_storage_nats_are_refused() {
    let (status, output) =
        serve_until_exit(&[("HOOKGATE_NATS_SERVERS", "nats://127.0.0.1:4222".into())]).await;
    assert!(!status.success(), "output: {output}");
    assert!(output.contains("only with storage"), "{output}");
}
