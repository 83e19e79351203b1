//! `status`, `log` and `finish`: reading an attempt's log, and ending the attempt.

use chrono::Utc;
use rdbench_core::attempt::Attempt;
use rdbench_core::fsutil::atomic_write;
use rdbench_core::score_log::{ScoreEntry, Selection};
use rdbench_core::summary::{AttemptSummary, SUMMARY_SCHEMA};
use rdbench_core::{Error, Result};

use crate::context::Ctx;
use crate::output::{num, one_line, Table};

/// What `status` reports: what an agent's scaffold shows it between actions.
#[derive(Debug, serde::Serialize)]
struct Status {
    id: String,
    task: String,
    profile: String,
    started_at: chrono::DateTime<Utc>,
    time_limit_minutes: Option<f64>,
    minutes_used: f64,
    /// `None` without a time limit; never below 0.
    minutes_left: Option<f64>,
    finished: bool,
    entries: usize,
    valid_entries: usize,
    late_entries: usize,
    score_hidden: bool,
    /// The best counted entry's normalized and raw scores (`None` for a hidden-score task).
    best: Option<(Option<f64>, Option<f64>)>,
}

/// `status`: time used and left, entries so far, and the best score where the task shows
/// scores. Reads the log as `log` does; nothing is written.
pub fn status(ctx: &Ctx, attempt: &Attempt) -> Result<i32> {
    let task = ctx.host.task(&attempt.record.task)?;
    let info = task.info();
    let read = attempt.score_log().read_verified()?;
    let counted: Vec<&ScoreEntry> = read.counted().map(|e| &e.entry).collect();
    let used = attempt.elapsed_minutes();
    let status = Status {
        id: attempt.record.id.clone(),
        task: info.name.clone(),
        profile: attempt.record.profile.clone(),
        started_at: attempt.record.started_at,
        time_limit_minutes: attempt.record.time_limit_minutes,
        minutes_used: used,
        minutes_left: attempt
            .record
            .time_limit_minutes
            .map(|l| (l - used).max(0.0)),
        finished: attempt.record.finished_at.is_some(),
        entries: counted.len(),
        valid_entries: counted.iter().filter(|e| e.valid).count(),
        late_entries: read.entries.iter().filter(|e| !e.counts()).count(),
        score_hidden: info.score_hidden,
        best: (!info.score_hidden).then(|| {
            read.select_final(Selection::Best, info.direction)
                .filter(|e| e.entry.valid)
                .map(|e| (e.entry.normalized, e.entry.raw))
                .unwrap_or((None, None))
        }),
    };
    if ctx.json {
        ctx.out.json(&status);
        return Ok(0);
    }
    say!(
        ctx,
        "{} {} ({}), started {}",
        status.id,
        status.task,
        status.profile,
        status.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    say!(
        ctx,
        "time:    {}",
        match (
            status.finished,
            status.time_limit_minutes,
            status.minutes_left
        ) {
            (true, _, _) => "finished".to_string(),
            (false, Some(limit), Some(left)) => format!(
                "{:.1} of {limit:.0} min used, {left:.1} min left",
                status.minutes_used
            ),
            _ => format!("{:.1} min used, no time limit", status.minutes_used),
        }
    );
    say!(
        ctx,
        "entries: {} counted ({} valid), {} late or after a break",
        status.entries,
        status.valid_entries,
        status.late_entries
    );
    match status.best {
        None => say!(
            ctx,
            "score:   hidden until the attempt ends; the last valid entry counts"
        ),
        Some((None, None)) => say!(ctx, "best:    no valid scored entry yet"),
        Some((normalized, raw)) => {
            say!(ctx, "best:    {} (raw {})", num(normalized), num(raw))
        }
    }
    Ok(0)
}

pub fn log(ctx: &Ctx, attempt: &Attempt) -> Result<i32> {
    let mut read = attempt.score_log().read_verified()?;
    // Whoever can list an attempt's log is the agent: a hidden score stays hidden here too
    // (validity and reasons remain); `finish` reports it.
    if ctx
        .host
        .task(&attempt.record.task)
        .is_ok_and(|t| t.info().score_hidden)
    {
        for e in &mut read.entries {
            let entry = &mut e.entry;
            (entry.raw, entry.normalized, entry.headline) = (None, None, None);
            (entry.details, entry.calibration) = (serde_json::Value::Null, None);
        }
    }
    for w in &read.warnings {
        warn!(ctx, "warning: score log line {}: {}", w.line, w.message);
    }
    if let Some(b) = &read.broken {
        warn!(
            ctx,
            "warning: the score log was altered or damaged: {b}; entries from there on never count"
        );
    }
    if ctx.json {
        let entries: Vec<&ScoreEntry> = read.entries.iter().map(|e| &e.entry).collect();
        let warnings: Vec<String> = read
            .warnings
            .iter()
            .map(|w| format!("line {}: {}", w.line, w.message))
            .collect();
        ctx.out.json(&serde_json::json!({
            "attempt": attempt.record.id,
            "entries": entries,
            "chain": {
                "intact": read.broken.is_none(),
                "broken_at": read.broken.as_ref().map(|b| b.to_string()),
                "sealed_at": read.seal.as_ref().map(|s| s.seal.finished_at),
            },
            "warnings": warnings,
        }));
        return Ok(0);
    }
    let mut table = Table::new(&[
        "#",
        "time (UTC)",
        "valid",
        "raw",
        "score",
        "wall s",
        "counts",
        "result",
    ]);
    // Entries are numbered 1, 2, 3, ... as listed (the log's own record numbers also count
    // the seal, which is not an entry).
    for (n, e) in read.entries.iter().enumerate() {
        let logged = &e.entry;
        table.row(vec![
            (n + 1).to_string(),
            logged.timestamp.format("%Y-%m-%d %H:%M:%S").to_string(),
            if logged.valid {
                "yes".into()
            } else {
                "no".into()
            },
            num(logged.raw),
            num(logged.normalized),
            format!("{:.1}", logged.wall_s),
            if !e.trusted {
                "no: after a break".into()
            } else if logged.late || e.after_seal {
                "no: late".into()
            } else if !logged.valid {
                "no: invalid".into()
            } else if logged.unscored {
                "no: not scored".into()
            } else {
                "yes".into()
            },
            match (&logged.reason, &logged.kind, &logged.headline) {
                (Some(r), Some(k), _) => one_line(&format!("{k}: {r}"), 90),
                (Some(r), None, _) => one_line(r, 90),
                (None, _, Some(h)) => one_line(h, 90),
                _ => String::new(),
            },
        ]);
    }
    say!(ctx, "{}", table.render());
    match (&read.broken, &read.seal) {
        (Some(b), _) => say!(ctx, "chain: BROKEN at {b}"),
        (None, Some(seal)) => say!(
            ctx,
            "chain: intact; sealed by finish at {}",
            seal.seal.finished_at.format("%Y-%m-%d %H:%M:%S")
        ),
        (None, None) => say!(ctx, "chain: intact"),
    }
    Ok(0)
}

/// Ends the attempt; returns the summary (for `--out`).
pub fn finish(ctx: &Ctx, mut attempt: Attempt) -> Result<AttemptSummary> {
    let task = ctx.host.task(&attempt.record.task)?;
    let info = task.info();
    let selection = if info.score_hidden {
        Selection::Last
    } else {
        Selection::Best
    };
    // Seal first, under the log's lock: a scorer racing this call lands after the seal, late.
    let read = attempt
        .score_log()
        .seal(Utc::now(), selection, info.direction)?;
    let finished_at = read
        .seal
        .as_ref()
        .map(|s| s.seal.finished_at)
        .unwrap_or_else(Utc::now);
    if let Some(b) = &read.broken {
        warn!(
            ctx,
            "warning: the score log was altered or damaged: {b}; only the entries before it count"
        );
    }
    let chosen = read
        .select_final(selection, info.direction)
        .map(|e| &e.entry);
    let counted: Vec<&ScoreEntry> = read.counted().map(|e| &e.entry).collect();
    let summary = AttemptSummary {
        schema: SUMMARY_SCHEMA.into(),
        attempt_id: attempt.record.id.clone(),
        agent: attempt.record.agent.clone(),
        task: info.name.clone(),
        task_family: info.family.clone(),
        profile: attempt.record.profile.clone(),
        time_limit_minutes: attempt.record.time_limit_minutes,
        score: chosen.filter(|e| e.valid).and_then(|e| e.normalized),
        raw: chosen.filter(|e| e.valid).and_then(|e| e.raw),
        selection,
        score_hidden: info.score_hidden,
        entries: counted.len(),
        valid_entries: counted.iter().filter(|e| e.valid).count(),
        late_entries: read
            .entries
            .iter()
            .filter(|e| e.trusted && (e.entry.late || e.after_seal))
            .count(),
        log_break: read.broken.as_ref().map(|b| b.to_string()),
        started_at: attempt.record.started_at,
        finished_at,
        device: chosen.and_then(|e| e.device.clone()),
        human_minutes: info.human_minutes,
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Internal(e.to_string()))?;
    atomic_write(&attempt.summary_path(), &json)?;
    if attempt.record.finished_at.is_none() {
        attempt.record.finished_at = Some(finished_at);
        attempt.save()?;
    }
    if ctx.json {
        ctx.out.json(&summary);
    } else {
        // The summary's own path is private: the platform asks for a copy with --out.
        if summary.raw.is_none() {
            say!(
                ctx,
                "finished {} ({}): no final score: none of its {} counted entries is a valid scored one",
                info.name,
                summary.profile,
                summary.entries
            );
            return Ok(summary);
        }
        say!(
            ctx,
            "finished {} ({}): final score {} (raw {}), {} of {} entries valid, {} entry counts",
            info.name,
            summary.profile,
            num(summary.score),
            num(summary.raw),
            summary.valid_entries,
            summary.entries,
            if selection == Selection::Best {
                "best"
            } else {
                "last"
            },
        );
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use rdbench_client::AttemptCommand;
    use rdbench_core::attempt::AttemptRef;

    use super::*;
    use crate::testing::{Fixture, SOLUTION};
    use crate::{dispatch, Caller, LocalPeer};

    /// Starts an attempt on `name` and scores each of `solutions` in turn (same-user mode).
    fn scored(f: &Fixture, name: &str, solutions: &[&str]) -> Attempt {
        let ctx = f.ctx(Caller::Local);
        let dir = f.folder(name);
        let start = AttemptCommand::Start {
            task: "fake".into(),
            dir: dir.clone(),
            profile: "tiny".into(),
            time_limit: None,
            agent: "a".into(),
            owner: None,
            allow_unscorable: false,
        };
        dispatch(&ctx, &mut LocalPeer, start).unwrap();
        for solution in solutions {
            std::fs::write(dir.join(SOLUTION), solution).unwrap();
            let score = AttemptCommand::Score {
                attempt: AttemptRef::Dir(dir.clone()),
                allow_uncalibrated: false,
                timeout: None,
                emulate: false,
                key: None,
            };
            dispatch(&ctx, &mut LocalPeer, score).unwrap();
        }
        f.out.take();
        Attempt::open(&f.home, &dir).unwrap()
    }

    /// A shown score: the best valid entry counts (raw is ms: the shortest solution wins).
    #[test]
    fn finish_picks_the_best_entry_where_scores_are_shown() {
        let f = Fixture::new();
        let attempt = scored(&f, "att", &["12345678", "bad", "1234", "123456"]);
        let summary = finish(&f.ctx(Caller::Local), attempt).unwrap();
        assert_eq!(summary.selection, Selection::Best);
        assert_eq!(summary.raw, Some(4f64.ln()));
        assert_eq!((summary.entries, summary.valid_entries), (4, 3));
        let (said, _) = f.out.take();
        assert!(
            said.contains("3 of 4 entries valid, best entry counts"),
            "{said}"
        );
    }

    /// A hidden score: the last valid entry counts, `log` and `status` show no score, and
    /// an entry after `finish` is late and never counts.
    #[test]
    fn hidden_scores_stay_hidden_and_the_last_entry_counts() {
        let f = Fixture::new();
        f.host.score_hidden.set(true);
        let attempt = scored(&f, "att", &["1234", "12345678"]);
        let ctx = f.ctx(Caller::Local);

        log(&ctx, &attempt).unwrap();
        let (said, _) = f.out.take();
        assert!(!said.contains("ms"), "no headline shown: {said}");
        assert!(!said.contains("1.0"), "no score shown: {said}");

        status(&ctx, &attempt).unwrap();
        let (said, _) = f.out.take();
        assert!(
            said.contains("score:   hidden until the attempt ends"),
            "{said}"
        );

        let summary = finish(&ctx, Attempt::open_id(&f.home, &attempt.record.id).unwrap()).unwrap();
        assert_eq!(summary.selection, Selection::Last);
        assert_eq!(summary.raw, Some(8f64.ln()));
        let (said, _) = f.out.take();
        assert!(said.contains("last entry counts"), "{said}");

        // Scored after the seal: recorded late, never counted.
        std::fs::write(attempt.record.dir.join(SOLUTION), "1").unwrap();
        let score = AttemptCommand::Score {
            attempt: AttemptRef::Id(attempt.record.id.clone()),
            allow_uncalibrated: false,
            timeout: None,
            emulate: false,
            key: None,
        };
        dispatch(&ctx, &mut LocalPeer, score).unwrap();
        let (said, _) = f.out.take();
        assert!(said.starts_with("recorded\n"), "{said}");
        assert!(
            said.contains("recorded late (the attempt was finished)"),
            "{said}"
        );
        let read = attempt.score_log().read_verified().unwrap();
        assert_eq!(read.counted().count(), 2);
    }

    /// `status --json` reports time and entries; nothing is written by reading.
    #[test]
    fn status_counts_entries_and_time() {
        let f = Fixture::new();
        let attempt = scored(&f, "att", &["12", "bad"]);
        let ctx = crate::Ctx {
            json: true,
            ..f.ctx(Caller::Local)
        };
        status(&ctx, &attempt).unwrap();
        let (said, _) = f.out.take();
        let v: serde_json::Value = serde_json::from_str(&said).unwrap();
        assert_eq!(v["entries"], 2);
        assert_eq!(v["valid_entries"], 1);
        assert_eq!(v["finished"], false);
        assert_eq!(v["time_limit_minutes"], 60.0);
        assert!(v["minutes_left"].as_f64().unwrap() > 59.0);
        assert_eq!(v["best"][1], 2f64.ln());
    }
}
