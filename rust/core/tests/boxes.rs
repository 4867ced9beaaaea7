//! Whole-runtime tests on real boxes (needs root, like the runtime itself). They use the
//! built-in `host://` image so they need no image files.

use std::path::PathBuf;

use boxlite_core::{BoxOptions, Error, ExecRequest, Runtime};

fn temp_home(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("boxlite-core-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

async fn collect(stream: Option<boxlite_core::ParentOnly<std::os::fd::OwnedFd>>) -> Vec<u8> {
    let mut output = Vec::new();
    if let Some(stream) = stream {
        let stream = boxlite_core::exec::AsyncDescriptor::new(stream).expect("register");
        while let Some(chunk) = stream.read_chunk(65536).await.expect("read") {
            output.extend(chunk);
        }
    }
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_runs_a_command_and_reports_its_exit() {
    let home = temp_home("exec");
    let runtime = Runtime::open(&home, Vec::new(), boxlite_core::Role::Program { keeper: None }).expect("open runtime");
    let handle = runtime.create(BoxOptions::default(), Some("first".to_string())).await.expect("create");
    assert_eq!(handle.info().status, "configured");
    let request = ExecRequest {
        command: "sh".to_string(),
        args: vec!["-c".to_string(), "printf 'out'; printf 'err' >&2; hostname; exit 3".to_string()],
        ..ExecRequest::default()
    };
    let mut execution = handle.exec(request).await.expect("exec");
    let control = execution.control();
    let (stdout, stderr) = tokio::join!(collect(execution.stdout.take()), collect(execution.stderr.take()));
    let status = control.wait().await;
    assert_eq!(status.exit_code, 3);
    assert_eq!(stdout, b"outfirst\n");
    assert_eq!(stderr, b"err");
    assert_eq!(handle.info().status, "running");
    drop(execution);

    let missing = handle.exec(ExecRequest { command: "no-such-program".to_string(), ..ExecRequest::default() }).await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");

    handle.stop().await.expect("stop");
    assert!(runtime.get_info("first").is_none(), "default boxes are removed on stop");
    assert!(matches!(handle.start().await, Err(Error::Stopped(_))));
    assert!(!home.join("boxes").read_dir().expect("boxes dir").any(|_| true));
    drop(runtime);
    std::fs::remove_dir_all(&home).expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_running_command_with_minus_nine() {
    let home = temp_home("kill");
    let runtime = Runtime::open(&home, Vec::new(), boxlite_core::Role::Program { keeper: None }).expect("open runtime");
    let handle = runtime.create(BoxOptions::default(), None).await.expect("create");
    let execution = handle
        .exec(ExecRequest { command: "sleep".to_string(), args: vec!["100".to_string()], ..ExecRequest::default() })
        .await
        .expect("exec");
    let control = execution.control();
    let waiter = tokio::spawn({
        let control = control.clone();
        async move { control.wait().await }
    });
    control.kill().await.expect("kill while a wait is pending");
    let status = waiter.await.expect("join");
    assert_eq!((status.exit_code, status.signal), (-9, Some(9)));
    assert_eq!(control.wait().await, status, "every wait sees the same status");
    runtime.remove(handle.id(), true).await.expect("force remove");
    drop(runtime);
    std::fs::remove_dir_all(&home).expect("cleanup");
}
