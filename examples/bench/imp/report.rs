//! The result table and the lines printed as tests run.

use super::*;

/// One line of the result table.
pub(super) struct Row {
    pub(super) test: &'static str,
    pub(super) framework: Option<f64>,
    pub(super) raw: Option<f64>,
    pub(super) unit: Unit,
    /// The lowest acceptable framework/raw ratio, where the issue sets one.
    pub(super) target: Option<f64>,
    /// What the `raw` figure is.
    pub(super) baseline: Baseline,
}

/// What a row compares the framework with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Baseline {
    /// The raw peer: `raw` is its figure.
    Raw,
    /// The framework itself on an idle connection: `framework` is the figure with the
    /// connection busy, `raw` the figure with it idle.
    Idle,
}

#[derive(Clone, Copy)]
pub(super) enum Unit {
    PerSecond,
    Micros,
    MibPerSecond,
    Bytes,
}

impl Unit {
    pub(super) fn format(self, value: f64) -> String {
        match self {
            Unit::PerSecond => format!("{}/s", thousands(value)),
            Unit::Micros => format!("{value:.1} µs"),
            Unit::MibPerSecond => format!("{} MiB/s", thousands(value)),
            Unit::Bytes => format!("{} B", thousands(value)),
        }
    }
}

/// `value` rounded, with thousands separated by commas.
pub(super) fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "-".into();
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 {
        out.insert(0, '-');
    }
    out
}

pub(super) fn report(what: &str, side: &str, run: &Sequential) {
    eprintln!(
        "  {what:<12} {side:<9} {} round trips in {:.2} s (after {} warm-up)",
        thousands(run.calls as f64),
        run.elapsed.as_secs_f64(),
        thousands(run.warmup_calls as f64)
    );
}

pub(super) fn report_quantiles(what: &str, side: &str, run: &Sequential) {
    eprintln!(
        "  {what:<12} {side:<9} {} round trips in {:.2} s (after {} warm-up): \
         p50 {:.1} µs, p99 {:.1} µs",
        thousands(run.calls as f64),
        run.elapsed.as_secs_f64(),
        thousands(run.warmup_calls as f64),
        run.quantile_us(0.5),
        run.quantile_us(0.99)
    );
}

/// A row of the table: its figures over every round, and the ratio of each round.
pub(super) struct Summary {
    row: Row,
    /// The framework/raw ratio of each round, when there was more than one.
    by_round: Vec<f64>,
}

/// The ratio of a row's figures, if it has both.
fn ratio(row: &Row) -> Option<f64> {
    match (row.framework, row.raw) {
        (Some(f), Some(r)) if r > 0.0 => Some(f / r),
        _ => None,
    }
}

/// The rows of a test run once.
pub(super) fn single(rows: Vec<Row>) -> Vec<Summary> {
    rows.into_iter()
        .map(|row| Summary {
            row,
            by_round: Vec::new(),
        })
        .collect()
}

/// The rows of rounds of the same tests, each figure the mean of its rounds.
pub(super) fn combine(rounds: Vec<Vec<Row>>) -> Vec<Summary> {
    let count = rounds.len();
    let mut rounds = rounds.into_iter();
    let Some(first) = rounds.next() else {
        return Vec::new();
    };
    let mut sums: Vec<Summary> = first
        .into_iter()
        .map(|row| Summary {
            by_round: ratio(&row).into_iter().collect(),
            row,
        })
        .collect();
    for round in rounds {
        for (sum, row) in sums.iter_mut().zip(round) {
            let add = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a + b);
            sum.by_round.extend(ratio(&row));
            sum.row.framework = add(sum.row.framework, row.framework);
            sum.row.raw = add(sum.row.raw, row.raw);
        }
    }
    for sum in &mut sums {
        sum.row.framework = sum.row.framework.map(|v| v / count as f64);
        sum.row.raw = sum.row.raw.map(|v| v / count as f64);
        if count < 2 {
            sum.by_round.clear();
        }
    }
    sums
}

pub(super) fn print_table(rows: &[Summary]) {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|Summary { row, by_round }| {
            let show = |v: Option<f64>, tag: &str| {
                v.map_or_else(|| "-".into(), |v| format!("{}{tag}", row.unit.format(v)))
            };
            let ratio = ratio(row);
            let target = match (row.target, ratio) {
                (Some(t), Some(r)) => {
                    format!("≥ {t:.2} {}", if r >= t { "met" } else { "MISSED" })
                }
                (Some(t), None) => format!("≥ {t:.2}"),
                (None, _) if row.baseline == Baseline::Idle => "none: busy/idle".into(),
                (None, _) => "-".into(),
            };
            let (busy, idle) = match row.baseline {
                Baseline::Raw => ("", ""),
                Baseline::Idle => (" busy", " idle"),
            };
            [
                row.test.to_owned(),
                show(row.framework, busy),
                show(row.raw, idle),
                ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}")),
                if by_round.is_empty() {
                    "-".into()
                } else {
                    let each: Vec<String> = by_round.iter().map(|r| format!("{r:.2}")).collect();
                    each.join(" ")
                },
                target,
            ]
        })
        .collect();
    let header = ["test", "framework", "raw", "ratio", "by round", "target"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: &[String; 6]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                let pad = width - cell.chars().count();
                if i == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        format!("| {} |", cells.join(" | "))
    };
    println!();
    println!("{}", line(&header));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells {
        println!("{}", line(row));
    }
    println!();
    println!(
        "ratio = framework / raw (for p50, p99 and memory, lower is better), each figure the \
         mean of the rounds, the ratio of each round beside it. Memory is the \
         growth of the resident set of one process holding both ends of every connection \
         (tasks, buffers, channels, heap), not the kernel's socket buffers. The fairness row \
         compares the framework with itself: the p99 of add(1, 2) while a stream of 1 MiB \
         items runs on the same connection (busy) and with the connection idle; its ratio is \
         busy / idle. The row below it is the same with no stream, while two tasks copy 1 MiB \
         buffers between yields: what sharing the cores with such work costs a call."
    );
}
