//! Shutdown on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C), for the three binaries.

use std::sync::Arc;

use tokio::sync::watch;

/// Fires once, on SIGTERM or SIGINT or when triggered; cheap to clone, and every clone sees it.
#[derive(Clone)]
pub struct Shutdown {
    fired: watch::Receiver<bool>,
    fire: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// A shutdown that only [`Shutdown::trigger`] fires.
    pub fn manual() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown { fired: rx, fire: Arc::new(tx) }
    }

    /// A shutdown fired by SIGTERM or SIGINT (needs a Tokio runtime). Without a SIGTERM handler
    /// (none could be installed) the default action, exiting, still stops the process.
    pub fn on_signals() -> Shutdown {
        let shutdown = Shutdown::manual();
        let fire = shutdown.clone();
        tokio::spawn(async move {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            let int = async {
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = term => tracing::info!("SIGTERM: shutting down"),
                () = int => tracing::info!("SIGINT: shutting down"),
            }
            fire.trigger();
        });
        shutdown
    }

    /// Resolves once the shutdown fired.
    pub async fn wait(mut self) {
        let _ = self.fired.wait_for(|fired| *fired).await;
    }

    /// Fires the shutdown.
    pub fn trigger(&self) {
        let _ = self.fire.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::Shutdown;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let shutdown = Shutdown::manual();
        let waiter = tokio::spawn(shutdown.clone().wait());
        let mut early = Box::pin(shutdown.clone().wait());
        assert!(futures::poll!(&mut early).is_pending());
        shutdown.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        early.await;
        shutdown.clone().wait().await; // a clone made after the trigger
    }
}
