//! Serves the fake kube-apiserver on its own: `fake-apiserver --kubeconfig PATH` listens on
//! 127.0.0.1 at a free port, writes an admin kubeconfig to PATH, and serves until it is
//! killed. The end-to-end suite's real-cluster path (`PSI_E2E_KUBECONFIG`) runs against it in
//! CI, so that the code a real cluster runs is exercised even where no cluster exists.

use std::path::PathBuf;
use std::process::ExitCode;

use fake_apiserver::FakeApiServer;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut kubeconfig: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kubeconfig" => kubeconfig = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: fake-apiserver --kubeconfig PATH");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!(
                    "error: unexpected argument {other:?} (usage: fake-apiserver --kubeconfig PATH)"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(kubeconfig) = kubeconfig else {
        eprintln!("error: --kubeconfig PATH is required");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = FakeApiServer::start().await;
        // As kube-controller-manager's namespace controller does, terminating namespaces are
        // emptied and removed, so that a run's cleanup can be checked.
        server.finish_namespace_deletions_automatically(true);
        let text = server.kubeconfig(FakeApiServer::ADMIN_TOKEN);
        if let Err(e) = std::fs::write(&kubeconfig, text) {
            eprintln!("error: cannot write {}: {e}", kubeconfig.display());
            return ExitCode::FAILURE;
        }
        println!(
            "serving {} (kubeconfig {})",
            server.url(),
            kubeconfig.display()
        );
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}
