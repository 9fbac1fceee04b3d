//! Command-line options: which tests, which sides, how long.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Test {
    Latency,
    Pipelined,
    Many,
    Bulk,
    Stream,
    Fairness,
    TwoProcess,
    Memory,
}

impl Test {
    pub(super) const ALL: [Test; 8] = [
        Test::Latency,
        Test::Pipelined,
        Test::Many,
        Test::Bulk,
        Test::Stream,
        Test::Fairness,
        Test::TwoProcess,
        Test::Memory,
    ];

    pub(super) fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "latency" => Test::Latency,
            "pipelined" => Test::Pipelined,
            "many" => Test::Many,
            "bulk" => Test::Bulk,
            "stream" => Test::Stream,
            "fairness" => Test::Fairness,
            "two-process" => Test::TwoProcess,
            "memory" => Test::Memory,
            _ => return Err(format!("unknown test {name:?}\n{USAGE}").into()),
        })
    }
}

pub(super) struct Options {
    /// Time spent calling before measuring.
    pub(super) warmup: Duration,
    /// Time measured.
    pub(super) measure: Duration,
    pub(super) tests: Vec<Test>,
    pub(super) framework: bool,
    pub(super) raw: bool,
    pub(super) short: bool,
    /// Rounds of the in-process tests; each side's figure is its mean over them.
    pub(super) rounds: usize,
}

impl Options {
    pub(super) fn parse(args: &[String]) -> Result<Self> {
        let mut options = Options {
            warmup: Duration::from_millis(300),
            measure: Duration::from_secs(2),
            tests: Test::ALL.to_vec(),
            framework: true,
            raw: true,
            short: false,
            rounds: 3,
        };
        let mut args = args.iter().map(String::as_str);
        while let Some(arg) = args.next() {
            match (arg, args.clone().next()) {
                ("--short", _) => {
                    options.short = true;
                    options.warmup = Duration::from_millis(50);
                    options.measure = Duration::from_millis(200);
                    options.rounds = 1;
                }
                ("--rounds", Some(n)) => {
                    args.next();
                    options.rounds = n.parse()?;
                    if options.rounds == 0 {
                        return Err(format!("--rounds must be at least 1\n{USAGE}").into());
                    }
                }
                ("--measure-ms", Some(ms)) => {
                    args.next();
                    options.measure = Duration::from_millis(ms.parse()?);
                }
                ("--only", Some(list)) => {
                    args.next();
                    options.tests = list.split(',').map(Test::parse).collect::<Result<_>>()?;
                }
                ("--side", Some(side)) => {
                    args.next();
                    (options.framework, options.raw) = match side {
                        "framework" => (true, false),
                        "raw" => (false, true),
                        "both" => (true, true),
                        _ => return Err(format!("unknown side {side:?}\n{USAGE}").into()),
                    };
                }
                ("--help" | "-h", _) => return Err(USAGE.into()),
                _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}").into()),
            }
        }
        Ok(options)
    }

    pub(super) fn runs(&self, test: Test) -> bool {
        self.tests.contains(&test)
    }
}

impl Options {
    /// The warm-up and measurement deadlines of a test starting now.
    pub(super) fn deadlines(&self) -> (Instant, Instant) {
        let warm_until = Instant::now() + self.warmup;
        (warm_until, warm_until + self.measure)
    }
}
