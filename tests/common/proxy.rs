//! A TCP proxy the test controls, to cut a process off from the API server and let it back: while
//! cut, nothing passes in either direction (connections stay open, requests hang, as behind a
//! network partition); healing closes every connection made before and lets new ones through.

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct Proxy {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let (cut, _) = watch::channel(false);
        let state = cut.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, target, state.subscribe()));
            }
        });
        Proxy { addr, cut }
    }

    /// Cuts every connection, present and future, until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Closes the connections made before and lets new ones through.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    if *cut.borrow_and_update() {
        // Accepted during a cut: held without an answer, closed at the heal.
        let _ = cut.wait_for(|c| !c).await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else { return };
    let was_cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => false,
        _ = cut.wait_for(|c| *c) => true,
    };
    if was_cut {
        // Nothing more passes; whatever was sent meanwhile is dropped with the connection.
        let _ = cut.wait_for(|c| !c).await;
    }
}
