//! The testkit's fake Dapr sidecar as a process of its own, for benchmarks that run the
//! release binary: `fake-dapr --app ID=URL…` prints its endpoint (`http://127.0.0.1:PORT`) on
//! the first line of stdout, attaches each app as soon as it answers `GET /dapr/subscribe`,
//! and runs until killed. With `--listen 127.0.0.1:PORT` it takes that address; each
//! `--state-store NAME` adds a state store.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use taskflow_testkit::dapr::FakeDapr;

fn main() {
    let mut listen = None;
    let mut apps = Vec::new();
    let mut stores = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next(),
            "--state-store" => stores.extend(args.next()),
            "--app" => {
                let spec = args.next().unwrap_or_default();
                let Some((id, url)) = spec.split_once('=') else {
                    eprintln!("fake-dapr: --app takes ID=URL, not `{spec}`");
                    std::process::exit(2);
                };
                apps.push((id.to_owned(), url.trim_end_matches('/').to_owned()));
            }
            other => {
                eprintln!(
                    "fake-dapr: unknown argument `{other}` (--listen ADDR, --app ID=URL, --state-store NAME)"
                );
                std::process::exit(2);
            }
        }
    }
    let fake = match &listen {
        Some(addr) => FakeDapr::start_on(addr),
        None => FakeDapr::start(),
    };
    for store in &stores {
        fake.add_state_store(store);
    }
    println!("{}", fake.endpoint());
    let handles: Vec<_> = apps
        .into_iter()
        .map(|(id, url)| {
            let fake = fake.clone();
            std::thread::spawn(move || {
                let subscribe = format!("{url}/dapr/subscribe");
                for _ in 0..600 {
                    let up =
                        std::net::TcpStream::connect(url.trim_start_matches("http://")).is_ok();
                    if up && fake.answers(&subscribe) {
                        fake.attach(&id, &url);
                        eprintln!("fake-dapr: attached {id} at {url}");
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                eprintln!("fake-dapr: {id} at {url} never answered");
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    loop {
        std::thread::park();
    }
}
