//! Clock skew: the local clock against the `Date` header of Gitea and the API server
//! (the git server has none). Leases and token lifetimes depend on it: above 5 s it is
//! a warning, above 60 s a failure.

use super::{Check, Level};
use std::time::{Duration, SystemTime};

/// Above this, a warning.
pub const WARN_ABOVE: Duration = Duration::from_secs(5);
/// Above this, a failure.
pub const FAIL_ABOVE: Duration = Duration::from_secs(60);

/// A server's `Date` header and the local time it was read at.
#[derive(Debug, Clone)]
pub struct Reading {
    pub server: &'static str,
    pub date: String,
    pub local: SystemTime,
}

impl Reading {
    pub fn now(server: &'static str, date: String) -> Reading {
        Reading {
            server,
            date,
            local: SystemTime::now(),
        }
    }
}

/// The server's clock minus the local clock, in milliseconds (None: the date does not
/// read as an HTTP date). An HTTP date has whole seconds, so equal clocks give up to
/// about -1000.
pub fn skew_ms(date: &str, local: SystemTime) -> Option<i64> {
    let server = httpdate::parse_http_date(date.trim()).ok()?;
    Some(match server.duration_since(local) {
        Ok(ahead) => ahead.as_millis() as i64,
        Err(behind) => -(behind.duration().as_millis() as i64),
    })
}

/// Pass up to 5 s, warn up to 60 s, fail beyond (either way). The second an HTTP date
/// drops is given to the local clock.
pub fn classify(skew_ms: i64) -> Level {
    let off = if skew_ms < 0 {
        (-skew_ms - 1000).max(0)
    } else {
        skew_ms
    } as u128;
    if off > FAIL_ABOVE.as_millis() {
        Level::Fail
    } else if off > WARN_ABOVE.as_millis() {
        Level::Warn
    } else {
        Level::Pass
    }
}

/// `3 s ahead of` / `12 s behind` the server, as a person reads it.
fn words(skew_ms: i64) -> String {
    let secs = skew_ms.unsigned_abs().div_ceil(1000);
    if skew_ms > 0 {
        format!("{secs} s behind")
    } else {
        format!("{secs} s ahead of")
    }
}

/// One line for every reading: the worst one decides.
pub fn check(readings: &[Reading]) -> Check {
    if readings.is_empty() {
        return Check::skip(
            "clock",
            "no Gitea or API server answered to compare the local clock with (a git server has no clock to ask)",
        );
    }
    let mut worst = Level::Pass;
    let mut parts = Vec::new();
    for r in readings {
        match skew_ms(&r.date, r.local) {
            Some(ms) => {
                let level = classify(ms);
                if rank(level) > rank(worst) {
                    worst = level;
                }
                parts.push(if level == Level::Pass {
                    format!("within {} s of {}", WARN_ABOVE.as_secs(), r.server)
                } else {
                    format!("the local clock is {} {}", words(ms), r.server)
                });
            }
            None => parts.push(format!("{}'s Date {:?} does not read", r.server, r.date)),
        }
    }
    let message = parts.join("; ");
    let fix = "synchronise the clock: timedatectl set-ntp true (or chrony/ntpd); leases and token lifetimes depend on it".to_string();
    match worst {
        Level::Pass => Check::pass("clock", message),
        Level::Warn => Check::warn(
            "clock",
            format!("{message} (over {} s)", WARN_ABOVE.as_secs()),
            Some(fix),
        ),
        _ => Check::fail(
            "clock",
            format!("{message} (over {} s)", FAIL_ABOVE.as_secs()),
            fix,
        ),
    }
}

fn rank(l: Level) -> u8 {
    match l {
        Level::Skip | Level::Pass => 0,
        Level::Warn => 1,
        Level::Fail => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const SECS: u64 = 784_111_777;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn skew_is_the_servers_clock_minus_ours() {
        assert_eq!(skew_ms(DATE, at(SECS * 1000)), Some(0));
        assert_eq!(skew_ms(DATE, at(SECS * 1000 + 400)), Some(-400));
        assert_eq!(skew_ms(DATE, at(SECS * 1000 - 7000)), Some(7000));
        assert_eq!(skew_ms("yesterday", at(0)), None);
    }

    #[test]
    fn five_seconds_pass_a_minute_warns_more_fails() {
        for (ms, want) in [
            (0, Level::Pass),
            (-999, Level::Pass), // the server's date dropped its milliseconds
            (5_000, Level::Pass),
            (-6_000, Level::Pass),
            (5_001, Level::Warn),
            (-6_001, Level::Warn),
            (60_000, Level::Warn),
            (60_001, Level::Fail),
            (-3_600_000, Level::Fail),
        ] {
            assert_eq!(classify(ms), want, "{ms} ms");
        }
    }

    #[test]
    fn the_worst_reading_decides_the_line() {
        let ok = Reading {
            server: "Gitea",
            date: DATE.into(),
            local: at(SECS * 1000 + 300),
        };
        let off = Reading {
            server: "the API server",
            date: DATE.into(),
            local: at(SECS * 1000 + 12_000),
        };
        assert_eq!(
            check(std::slice::from_ref(&ok)).to_string(),
            "✔ clock: within 5 s of Gitea"
        );
        let c = check(&[ok, off]);
        assert_eq!(c.level, Level::Warn);
        assert!(
            c.message
                .contains("the local clock is 12 s ahead of the API server"),
            "{}",
            c.message
        );
        assert_eq!(check(&[]).level, Level::Skip);
    }
}
