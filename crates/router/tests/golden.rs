//! Golden tests: `tests/golden/<topic>.txt`, one file per topic.
//!
//! A file starts with `# rules: <file in sharding-rules/>` (and optionally
//! `# options: allow_full_scatter_write`). Each case is a `-- comment` line,
//! an optional `@params v1, v2, …` line (values bound to `?`: integers,
//! 'strings', NULL, 1.5), an optional `@ids n1, n2, …` line (ids a sequence
//! fills in: routed with `Router::route_filled`, as literals, or as extra
//! parameters when `@params` is given) or `@prepare` line (routed with
//! `Router::route_for_prepare`; `fills ids` is printed when the statement is
//! routed again at each execution), any number of `@columns ds db.table: a, b`
//! lines (column lists given with `Router::learn_columns` before routing; a
//! case without them routes with none), the SQL (one or more lines), a `----`
//! line, and the expected plan (`Plan`'s Display: kind and combine, renames,
//! one `data_source: sql` line per target) or `error CODE (SQLSTATE): message`.
//! Cases are separated by blank lines.
//!
//! Every case is routed three ways — uncached, cached (first use), cached
//! again (a hit) — which must agree. Plans compare line for line, in order
//! (target order is part of a plan). On a mismatch the test prints a diff;
//! `UPDATE_GOLDEN=1 cargo test -p router --test golden` rewrites the files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::ClientError;
use router::{ColumnSource, IdStyle, Param, Plan, RouteError, Router, RouterOptions};

struct Case {
    comment: String,
    params: Option<String>,
    /// `@ids …` (the text after it) or `@prepare` (empty).
    fill: Option<(&'static str, String)>,
    /// `@columns …` lines (the text after it).
    columns: Vec<String>,
    sql: String,
    expected: String,
}

struct File {
    header: Vec<String>,
    cases: Vec<Case>,
}

fn parse_file(text: &str) -> File {
    let mut header = Vec::new();
    let mut cases = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.peek() {
        if l.starts_with('#') {
            header.push((*l).to_owned());
            lines.next();
        } else {
            break;
        }
    }
    loop {
        while lines.peek().is_some_and(|l| l.trim().is_empty()) {
            lines.next();
        }
        let Some(comment) = lines.next() else { break };
        assert!(
            comment.starts_with("-- "),
            "a case must start with '-- ': {comment}"
        );
        let mut params = None;
        if lines.peek().is_some_and(|l| l.starts_with("@params ")) {
            params = lines.next().map(|l| l["@params ".len()..].to_owned());
        }
        let mut fill = None;
        for directive in ["@ids ", "@prepare"] {
            if lines.peek().is_some_and(|l| l.starts_with(directive)) {
                fill = lines
                    .next()
                    .map(|l| (directive, l[directive.len()..].to_owned()));
            }
        }
        let mut columns = Vec::new();
        while let Some(l) = lines.peek().and_then(|l| l.strip_prefix("@columns ")) {
            columns.push(l.to_owned());
            lines.next();
        }
        let mut sql = Vec::new();
        for l in lines.by_ref() {
            if l == "----" {
                break;
            }
            sql.push(l);
        }
        let mut expected = Vec::new();
        while let Some(l) = lines.peek() {
            if l.trim().is_empty() {
                break;
            }
            expected.push(*l);
            lines.next();
        }
        cases.push(Case {
            comment: comment.to_owned(),
            params,
            fill,
            columns,
            sql: sql.join("\n"),
            expected: expected.join("\n"),
        });
    }
    File { header, cases }
}

fn render_file(f: &File) -> String {
    let mut out = String::new();
    for h in &f.header {
        let _ = writeln!(out, "{h}");
    }
    for c in &f.cases {
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", c.comment);
        if let Some(p) = &c.params {
            let _ = writeln!(out, "@params {p}");
        }
        if let Some((directive, rest)) = &c.fill {
            let _ = writeln!(out, "{directive}{rest}");
        }
        for columns in &c.columns {
            let _ = writeln!(out, "@columns {columns}");
        }
        let _ = writeln!(out, "{}", c.sql);
        let _ = writeln!(out, "----");
        let _ = writeln!(out, "{}", c.expected);
    }
    out
}

fn parse_params(text: &str) -> Vec<Param> {
    text.split(',')
        .map(str::trim)
        .map(|v| {
            if v.eq_ignore_ascii_case("NULL") {
                Param::Null
            } else if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                Param::Bytes(s.as_bytes().to_vec())
            } else if let Ok(i) = v.parse::<i64>() {
                Param::Int(i)
            } else if let Ok(u) = v.parse::<u64>() {
                Param::UInt(u)
            } else {
                Param::Double(v.parse().expect("a parameter value"))
            }
        })
        .collect()
}

fn show(result: &Result<Plan, RouteError>) -> String {
    match result {
        Ok(plan) => plan.to_string().trim_end().to_owned(),
        Err(e) => format!(
            "error {} ({}): {}",
            e.code(),
            e.sqlstate(),
            e.client_message()
        ),
    }
}

