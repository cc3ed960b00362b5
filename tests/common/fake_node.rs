//! A stand-in for a running node in the loopback tests: it answers on the node's real local
//! control channel (`p2pvpn::io::control_socket::serve`: the Unix socket on Unix, the named pipe
//! with its DACL on Windows) with canned replies, so `status`, `ping`, `leave` and friends are
//! tested against the same channel code on every OS. Bounded: it stops after 30 s or when
//! dropped.

use p2pvpn::io::control_socket::{serve, Request};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub struct FakeNode {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeNode {
    /// Serves `STATE/NETWORK/control.sock` (creating `STATE/NETWORK`), answering each request
    /// with `reply(request)` (a newline is added when missing). Returns once the channel is up.
    pub fn start<F>(state: &Path, network: &str, reply: F) -> FakeNode
    where
        F: Fn(&Request) -> String + Send + 'static,
    {
        let dir = state.join(network);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let network = network.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (tx, mut rx) = mpsc::channel(8);
                let guard = match serve(&path, &network, tx).await {
                    Ok(g) => g,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let deadline = tokio::time::sleep(Duration::from_secs(30));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = &mut deadline => break,
                        Some(request) = rx.recv() => {
                            let mut text = reply(&request.request);
                            if !text.ends_with('\n') {
                                text.push('\n');
                            }
                            let _ = request.reply.send(text);
                        }
                    }
                }
                guard.finish().await;
            });
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the fake node cannot serve its control channel: {e}"),
            Err(_) => panic!("the fake node did not start within 10 s"),
        }
        FakeNode {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
