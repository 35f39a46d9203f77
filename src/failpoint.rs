//! Failpoints: named places in the controller where a debug build can be told to fail, so that the
//! end-to-end tests can kill the controller (or make a reconcile panic) at an exact point and check
//! what the next controller makes of it. Release builds compile every failpoint to nothing.
//!
//! `VEER_FAILPOINTS` holds a comma-separated list of `<point>=<action>`:
//!
//! | point | where |
//! |---|---|
//! | `reconcile/<canary>` | at the start of a reconcile of the Canary named `<canary>` |
//! | `run-end/<k>` | in a tick that ends a run (its effects are kept in `status.pendingEffects`), after the status write (`k = 0`) or after its k-th effect |
//! | `run-end/done` | after such a tick carried out all its effects, before it clears `status.pendingEffects` |
//!
//! Actions: `panic` (an ordinary panic, which the reconcile contains) and `exit` (the process exits
//! at once with status 86, as if it were killed: no cleanup, no further writes).

/// The exit status of the `exit` action.
pub const EXIT_STATUS: i32 = 86;

/// What a failpoint does when it is hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Panic,
    Exit,
}

/// Parses `VEER_FAILPOINTS`; entries that do not parse are ignored (and logged once).
pub fn parse(spec: &str) -> Vec<(String, Action)> {
    spec.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .filter_map(|entry| {
            let (point, action) = entry.split_once('=')?;
            let action = match action.trim() {
                "panic" => Action::Panic,
                "exit" => Action::Exit,
                _ => return None,
            };
            Some((point.trim().to_string(), action))
        })
        .collect()
}

/// Hits the failpoint `point`: does what `VEER_FAILPOINTS` says for it, if anything.
#[cfg(debug_assertions)]
pub fn hit(point: &str) {
    use std::sync::OnceLock;
    static POINTS: OnceLock<Vec<(String, Action)>> = OnceLock::new();
    let points = POINTS.get_or_init(|| {
        let spec = std::env::var("VEER_FAILPOINTS").unwrap_or_default();
        let points = parse(&spec);
        if !spec.is_empty() {
            tracing::warn!(failpoints = ?points, "failpoints armed (VEER_FAILPOINTS)");
        }
        points
    });
    match points.iter().find(|(p, _)| p == point).map(|(_, a)| *a) {
        Some(Action::Panic) => panic!("failpoint {point}"),
        Some(Action::Exit) => {
            tracing::warn!("failpoint {point}: exiting");
            std::process::exit(EXIT_STATUS);
        }
        None => {}
    }
}

/// Hits the failpoint `point`: nothing, in a release build.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_point: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse() {
        assert_eq!(
            parse("reconcile/podinfo=panic, run-end/2=exit,,bad,run-end/done=maybe"),
            vec![("reconcile/podinfo".to_string(), Action::Panic), ("run-end/2".to_string(), Action::Exit)]
        );
        assert!(parse("").is_empty());
    }
}