/// Gives the router a case's `@columns ds db.table: a, b` lists, and only those.
fn learn_columns(router: &Router, case: &Case) {
    router.forget_columns();
    for line in &case.columns {
        let (place, list) = line.split_once(':').expect("@columns ds db.table: a, b");
        let (data_source, table) = place.trim().split_once(' ').expect("ds db.table");
        let (database, table) = table.trim().split_once('.').expect("db.table");
        let source = ColumnSource {
            data_source: data_source.to_owned(),
            database: database.to_owned(),
            table: table.to_owned(),
        };
        let columns = list.split(',').map(|c| c.trim().to_owned()).collect();
        router.learn_columns(source, columns);
    }
}

/// Routes a case the way its directives say; the output to compare.
fn route(router: &Router, case: &Case) -> String {
    learn_columns(router, case);
    let params = case.params.as_deref().map(parse_params).unwrap_or_default();
    match &case.fill {
        None => show(&router.route(&case.sql, &params)),
        Some(("@prepare", _)) => match router.route_for_prepare(&case.sql) {
            Ok(r) if r.per_execution => format!("{}\nrouted per execution", show(&Ok(r.plan))),
            Ok(r) => show(&Ok(r.plan)),
            Err(e) => show(&Err(e)),
        },
        Some((_, ids)) => {
            let ids: Vec<u64> = ids
                .split(',')
                .map(|v| v.trim().parse().expect("an id"))
                .collect();
            let style = match case.params {
                Some(_) => IdStyle::Param,
                None => IdStyle::Literal,
            };
            show(&router.route_filled(&case.sql, &params, &ids, style))
        }
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A line diff in order (longest common subsequence): a target that moved shows as removed
/// where it was and added where it is.
fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    // common[i][j]: the longest common subsequence of e[i..] and a[j..].
    let mut common = vec![vec![0usize; a.len() + 1]; e.len() + 1];
    for i in (0..e.len()).rev() {
        for j in (0..a.len()).rev() {
            common[i][j] = if e[i] == a[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < e.len() || j < a.len() {
        if i < e.len() && j < a.len() && e[i] == a[j] {
            let _ = writeln!(out, "    {}", e[i]);
            (i, j) = (i + 1, j + 1);
        } else if j == a.len() || (i < e.len() && common[i + 1][j] >= common[i][j + 1]) {
            let _ = writeln!(out, "  - {}", e[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "  + {}", a[j]);
            j += 1;
        }
    }
    out
}

#[test]
fn the_diff_shows_a_change_of_order() {
    let expected = "select (merge: concatenate)\nds_0: A\nds_1: B";
    let actual = "select (merge: concatenate)\nds_1: B\nds_0: A";
    let d = diff(expected, actual);
    assert!(d.contains("  - ") && d.contains("  + "), "{d}");
    assert_eq!(diff(expected, expected).matches("  - ").count(), 0);
}

#[test]
fn golden() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/golden")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no golden files in {}", dir.display());
    let mut failures = Vec::new();
    let mut total = 0;
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("golden file");
        let mut file = parse_file(&text);
        let rules_file = file
            .header
            .iter()
            .find_map(|h| h.strip_prefix("# rules: "))
            .unwrap_or_else(|| panic!("{}: no '# rules:' header", path.display()))
            .trim()
            .to_owned();
        let allow = file
            .header
            .iter()
            .any(|h| h.contains("allow_full_scatter_write"));
        let rules = Arc::new(
            rules::load_file(&repo().join("sharding-rules").join(&rules_file)).expect("rules"),
        );
        let options = |cache_capacity| RouterOptions {
            cache_capacity,
            allow_full_scatter_write: allow,
        };
        let cached = Router::with_options(rules.clone(), options(1024));
        let uncached = Router::with_options(rules, options(0));
        for case in &mut file.cases {
            total += 1;
            let first = route(&cached, case);
            let again = route(&cached, case);
            let plain = route(&uncached, case);
            assert_eq!(
                first,
                plain,
                "{}: cached and uncached differ: {}",
                path.display(),
                case.sql
            );
            assert_eq!(
                first,
                again,
                "{}: cache hit differs: {}",
                path.display(),
                case.sql
            );
            let actual = first;
            if actual != case.expected {
                failures.push(format!(
                    "{} {}\n{}\n{}",
                    path.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default(),
                    case.comment,
                    case.sql,
                    diff(&case.expected, &actual)
                ));
                case.expected = actual;
            }
        }
        if update {
            std::fs::write(&path, render_file(&file)).expect("write golden file");
        }
    }
    if !failures.is_empty() && !update {
        panic!(
            "{} of {total} golden cases differ:\n\n{}\nIf the new output is right: UPDATE_GOLDEN=1 cargo test -p router",
            failures.len(),
            failures.join("\n")
        );
    }
}
